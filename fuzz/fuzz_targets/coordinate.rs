//! Decode arbitrary bytes as a gossiped network coordinate: never panic;
//! whatever decodes round-trips, and one that passes its check gives
//! finite distances.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::coordinate::coordinate_oracle(data);
});
