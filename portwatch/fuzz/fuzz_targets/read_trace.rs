//! Arbitrary bytes as a trace file: the reader must never panic, and
//! whatever it accepts must round-trip through the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portwatch::tracefile::fuzz_read(data);
});
