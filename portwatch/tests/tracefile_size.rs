//! How big a trace gets for the traffic portwatch is for, and how fast it
//! is written and read. Prints the figures (run with `--nocapture`, and
//! `--release` for meaningful speeds); asserts only generous size bounds.

use std::time::Instant;

use portwatch::input::Input;
use portwatch::tracefile::{Compression, Reader, Writer, synthetic};

struct Figures {
    bytes_per_event: f64,
    write_events_per_s: f64,
    read_events_per_s: f64,
}

/// 20 s at 5,000 connections/s from 10 processes to one destination,
/// flushed once a second like `portwatch record` does.
fn measure(compression: Compression) -> Figures {
    let inputs = synthetic::churn(100_000, 5_000);
    let events = inputs
        .iter()
        .filter(|i| matches!(i, Input::Event(_)))
        .count() as f64;

    // Best of several runs: the machine is shared, and the best run is
    // the one least disturbed. One run in debug builds (figures are
    // meaningless there anyway).
    let runs = if cfg!(debug_assertions) { 1 } else { 7 };
    let (mut write_s, mut read_s) = (f64::MAX, f64::MAX);
    let mut bytes = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut w = Writer::new(Vec::with_capacity(4 << 20)).unwrap();
        w.set_compression(compression).unwrap();
        for input in &inputs {
            w.append(input).unwrap();
            if matches!(input, Input::Tick { .. }) {
                w.flush().unwrap();
            }
        }
        bytes = w.finish().unwrap();
        write_s = write_s.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let read = Reader::new(&bytes[..])
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        read_s = read_s.min(t.elapsed().as_secs_f64());
        assert_eq!(read, inputs);
    }

    let f = Figures {
        bytes_per_event: bytes.len() as f64 / events,
        write_events_per_s: events / write_s,
        read_events_per_s: events / read_s,
    };
    println!(
        "{compression:?}: {:.1} bytes/event; writer {:.2} M events/s, reader {:.2} M events/s \
         ({} build)",
        f.bytes_per_event,
        f.write_events_per_s / 1e6,
        f.read_events_per_s / 1e6,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    f
}

// The target is 32 bytes per connection (issue 6). The bounds are loose so
// that a small format change does not fail CI, but a regression to
// fixed-size records (~100 bytes) does.

#[test]
fn a_hot_destination_stream_costs_few_bytes_per_event() {
    let f = measure(Compression::None);
    assert!(f.bytes_per_event < 48.0, "{:.1}", f.bytes_per_event);
}

#[test]
fn zstd_frames_make_it_smaller_still() {
    let plain = measure(Compression::None).bytes_per_event;
    let z = measure(Compression::Zstd(1)).bytes_per_event;
    measure(Compression::Zstd(3));
    assert!(z < plain, "{z:.1} vs {plain:.1}");
}
