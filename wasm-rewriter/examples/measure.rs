//! Measures the rewriter on a module: code-section size ratio, and run time
//! of instrumented ÷ original in wasmi (no migrations: the normal-path cost).
//!
//! ```text
//! cargo run -p wasm-rewriter --example measure -- MODULE.wasm [EXPORT ARGS...]
//! ```
//! With no export, only sizes are printed. ARGS are i32s. Each variant is run
//! `REPEAT` times (default 5) alternately and the fastest run is reported.
//! Times are on-CPU time of the running thread where Linux provides it
//! (robust on a shared machine), wall time otherwise. `FUEL=1` also prints
//! the wasmi fuel each variant consumed (executed-instruction count);
//! `CALLS=n` calls the export n times per timed run (for short kernels).

use std::time::{Duration, Instant};

use wasm_rewriter::{abi, rewrite, RewriteConfig};
use wasmi::{Config, Engine, Linker, Module, Store, Val};

/// On-CPU time of this thread (Linux `schedstat`), so that time spent
/// descheduled on a busy machine does not count; wall time otherwise.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn run_once(
    wasm: &[u8],
    instrumented: bool,
    export: &str,
    args: &[Val],
) -> (Duration, Vec<Val>, u64) {
    let mut config = Config::default();
    config.compilation_mode(wasmi::CompilationMode::Eager);
    let fuel = std::env::var("FUEL").is_ok();
    config.consume_fuel(fuel);
    let engine = Engine::new(&config);
    let module = Module::new(&engine, wasm).expect("module compiles");
    let mut store = Store::new(&engine, ());
    if fuel {
        store.set_fuel(u64::MAX / 2).unwrap();
    }
    let mut linker = Linker::<()>::new(&engine);
    if instrumented {
        // Never called on the normal path; present because the module imports them.
        for name in ["save_i32", "save_i64", "save_f32", "save_f64"] {
            match name {
                "save_i32" => linker.func_wrap(abi::IMPORT_MODULE, name, |_: i32| {}),
                "save_i64" => linker.func_wrap(abi::IMPORT_MODULE, name, |_: i64| {}),
                "save_f32" => linker.func_wrap(abi::IMPORT_MODULE, name, |_: f32| {}),
                _ => linker.func_wrap(abi::IMPORT_MODULE, name, |_: f64| {}),
            }
            .unwrap();
        }
        linker
            .func_wrap(abi::IMPORT_MODULE, "save_point", |_: i32, _: i32| {})
            .unwrap();
        linker
            .func_wrap(abi::IMPORT_MODULE, "load_i32", || 0i32)
            .unwrap();
        linker
            .func_wrap(abi::IMPORT_MODULE, "load_i64", || 0i64)
            .unwrap();
        linker
            .func_wrap(abi::IMPORT_MODULE, "load_f32", || 0f32)
            .unwrap();
        linker
            .func_wrap(abi::IMPORT_MODULE, "load_f64", || 0f64)
            .unwrap();
        linker
            .func_wrap(abi::IMPORT_MODULE, "load_point", |_: i32| 0i32)
            .unwrap();
    }
    let inst = linker
        .instantiate_and_start(&mut store, &module)
        .expect("instantiates");
    if let Some(start) = inst.get_func(&store, abi::START_EXPORT) {
        start.call(&mut store, &[], &mut []).unwrap();
    }
    let f = inst.get_func(&store, export).expect("export exists");
    let mut results: Vec<Val> = f
        .ty(&store)
        .results()
        .iter()
        .map(|t| Val::default_for_ty(*t))
        .collect();
    let t = Instant::now();
    let cpu = cpu_time();
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for _ in 0..calls {
        f.call(&mut store, args, &mut results).expect("runs");
    }
    let elapsed = match (cpu, cpu_time()) {
        (Some(a), Some(b)) => b - a,
        _ => t.elapsed(),
    };
    let used = if fuel {
        u64::MAX / 2 - store.get_fuel().unwrap()
    } else {
        0
    };
    (elapsed, results, used)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: measure MODULE.wasm [EXPORT ARGS...]");
    let wasm = std::fs::read(path).expect("read module");
    let rw = rewrite(&wasm, &RewriteConfig::default()).expect("rewrite");
    if let Ok(out) = std::env::var("OUT") {
        std::fs::write(out, &rw.wasm).expect("write OUT");
    }
    let r = &rw.report;
    println!(
        "{path}: {}/{} functions instrumented, {} points, code {} -> {} bytes (x{:.3}), value stack factor {}%",
        r.functions_instrumented,
        r.functions_total,
        r.migration_points,
        r.code_section_bytes_before,
        r.code_section_bytes_after,
        r.code_section_bytes_after as f64 / r.code_section_bytes_before as f64,
        r.value_stack_factor_percent
    );
    let Some(export) = args.get(1) else { return };
    let call_args: Vec<Val> = args[2..]
        .iter()
        .map(|a| Val::I32(a.parse().unwrap()))
        .collect();
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (mut best_orig, mut best_instr) = (Duration::MAX, Duration::MAX);
    for _ in 0..repeat {
        let (t0, r0, f0) = run_once(&wasm, false, export, &call_args);
        let (t1, r1, f1) = run_once(&rw.wasm, true, export, &call_args);
        if f0 > 0 {
            println!(
                "fuel: original {f0}, instrumented {f1}, ratio {:.3}",
                f1 as f64 / f0 as f64
            );
        }
        assert_eq!(format!("{r0:?}"), format!("{r1:?}"), "same results");
        best_orig = best_orig.min(t0);
        best_instr = best_instr.min(t1);
    }
    println!(
        "{export}{:?}: original {:.1} ms, instrumented {:.1} ms, ratio {:.3}",
        &args[2..],
        best_orig.as_secs_f64() * 1e3,
        best_instr.as_secs_f64() * 1e3,
        best_instr.as_secs_f64() / best_orig.as_secs_f64()
    );
}
