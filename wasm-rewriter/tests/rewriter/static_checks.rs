//! Checks that need no execution: identity round trips, determinism,
//! refusals, limits and the report.

use wasm_rewriter::{identity, rewrite, FrameValType, RewriteConfig, RewriteError};

pub const KERNELS_O2: &[u8] = include_bytes!("../data/kernels-O2.wasm");
pub const KERNELS_O2_FEATURES: &[u8] = include_bytes!("../data/kernels-O2-features.wasm");
pub const KERNELS_O0: &[u8] = include_bytes!("../data/kernels-O0.wasm");

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

const SMALL_WAT: &str = r#"(module
  (type $t (func (param i32) (result i32)))
  (import "env" "f" (func $imp (param i32) (result i32)))
  (memory 1 4)
  (table 2 funcref)
  (global $g (mut i64) (i64.const 5))
  (elem (i32.const 0) $a $b)
  (data (i32.const 8) "abc")
  (data "passive")
  (func $a (type $t) (loop $l (br_if $l (i32.eqz (local.get 0)))) (local.get 0))
  (func $b (type $t) (call_indirect (type $t) (local.get 0) (i32.const 0)))
  (func $c (export "c") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (start $c2)
  (func $c2)
)"#;

#[test]
fn identity_round_trips_byte_for_byte() {
    let mut inputs = vec![
        KERNELS_O2.to_vec(),
        KERNELS_O2_FEATURES.to_vec(),
        KERNELS_O0.to_vec(),
        wat(SMALL_WAT),
    ];
    // wasm-smith modules too (they carry a start section, passive segments,
    // reference types and multi-value).
    for seed in 0..40 {
        if let Some(m) = crate::generated::generate(seed) {
            inputs.push(m);
        }
    }
    assert!(inputs.len() > 20);
    for (i, input) in inputs.iter().enumerate() {
        let out = identity(input).expect("identity");
        assert!(out == *input, "input {i} does not round-trip byte for byte");
    }
}

#[test]
fn rewriting_is_deterministic() {
    for input in [KERNELS_O2, KERNELS_O2_FEATURES, KERNELS_O0, &wat(SMALL_WAT)] {
        let a = rewrite(input, &RewriteConfig::default()).unwrap();
        let b = rewrite(input, &RewriteConfig::default()).unwrap();
        assert_eq!(a.wasm, b.wasm);
        assert_eq!(a.report, b.report);
        // And the countdown variant is a different, equally stable module.
        let c = rewrite(input, &crate::config()).unwrap();
        assert_ne!(a.wasm, c.wasm);
        assert_eq!(c.wasm, rewrite(input, &crate::config()).unwrap().wasm);
    }
}

#[test]
fn report_describes_frames() {
    let rw = rewrite(&wat(SMALL_WAT), &RewriteConfig::default()).unwrap();
    let r = &rw.report;
    assert_eq!(r.functions_total, 4);
    // $a has a loop; $b reaches $a through the table; $c and $c2 cannot unwind.
    assert_eq!(r.functions_instrumented, 2);
    let a = &r.frames[0];
    assert_eq!((a.original_func_index, a.func_index), (1, 11));
    assert_eq!(a.points, 1);
    assert_eq!(a.locals, vec![FrameValType::I32]);
    let b = &r.frames[1];
    assert_eq!(b.original_func_index, 2);
    // $b can reach itself through the table: its entry is a point too.
    assert_eq!(b.points, 2);
    // The param, then the call's inputs in locals: the argument and the
    // table index (kept: a rewind must call the same table entry).
    assert_eq!(b.locals, vec![FrameValType::I32; 3]);
    assert_eq!(r.migration_points, 3);
    assert!(r.code_section_bytes_after > r.code_section_bytes_before);

    // A function that cannot unwind keeps its body except for renumbering.
    let original = wasmparser::Parser::new(0)
        .parse_all(&wat(SMALL_WAT))
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::CodeSectionEntry(b) => Some(b.as_bytes().to_vec()),
            _ => None,
        })
        .collect::<Vec<_>>();
    let rewritten = wasmparser::Parser::new(0)
        .parse_all(&rw.wasm)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::CodeSectionEntry(b) => Some(b.as_bytes().to_vec()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(original[2], rewritten[2], "$c has no calls: byte-for-byte");
    assert_eq!(original[3], rewritten[3]);
}

