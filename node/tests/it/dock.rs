//! Dock-level tests: fuel slices, slicing alike beside other vessels, and rebuilding a
//! vessel's WASI state from serialized bytes mid-run.

use std::sync::{Arc, Mutex};

use meshnode::dock::wasi::{DirMapping, OutputSink, Stdio, WasiCtx, WasiOptions};
use meshnode::dock::{self, DockConfig, Exit, Slice, Vessel};

/// A CPU-bound WASI command: `iterations` rounds of an xorshift mix, then it
/// prints the result. Written in WAT so that its work per iteration is fixed
/// and known.
fn spin_module(iterations: u64) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (local $i i64) (local $x i64)
            (local.set $x (i64.const 88172645463325252))
            (loop $l
              (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
              (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
              (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br_if $l (i64.lt_u (local.get $i) (i64.const {iterations}))))
            ;; write the low byte of x as a letter, then a newline
            (i32.store8 (i32.const 100) (i32.add (i32.const 97) (i32.wrap_i64 (i64.rem_u (local.get $x) (i64.const 26)))))
            (i32.store8 (i32.const 101) (i32.const 10))
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 2))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    ))
    .expect("spin module is valid WAT")
}

fn buffered_stdio() -> (Stdio, Arc<Mutex<Vec<u8>>>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let stdio = Stdio {
        stdout: OutputSink::Buffer(out.clone()),
        ..Default::default()
    };
    (stdio, out)
}

/// Goal: four identical CPU-bound vessels running at once on one dock are
/// sliced alike: each yields after the same number of fuel slices as the
/// same vessel running alone, so none is given longer or shorter turns,
/// and all end with the same result. Method: a lone run first, then four
/// released together (a barrier), each on its own thread as the node runs
/// them. How the OS then shares the CPU between those threads is not the
/// dock's: wall-clock fairness is measured by the `dock_fairness` example
/// (docs/benchmarks.md), not asserted here.
#[test]
fn four_cpu_bound_vessels_run_in_the_same_fuel_slices_as_one_alone() {
    let _cpu = crate::support::shared_cpu();
    let config = DockConfig {
        fuel_slice: Some(SPIN_SLICE_FUEL),
        ..DockConfig::default()
    };
    let engine = config.engine();
    let wasm = spin_module(SPIN_ITERATIONS);
    let module = dock::module_from_bytes(&engine, "spin.wasm".as_ref(), &wasm).unwrap();
    let [alone] = run_spinners(&engine, &module, &config);
    assert_eq!(alone.exit, Exit::Code(0));
    assert!(
        alone.slices > 5,
        "the loop must take several fuel slices, took {}",
        alone.slices
    );
    let together: [Spun; 4] = run_spinners(&engine, &module, &config);
    for (i, s) in together.iter().enumerate() {
        assert_eq!(s.exit, Exit::Code(0), "vessel {i}");
        assert_eq!(
            s.slices, alone.slices,
            "vessel {i} ran in {} slices beside three others, {} alone",
            s.slices, alone.slices
        );
        assert_eq!(s.stdout, alone.stdout, "vessel {i}'s output");
    }
}

/// Iterations of the spin loop in the slicing test: about 180 slices.
const SPIN_ITERATIONS: u64 = 2_000_000;

/// Fuel per slice in the slicing test: small, so that the loop is cut into
/// many slices, each a chance for the vessels to interfere.
const SPIN_SLICE_FUEL: u64 = 200_000;

/// How one spinner ended.
struct Spun {
    exit: Exit,
    slices: u64,
    stdout: Vec<u8>,
}

/// Runs `N` spinners at once, each on its own dock thread (released
/// together), and returns how each ended.
fn run_spinners<const N: usize>(
    engine: &wasmi::Engine,
    module: &dock::VesselModule,
    config: &DockConfig,
) -> [Spun; N] {
    let barrier = Arc::new(std::sync::Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (stdio, out) = buffered_stdio();
            let wasi = WasiCtx::new(WasiOptions {
                args: vec![b"spin".to_vec()],
                stdio,
                ..Default::default()
            })
            .unwrap();
            let vessel = Vessel::new(engine, module, wasi, config).unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let (exit, vessel) = dock::spawn(vessel, format!("spin{i}"))
                    .unwrap()
                    .join()
                    .unwrap();
                let stdout = out.lock().unwrap().clone();
                Spun {
                    exit,
                    slices: vessel.slices(),
                    stdout,
                }
            })
        })
        .collect();
    let spun: Vec<Spun> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    spun.try_into()
        .unwrap_or_else(|_| unreachable!("N threads, N results"))
}

