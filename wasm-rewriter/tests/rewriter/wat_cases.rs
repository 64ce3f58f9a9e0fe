//! Hand-written WAT programs, each run plainly and migrating.

use crate::{differential, standard_plans};
use wasmi::Val;

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("valid wat")
}

#[test]
fn simple_loop() {
    let m = wat(r#"(module
      (import "env" "log" (func $log (param i64)))
      (memory 1)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $i))))
          (i32.store (i32.mul (local.get $i) (i32.const 4)) (local.get $acc))
          (call $log (i64.extend_i32_u (local.get $acc)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#);
    // An odd trip count too: the loop then leaves from the other copy.
    differential(&m, "run", &[Val::I32(51)], &standard_plans());
    let most = differential(&m, "run", &[Val::I32(50)], &standard_plans());
    // A loop this small is emitted twice per header check (see
    // `emit_unrolled_loop`), so N=1 migrates every other iteration.
    assert!(most >= 24, "N=1 migrates at every header check, got {most}");
}

/// Asserts the case migrated at all, so a case can never pass vacuously.
fn check(src: &str, args: &[Val]) -> u32 {
    let most = differential(&wat(src), "run", args, &standard_plans());
    assert!(most > 0, "the case never migrated");
    most
}

#[test]
fn loop_with_params_and_results() {
    check(
        r#"(module
      (import "env" "log" (func $log (param i64)))
      (func $work (param $x i32) (result i32)
        (local $k i32)
        (loop $l
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $k) (i32.const 3))))
        (i32.add (local.get $x) (local.get $k)))
      (func (export "run") (param $n i32) (result i32 i64)
        (i32.const 0) (i64.const 1)
        (loop $l (param i32 i64) (result i32 i64)
          ;; stack: acc:i32 prod:i64
          (call $log (i64.extend_i32_u (local.get $n)))
          (call $work (local.get $n))      ;; a point with acc, prod below it
          (local.set $n)
          (i64.mul (i64.extend_i32_u (local.get $n)))
          (local.set $n (i32.sub (local.get $n) (i32.const 4)))
          (i64.const 3) (i64.rem_u)
          (i64.const 7) (i64.add)
          (local.get $n)
          (i32.gt_s (i32.const 0))
          (i32.eqz)
          (br_if $l)))
      )"#,
        &[Val::I32(40)],
    );
}

#[test]
fn multi_value_blocks_around_points() {
    check(
        r#"(module
      (func $spin (param $n i32) (result i32)
        (loop $l
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
        (local.get $n))
      (func (export "run") (param $n i32) (result i32 i64 f64)
        (local $i i32) (local $x64 i64) (local $xf f64)
        (f64.const 1.5)
        (block $b (param f64) (result i32 i64 f64)
          (i64.const 10)
          (block $c (param f64 i64) (result f64 i64)
            (drop (call $spin (i32.const 5))))
          (local.set $i (i32.const 0))
          (loop $l (param f64 i64) (result f64 i64)
            (i64.add (i64.const 1))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
          (i64.mul (i64.const 2))
          (local.set $i (call $spin (i32.const 3)))
          (i64.add (i64.extend_i32_s (i32.add (call $spin (i32.const 2)) (local.get $i))))
          (local.set $x64) (local.set $xf)
          (i32.add (local.get $i) (i32.const 100)) (local.get $x64) (local.get $xf)
          (br_if $b (i32.eqz (local.get $n)))))
      )"#,
        &[Val::I32(30)],
    );
}

#[test]
fn br_table_out_of_nested_blocks_around_a_point() {
    check(
        r#"(module
      (global $g (mut i64) (i64.const 0))
      (func $tick (param $k i32) (result i32)
        (local $j i32)
        (loop $l
          (global.set $g (i64.add (global.get $g) (i64.extend_i32_u (local.get $j))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $j) (local.get $k))))
        (i32.rem_u (local.get $k) (i32.const 4)))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $sum i32)
        (loop $outer
          (block $b3
            (block $b2
              (block $b1
                (block $b0
                  (i32.const 1000)     ;; a value below the point
                  (call $tick (local.get $i))
                  (i32.add)
                  (i32.const 1000) (i32.sub)
                  (br_table $b0 $b1 $b2 $b3))
                (local.set $sum (i32.add (local.get $sum) (i32.const 1)))
                (br $b2))
              (local.set $sum (i32.add (local.get $sum) (i32.const 10)))
              (br $b3))
            (local.set $sum (i32.add (local.get $sum) (i32.const 100))))
          (local.set $sum (i32.add (local.get $sum) (call $tick (i32.const 2))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $outer (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $sum) (i32.wrap_i64 (global.get $g))))
      )"#,
        &[Val::I32(25)],
    );
}

