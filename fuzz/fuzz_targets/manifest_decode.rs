//! Decode arbitrary bytes as a snapshot manifest: never panic; whatever
//! decodes must round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::fuzzing::manifest_oracle(data);
});
