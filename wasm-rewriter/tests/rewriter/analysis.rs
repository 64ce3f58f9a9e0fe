//! The call-graph and loop analyses, checked on the report: which functions
//! are instrumented and how many points each gets.

use wasm_rewriter::{rewrite, RewriteConfig, Rewritten};

fn rewrite_wat(src: &str) -> Rewritten {
    rewrite(
        &wat::parse_str(src).expect("valid wat"),
        &RewriteConfig::default(),
    )
    .expect("rewrites")
}

/// Input function indices of the instrumented functions.
fn instrumented(rw: &Rewritten) -> Vec<u32> {
    rw.report
        .frames
        .iter()
        .map(|f| f.original_func_index)
        .collect()
}

/// Points of the function with input index `func` (panics if it is not
/// instrumented).
fn points(rw: &Rewritten, func: u32) -> u32 {
    rw.report
        .frames
        .iter()
        .find(|f| f.original_func_index == func)
        .unwrap_or_else(|| panic!("function {func} is not instrumented"))
        .points
}

#[test]
fn a_call_chain_to_a_blocking_import_is_instrumented_a_pure_leaf_is_not() {
    // 0 poll_oneoff (blocking), 1 $top -> 2 $mid -> poll; 3 $leaf: math only.
    let rw = rewrite_wat(
        r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (func $top (export "top") (param i32) (result i32)
        (i32.add (call $leaf (local.get 0)) (call $mid (local.get 0))))
      (func $mid (param i32) (result i32)
        (call $poll (local.get 0) (i32.const 0) (i32.const 0) (i32.const 0)))
      (func $leaf (param i32) (result i32)
        (i32.mul (i32.add (local.get 0) (i32.const 3)) (local.get 0))))"#,
    );
    assert_eq!(instrumented(&rw), vec![1, 2]);
    // $top: one point, after the call of $mid (the call of $leaf is plain).
    assert_eq!(points(&rw, 1), 1);
    assert_eq!(points(&rw, 2), 1);
}

#[test]
fn call_indirect_is_instrumented_only_if_a_target_of_its_type_can_unwind() {
    // Table: $wait_leaf (i32)->i32 with a loop, $pure (i32 i32)->i32.
    // $via_loop calls (i32)->i32 indirectly: may reach the loop. $via_pure
    // calls (i32 i32)->i32: only $pure has that type in the table. $spin
    // (i32 i32)->i32 has a loop but is in no table, so it does not count.
    let rw = rewrite_wat(
        r#"(module
      (type $one (func (param i32) (result i32)))
      (type $two (func (param i32 i32) (result i32)))
      (table 2 funcref)
      (elem (i32.const 0) $wait_leaf $pure)
      (func $wait_leaf (type $one)
        (loop $l (br_if $l (i32.eqz (local.get 0)))) (local.get 0))
      (func $pure (type $two) (i32.add (local.get 0) (local.get 1)))
      (func $spin (type $two)
        (loop $l (br_if $l (i32.eqz (local.get 0)))) (local.get 1))
      (func $via_loop (export "a") (param i32) (result i32)
        (call_indirect (type $one) (local.get 0) (i32.const 0)))
      (func $via_pure (export "b") (param i32) (result i32)
        (call_indirect (type $two) (local.get 0) (local.get 0) (i32.const 1))))"#,
    );
    assert_eq!(instrumented(&rw), vec![0, 2, 3]);
    assert_eq!(points(&rw, 3), 1, "the point after the indirect call");
}

#[test]
fn call_indirect_of_a_blocking_import_in_a_table_is_instrumented() {
    let rw = rewrite_wat(
        r#"(module
      (type $io (func (param i32 i32 i32 i32) (result i32)))
      (type $one (func (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (type $io)))
      (table 1 funcref)
      (elem (i32.const 0) $read)
      (func $caller (export "c") (param i32) (result i32)
        (call_indirect (type $io) (local.get 0) (local.get 0) (local.get 0) (local.get 0) (i32.const 0)))
      (func $other (export "o") (param i32) (result i32)
        (call_indirect (type $one) (local.get 0) (i32.const 0))))"#,
    );
    assert_eq!(instrumented(&rw), vec![1]);
}

/// The loops of `$run` (function 2) around calls of `$rec` (function 1,
/// recursive: its entry is a point) and `$flat` (function 3, may unwind
/// through its loop but does not check at entry).
fn loop_module(loop_body: &str) -> String {
    format!(
        r#"(module
      (import "env" "log" (func $log (param i32)))
      (func $rec (param $n i32) (result i32)
        (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
          (then (local.get $n))
          (else (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))))
      (func $run (export "run") (param $n i32) (result i32)
        (local $acc i32)
        (loop $l {loop_body})
        (local.get $acc))
      (func $flat (param $n i32) (result i32)
        (loop $l (br_if $l (i32.gt_s (local.tee $n (i32.sub (local.get $n) (i32.const 1))) (i32.const 0))))
        (local.get $n)))"#
    )
}

#[test]
fn a_loop_whose_every_iteration_calls_a_checked_function_has_no_header_point() {
    let rw = rewrite_wat(&loop_module(
        "(local.set $acc (i32.add (local.get $acc) (call $rec (local.get $n))))
         (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))",
    ));
    // Only the point after the call: the header would be point 0.
    assert_eq!(points(&rw, 2), 1);
}

#[test]
fn a_loop_keeps_its_header_if_a_back_edge_can_skip_the_call() {
    let rw = rewrite_wat(&loop_module(
        "(local.set $n (i32.sub (local.get $n) (i32.const 1)))
         (br_if $l (i32.and (local.get $n) (i32.const 1)))
         (local.set $acc (i32.add (local.get $acc) (call $rec (local.get $n))))
         (br_if $l (local.get $n))",
    ));
    assert_eq!(points(&rw, 2), 2, "header and the call");
    // The same through a branch from a nested block (depth 1 is the loop).
    let rw = rewrite_wat(&loop_module(
        "(block $b (br_if 1 (i32.and (local.get $n) (i32.const 1))))
         (local.set $acc (i32.add (local.get $acc) (call $rec (local.get $n))))
         (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))",
    ));
    assert_eq!(points(&rw, 2), 2, "header and the call");
}

#[test]
fn a_loop_keeps_its_header_if_the_call_is_conditional_or_unchecked() {
    // The call of $rec inside an `if`: some iterations do not make it.
    let rw = rewrite_wat(&loop_module(
        "(if (i32.and (local.get $n) (i32.const 1))
           (then (local.set $acc (call $rec (local.get $n)))))
         (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))",
    ));
    assert_eq!(points(&rw, 2), 2);
    // $flat may unwind (its loop) but its entry is no point.
    let rw = rewrite_wat(&loop_module(
        "(local.set $acc (call $flat (local.get $n)))
         (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))",
    ));
    assert_eq!(points(&rw, 2), 2);
    // A call of a function that cannot unwind at all: the header is the only
    // point.
    let rw = rewrite_wat(&loop_module(
        "(call $log (local.get $n))
         (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))",
    ));
    assert_eq!(points(&rw, 2), 1);
    assert!(!instrumented(&rw).contains(&0), "imports are never frames");
}
