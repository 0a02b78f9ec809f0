//! Damaged, truncated and hostile traces: the reader reports a clear error
//! or warning with a byte offset, never panics, never allocates what a
//! length field claims, and never returns data that was not written.

use portwatch::input::Input;
use portwatch::tracefile::{
    Compression, FRAME_HEADER_BYTES, FRAME_ZSTD, HEADER_BYTES, MAGIC, MAX_FRAME_BYTES, ReadError,
    ReadWarning, Reader, Writer, synthetic,
};

/// A small trace of three frames, with the file length after each frame.
fn small_trace() -> (Vec<u8>, Vec<Input>, Vec<usize>) {
    small_trace_with(Compression::None)
}

fn small_trace_with(compression: Compression) -> (Vec<u8>, Vec<Input>, Vec<usize>) {
    let inputs = synthetic::churn(12, 5_000);
    let mut w = Writer::new(Vec::new()).unwrap();
    w.set_compression(compression).unwrap();
    let mut ends = vec![HEADER_BYTES];
    for (i, input) in inputs.iter().enumerate() {
        w.append(input).unwrap();
        if i % 5 == 4 || i == inputs.len() - 1 {
            w.flush().unwrap();
            ends.push(w.bytes_written() as usize);
        }
    }
    let bytes = w.finish().unwrap();
    assert_eq!(ends.len(), 4, "three frames expected");
    (bytes, inputs, ends)
}

struct Outcome {
    inputs: Vec<Input>,
    error: Option<ReadError>,
    warnings: Vec<ReadWarning>,
}

fn read(bytes: &[u8]) -> Result<Outcome, ReadError> {
    let mut r = Reader::new(bytes)?;
    let mut inputs = Vec::new();
    let mut error = None;
    for item in r.by_ref() {
        match item {
            Ok(i) => inputs.push(i),
            Err(e) => error = Some(e),
        }
    }
    Ok(Outcome {
        inputs,
        error,
        warnings: r.warnings().to_vec(),
    })
}

fn header(major: u16) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&major.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(payload);
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc.finalize().to_le_bytes());
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

/// The payload of a valid frame holding just the synthetic host record.
fn host_payload() -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.append(&Input::Host(synthetic::host(1))).unwrap();
    let bytes = w.finish().unwrap();
    bytes[HEADER_BYTES + FRAME_HEADER_BYTES..].to_vec()
}

#[test]
fn an_empty_file_is_not_a_trace() {
    let err = Reader::new(&[][..]).err().unwrap();
    assert!(matches!(err, ReadError::Empty), "{err}");
    assert!(err.to_string().contains("empty"));
}

#[test]
fn wrong_magic_is_rejected_at_byte_0() {
    let err = Reader::new(&b"{\"event\":\"close\"}\n"[..]).err().unwrap();
    assert!(matches!(err, ReadError::BadMagic), "{err}");
    assert_eq!(err.offset(), Some(0));
    // Even a single wrong byte.
    let err = Reader::new(&b"x"[..]).err().unwrap();
    assert!(matches!(err, ReadError::BadMagic), "{err}");
}

#[test]
fn a_truncated_header_says_where_the_file_ends() {
    let h = header(1);
    for len in 1..HEADER_BYTES {
        let err = Reader::new(&h[..len]).err().unwrap();
        assert!(
            matches!(err, ReadError::TruncatedHeader { len_bytes } if len_bytes == len as u64),
            "{len}: {err}"
        );
    }
}

