//! Reads a trace back as the stream of inputs it was written from.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::codec::Decoder;
use super::varint::Cursor;
use super::{
    Corruption, FRAME_HEADER_BYTES, FRAME_PLAIN, FRAME_ZSTD, HEADER_BYTES, MAGIC, MAJOR_VERSION,
    MAX_FRAME_BYTES, ReadError, ReadWarning, ZSTD_WINDOW_LOG_MAX,
};
use crate::input::Input;

/// An iterator over a trace's inputs: `for input in Reader::open(path)? {
/// engine.push(input?) }` is all replay needs. After the first error the
/// iterator ends. Problems it can skip (a torn last frame) end the stream
/// normally and are listed by [`Reader::warnings`].
pub struct Reader<R> {
    src: BufReader<R>,
    /// File offset of the next byte `src` yields.
    offset: u64,
    /// Payload of the current frame (decompressed), and where the next
    /// record starts.
    frame: Vec<u8>,
    /// The frame as stored, when it has to be decompressed.
    stored: Vec<u8>,
    pos: usize,
    /// File offset of `frame[0]`.
    payload_offset: u64,
    dec: Decoder,
    minor_version: u16,
    seen_host: bool,
    done: bool,
    warnings: Vec<ReadWarning>,
}

impl Reader<File> {
    pub fn open(path: &Path) -> Result<Reader<File>, ReadError> {
        let f = File::open(path).map_err(|source| ReadError::Io { offset: 0, source })?;
        Reader::new(f)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Reader<R> {
    /// Checks the header. Errors here mean "not a trace this portwatch can
    /// read" (empty, wrong magic, future version, damaged header).
    pub fn new(src: R) -> Result<Reader<R>, ReadError> {
        let mut src = BufReader::with_capacity(64 * 1024, src);
        let mut h = [0u8; HEADER_BYTES];
        let n =
            read_full(&mut src, &mut h).map_err(|source| ReadError::Io { offset: 0, source })?;
        if n == 0 {
            return Err(ReadError::Empty);
        }
        let m = n.min(MAGIC.len());
        if h[..m] != MAGIC[..m] {
            return Err(ReadError::BadMagic);
        }
        if n < HEADER_BYTES {
            return Err(ReadError::TruncatedHeader {
                len_bytes: n as u64,
            });
        }
        let crc = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&h[..12]) {
            return Err(ReadError::HeaderChecksum);
        }
        let major = u16::from_le_bytes([h[8], h[9]]);
        if major > MAJOR_VERSION {
            return Err(ReadError::FutureVersion { found: major });
        }
        if major == 0 {
            return Err(ReadError::BadVersion { found: major });
        }
        Ok(Reader {
            src,
            offset: HEADER_BYTES as u64,
            frame: Vec::new(),
            stored: Vec::new(),
            pos: 0,
            payload_offset: HEADER_BYTES as u64,
            dec: Decoder::default(),
            minor_version: u16::from_le_bytes([h[10], h[11]]),
            seen_host: false,
            done: false,
            warnings: Vec::new(),
        })
    }

    /// Minor format version of the file (informational: anything a newer
    /// minor version adds is skipped by this reader).
    pub fn minor_version(&self) -> u16 {
        self.minor_version
    }

    /// What was skipped; complete once the iterator has returned `None`.
    pub fn warnings(&self) -> &[ReadWarning] {
        &self.warnings
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn io(&self, source: io::Error) -> ReadError {
        ReadError::Io {
            offset: self.offset,
            source,
        }
    }

    /// Loads the next frame. `Ok(false)` at the end of the trace: a clean
    /// end, or a torn last frame (recorded as a warning).
    fn next_frame(&mut self) -> Result<bool, ReadError> {
        let frame_offset = self.offset;
        let mut hdr = [0u8; FRAME_HEADER_BYTES];
        let n = read_full(&mut self.src, &mut hdr).map_err(|e| self.io(e))?;
        self.offset += n as u64;
        if n == 0 {
            return Ok(false);
        }
        if n < FRAME_HEADER_BYTES {
            self.warnings.push(ReadWarning::TornTail {
                offset: frame_offset,
                len_bytes: n as u64,
            });
            return Ok(false);
        }
        let len = u32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
        let kind = hdr[8];
        if len as usize > MAX_FRAME_BYTES {
            return Err(ReadError::FrameTooLong {
                offset: frame_offset,
                len_bytes: len.into(),
            });
        }
        // `take` + `read_to_end` grows the buffer only as bytes actually
        // arrive: a length field alone cannot make us allocate.
        self.stored.clear();
        let got = (&mut self.src)
            .take(len.into())
            .read_to_end(&mut self.stored)
            .map_err(|e| self.io(e))?;
        self.offset += got as u64;
        if got < len as usize {
            self.warnings.push(ReadWarning::TornTail {
                offset: frame_offset,
                len_bytes: (FRAME_HEADER_BYTES + got) as u64,
            });
            return Ok(false);
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(&self.stored);
        if h.finalize() != crc {
            let offset = self.offset;
            let at_end = self
                .src
                .fill_buf()
                .map_err(|source| ReadError::Io { offset, source })?
                .is_empty();
            if at_end {
                // The last frame, complete in length but not in content:
                // what a crash leaves when the file grew before its data
                // reached the disk.
                self.warnings.push(ReadWarning::CorruptTail {
                    offset: frame_offset,
                });
                return Ok(false);
            }
            return Err(ReadError::Checksum {
                offset: frame_offset,
            });
        }
        match kind {
            FRAME_PLAIN => std::mem::swap(&mut self.frame, &mut self.stored),
            FRAME_ZSTD => self.decompress(frame_offset)?,
            kind => {
                return Err(ReadError::FrameKind {
                    offset: frame_offset,
                    kind,
                });
            }
        }
        self.dec.reset();
        self.pos = 0;
        self.payload_offset = frame_offset + FRAME_HEADER_BYTES as u64;
        Ok(true)
    }

    /// `stored` → `frame`, producing at most `MAX_FRAME_BYTES`: the output
    /// buffer grows with what the decoder actually produces, and the
    /// window it may ask for is capped.
    fn decompress(&mut self, frame_offset: u64) -> Result<(), ReadError> {
        let err = |e: io::Error| ReadError::Decompress {
            offset: frame_offset,
            message: e.to_string(),
        };
        let mut dec = zstd::stream::read::Decoder::with_buffer(&self.stored[..]).map_err(err)?;
        dec.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(err)?;
        self.frame.clear();
        let n = dec
            .take(MAX_FRAME_BYTES as u64 + 1)
            .read_to_end(&mut self.frame)
            .map_err(err)?;
        if n > MAX_FRAME_BYTES {
            return Err(ReadError::FrameTooLong {
                offset: frame_offset,
                len_bytes: n as u64,
            });
        }
        Ok(())
    }

    fn fail(&mut self, e: ReadError) -> Option<Result<Input, ReadError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Input, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.frame.len() {
                match self.next_frame() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => return self.fail(e),
                }
            }
            let start = self.pos;
            let mut c = Cursor::new(&self.frame);
            c.pos = start;
            let offset = self.payload_offset + start as u64;
            match self.dec.decode(&mut c) {
                Ok(None) => self.pos = c.pos,
                Ok(Some(input)) => {
                    self.pos = c.pos;
                    if !self.seen_host && !matches!(input, Input::Host(_)) {
                        let reason = Corruption::FirstNotHost;
                        return self.fail(ReadError::Corrupt { offset, reason });
                    }
                    self.seen_host = true;
                    return Some(Ok(input));
                }
                Err(reason) => return self.fail(ReadError::Corrupt { offset, reason }),
            }
        }
    }
}
