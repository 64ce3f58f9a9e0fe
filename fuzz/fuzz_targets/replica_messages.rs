//! Decode arbitrary bytes as every replica message (offers of checkpoint
//! images, chunk batches, store and release, their answers) and the
//! replica record a node writes: never panic; whatever decodes must check
//! and verify without panicking and round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::replica::replica_messages_oracle(data);
});