#[test]
fn call_indirect_in_a_hot_loop() {
    check(
        r#"(module
      (import "env" "log" (func $log (param i64)))
      (type $op (func (param i32 i32) (result i32)))
      (table 4 funcref)
      (elem (i32.const 0) $add $mul $slow $sub)
      (func $add (type $op) (i32.add (local.get 0) (local.get 1)))
      (func $mul (type $op) (i32.mul (local.get 0) (local.get 1)))
      (func $sub (type $op) (i32.sub (local.get 0) (local.get 1)))
      (func $slow (type $op)
        (loop $l
          (local.set 0 (i32.add (local.get 0) (i32.const 3)))
          (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
          (br_if $l (i32.gt_s (local.get 1) (i32.const 0))))
        (local.get 0))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc
            (i32.xor
              (local.get $acc)
              (call_indirect (type $op)
                (local.get $acc) (i32.and (local.get $i) (i32.const 7))
                (i32.and (local.get $i) (i32.const 3)))))
          (call $log (i64.extend_i32_s (local.get $acc)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc))
      )"#,
        &[Val::I32(60)],
    );
}

#[test]
fn deep_recursion() {
    // The bottom of the recursion calls a blocking import: with plans that
    // unwind at every blocking call, captures hold all 600 levels.
    let src = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory 1)
      (func $rec (param $d i32) (result i64)
        (local $i i32) (local $s i64)
        (loop $l
          (local.set $s (i64.add (local.get $s) (i64.extend_i32_u (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 2))))
        (if (result i64) (i32.eqz (local.get $d))
          (then (i64.add (local.get $s)
                  (i64.extend_i32_u (call $poll (local.get $i) (i32.const 1) (i32.const 2) (i32.const 3)))))
          (else
            (i32.store (i32.mul (i32.rem_u (local.get $d) (i32.const 1000)) (i32.const 4)) (local.get $d))
            (i64.add (local.get $s) (call $rec (i32.sub (local.get $d) (i32.const 1)))))))
      (func (export "run") (param $d i32) (result i64)
        (call $rec (local.get $d)))
      )"#;
    let most = check(src, &[Val::I32(600)]);
    assert!(most > 100);
    // Captures taken deep in the recursion hold one frame per level.
    let stats =
        crate::differential_with(&wat(src), "run", &[Val::I32(600)], &standard_plans(), None);
    assert!(
        stats.max_frames > 600,
        "deepest capture: {} frames",
        stats.max_frames
    );
}

#[test]
fn values_below_call_arguments() {
    check(
        r#"(module
      (func $g (param $a i32) (param $b f64) (result i32)
        (loop $l
          (local.set $a (i32.add (local.get $a) (i32.const 1)))
          (br_if $l (i32.lt_u (i32.and (local.get $a) (i32.const 3)) (i32.const 3))))
        (i32.add (local.get $a) (i32.trunc_f64_s (local.get $b))))
      (func (export "run") (param $n i32) (result i64)
        (local $x i32) (local $acc i64)
        (loop $l
          (local.set $acc
            (i64.add
              (local.get $acc)                      ;; i64 below the call
              (i64.extend_i32_u
                (i32.mul
                  (i32.add (local.get $x) (i32.const 3))  ;; i32 below the call
                  (call $g (local.get $x) (f64.const 2.5))))))
          (local.set $x (i32.add (local.get $x) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $x) (local.get $n))))
        (local.get $acc))
      )"#,
        &[Val::I32(30)],
    );
}

#[test]
fn if_else_with_points_inside() {
    check(
        r#"(module
      (global $g (mut i32) (i32.const 0))
      (func $bump (param $k i32) (result i32)
        (loop $l
          (global.set $g (i32.add (global.get $g) (i32.const 1)))
          (local.set $k (i32.sub (local.get $k) (i32.const 1)))
          (br_if $l (i32.gt_s (local.get $k) (i32.const 0))))
        (global.get $g))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc
            (if (result i32) (i32.and (local.get $i) (i32.const 1))
              (then
                (i32.add (call $bump (i32.const 2)) (local.get $acc)))
              (else
                (if (result i32) (i32.eq (i32.rem_u (local.get $i) (i32.const 3)) (i32.const 0))
                  (then (i32.sub (local.get $acc) (call $bump (i32.const 1))))
                  (else (i32.mul (local.get $acc) (i32.const 3)))))))
          ;; the condition's computation has side effects: it must not rerun
          (if (i32.gt_u (global.get $g) (i32.const 0))
            (then (global.set $g (i32.add (global.get $g) (i32.const 100)))
                  (drop (call $bump (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $acc) (global.get $g)))
      )"#,
        &[Val::I32(30)],
    );
}

