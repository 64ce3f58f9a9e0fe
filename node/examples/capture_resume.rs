//! Benchmark: capture and resume time against memory size.
//!
//!     cargo run --release -p meshnode --example capture_resume [-- RUNS]
//!
//! Capture runs from the request (between two fuel slices) to the snapshot
//! being durable in an on-disk chunk store: it includes the wait for the
//! next migration point, unwinding, hashing every memory chunk, writing the
//! chunks, syncing, and writing the manifest. Resume runs from reading the
//! manifest to the moment the vessel is ready to run its first instruction:
//! reading and verifying chunks, re-instrumenting and checking the module,
//! validating frames, instantiating, writing memory back. The BLAKE3 time of
//! the same bytes is measured in the same run, because the goal is stated as
//! "1 ms plus hashing time".

use std::time::{Duration, Instant};

use meshnode::dock::wasi::{WasiCtx, WasiOptions};
use meshnode::dock::{snapshot, DockConfig, Mode, Slice, Vessel, VesselModule};
use meshnode::store::ChunkStore;
use protocol::snapshot::Hash;

/// A vessel that grows its memory to `mib` MiB, fills every page with
/// distinct bytes, then counts forever in a loop (a migration point).
fn module(mib: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "_start")
            (local $i i32) (local $n i32)
            (drop (memory.grow (i32.const {grow})))
            (local.set $n (i32.const {bytes}))
            (loop $fill
              (i32.store (local.get $i) (i32.xor (local.get $i) (i32.const 0x9e3779b9)))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br_if $fill (i32.lt_u (local.get $i) (local.get $n))))
            (loop $spin
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $spin))))"#,
        grow = mib * 16 - 1,
        bytes = mib * 1024 * 1024,
    ))
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    println!("| memory | capture (median) | resume (median) | BLAKE3 of the memory | capture − hashing |");
    println!("| --- | --- | --- | --- | --- |");
    for mib in [1u32, 16, 64, 256] {
        let config = DockConfig {
            max_memory_bytes: 512 << 20,
            ..DockConfig::default()
        };
        let wasm = module(mib);
        let (engine, config, vm) = VesselModule::prepare_with_engine(
            &config,
            "bench.wasm".as_ref(),
            wasm,
            Mode::Migratable { countdown: false },
        )
        .unwrap();
        let (mut captures, mut resumes, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            let mut store = ChunkStore::open(dir.path()).unwrap();
            let mut vessel = Vessel::new(
                &engine,
                &vm,
                WasiCtx::new(WasiOptions::default()).unwrap(),
                &config,
            )
            .unwrap();
            // Run until the memory is filled and the vessel spins.
            let fill_slices = (mib as u64 * 1024 * 1024 / 4) * 6 / config.fuel_slice.unwrap() + 2;
            for _ in 0..fill_slices {
                assert!(matches!(vessel.run_slice(), Slice::Yielded));
            }
            let t0 = Instant::now();
            assert!(vessel.request_unwind());
            while !matches!(vessel.run_slice(), Slice::Unwound) {}
            let capture = vessel.capture(0).unwrap();
            let manifest = snapshot::to_manifest(&mut store, &vm, &capture, &config).unwrap();
            let hash = store.put_manifest(&manifest).unwrap();
            captures.push(t0.elapsed());

            let t1 = Instant::now();
            let _ = Hash::of(&capture.memory);
            hashes.push(t1.elapsed());
            drop(vessel);

            let t2 = Instant::now();
            let m = store.get_manifest(&hash).unwrap();
            let (engine2, config2, vm2) =
                snapshot::module_from_manifest(&config, &store, &m).unwrap();
            let cap = snapshot::capture_from_manifest(&store, &m, config2.max_memory_bytes as u64)
                .unwrap();
            let wasi = WasiCtx::rebuild(m.wasi.clone(), &[], Default::default()).unwrap();
            let mut resumed = Vessel::resume(&engine2, &vm2, &cap, wasi, &config2).unwrap();
            resumes.push(t2.elapsed());
            assert!(
                matches!(resumed.run_slice(), Slice::Yielded),
                "the resumed vessel runs on"
            );
        }
        let (c, r, h) = (median(captures), median(resumes), median(hashes));
        println!(
            "| {mib} MiB | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            c.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
            h.as_secs_f64() * 1e3,
            (c.saturating_sub(h)).as_secs_f64() * 1e3
        );
    }
}
