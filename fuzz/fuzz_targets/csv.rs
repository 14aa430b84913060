#![no_main]
//! CSV framing and decoding of arbitrary bytes (the first byte picks the read size).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_connectors::files::fuzzing::csv(data));