#[test]
fn unreachable_code_after_br_and_return() {
    check(
        r#"(module
      (func $f (param $n i32) (result i32)
        (block $out (result i32)
          (loop $l
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br_if $l (i32.gt_s (local.get $n) (i32.const 5)))
            (br $out (local.get $n))
            ;; dead: polymorphic stack, even a point here must vanish
            (i32.add (loop (result i32) (i32.const 1)))
            (drop)
            (unreachable))
          (return (i32.const -1))
          (i64.const 5)
          (drop)
          (i32.const 3)))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc) (call $f (i32.add (local.get $i) (i32.const 10)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (return (local.get $acc))
        (drop (call $f (i32.const 3)))
        (i32.const 0))
      )"#,
        &[Val::I32(20)],
    );
}

#[test]
fn hundreds_of_locals() {
    // 300 locals of four types, all live across the loop's points.
    let mut locals = String::new();
    let mut init = String::new();
    let mut sum = String::from("(local.get $acc)");
    for i in 0..300 {
        let ty = ["i32", "i64", "f32", "f64"][i % 4];
        locals.push_str(&format!("(local $v{i} {ty}) "));
        init.push_str(&format!("(local.set $v{i} ({ty}.const {i})) "));
        let as_i64 = match ty {
            "i32" => format!("(i64.extend_i32_u (local.get $v{i}))"),
            "i64" => format!("(local.get $v{i})"),
            "f32" => format!("(i64.trunc_f32_u (local.get $v{i}))"),
            _ => format!("(i64.trunc_f64_u (local.get $v{i}))"),
        };
        sum = format!("(i64.add {sum} {as_i64})");
    }
    let src = format!(
        r#"(module
      (func (export "run") (param $n i32) (result i64)
        {locals} (local $acc i64) (local $i i32)
        {init}
        (loop $l
          (local.set $v5 (i64.add (local.get $v5) (i64.const 3)))
          (local.set $v13 (i64.const 1) (drop) (i64.add (local.get $v13) (local.get $v5)) (drop) (local.get $v13))
          (local.set $v298 (f32.add (local.get $v298) (f32.const 0.5)))
          (local.set $acc {sum})
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc)))"#
    );
    check(&src, &[Val::I32(20)]);
}

#[test]
fn memory_grow_between_capture_and_resume() {
    check(
        r#"(module
      (memory 1)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $p i32)
        (loop $l
          (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 4)))
            (then (local.set $p (memory.grow (i32.const 1)))
                  ;; write into the page just added
                  (i32.store (i32.mul (local.get $p) (i32.const 65536)) (local.get $i))
                  (i32.store (i32.sub (i32.mul (i32.add (local.get $p) (i32.const 1)) (i32.const 65536)) (i32.const 4))
                             (i32.mul (local.get $i) (i32.const 3)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (memory.size))
      )"#,
        &[Val::I32(24)],
    );
}

#[test]
fn start_function_runs_once() {
    check(
        r#"(module
      (memory 1)
      (global $count (mut i32) (i32.const 0))
      (func $start
        (local $i i32)
        (global.set $count (i32.add (global.get $count) (i32.const 1)))
        (loop $l
          (i32.store (i32.mul (local.get $i) (i32.const 4)) (i32.add (local.get $i) (global.get $count)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 20)))))
      (start $start)
      (func (export "run") (param $n i32) (result i32)
        (local $i i32)
        (loop $l
          (i32.store (i32.const 400)
            (i32.add (i32.load (i32.const 400)) (i32.load (i32.mul (local.get $i) (i32.const 4)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (global.get $count))
      )"#,
        &[Val::I32(20)],
    );
}

#[test]
fn data_drop_is_tracked() {
    // After the drop, `memory.init` of a non-empty range traps; a resumed
    // vessel must trap the same way, so the drop has to survive migration.
    let src = r#"(module
      (memory 1)
      (data $a "hello")
      (data $b "active-looking passive")
      (data (i32.const 1000) "active")
      (func (export "run") (param $n i32) (result i32)
        (local $i i32)
        (memory.init $a (i32.const 0) (i32.const 0) (i32.const 5))
        (loop $l
          (if (i32.eq (local.get $i) (i32.const 3)) (then (data.drop $a)))
          (memory.init $b (i32.mul (local.get $i) (i32.const 32)) (i32.const 0) (i32.const 6))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (memory.init $a (i32.const 0) (i32.const 0) (i32.const 1))
        (i32.const 1))
      )"#;
    check(src, &[Val::I32(12)]);
}

#[test]
fn blocking_import_is_reissued_with_its_arguments() {
    let most = check(
        r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "env" "log" (func $log (param i64)))
      (func $inner (param $i i32) (result i32)
        ;; a value below the blocking call's arguments, and real arguments
        (i32.add (i32.const 1000)
          (call $poll (local.get $i) (i32.mul (local.get $i) (i32.const 2)) (i32.const 7) (i32.const -1))))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc) (call $inner (local.get $i))))
          (local.set $acc (i32.xor (local.get $acc)
            (call $poll (local.get $acc) (i32.const 1) (i32.const 2) (local.get $i))))
          (call $log (i64.extend_i32_u (local.get $acc)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc))
      )"#,
        &[Val::I32(15)],
    );
    assert!(most >= 15);
}

