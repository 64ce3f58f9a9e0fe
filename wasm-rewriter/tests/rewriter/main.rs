//! The rewriter's one integration test binary: differential runs in a wasmi
//! test host (`host`), hand-written WAT cases (`wat_cases`), wasm-smith
//! generated modules (`generated`), refusals, identity and determinism.

mod analysis;
mod clang;
mod generated;
mod host;
mod static_checks;
mod wat_cases;

use host::{export_all, run_instrumented, run_original, Observed, Plan, StackLimits};
use wasm_rewriter::{rewrite, RewriteConfig, Rewritten};
use wasmi::Val;

pub fn config() -> RewriteConfig {
    RewriteConfig {
        countdown: true,
        ..RewriteConfig::default()
    }
}

/// Runs `wasm` plainly and instrumented under several migration plans and
/// asserts every run observes the same thing. Returns the most migrations
/// any plan made.
pub fn differential(wasm: &[u8], entry: &str, args: &[Val], plans: &[Plan]) -> u32 {
    differential_with(wasm, entry, args, plans, None).migrations
}

/// The most migrations, and the deepest capture (in frames), over all plans.
pub struct DiffStats {
    pub migrations: u32,
    pub max_frames: usize,
}

pub fn differential_with(
    wasm: &[u8],
    entry: &str,
    args: &[Val],
    plans: &[Plan],
    limits: Option<StackLimits>,
) -> DiffStats {
    differential_config(wasm, entry, args, plans, limits, &config())
}

/// As [`differential_with`], for a given rewrite configuration.
pub fn differential_config(
    wasm: &[u8],
    entry: &str,
    args: &[Val],
    plans: &[Plan],
    limits: Option<StackLimits>,
    rewrite_config: &RewriteConfig,
) -> DiffStats {
    let (exported, num_globals) = export_all(wasm);
    let expected: Observed = run_original(&exported, num_globals, entry, args, limits);
    let rw: Rewritten = rewrite(wasm, rewrite_config).expect("rewrite");
    let mut most = 0;
    let mut max_frames = 0;
    for plan in plans {
        let run = run_instrumented(&rw, num_globals, entry, args, *plan, limits);
        assert_eq!(
            run.observed, expected,
            "plan {plan:?} ({} migrations) differs from the original",
            run.migrations
        );
        most = most.max(run.migrations);
        max_frames = max_frames.max(run.max_frames);
    }
    DiffStats {
        migrations: most,
        max_frames,
    }
}

/// N = 1, 7 and large, each with and without blocking-call migrations.
pub fn standard_plans() -> Vec<Plan> {
    let mut plans = Vec::new();
    for countdown in [1, 7, 1000] {
        for block_every in [0, 1, 3] {
            plans.push(Plan {
                countdown,
                block_every,
                max_migrations: 400,
            });
        }
    }
    plans
}
