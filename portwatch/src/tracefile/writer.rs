//! Appends inputs to a trace, one self-contained frame at a time.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::codec::{Encoder, MAX_RESERVED_RANGES, MAX_SOCKETS, MAX_STR_BYTES};
use super::{
    FRAME_HEADER_BYTES, FRAME_PLAIN, FRAME_ZSTD, MAX_FRAME_BYTES, WriteError, header_bytes,
};
use crate::input::Input;

/// A frame is written out once its payload reaches this size, even before
/// the next [`Writer::flush`]: large enough that the per-frame header and
/// dictionary definitions cost little, small enough that a crash loses
/// little and a reader's buffer stays small.
pub const FRAME_TARGET_BYTES: usize = 256 * 1024;

/// How frames are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Records as they are: fastest, about 19 bytes per connection event.
    None,
    /// Each frame compressed with zstd at this level (1 is fast and enough:
    /// the records are already compact; what is left is repetition).
    /// A frame that does not get smaller is stored plain.
    Zstd(i32),
}

/// Writes a trace. Nothing reaches `out` between [`Writer::flush`] calls
/// except whole frames, each in one `write` call, so a crash leaves at
/// most one torn frame at the end of the file.
pub struct Writer<W: Write> {
    out: W,
    /// Frame header placeholder followed by the payload being built; sent
    /// as one buffer so the frame lands in the file in one write.
    frame: Vec<u8>,
    enc: Encoder,
    /// Set when frames are compressed.
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// A compressed frame, assembled for its single write.
    packed: Vec<u8>,
    started: bool,
    bytes_written: u64,
    inputs: u64,
    events: u64,
}

impl Writer<File> {
    /// Creates `path` with mode 0600 (a trace holds addresses and process
    /// names) and writes the header. An existing file is an error unless
    /// `force`, which truncates it and tightens its mode to 0600; a
    /// symlink is an error either way.
    pub fn create(path: &Path, force: bool) -> io::Result<Writer<File>> {
        let mut opts = OpenOptions::new();
        // Never through a symlink: root writing where a link in a shared
        // directory points is the classic /tmp attack (create_new already
        // refuses links; this covers `force`).
        opts.write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let file = opts.open(path)?;
        if force {
            // `mode` applies only when the file is created.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Writer::new(file)
    }

    /// Flushes and asks the kernel to put the file on disk (power loss).
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        self.out.sync_data()?;
        Ok(())
    }
}

impl<W: Write> Writer<W> {
    /// Writes the file header and flushes it, so that even a trace killed
    /// before its first frame is recognisably a trace.
    pub fn new(mut out: W) -> io::Result<Writer<W>> {
        let header = header_bytes();
        out.write_all(&header)?;
        out.flush()?;
        let mut frame = Vec::with_capacity(FRAME_TARGET_BYTES + 4096);
        frame.resize(FRAME_HEADER_BYTES, 0);
        Ok(Writer {
            out,
            frame,
            enc: Encoder::default(),
            zstd: None,
            packed: Vec::new(),
            started: false,
            bytes_written: header.len() as u64,
            inputs: 0,
            events: 0,
        })
    }

    /// Chooses how the frames written from now on are stored.
    pub fn set_compression(&mut self, c: Compression) -> io::Result<()> {
        self.zstd = match c {
            Compression::None => None,
            Compression::Zstd(level) => Some(zstd::bulk::Compressor::new(level)?),
        };
        Ok(())
    }

