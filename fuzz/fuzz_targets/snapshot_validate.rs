//! Mutate a real snapshot as the input says and resume it through the whole
//! validation path (manifest checks, chunks, WASI rebuild, frames against
//! the rewriter's layouts) up to one slice: never panic.
#![no_main]

use std::sync::OnceLock;

use meshnode::dock::fuzzing::{snapshot_validation_oracle, SnapshotFixture};

static FIXTURE: OnceLock<SnapshotFixture> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fixture = FIXTURE.get_or_init(SnapshotFixture::new);
    snapshot_validation_oracle(fixture, data);
});