/// Goal: fuel slicing preempts a vessel that never calls the host, and the
/// program's result does not depend on the slice length.
#[test]
fn fuel_slices_preempt_and_do_not_change_results() {
    let wasm = spin_module(2_000_000);
    let mut results = Vec::new();
    for fuel in [Some(1_000), Some(100_000), None] {
        let config = DockConfig {
            fuel_slice: fuel,
            ..Default::default()
        };
        let engine = config.engine();
        let module = dock::module_from_bytes(&engine, "spin.wasm".as_ref(), &wasm).unwrap();
        let (stdio, out) = buffered_stdio();
        let wasi = WasiCtx::new(WasiOptions {
            stdio,
            ..Default::default()
        })
        .unwrap();
        let mut vessel = Vessel::new(&engine, &module, wasi, &config).unwrap();
        let mut slices = 0;
        let exit = loop {
            match vessel.run_slice() {
                Slice::Yielded => slices += 1,
                Slice::Exited(e) => break e,
                Slice::Unwound => unreachable!("a plain vessel never unwinds"),
            }
        };
        assert_eq!(exit, Exit::Code(0));
        if fuel == Some(1_000) {
            assert!(
                slices > 1000,
                "1,000-unit slices must preempt a 2M-iteration loop often, got {slices}"
            );
        }
        if fuel.is_none() {
            assert_eq!(slices, 0, "without fuel the vessel runs in one go");
        }
        results.push(out.lock().unwrap().clone());
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "results differ across slice lengths: {results:?}"
    );
}

/// Lays out the input the mid-run program expects.
fn midrun_input(root: &std::path::Path) {
    let mut text = String::new();
    for i in 0..120 {
        text.push_str(&format!("input line {i}: {}\n", "x".repeat(i % 37)));
    }
    std::fs::write(root.join("in.txt"), text).unwrap();
    std::fs::create_dir(root.join("list")).unwrap();
    for i in 0..300 {
        // Long names, so that a listing takes several fd_readdir calls.
        std::fs::write(
            root.join("list")
                .join(format!("entry-{i:04}-{}", "n".repeat(40))),
            b"",
        )
        .unwrap();
    }
}

fn midrun_vessel(
    engine: &wasmi::Engine,
    module: &dock::VesselModule,
    config: &DockConfig,
    host: &std::path::Path,
    stdio: Stdio,
) -> Vessel {
    let wasi = WasiCtx::new(WasiOptions {
        args: vec![b"midrun".to_vec(), b"2000".to_vec()],
        dirs: vec![DirMapping {
            host: host.to_path_buf(),
            guest: "/data".into(),
        }],
        stdio,
        ..Default::default()
    })
    .unwrap();
    Vessel::new(engine, module, wasi, config).unwrap()
}

