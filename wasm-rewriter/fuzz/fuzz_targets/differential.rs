//! Differential fuzzing: a wasm-smith module from the fuzz input, run plainly
//! and instrumented with migrations at points drawn from the input; any
//! difference in results, memory, globals or host log panics. The same oracle
//! runs on a fixed set of seeds in `cargo test` (tests/rewriter/generated.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/rewriter/host.rs"]
mod host;

#[allow(dead_code)]
#[path = "../../tests/rewriter/generated.rs"]
mod generated;

use libfuzzer_sys::fuzz_target;
use wasm_rewriter::RewriteConfig;

pub fn config() -> RewriteConfig {
    RewriteConfig {
        countdown: true,
        ..RewriteConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let seed = rest.iter().take(8).fold(u64::from(flags), |acc, &b| {
        acc.rotate_left(8) ^ u64::from(b)
    });
    if let Some(wasm) = generated::generate_from(rest, flags & 1 == 1) {
        generated::check_module(&wasm, seed);
    }
});
