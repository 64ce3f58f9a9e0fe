//! Cost of unwinding and rewinding a deep stack through the host-call frame
//! ABI: a recursion `DEPTH` levels deep (default 10,000) is captured at its
//! bottom and resumed, and both are timed.
//!
//! ```text
//! cargo run -p wasm-rewriter --example capture_cost [-- DEPTH]
//! ```

use std::time::Instant;

use wasm_rewriter::{abi, rewrite, RewriteConfig};
use wasmi::{Caller, Config, Engine, Extern, Linker, Module, Store, Val};

const RECURSION: &str = r#"(module
  (func $rec (param $d i32) (result i32)
    (local $i i32) (local $a i64) (local $b f64)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 2))))
    (if (result i32) (local.get $d)
      (then (i32.add (local.get $i) (call $rec (i32.sub (local.get $d) (i32.const 1)))))
      (else (i32.const 0))))
  (func (export "run") (param $d i32) (result i32) (call $rec (local.get $d))))"#;

#[derive(Default)]
struct Host {
    values: Vec<u64>,
    frames: Vec<(i32, i32, usize)>,
    next_value: usize,
}

fn main() {
    let depth: i32 = std::env::args()
        .nth(1)
        .map_or(10_000, |s| s.parse().unwrap());
    let config = RewriteConfig {
        countdown: true,
        ..RewriteConfig::default()
    };
    let rw = rewrite(&wat::parse_str(RECURSION).unwrap(), &config).unwrap();
    let mut cfg = Config::default();
    cfg.set_max_recursion_depth(1 << 20);
    cfg.set_max_stack_height(256 << 20);
    let engine = Engine::new(&cfg);
    let module = Module::new(&engine, &rw.wasm).unwrap();
    let mut linker = Linker::<Host>::new(&engine);
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "save_i32",
            |mut c: Caller<'_, Host>, v: i32| c.data_mut().values.push(v as u32 as u64),
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "save_i64",
            |mut c: Caller<'_, Host>, v: i64| c.data_mut().values.push(v as u64),
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "save_f32",
            |mut c: Caller<'_, Host>, v: wasmi::F32| {
                c.data_mut().values.push(u64::from(v.to_bits()))
            },
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "save_f64",
            |mut c: Caller<'_, Host>, v: wasmi::F64| c.data_mut().values.push(v.to_bits()),
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "save_point",
            |mut c: Caller<'_, Host>, f: i32, p: i32| {
                let h = c.data_mut();
                let end = h.values.len();
                h.frames.push((f, p, end));
            },
        )
        .unwrap();
    let next = |c: &mut Caller<'_, Host>| {
        let h = c.data_mut();
        h.next_value += 1;
        h.values[h.next_value - 1]
    };
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "load_i32",
            move |mut c: Caller<'_, Host>| next(&mut c) as i32,
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "load_i64",
            move |mut c: Caller<'_, Host>| next(&mut c) as i64,
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "load_f32",
            move |mut c: Caller<'_, Host>| wasmi::F32::from_bits(next(&mut c) as u32),
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "load_f64",
            move |mut c: Caller<'_, Host>| wasmi::F64::from_bits(next(&mut c)),
        )
        .unwrap();
    linker
        .func_wrap(
            abi::IMPORT_MODULE,
            "load_point",
            |mut c: Caller<'_, Host>, _f: i32| {
                // Frames were saved innermost first; this simple host re-stacks the
                // value buffer outermost first before rewinding (see main).
                let h = c.data_mut();
                let (_, p, _) = h.frames.pop().unwrap();
                p
            },
        )
        .unwrap();

    let global = |store: &Store<Host>, inst: &wasmi::Instance, name: &str| match inst
        .get_export(store, name)
    {
        Some(Extern::Global(g)) => g,
        _ => panic!("{name}"),
    };
    // Run to the bottom: each level passes three points.
    let mut store = Store::new(&engine, Host::default());
    let inst = linker.instantiate_and_start(&mut store, &module).unwrap();
    let run = inst.get_func(&store, "run").unwrap();
    global(&store, &inst, abi::COUNTDOWN_EXPORT)
        .set(&mut store, Val::I32(3 * depth))
        .unwrap();
    let mut out = [Val::I32(0)];
    let t = Instant::now();
    run.call(&mut store, &[Val::I32(depth)], &mut out).unwrap();
    let to_bottom_and_unwind = t.elapsed();
    let frames = store.data().frames.len();
    let values = store.data().values.len();
    assert_eq!(
        global(&store, &inst, abi::STATE_EXPORT).get(&store).i32(),
        Some(abi::STATE_UNWINDING)
    );

    // Reorder to load order (outermost first): values of frame k are the
    // slice between the previous save_point and its own.
    let h = store.data_mut();
    let mut bounds = vec![0];
    bounds.extend(h.frames.iter().map(|f| f.2));
    let mut reordered = Vec::with_capacity(values);
    for k in (0..h.frames.len()).rev() {
        reordered.extend_from_slice(&h.values[bounds[k]..bounds[k + 1]]);
    }
    h.values = reordered;
    // `frames` stays innermost first: load_point pops from its end.

    let mut store2 = Store::new(&engine, Host::default());
    let inst2 = linker.instantiate_and_start(&mut store2, &module).unwrap();
    let old = std::mem::take(store.data_mut());
    *store2.data_mut() = old;
    global(&store2, &inst2, abi::STATE_EXPORT)
        .set(&mut store2, Val::I32(abi::STATE_REWINDING))
        .unwrap();
    let run2 = inst2.get_func(&store2, "run").unwrap();
    let t = Instant::now();
    run2.call(&mut store2, &[Val::I32(depth)], &mut out)
        .unwrap();
    let rewind_and_finish = t.elapsed();
    assert_eq!(
        global(&store2, &inst2, abi::STATE_EXPORT)
            .get(&store2)
            .i32(),
        Some(abi::STATE_RUNNING)
    );

    // Baseline: the same run without a capture.
    let mut store3 = Store::new(&engine, Host::default());
    let inst3 = linker.instantiate_and_start(&mut store3, &module).unwrap();
    let run3 = inst3.get_func(&store3, "run").unwrap();
    let t = Instant::now();
    run3.call(&mut store3, &[Val::I32(depth)], &mut out)
        .unwrap();
    let plain = t.elapsed();
    println!(
        "depth {depth}: {frames} frames, {values} values; plain run {:.2} ms, run to bottom + unwind {:.2} ms, rewind + finish {:.2} ms",
        plain.as_secs_f64() * 1e3,
        to_bottom_and_unwind.as_secs_f64() * 1e3,
        rewind_and_finish.as_secs_f64() * 1e3,
    );
}