#[test]
fn nan_bits_survive_frames() {
    check(
        r#"(module
      (global $keep (mut f64) (f64.const 0))
      (func (export "run") (param $n i32) (result f32 f64)
        (local $i i32) (local $x f32) (local $y f64)
        (local.set $x (f32.reinterpret_i32 (i32.const 0x7fc12345)))
        (local.set $y (f64.reinterpret_i64 (i64.const 0xfff0000000abcdef)))
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (global.set $keep (local.get $y))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $x) (local.get $y))
      )"#,
        &[Val::I32(10)],
    );
}

#[test]
fn two_captures_back_to_back() {
    // With a countdown of 1 the vessel unwinds at the first point after each
    // rewind finishes: every loop iteration is its own migration, so each
    // capture is taken right after the previous rewind completed.
    let src = r#"(module
      (global $g (mut i32) (i32.const 0))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32)
        (loop $l
          (global.set $g (i32.add (global.get $g) (local.get $i)))
          ;; enough work that the loop is not unrolled: one check per iteration
          (global.set $g (i32.xor (global.get $g) (i32.mul (local.get $i) (i32.const 3))))
          (global.set $g (i32.add (global.get $g) (i32.rotl (local.get $i) (i32.const 5))))
          (global.set $g (i32.sub (global.get $g) (i32.shr_u (local.get $i) (i32.const 1))))
          (global.set $g (i32.add (global.get $g) (i32.and (local.get $i) (i32.const 7))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (global.get $g)))"#;
    let plan = crate::host::Plan {
        countdown: 1,
        block_every: 0,
        max_migrations: 1000,
    };
    let migrations = crate::differential(&wat(src), "run", &[Val::I32(30)], &[plan]);
    // The first header is reached on entry, then once per back edge.
    assert_eq!(migrations, 30);
}

#[test]
fn tiny_loops_emitted_twice() {
    // Loops small enough to be emitted twice per header check: with
    // parameters and results, a back edge from a nested block, an early exit
    // to an outer label, a fall-through exit, and a tiny loop with values of
    // the enclosing block below it.
    // Both parities of the trip count: the loop leaves from either copy.
    let src = r#"(module
      (func (export "run") (param $n i32) (result i32 i64)
        (local $i i32) (local $k i32)
        (block $out (result i32 i64)
          i32.const 0
          i64.const 1
          (loop $l (param i32 i64) (result i32 i64)
            local.get $i
            i32.const 1
            i32.add
            local.set $i
            (block $b (param i32 i64) (result i32 i64)
              local.get $i
              i32.const 1
              i32.and
              br_if $l)
            local.get $i
            i64.extend_i32_u
            i64.add
            local.get $i
            i32.const 1000
            i32.gt_u
            br_if $out
            local.get $i
            local.get $n
            i32.lt_u
            br_if $l)
          (loop $m
            local.get $k
            i32.const 3
            i32.add
            local.set $k
            local.get $k
            local.get $n
            i32.lt_u
            br_if $m)
          local.get $k
          i64.extend_i32_u
          i64.add))
      )"#;
    for n in [40, 41, 1, 2] {
        differential(&wat(src), "run", &[Val::I32(n)], &standard_plans());
    }
    check(src, &[Val::I32(41)]);
}

