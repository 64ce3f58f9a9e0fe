//! Decode arbitrary bytes as every lease message (lease requests, votes,
//! grants, certificates): never panic; whatever decodes round-trips, and
//! checking a certificate's signatures never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::lease::lease_messages_oracle(data);
});
