//! Trace files: the engine's [`Input`](crate::input::Input) stream on disk.
//!
//! `record` writes what live mode feeds the engine; `replay`, `report` and
//! `export` read it back with a loop over [`Reader`]. The format (FORMAT.md
//! at the top of the repository) is a 16-byte header followed by
//! self-contained, checksummed frames of compact records, optionally zstd
//! compressed (`record` does):
//!
//! - append-only and flushed frame by frame, so a recorder killed with
//!   SIGKILL leaves a file whose every complete frame reads back; the torn
//!   last frame is reported as a [`ReadWarning`], not an error;
//! - hostile input never panics the reader and never makes it allocate more
//!   than the caps below ([`MAX_FRAME_BYTES`], [`MAX_DICT_ENTRIES`], ...).

mod codec;
mod reader;
pub mod synthetic;
mod varint;
mod writer;

use std::io;

pub use codec::{MAX_DICT_ENTRIES, MAX_RESERVED_RANGES, MAX_SOCKETS, MAX_STR_BYTES};
pub use reader::Reader;
pub use writer::{Compression, FRAME_TARGET_BYTES, Writer};

/// First 8 bytes of every trace. Like PNG's: a non-ASCII first byte, and
/// CR-LF / ^Z / LF that text-mode transfers would mangle.
pub const MAGIC: [u8; 8] = *b"\x89PWT\r\n\x1a\n";
/// Major version: readers refuse a greater one. Additions that old readers
/// can skip (records tagged 0x80 and up) bump [`MINOR_VERSION`] only.
pub const MAJOR_VERSION: u16 = 1;
pub const MINOR_VERSION: u16 = 9;
/// Magic, major, minor, crc32 of the first 12 bytes.
pub const HEADER_BYTES: usize = 16;
/// Payload length, crc32, kind.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Largest frame payload a reader accepts. Writers start a new frame at
/// [`FRAME_TARGET_BYTES`]; only one huge socket table can get near this.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Frame kind: records stored as they are.
pub const FRAME_PLAIN: u8 = 0;
/// Frame kind: records compressed as one zstd frame.
pub const FRAME_ZSTD: u8 = 1;
/// Largest zstd window a reader accepts (2^24 = MAX_FRAME_BYTES): bounds
/// the decoder's memory whatever a hostile frame header claims.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// What is wrong inside a frame whose checksum was right: a writer bug, or
/// a file crafted or damaged so that its checksum still matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("record runs past the end of its frame")]
    Truncated,
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: usize,
    },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("reference to undefined {dict} #{index}")]
    BadIndex { dict: &'static str, index: u64 },
    #[error("more than {MAX_DICT_ENTRIES} {0} definitions in one frame")]
    DictFull(&'static str),
    #[error("the first record is not the host record")]
    FirstNotHost,
}

/// Why a trace cannot be read (further). Offsets are bytes from the start
/// of the file; inside a frame they point at the record that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    #[error("empty file: not a portwatch trace")]
    Empty,
    #[error("not a portwatch trace (bad magic at byte 0)")]
    BadMagic,
    #[error(
        "truncated header: the file ends at byte {len_bytes}, inside the {HEADER_BYTES}-byte header"
    )]
    TruncatedHeader { len_bytes: u64 },
    #[error("corrupt header (checksum mismatch at byte 12)")]
    HeaderChecksum,
    #[error(
        "trace format version {found} is newer than this portwatch reads (up to {MAJOR_VERSION}): \
         upgrade portwatch"
    )]
    FutureVersion { found: u16 },
    #[error("unsupported trace format version {found} at byte 8")]
    BadVersion { found: u16 },
    #[error(
        "frame at byte {offset} claims {len_bytes} bytes, more than the limit of \
         {MAX_FRAME_BYTES}: corrupt file"
    )]
    FrameTooLong { offset: u64, len_bytes: u64 },
    #[error("frame at byte {offset}: checksum mismatch, the data is corrupt")]
    Checksum { offset: u64 },
    #[error("frame at byte {offset}: unknown frame kind {kind}")]
    FrameKind { offset: u64, kind: u8 },
    #[error("frame at byte {offset}: cannot decompress: {message}")]
    Decompress { offset: u64, message: String },
    #[error("corrupt record at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: Corruption },
}

impl ReadError {
    /// Byte offset of the problem in the file, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Io { offset, .. }
            | ReadError::FrameTooLong { offset, .. }
            | ReadError::Checksum { offset }
            | ReadError::FrameKind { offset, .. }
            | ReadError::Decompress { offset, .. }
            | ReadError::Corrupt { offset, .. } => Some(*offset),
            ReadError::Empty | ReadError::BadMagic | ReadError::HeaderChecksum => Some(0),
            ReadError::TruncatedHeader { len_bytes } => Some(*len_bytes),
            ReadError::FutureVersion { .. } | ReadError::BadVersion { .. } => Some(8),
        }
    }
}

/// Something the reader skipped without failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadWarning {
    #[error(
        "incomplete last frame at byte {offset} ({len_bytes} bytes) skipped: the file ends \
         in a partial frame (the recorder was killed or ran out of disk space while writing \
         it); everything before it was read"
    )]
    TornTail { offset: u64, len_bytes: u64 },
    #[error(
        "last frame at byte {offset} fails its checksum and was skipped (written during a \
         crash or power loss?); everything before it was read"
    )]
    CorruptTail { offset: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the first input of a trace must be the host record")]
    FirstNotHost,
    #[error("one record of {len_bytes} bytes exceeds the frame limit of {MAX_FRAME_BYTES}")]
    RecordTooLarge { len_bytes: usize },
    #[error("{what} has {len} entries, more than the format's limit of {max}")]
    TooMany {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

/// Builds the 16-byte file header.
pub(crate) fn header_bytes() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&MAJOR_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&MINOR_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The fuzz target's body, shared with the test that replays its corpus:
/// reading arbitrary bytes must not panic, and whatever reads as valid
/// inputs must write and read back identical (so the reader accepts
/// nothing the writer could not have produced).
#[doc(hidden)]
pub fn fuzz_read(data: &[u8]) {
    let Ok(mut reader) = Reader::new(data) else {
        return;
    };
    let inputs: Vec<_> = reader.by_ref().map_while(Result::ok).collect();
    if inputs.is_empty() {
        return;
    }
    let mut w = Writer::new(Vec::new()).expect("writing to memory");
    for i in &inputs {
        w.append(i).expect("a decoded input must be encodable");
    }
    let bytes = w.finish().expect("writing to memory");
    let back: Vec<_> = Reader::new(&bytes[..])
        .expect("a written header")
        .collect::<Result<_, _>>()
        .expect("a written trace reads back");
    assert_eq!(back, inputs, "decode → encode → decode changed the inputs");
}