/// `abi::input_func_index` maps an instrumented function back to the input's
/// index (how a trap names its function): imports keep theirs, instrumented
/// and plain functions shift back, and what the rewriter added has none.
#[test]
fn input_func_index_maps_back() {
    use wasm_rewriter::abi::{input_func_index, IMPORT_COUNT, REDROP_EXPORT};
    // A passive segment that is dropped: the rewriter adds its redrop helper.
    let rw = rewrite(
        &wat(r#"(module
          (import "env" "f" (func $imp))
          (memory 1)
          (data "passive")
          (func $a (loop $l (br_if $l (i32.const 0))) (data.drop 0))
          (func $b (call $a) (call $imp)))"#),
        &RewriteConfig::default(),
    )
    .unwrap();
    let (imported, defined) = (1, 2);
    assert_eq!(input_func_index(0, imported, defined), Some(0));
    for added in imported..imported + IMPORT_COUNT {
        assert_eq!(input_func_index(added, imported, defined), None);
    }
    assert!(!rw.report.frames.is_empty());
    for f in &rw.report.frames {
        assert_eq!(
            input_func_index(f.func_index, imported, defined),
            Some(f.original_func_index)
        );
    }
    let last = imported + IMPORT_COUNT + defined - 1;
    assert_eq!(input_func_index(last, imported, defined), Some(2));
    // The data-drop helper follows the defined functions.
    let redrop = wasmparser::Parser::new(0)
        .parse_all(&rw.wasm)
        .find_map(|p| match p.unwrap() {
            wasmparser::Payload::ExportSection(s) => s
                .into_iter()
                .map(|e| e.unwrap())
                .find(|e| e.name == REDROP_EXPORT)
                .map(|e| e.index),
            _ => None,
        })
        .expect("a dropped passive segment gets a redrop helper");
    assert_eq!(redrop, last + 1);
    assert_eq!(input_func_index(redrop, imported, defined), None);
}

fn refused(src: &str) -> RewriteError {
    let wasm = wat(src);
    match rewrite(&wasm, &RewriteConfig::default()) {
        Ok(_) => panic!("accepted a module it must refuse:\n{src}"),
        Err(e) => e,
    }
}

/// Asserts the error names `feature`, function `index` and its name.
fn assert_refused_in_function(src: &str, feature: &str, index: u32, name: &str) {
    let e = refused(src);
    let msg = e.to_string();
    match &e {
        RewriteError::Unsupported {
            feature: f,
            func: Some(func),
            ..
        } => {
            assert_eq!(*f, feature, "{msg}");
            assert_eq!(func.index, index, "{msg}");
            assert_eq!(func.name.as_deref(), Some(name), "{msg}");
        }
        other => panic!("expected unsupported `{feature}` in a function, got {other:?}"),
    }
    assert!(msg.contains(feature) && msg.contains(name), "{msg}");
}

fn assert_refused_module(src: &str, feature: &str) {
    match refused(src) {
        RewriteError::Unsupported {
            feature: f,
            func: None,
            ..
        } => assert_eq!(f, feature),
        other => panic!("expected module-level unsupported `{feature}`, got {other:?}"),
    }
}

#[test]
fn refuses_unsupported_instructions_naming_feature_and_function() {
    let cases: &[(&str, &str)] = &[
        ("(func $bad (drop (v128.const i32x4 1 2 3 4)))", "simd"),
        ("(func $bad (atomic.fence))", "threads"),
        (
            "(func $bad (block $h (try_table (catch_all $h) (nop))))",
            "exception-handling",
        ),
        ("(func $bad (return_call $ok))", "tail-call"),
        (
            "(func $bad (table.set $t (i32.const 0) (ref.null func)))",
            "table mutation",
        ),
        (
            "(func $bad (drop (table.grow $t (ref.null func) (i32.const 1))))",
            "table mutation",
        ),
        (
            "(func $bad (table.fill $t (i32.const 0) (ref.null func) (i32.const 1)))",
            "table mutation",
        ),
        (
            "(func $bad (table.copy $t $t (i32.const 0) (i32.const 0) (i32.const 1)))",
            "table mutation",
        ),
        (
            "(func $bad (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1)))",
            "table mutation",
        ),
        ("(func $bad (elem.drop $e))", "table mutation"),
        (
            "(func $bad (drop (i64.add128 (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4))) (drop))",
            "wide-arithmetic",
        ),
    ];
    for (func, feature) in cases {
        let src = format!(
            "(module (table $t 1 funcref) (elem $e func $ok) (func $ok) (func $pad) {func})"
        );
        assert_refused_in_function(&src, feature, 2, "bad");
    }
}

