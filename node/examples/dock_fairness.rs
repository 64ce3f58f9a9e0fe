//! Benchmark: how evenly four identical CPU-bound vessels finish when they
//! run at once on one dock.
//!
//!     cargo run --release -p meshnode --example dock_fairness [-- RUNS]
//!
//! Each vessel runs on a thread of its own (as a node runs them), so the
//! figure measures the OS scheduler's sharing of the CPU between those
//! threads as much as the dock: it is a benchmark, not a test. The dock's
//! own part, that each vessel is cut into the same fuel slices whatever
//! runs beside it, is asserted by the `dock` integration tests. Prints, per
//! run, the last vessel's wall time over the first's (1.0: all finished
//! together), and the median.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use meshnode::dock::wasi::{WasiCtx, WasiOptions};
use meshnode::dock::{self, DockConfig, Exit, Vessel};

/// Iterations of the xorshift loop: about a second per vessel in a
/// release build.
const ITERATIONS: u64 = 100_000_000;

/// Vessels run at once.
const VESSELS: usize = 4;

/// A CPU-bound module that never calls the host inside its loop.
fn spin_module() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "_start")
            (local $i i64) (local $x i64)
            (local.set $x (i64.const 88172645463325252))
            (loop $l
              (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
              (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
              (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br_if $l (i64.lt_u (local.get $i) (i64.const {ITERATIONS}))))))"#
    ))
    .expect("spin module is valid WAT")
}

/// One run: the last finish time over the first.
fn ratio(engine: &wasmi::Engine, module: &dock::VesselModule, config: &DockConfig) -> f64 {
    let barrier = Arc::new(Barrier::new(VESSELS));
    let handles: Vec<_> = (0..VESSELS)
        .map(|i| {
            let wasi = WasiCtx::new(WasiOptions::default()).unwrap();
            let vessel = Vessel::new(engine, module, wasi, config).unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let (exit, _) = dock::spawn(vessel, format!("spin{i}"))
                    .unwrap()
                    .join()
                    .unwrap();
                assert_eq!(exit, Exit::Code(0));
                start.elapsed()
            })
        })
        .collect();
    let mut took: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    took.sort();
    took[VESSELS - 1].as_secs_f64() / took[0].as_secs_f64()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let config = DockConfig::default();
    let engine = config.engine();
    let module = dock::module_from_bytes(&engine, "spin.wasm".as_ref(), &spin_module()).unwrap();
    let mut ratios: Vec<f64> = (0..runs)
        .map(|run| {
            let r = ratio(&engine, &module, &config);
            println!("run {run}: last / first finish time = {r:.3}");
            r
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "median of {runs}: {:.3} ({VESSELS} vessels, {ITERATIONS} iterations each)",
        ratios[runs / 2]
    );
}
