//! Decode arbitrary bytes as a signed release (`meshnode upgrade`) and as
//! a binary's release marker: never panic; a release that verifies
//! re-encodes to one that verifies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::release::fuzz_release(data);
});
