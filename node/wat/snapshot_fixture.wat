;; The base snapshot of the snapshot-validation fuzz oracle
;; (node/src/dock/fuzzing.rs): recursion and a loop, so a capture has several
;; frames with locals of every type. Assembled at build time by build.rs.
(module
  (memory (export "memory") 1)
  (global $g (mut i64) (i64.const 7))
  (global $f (mut f64) (f64.const 1.5))
  (func $rec (param $n i32) (param $x f32) (result i64)
    (local $acc i64)
    (if (i32.gt_u (local.get $n) (i32.const 0))
      (then
        (local.set $acc (call $rec (i32.sub (local.get $n) (i32.const 1))
                                   (f32.add (local.get $x) (f32.const 0.5))))))
    (loop $l
      (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $n))))
      (i32.store (i32.mul (local.get $n) (i32.const 4)) (local.get $n))
      (global.set $g (i64.add (global.get $g) (i64.const 1)))
      (global.set $f (f64.add (global.get $f) (f64.promote_f32 (local.get $x))))
      (br_if $l (i64.lt_u (local.get $acc) (i64.const 2000))))
    (local.get $acc))
  (func (export "_start")
    (drop (call $rec (i32.const 6) (f32.const 1.0))))
)
