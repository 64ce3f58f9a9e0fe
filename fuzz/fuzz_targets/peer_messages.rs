//! Decode arbitrary bytes as every node ↔ node vessel message (offers,
//! chunks, commits, deployments, vessel images): never panic; whatever
//! decodes must verify and check without panicking and round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::peer::peer_messages_oracle(data);
});
