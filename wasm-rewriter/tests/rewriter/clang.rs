//! The clang-built kernels (tests/data/kernels.c, built by
//! tests/data/build.sh), and recursion-depth parity.

use crate::host::{export_all, run_instrumented, run_original, Plan, StackLimits};
use crate::static_checks::{KERNELS_O0, KERNELS_O2, KERNELS_O2_FEATURES};
use crate::{differential, differential_with};
use wasm_rewriter::rewrite;
use wasmi::Val;

fn plans() -> Vec<Plan> {
    [1, 7, 5000]
        .into_iter()
        .map(|countdown| Plan {
            countdown,
            block_every: 0,
            max_migrations: 150,
        })
        .collect()
}

#[test]
fn clang_kernels_survive_migration() {
    for (name, wasm) in [
        ("O2", KERNELS_O2),
        ("O2+features", KERNELS_O2_FEATURES),
        ("O0", KERNELS_O0),
    ] {
        for which in 1..=6 {
            let most = differential(wasm, "run", &[Val::I32(which), Val::I32(1)], &plans());
            assert!(
                most > 10,
                "{name} kernel {which} migrated only {most} times"
            );
        }
    }
}

#[test]
fn clang_kernels_all_at_once_with_deep_stacks() {
    let most = differential(
        KERNELS_O2,
        "run",
        &[Val::I32(4), Val::I32(8)],
        &[Plan {
            countdown: 97,
            block_every: 0,
            max_migrations: 60,
        }],
    );
    assert!(most >= 20);
}

/// At the bottom, a blocking call: a plan that unwinds at every blocking call
/// captures the whole recursion.
const RECURSION: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (func $rec (param $d i32) (result i32)
    (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 2))))
    (if (result i32) (local.get $d)
      (then (i32.add (local.get $i) (call $rec (i32.sub (local.get $d) (i32.const 1)))))
      (else (call $poll (local.get $i) (i32.const 0) (i32.const 0) (i32.const 0)))))
  (func (export "run") (param $d i32) (result i32) (call $rec (local.get $d))))"#;

/// The deepest recursion `run(d)` finishes under `limits`.
fn max_depth(wasm: &[u8], instrumented: bool, limits: StackLimits) -> i32 {
    let (exported, globals) = export_all(wasm);
    let rw = rewrite(wasm, &crate::config()).unwrap();
    let ok = |d: i32| {
        let args = [Val::I32(d)];
        if instrumented {
            let plan = Plan {
                countdown: 0,
                block_every: 0,
                max_migrations: 0,
            };
            run_instrumented(&rw, globals, "run", &args, plan, Some(limits))
                .observed
                .outcome
                .is_ok()
        } else {
            run_original(&exported, globals, "run", &args, Some(limits))
                .outcome
                .is_ok()
        }
    };
    let (mut lo, mut hi) = (0, 1 << 20);
    while lo < hi {
        let mid = (lo + hi + 1) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[test]
fn recursion_depth_parity() {
    let wasm = wat::parse_str(RECURSION).unwrap();
    let limits = StackLimits {
        max_recursion_depth: 1 << 20,
        max_stack_height: 256 * 1024,
    };
    let factor = rewrite(&wasm, &crate::config())
        .unwrap()
        .report
        .value_stack_factor_percent as usize;
    let scaled_limits = StackLimits {
        max_stack_height: limits.max_stack_height * factor / 100,
        ..limits
    };
    let original = max_depth(&wasm, false, limits);
    let same = max_depth(&wasm, true, limits);
    let scaled = max_depth(&wasm, true, scaled_limits);
    eprintln!("depth: original {original}, instrumented {same}, instrumented with {factor}% stack {scaled}");
    assert!(original > 1000, "the limit, not the test, bounds the depth");
    assert!(
        scaled >= original,
        "scaled instrumented depth {scaled} < original {original}"
    );
    // The recursion-depth limit counts frames, which the transform does not
    // add: with a roomy value stack, both stop at the same frame count.
    let frames = StackLimits {
        max_recursion_depth: 3000,
        max_stack_height: 64 << 20,
    };
    let a = max_depth(&wasm, false, frames);
    let b = max_depth(&wasm, true, frames);
    assert_eq!(a, b);

    // A capture at depth: every frame is saved and restored.
    let stats = differential_with(
        &wasm,
        "run",
        &[Val::I32(original)],
        &[Plan {
            countdown: 0,
            block_every: 1,
            max_migrations: 3,
        }],
        Some(scaled_limits),
    );
    assert_eq!(stats.migrations, 1);
    assert!(
        stats.max_frames as i32 > original,
        "a capture holds every frame of the recursion: {}",
        stats.max_frames
    );
}