#[test]
fn a_future_version_asks_for_an_upgrade() {
    let err = Reader::new(&header(2)[..]).err().unwrap();
    assert!(
        matches!(err, ReadError::FutureVersion { found: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
    let err = Reader::new(&header(0)[..]).err().unwrap();
    assert!(matches!(err, ReadError::BadVersion { found: 0 }), "{err}");
}

#[test]
fn a_damaged_header_is_a_checksum_error() {
    let mut h = header(1);
    h[10] ^= 1; // minor version
    let err = Reader::new(&h[..]).err().unwrap();
    assert!(matches!(err, ReadError::HeaderChecksum), "{err}");
}

#[test]
fn truncation_at_every_offset_keeps_every_complete_frame() {
    truncation_at_every_offset(Compression::None);
}

#[test]
fn truncation_of_zstd_frames_at_every_offset_keeps_every_complete_frame() {
    truncation_at_every_offset(Compression::Zstd(3));
}

fn truncation_at_every_offset(compression: Compression) {
    let (bytes, inputs, ends) = small_trace_with(compression);
    // Inputs readable from a file that ends right after frame k.
    let per_frame = [0usize, 5, 10, inputs.len()];
    for cut in 0..=bytes.len() {
        let prefix = &bytes[..cut];
        let out = match read(prefix) {
            Ok(o) => o,
            Err(e) => {
                assert!(cut < HEADER_BYTES, "cut {cut}: {e}");
                continue;
            }
        };
        assert!(out.error.is_none(), "cut {cut}: {:?}", out.error);
        let complete = ends.iter().rposition(|&e| e <= cut).unwrap();
        assert_eq!(out.inputs, inputs[..per_frame[complete]], "cut {cut}");
        if ends.contains(&cut) {
            assert_eq!(out.warnings, vec![], "cut {cut}");
        } else {
            assert_eq!(
                out.warnings,
                vec![ReadWarning::TornTail {
                    offset: ends[complete] as u64,
                    len_bytes: (cut - ends[complete]) as u64,
                }],
                "cut {cut}"
            );
        }
    }
}

#[test]
fn every_single_bit_flip_is_reported_and_never_yields_wrong_data() {
    every_single_bit_flip(Compression::None);
}

#[test]
fn every_single_bit_flip_in_zstd_frames_is_reported_and_never_yields_wrong_data() {
    every_single_bit_flip(Compression::Zstd(3));
}

fn every_single_bit_flip(compression: Compression) {
    let (bytes, inputs, _) = small_trace_with(compression);
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let out = match read(&b) {
            Ok(o) => o,
            Err(e) => {
                assert!(bit / 8 < HEADER_BYTES, "bit {bit}: {e}");
                continue;
            }
        };
        assert!(
            out.error.is_some() || !out.warnings.is_empty(),
            "bit {bit}: a flip went unnoticed"
        );
        assert_eq!(
            out.inputs,
            inputs[..out.inputs.len()],
            "bit {bit}: the reader returned data that was not written"
        );
    }
}

#[test]
fn a_length_field_claiming_gigabytes_is_an_error_with_its_offset() {
    let mut b = header(1);
    b.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    b.extend_from_slice(&[0; 5]);
    b.extend_from_slice(b"some bytes");
    let out = read(&b).unwrap();
    let err = out.error.expect("an error");
    assert!(
        matches!(
            err,
            ReadError::FrameTooLong {
                offset: 16,
                len_bytes: 0xffff_fff0
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("byte 16"), "{err}");
}

#[test]
fn a_length_at_the_limit_with_no_data_behind_it_is_a_torn_tail() {
    let mut b = header(1);
    b.extend_from_slice(&(MAX_FRAME_BYTES as u32).to_le_bytes());
    b.extend_from_slice(&[0; 5]);
    b.extend_from_slice(&[1; 100]);
    let out = read(&b).unwrap();
    assert!(out.error.is_none());
    assert_eq!(
        out.warnings,
        vec![ReadWarning::TornTail {
            offset: 16,
            len_bytes: 109
        }]
    );
}

#[test]
fn a_zeroed_last_frame_is_skipped_with_a_warning() {
    // What a power loss can leave: the file grew, the data never landed.
    let (mut bytes, inputs, ends) = small_trace();
    let last = ends[2];
    for b in &mut bytes[last + FRAME_HEADER_BYTES..] {
        *b = 0;
    }
    let out = read(&bytes).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.inputs, inputs[..10]);
    assert_eq!(
        out.warnings,
        vec![ReadWarning::CorruptTail {
            offset: last as u64
        }]
    );
}

#[test]
fn a_damaged_frame_in_the_middle_is_an_error_after_the_frames_before_it() {
    let (mut bytes, inputs, ends) = small_trace();
    bytes[ends[1] + FRAME_HEADER_BYTES + 3] ^= 0x40;
    let out = read(&bytes).unwrap();
    assert_eq!(out.inputs, inputs[..5]);
    let err = out.error.expect("an error");
    assert!(
        matches!(err, ReadError::Checksum { offset } if offset == ends[1] as u64),
        "{err}"
    );
}

#[test]
fn an_unknown_frame_kind_is_an_error() {
    let mut b = header(1);
    b.extend(frame(7, &host_payload()));
    let err = read(&b).unwrap().error.expect("an error");
    assert!(
        matches!(
            err,
            ReadError::FrameKind {
                offset: 16,
                kind: 7
            }
        ),
        "{err}"
    );
}

#[test]
fn a_zstd_bomb_is_stopped_at_the_frame_limit() {
    // 64 MiB of zeros compress to a few KiB with a valid checksum.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 1).unwrap();
    assert!(bomb.len() < 64 * 1024);
    let mut b = header(1);
    b.extend(frame(FRAME_ZSTD, &bomb));
    let err = read(&b).unwrap().error.expect("an error");
    assert!(
        matches!(err, ReadError::FrameTooLong { offset: 16, .. }),
        "{err}"
    );
}

#[test]
fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
    // Streamed with no content size and a 128 MiB window: the frame header
    // asks any decoder to reserve that much, whatever the data.
    use std::io::Write;
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    e.window_log(27).unwrap();
    e.write_all(&host_payload()).unwrap();
    let packed = e.finish().unwrap();
    let mut b = header(1);
    b.extend(frame(FRAME_ZSTD, &packed));
    let err = read(&b).unwrap().error.expect("an error");
    assert!(
        matches!(err, ReadError::Decompress { offset: 16, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("too much memory"), "{err}");
}

#[test]
fn garbage_in_a_zstd_frame_is_a_decompression_error() {
    let mut b = header(1);
    b.extend(frame(FRAME_ZSTD, b"definitely not zstd"));
    let err = read(&b).unwrap().error.expect("an error");
    assert!(
        matches!(err, ReadError::Decompress { offset: 16, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("decompress"), "{err}");
}

#[test]
fn a_trace_must_start_with_the_host_record() {
    let mut b = header(1);
    b.extend(frame(0, &[0x11, 0x02])); // Tick
    let err = read(&b).unwrap().error.expect("an error");
    assert!(err.to_string().contains("host"), "{err}");
    assert_eq!(err.offset(), Some(25));
}

#[test]
fn records_a_newer_minor_version_adds_are_skipped() {
    let mut payload = host_payload();
    payload.extend_from_slice(&[0x80, 3, 1, 2, 3]); // skippable, 3 bytes
    payload.extend_from_slice(&[0x11, 0x02]); // Tick +1 ns
    let mut b = header(1);
    b.extend(frame(0, &payload));
    let out = read(&b).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.inputs.len(), 2);
    assert_eq!(out.inputs[1], Input::Tick { now_ns: 2 });
}

#[test]
fn hostile_records_with_valid_checksums_are_errors_with_offsets() {
    let host = host_payload();
    let at = (HEADER_BYTES + FRAME_HEADER_BYTES + host.len()) as u64;
    let cases: &[(&[u8], &str)] = &[
        (&[0x00], "unknown record tag 0x00"),
        (&[0x42], "unknown record tag 0x42"),
        (
            &[0x01, 0x00, 0x02, 0x00, 0x09, 0x00, 0x00],
            "undefined destination",
        ),
        (&[0x02, 0xf0], "connect-error flags"),
        (
            &[0x12, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f],
            "cgroup path",
        ),
        (
            &[0x13, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f],
            "socket table",
        ),
        // A table without TIME_WAIT (format 1.9): the same bounds inside
        // its length, and no reference past the dictionary.
        (
            &[0x86, 0x07, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f],
            "socket table",
        ),
        (&[0x86, 0x06, 0x01, 0x00, 0x01, 0x00, 0x05, 0x00], "address"),
        (&[0x20, 0x05], "address family 5"),
        (&[0x21, 0x01, 0x01, 0x01, 0x11], "comm"),
        (&[0x21, 0x01, 0x01, 0x01, 0x01, b'a', 0x12], "thread name"),
        (
            &[0x21, 0x01, 0x01, 0x01, 0x02, b'a', 0x00, 0x11],
            "contains NUL",
        ),
        (
            &[
                0x14, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            "varint",
        ),
        (&[0x15, 0x00, 0x01], "past the end"),
        (&[0x80, 0xff, 0xff, 0x03], "past the end"),
        // Netns readings (format 1.2): unknown flags, a body cut
        // short, an error string that is not there, bytes left over.
        (&[0x82, 0x03, 0x01, 0x01, 0x10], "netns record flags"),
        (&[0x82, 0x02, 0x01, 0x01], "past the end"),
        (&[0x82, 0x03, 0x01, 0x01, 0x04], "past the end"),
        (&[0x82, 0x04, 0x01, 0x01, 0x00, 0x00], "netns record length"),
        (
            &[0x82, 0x07, 0x01, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00],
            "netns out of range",
        ),
    ];
    for (record, expected) in cases {
        let mut payload = host.clone();
        payload.extend_from_slice(record);
        let mut b = header(1);
        b.extend(frame(0, &payload));
        let out = read(&b).unwrap();
        assert_eq!(out.inputs.len(), 1, "{record:02x?}");
        let err = out
            .error
            .unwrap_or_else(|| panic!("{record:02x?}: no error"));
        assert_eq!(err.offset(), Some(at), "{record:02x?}: {err}");
        assert!(
            err.to_string().contains(expected),
            "{record:02x?}: {err} (expected {expected:?})"
        );
    }
}

#[test]
fn a_dictionary_cannot_grow_past_its_cap() {
    let mut payload = host_payload();
    for _ in 0..=portwatch::tracefile::MAX_DICT_ENTRIES {
        payload.extend_from_slice(&[0x20, 4, 10, 0, 0, 1]);
    }
    let mut b = header(1);
    b.extend(frame(0, &payload));
    let err = read(&b).unwrap().error.expect("an error");
    assert!(err.to_string().contains("more than 65536 address"), "{err}");
}

// ---- random damage behind valid checksums ----
//
// The frame checksum catches accidental damage; these reach the record
// decoder itself, as a crafted file would.

fn refresh_crcs(bytes: &mut [u8]) {
    let mut at = HEADER_BYTES;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = (at + FRAME_HEADER_BYTES + len).min(bytes.len());
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[at + 8..end]);
        let crc = h.finalize().to_le_bytes();
        bytes[at + 4..at + 8].copy_from_slice(&crc);
        at = end;
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_records_with_fixed_checksums_never_panic(
        edits in proptest::collection::vec((0usize..10_000, proptest::prelude::any::<u8>()), 1..6),
    ) {
        let (mut bytes, _, _) = small_trace();
        for (pos, val) in edits {
            // Anywhere past the file header and the first frame header;
            // later frame headers may be hit, and refresh_crcs follows
            // whatever lengths they then claim.
            let i = HEADER_BYTES + FRAME_HEADER_BYTES + pos % (bytes.len() - HEADER_BYTES - FRAME_HEADER_BYTES);
            bytes[i] = val;
        }
        refresh_crcs(&mut bytes);
        portwatch::tracefile::fuzz_read(&bytes);
    }

    #[test]
    fn arbitrary_payloads_with_valid_checksums_never_panic(
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
    ) {
        let mut b = header(1);
        let mut p = host_payload();
        p.extend_from_slice(&payload);
        b.extend(frame(0, &p));
        portwatch::tracefile::fuzz_read(&b);
    }
}
