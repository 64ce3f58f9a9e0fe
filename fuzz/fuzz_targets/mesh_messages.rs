//! Decode arbitrary bytes as every mesh message (control requests and
//! responses, membership, gossiped status, join tokens): never panic;
//! whatever decodes must verify without panicking and round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::control::mesh_messages_oracle(data);
});