    /// Adds one input to the current frame. The first must be
    /// [`Input::Host`]. Not on disk until the frame is written: when it
    /// fills up, or at the next [`Writer::flush`].
    pub fn append(&mut self, input: &Input) -> Result<(), WriteError> {
        if !self.started && !matches!(input, Input::Host(_)) {
            return Err(WriteError::FirstNotHost);
        }
        check_limits(input)?;
        if self.enc.dicts_nearly_full() {
            self.write_frame()?;
        }
        let mark = self.frame.len();
        self.enc.encode(&mut self.frame, input);
        if self.frame.len() - FRAME_HEADER_BYTES > MAX_FRAME_BYTES {
            // Too big for this frame. Drop it (the encoder's dictionaries
            // may now name definitions that were cut off: writing the frame
            // resets them), then try once more in a frame of its own.
            let len_bytes = self.frame.len() - mark;
            self.frame.truncate(mark);
            self.write_frame()?;
            self.enc.encode(&mut self.frame, input);
            if self.frame.len() - FRAME_HEADER_BYTES > MAX_FRAME_BYTES {
                self.frame.truncate(FRAME_HEADER_BYTES);
                self.enc.reset();
                return Err(WriteError::RecordTooLarge { len_bytes });
            }
        }
        self.started = true;
        self.inputs += 1;
        if matches!(input, Input::Event(_)) {
            self.events += 1;
        }
        if self.frame.len() - FRAME_HEADER_BYTES >= FRAME_TARGET_BYTES {
            self.write_frame()?;
        }
        Ok(())
    }

    /// Writes the current frame (if any) and flushes `out`: everything
    /// appended so far is then readable even if this process is killed.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.write_frame()?;
        self.out.flush()?;
        Ok(())
    }

    /// Flushes and hands back the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.flush()?;
        Ok(self.out)
    }

    /// Bytes in the file so far (header and written frames).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Bytes appended but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.frame.len() - FRAME_HEADER_BYTES
    }

    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    fn write_frame(&mut self) -> Result<(), WriteError> {
        let payload_len = self.frame.len() - FRAME_HEADER_BYTES;
        if payload_len == 0 {
            return Ok(());
        }
        let compressed = match self.zstd.as_mut() {
            Some(z) => Some(z.compress(&self.frame[FRAME_HEADER_BYTES..])?),
            None => None,
        };
        let buf = match compressed {
            Some(c) if c.len() < payload_len => {
                self.packed.clear();
                self.packed.resize(FRAME_HEADER_BYTES, 0);
                self.packed.extend_from_slice(&c);
                fill_frame_header(&mut self.packed, FRAME_ZSTD);
                &self.packed
            }
            _ => {
                fill_frame_header(&mut self.frame, FRAME_PLAIN);
                &self.frame
            }
        };
        // Whatever happens, the next frame starts empty with fresh state:
        // after an error the file ends in a torn frame, which readers skip.
        let r = self.out.write_all(buf);
        let written = buf.len();
        self.frame.truncate(FRAME_HEADER_BYTES);
        self.enc.reset();
        r?;
        self.bytes_written += written as u64;
        Ok(())
    }
}

/// Fills in the length, checksum and kind of the frame in `buf` (header
/// placeholder followed by the stored payload).
fn fill_frame_header(buf: &mut [u8], kind: u8) {
    let (hdr, payload) = buf.split_at_mut(FRAME_HEADER_BYTES);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(payload);
    hdr[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    hdr[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    hdr[8] = kind;
}

/// Rejects inputs the format cannot hold, before anything is encoded.
fn check_limits(input: &Input) -> Result<(), WriteError> {
    let check = |what, len: usize, max: usize| {
        if len > max {
            Err(WriteError::TooMany { what, len, max })
        } else {
            Ok(())
        }
    };
    match input {
        Input::Host(h) => {
            check("hostname (bytes)", h.hostname.len(), MAX_STR_BYTES)?;
            check("kernel release (bytes)", h.kernel.len(), MAX_STR_BYTES)?;
            check(
                "reserved port ranges",
                h.sysctls.reserved_ports.len(),
                MAX_RESERVED_RANGES,
            )
        }
        Input::Cgroup { path: Some(p), .. } => check("cgroup path (bytes)", p.len(), MAX_STR_BYTES),
        Input::Sockets(t) => check("socket table", t.entries.len(), MAX_SOCKETS),
        Input::Workload(w) => [
            Some(&w.id),
            Some(&w.source),
            w.pod_namespace.as_ref(),
            w.pod_name.as_ref(),
            w.container.as_ref(),
        ]
        .into_iter()
        .flatten()
        .try_for_each(|s| check("workload name (bytes)", s.len(), MAX_STR_BYTES)),
        _ => Ok(()),
    }
}