#[test]
fn default_config_migrates_at_blocking_calls() {
    // The other tests use the countdown build; the default build (what docks
    // run) differs at every header and entry point, so it is checked too,
    // with migrations driven by blocking calls, on programs with loops,
    // recursion and values below the calls.
    let src = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (global $g (mut i64) (i64.const 0))
      (func $rec (param $d i32) (result i32)
        (local $i i32)
        (loop $l
          (global.set $g (i64.add (global.get $g) (i64.extend_i32_u (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 3))))
        (if (result i32) (local.get $d)
          (then (i32.add (local.get $i)
                  (i32.mul (call $poll (local.get $d) (i32.const 1) (i32.const 2) (i32.const 3))
                           (call $rec (i32.sub (local.get $d) (i32.const 1))))))
          (else (call $poll (i32.const 9) (i32.const 8) (i32.const 7) (i32.const 6)))))
      (func (export "run") (param $n i32) (result i32)
        (local $k i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.xor (local.get $acc) (call $rec (i32.rem_u (local.get $k) (i32.const 9)))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $k) (local.get $n))))
        (i32.add (local.get $acc) (i32.wrap_i64 (global.get $g)))))"#;
    let plans: Vec<crate::host::Plan> = [1, 2, 5]
        .into_iter()
        .map(|block_every| crate::host::Plan {
            countdown: 0,
            block_every,
            max_migrations: 500,
        })
        .collect();
    let stats = crate::differential_config(
        &wat(src),
        "run",
        &[Val::I32(20)],
        &plans,
        None,
        &wasm_rewriter::RewriteConfig::default(),
    );
    assert!(stats.migrations > 50, "{}", stats.migrations);
    assert!(stats.max_frames >= 10, "{}", stats.max_frames);
}

/// Only the first item of a body is guarded; a rewind reaches a later item by
/// a branch past the runs before it. Here every run between items has a side
/// effect (a rerun would show in the result), the third item has a value
/// below its arguments, and the fourth is an `if` whose condition would
/// differ on a rerun.
#[test]
fn later_items_of_a_body_are_reached_without_guards() {
    check(
        r#"(module
      (global $g (mut i32) (i32.const 0))
      (func $spin (param $k i32) (result i32)
        (loop $l
          (global.set $g (i32.add (global.get $g) (i32.const 1)))
          (local.set $k (i32.sub (local.get $k) (i32.const 1)))
          (br_if $l (i32.gt_s (local.get $k) (i32.const 0))))
        (global.get $g))
      (func (export "run") (param $n i32) (result i32)
        (local $i i32) (local $acc i32)
        (loop $l
          (global.set $g (i32.mul (global.get $g) (i32.const 3)))
          (local.set $acc (i32.add (local.get $acc) (call $spin (i32.const 2))))
          (global.set $g (i32.xor (global.get $g) (i32.const 0x55)))
          (local.set $acc (i32.sub (local.get $acc) (call $spin (i32.const 1))))
          (global.set $g (i32.add (global.get $g) (i32.const 7)))
          (local.set $acc
            (i32.add (i32.mul (local.get $acc) (i32.const 5))   ;; below the call
                     (call $spin (i32.and (local.get $i) (i32.const 3)))))
          (global.set $g (i32.rotl (global.get $g) (i32.const 1)))
          (if (i32.and (global.get $g) (i32.const 1))
            (then (local.set $acc (i32.xor (local.get $acc) (call $spin (i32.const 3)))))
            (else (local.set $acc (i32.add (local.get $acc) (i32.const 11)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (i32.add (local.get $acc) (global.get $g)))
      )"#,
        &[Val::I32(40)],
    );
}

/// A loop whose every iteration calls a recursive function has no header
/// point (the callee's entry serves unwind requests instead): the shape of
/// clang's `fib`. It must still migrate, at the callee's entry and through
/// the call point, with the loop's state intact.
#[test]
fn loop_around_a_recursive_call_migrates_without_a_header_point() {
    let src = r#"(module
      (func $fib (param $n i32) (result i32)
        (local $acc i32)
        (if (i32.ge_u (local.get $n) (i32.const 2))
          (then
            (loop $l
              (local.set $acc (i32.add
                (call $fib (i32.sub (local.get $n) (i32.const 1)))
                (local.get $acc)))
              (br_if $l (i32.gt_u
                (local.tee $n (i32.sub (local.get $n) (i32.const 2)))
                (i32.const 1))))))
        (i32.add (local.get $n) (local.get $acc)))
      (func (export "run") (param $n i32) (result i32)
        (call $fib (local.get $n))))"#;
    let rw = wasm_rewriter::rewrite(&wat(src), &crate::config()).unwrap();
    // Entry point 0 and the call point; no header point.
    assert_eq!(rw.report.frames[0].points, 2);
    let most = check(src, &[Val::I32(18)]);
    assert!(most >= 50, "migrates at fib's entries, got {most}");
}