#[test]
fn refuses_reference_values_across_points() {
    assert_refused_in_function(
        "(module (func $ok) (func $bad (local funcref) (loop (nop))))",
        "reference-typed values live across a migration point",
        1,
        "bad",
    );
    // A function that cannot unwind may use references freely.
    rewrite(
        &wat("(module (func $fine (local funcref) (local.set 0 (ref.null func))))"),
        &RewriteConfig::default(),
    )
    .unwrap();
}

#[test]
fn refuses_unsupported_module_features() {
    assert_refused_module("(module (memory 1) (memory 1))", "multi-memory");
    assert_refused_module("(module (memory i64 1))", "memory64");
    assert_refused_module("(module (memory 1 1 shared))", "threads");
    assert_refused_module("(module (tag $e))", "exception-handling");
    assert_refused_module("(module (type (struct (field i32))))", "gc");
    assert_refused_module(
        "(module (global (mut funcref) (ref.null func)))",
        "mutable reference-typed global",
    );
    assert_refused_module("(module (rec (type (func)) (type (func))))", "gc");
}

#[test]
fn refuses_reserved_names() {
    for src in [
        r#"(module (func (export "__meshnode_state")))"#,
        r#"(module (import "meshnode" "save_i32" (func (param i32))))"#,
    ] {
        assert!(matches!(refused(src), RewriteError::ReservedName(_)));
    }
}

#[test]
fn invalid_input_is_an_error_not_a_panic() {
    assert!(matches!(
        rewrite(b"\0asm\x01\0\0\0\x01\x05garbage", &RewriteConfig::default()),
        Err(RewriteError::Invalid { .. })
    ));
    let e = rewrite(
        &wat("(module (func $f (result i32) (i64.const 1)))"),
        &RewriteConfig::default(),
    )
    .unwrap_err();
    match e {
        RewriteError::Invalid { func: Some(f), .. } => assert_eq!(f.index, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn limit_breach_is_a_typed_error() {
    // 50,000 locals is valid wasm; instrumenting adds the resume local.
    let src = "(module (func $big (local i32) (loop (nop))))"
        .replace("(local i32)", &format!("(local {})", "i32 ".repeat(50_000)));
    match refused(&src) {
        RewriteError::Limit {
            limit,
            max,
            actual,
            func: Some(f),
        } => {
            assert_eq!(limit, "MAX_LOCALS_PER_FUNCTION");
            assert_eq!(max, 50_000);
            assert!(actual > max);
            assert_eq!(f.name.as_deref(), Some("big"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn blocking_imports_are_configurable() {
    let src = wat(r#"(module
      (import "host" "wait" (func $wait (param i32) (result i32)))
      (func (export "f") (param i32) (result i32) (call $wait (local.get 0))))"#);
    let plain = rewrite(&src, &RewriteConfig::default()).unwrap();
    assert_eq!(plain.report.functions_instrumented, 0);
    let config = RewriteConfig {
        blocking_imports: vec![("host".into(), "wait".into())],
        ..RewriteConfig::default()
    };
    let blocking = rewrite(&src, &config).unwrap();
    assert_eq!(blocking.report.functions_instrumented, 1);
    assert_eq!(blocking.report.migration_points, 1);
    // The argument is kept so the call can be re-issued.
    assert_eq!(
        blocking.report.frames[0].locals,
        vec![FrameValType::I32, FrameValType::I32]
    );
}

#[test]
fn passive_segment_limit_applies_only_with_data_drop() {
    let segments: String = (0..65).map(|i| format!("(data \"s{i}\")")).collect();
    let without = format!("(module (memory 1) {segments})");
    rewrite(&wat(&without), &RewriteConfig::default()).unwrap();
    let with = format!("(module (memory 1) {segments} (func (data.drop 3)))");
    match refused(&with) {
        RewriteError::Limit {
            limit, max, actual, ..
        } => {
            assert_eq!(limit, "MAX_PASSIVE_DATA_SEGMENTS");
            assert_eq!((max, actual), (64, 65));
        }
        other => panic!("{other:?}"),
    }
}