/// Goal: host handles are only a cache of the WASI state. Method: run the
/// program once uninterrupted; run it again and, every few fuel slices,
/// serialize the WASI state to CBOR, drop the whole context with every host
/// handle, copy the files to a new host directory, and rebuild the context
/// from the decoded state against that directory under the same guest path.
/// Output, exit code and files must match the uninterrupted run.
#[test]
fn wasi_state_rebuilt_mid_run_against_another_directory_finishes_identically() {
    let _cpu = crate::support::shared_cpu();
    let wasm = crate::support::compile_c("node/tests/programs/wasi_state_midrun.c", &[]);
    let config = DockConfig {
        fuel_slice: Some(200_000),
        ..Default::default()
    };
    let engine = config.engine();
    let module = dock::load_module(&engine, &wasm).unwrap();

    let plain_dir = tempfile::tempdir().unwrap();
    midrun_input(plain_dir.path());
    let (stdio, plain_out) = buffered_stdio();
    let mut plain = midrun_vessel(&engine, &module, &config, plain_dir.path(), stdio);
    assert_eq!(plain.run_to_end(), Exit::Code(0));

    let first_dir = tempfile::tempdir().unwrap();
    midrun_input(first_dir.path());
    let (stdio, moved_out) = buffered_stdio();
    let mut vessel = midrun_vessel(&engine, &module, &config, first_dir.path(), stdio.clone());
    let mut dirs = vec![first_dir];
    let (mut rebuilds, mut with_open_offsets, mut with_open_listing) = (0, 0, 0);
    let exit = loop {
        match vessel.run_slice() {
            Slice::Exited(e) => break e,
            Slice::Yielded if vessel.slices().is_multiple_of(3) => {
                let state = vessel.wasi_mut().capture_state().unwrap();
                let bytes = protocol::cbor::encode(&state);
                let decoded: protocol::wasi::WasiState = protocol::cbor::decode(&bytes).unwrap();
                assert_eq!(decoded, state);
                use protocol::wasi::DescriptorKind as K;
                if decoded
                    .fds
                    .values()
                    .any(|d| matches!(d.kind, K::File { offset, .. } if offset > 0))
                {
                    with_open_offsets += 1;
                }
                if decoded
                    .fds
                    .values()
                    .any(|d| matches!(d.kind, K::Directory { .. }))
                {
                    with_open_listing += 1;
                }
                let next = tempfile::tempdir().unwrap();
                crate::support::copy_tree(dirs.last().unwrap().path(), next.path());
                let mapping = [DirMapping {
                    host: next.path().to_path_buf(),
                    guest: "/data".into(),
                }];
                let rebuilt = WasiCtx::rebuild(decoded, &mapping, stdio.clone()).unwrap();
                drop(vessel.replace_wasi(rebuilt));
                // The old directory must no longer be needed: empty it.
                let old = dirs.last().unwrap().path().to_path_buf();
                std::fs::remove_dir_all(&old).unwrap();
                dirs.push(next);
                rebuilds += 1;
            }
            Slice::Yielded | Slice::Unwound => {}
        }
    };
    assert_eq!(exit, Exit::Code(0));
    assert!(rebuilds >= 10, "expected many rebuilds, got {rebuilds}");
    assert!(
        with_open_offsets >= 5,
        "rebuilds with files at non-zero offsets: {with_open_offsets}"
    );
    assert!(
        with_open_listing >= 5,
        "rebuilds with a directory listing open: {with_open_listing}"
    );
    let plain_stdout = plain_out.lock().unwrap().clone();
    assert!(
        String::from_utf8_lossy(&plain_stdout).starts_with("lines 120 entries 302 "),
        "{}",
        String::from_utf8_lossy(&plain_stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&moved_out.lock().unwrap()),
        String::from_utf8_lossy(&plain_stdout)
    );
    assert_eq!(
        crate::support::tree(dirs.last().unwrap().path()),
        crate::support::tree(plain_dir.path())
    );
}

/// Regression: with wasmi's default lazy translation, a function's
/// translation is charged to the slice that first calls it, and running out
/// of fuel there trapped the vessel ("all fuel consumed") instead of
/// yielding. Also covers one operation that costs more than a whole slice
/// (a 4 MiB memory.fill), which must still complete.
#[test]
fn tiny_fuel_slices_never_trap_on_translation_or_big_operations() {
    let mut body = String::new();
    for i in 0..400 {
        body.push_str(&format!(
            "(local.set $x (i32.add (local.get $x) (i32.const {i})))\n"
        ));
    }
    let wasm = wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 65)
          (func $big (result i32) (local $x i32) {body} (local.get $x))
          (func (export "_start")
            (memory.fill (i32.const 0) (i32.const 7) (i32.const 4194304))
            (if (i32.ne (call $big) (i32.const 79800)) (then unreachable))
            (if (i32.ne (i32.load8_u (i32.const 4194303)) (i32.const 7)) (then unreachable))))"#
    ))
    .unwrap();
    let config = DockConfig {
        fuel_slice: Some(10),
        ..Default::default()
    };
    let engine = config.engine();
    let module = dock::module_from_bytes(&engine, "big.wasm".as_ref(), &wasm).unwrap();
    let wasi = WasiCtx::new(WasiOptions::default()).unwrap();
    let mut vessel = Vessel::new(&engine, &module, wasi, &config).unwrap();
    assert_eq!(vessel.run_to_end(), Exit::Code(0));
    assert!(
        vessel.slices() > 1,
        "10-unit slices must preempt, ran {} slices",
        vessel.slices()
    );
}
