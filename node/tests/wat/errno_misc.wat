;; args, environ, clocks, random, poll_oneoff, proc_raise, sched_yield and
;; sock_* errno edge cases. See prelude.wat for the helpers and the fixture.

;; Writes a clock subscription at `at`: relative `timeout_ns` on `clock`.
(func $sub_clock (param $at i32) (param $userdata i64) (param $clock i32) (param $timeout i64) (param $flags i32)
  (memory.fill (local.get $at) (i32.const 0) (i32.const 48))
  (i64.store (local.get $at) (local.get $userdata))
  (i32.store8 (i32.add (local.get $at) (i32.const 8)) (i32.const 0))
  (i32.store (i32.add (local.get $at) (i32.const 16)) (local.get $clock))
  (i64.store (i32.add (local.get $at) (i32.const 24)) (local.get $timeout))
  (i32.store16 (i32.add (local.get $at) (i32.const 40)) (local.get $flags)))

;; Writes an fd_read (1) or fd_write (2) subscription at `at`.
(func $sub_fd (param $at i32) (param $userdata i64) (param $type i32) (param $fd i32)
  (memory.fill (local.get $at) (i32.const 0) (i32.const 48))
  (i64.store (local.get $at) (local.get $userdata))
  (i32.store8 (i32.add (local.get $at) (i32.const 8)) (local.get $type))
  (i32.store (i32.add (local.get $at) (i32.const 16)) (local.get $fd)))

(func $main
  (local $f i32) (local $subs i32) (local $events i32)
  (call $fixture)
  (local.set $f (call $open (str "f") (i32.const 0) (global.get $R_READ) (i32.const 0)))
  (local.set $subs (global.get $BIG))
  (local.set $events (i32.add (global.get $BIG) (i32.const 4096)))

  ;; ---- args / environ
  (if (global.get $check_bad_abi) (then
    (call $expect (str "args_sizes_get.oob") (global.get $FAULT) (call $args_sizes_get (i32.const 131070) (global.get $OUT)))
    (call $expect (str "args_get.argv_oob") (global.get $FAULT) (call $args_get (i32.const -4) (global.get $BUF)))
    (call $expect (str "args_get.buf_oob") (global.get $FAULT) (call $args_get (global.get $OUT) (i32.const -1)))
    (call $expect (str "environ_sizes_get.oob") (global.get $FAULT) (call $environ_sizes_get (global.get $OUT) (i32.const 131072)))))
  (call $ok (str "args_get.ok") (call $args_get (global.get $BUF) (i32.add (global.get $BUF) (i32.const 64))))
  (call $ok (str "environ_sizes_get.ok") (call $environ_sizes_get (global.get $OUT) (global.get $OUT64)))
  (call $expect (str "environ_sizes_get.count") (i32.const 0) (i32.load (global.get $OUT)))
  (call $ok (str "environ_get.ok") (call $environ_get (global.get $BUF) (global.get $BUF)))

  ;; ---- clocks
  (if (global.get $check_bad_abi) (then
    (call $expect (str "clock_res_get.bad_id") (global.get $INVAL) (call $clock_res_get (i32.const 4) (global.get $OUT64)))
    (call $expect (str "clock_time_get.bad_id") (global.get $INVAL) (call $clock_time_get (i32.const 99) (i64.const 0) (global.get $OUT64)))
    (call $expect (str "clock_res_get.oob") (global.get $FAULT) (call $clock_res_get (i32.const 0) (i32.const 131068)))
    (call $expect (str "clock_time_get.oob") (global.get $FAULT) (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 131068)))))
  (call $ok (str "clock_res_get.realtime") (call $clock_res_get (i32.const 0) (global.get $OUT64)))
  (call $ok (str "clock_res_get.monotonic") (call $clock_res_get (i32.const 1) (global.get $OUT64)))
  (call $ok (str "clock_time_get.realtime") (call $clock_time_get (i32.const 0) (i64.const 1) (global.get $OUT64)))
  (call $ok (str "clock_time_get.monotonic") (call $clock_time_get (i32.const 1) (i64.const 1) (global.get $OUT64)))
  (call $ok (str "clock_time_get.process_cputime") (call $clock_time_get (i32.const 2) (i64.const 1) (global.get $OUT64)))
  (call $ok (str "clock_time_get.thread_cputime") (call $clock_time_get (i32.const 3) (i64.const 1) (global.get $OUT64)))

  ;; ---- random
  (if (global.get $check_bad_abi) (then
    (call $expect (str "random_get.oob") (global.get $FAULT) (call $random_get (i32.const 131000) (i32.const 100)))
    (call $expect (str "random_get.wraps") (global.get $FAULT) (call $random_get (i32.const -16) (i32.const 32)))))
  (call $ok (str "random_get.zero") (call $random_get (global.get $BUF) (i32.const 0)))
  (call $ok (str "random_get.ok") (call $random_get (global.get $BUF) (i32.const 256)))

  ;; ---- poll_oneoff
  (call $expect (str "poll_oneoff.zero_subs") (global.get $INVAL)
    (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 0) (global.get $OUT)))
  (if (global.get $check_bad_abi) (then
    (call $expect (str "poll_oneoff.subs_oob") (global.get $FAULT)
      (call $poll_oneoff (i32.const 131000) (local.get $events) (i32.const 2) (global.get $OUT)))
    (call $sub_clock (local.get $subs) (i64.const 7) (i32.const 1) (i64.const 1000) (i32.const 0))
    (call $expect (str "poll_oneoff.events_oob") (global.get $FAULT)
      (call $poll_oneoff (local.get $subs) (i32.const 131060) (i32.const 1) (global.get $OUT)))
    (call $expect (str "poll_oneoff.nevents_oob") (global.get $FAULT)
      (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 1) (i32.const -2)))
    (call $sub_fd (local.get $subs) (i64.const 8) (i32.const 9) (local.get $f))
    (call $expect (str "poll_oneoff.bad_eventtype") (global.get $INVAL)
      (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 1) (global.get $OUT)))))
  ;; a 1 ms relative sleep on the monotonic clock
  (call $sub_clock (local.get $subs) (i64.const 7) (i32.const 1) (i64.const 1000000) (i32.const 0))
  (call $ok (str "poll_oneoff.clock") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 1) (global.get $OUT)))
  (call $expect (str "poll_oneoff.clock.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  (call $expect (str "poll_oneoff.clock.userdata") (i32.const 7) (i32.load (local.get $events)))
  (call $expect (str "poll_oneoff.clock.errno") (i32.const 0) (i32.load16_u (i32.add (local.get $events) (i32.const 8))))
  (call $expect (str "poll_oneoff.clock.type") (i32.const 0) (i32.load8_u (i32.add (local.get $events) (i32.const 10))))
  ;; an absolute deadline in the past fires at once
  (call $sub_clock (local.get $subs) (i64.const 9) (i32.const 1) (i64.const 1) (i32.const 1))
  (call $ok (str "poll_oneoff.abs_past") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 1) (global.get $OUT)))
  (call $expect (str "poll_oneoff.abs_past.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  ;; a regular file is always readable; a short and a long clock: only the
  ;; file's event comes back
  (call $sub_fd (local.get $subs) (i64.const 1) (i32.const 1) (local.get $f))
  (call $sub_clock (i32.add (local.get $subs) (i32.const 48)) (i64.const 2) (i32.const 1) (i64.const 10000000000) (i32.const 0))
  (call $ok (str "poll_oneoff.file_read") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 2) (global.get $OUT)))
  (call $expect (str "poll_oneoff.file_read.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  (call $expect (str "poll_oneoff.file_read.userdata") (i32.const 1) (i32.load (local.get $events)))
  (call $expect (str "poll_oneoff.file_read.type") (i32.const 1) (i32.load8_u (i32.add (local.get $events) (i32.const 10))))
  ;; a bad fd is reported in its event, not as poll_oneoff's own errno
  (call $sub_fd (local.get $subs) (i64.const 3) (i32.const 1) (i32.const 99))
  (call $ok (str "poll_oneoff.badf") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 1) (global.get $OUT)))
  (call $expect (str "poll_oneoff.badf.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  (call $expect (str "poll_oneoff.badf.errno") (global.get $BADF) (i32.load16_u (i32.add (local.get $events) (i32.const 8))))
  ;; two clocks: only the one that is due is reported
  (call $sub_clock (local.get $subs) (i64.const 4) (i32.const 1) (i64.const 1000000) (i32.const 0))
  (call $sub_clock (i32.add (local.get $subs) (i32.const 48)) (i64.const 5) (i32.const 1) (i64.const 10000000000) (i32.const 0))
  (call $ok (str "poll_oneoff.two_clocks") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 2) (global.get $OUT)))
  (call $expect (str "poll_oneoff.two_clocks.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  (call $expect (str "poll_oneoff.two_clocks.userdata") (i32.const 4) (i32.load (local.get $events)))
  ;; an absolute deadline far in the future and a short relative one
  (call $sub_clock (local.get $subs) (i64.const 6) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 1))
  (call $sub_clock (i32.add (local.get $subs) (i32.const 48)) (i64.const 7) (i32.const 1) (i64.const 1000000) (i32.const 0))
  (call $ok (str "poll_oneoff.abs_future") (call $poll_oneoff (local.get $subs) (local.get $events) (i32.const 2) (global.get $OUT)))
  (call $expect (str "poll_oneoff.abs_future.nevents") (i32.const 1) (i32.load (global.get $OUT)))
  (call $expect (str "poll_oneoff.abs_future.userdata") (i32.const 7) (i32.load (local.get $events)))

  ;; ---- proc_raise, sched_yield
  (call $ok (str "sched_yield") (call $sched_yield))

  ;; ---- sockets: no descriptor is a socket yet
  (call $expect (str "sock_accept.badf") (global.get $BADF) (call $sock_accept (i32.const 99) (i32.const 0) (global.get $OUT)))
  (call $expect (str "sock_accept.file") (global.get $NOTSOCK) (call $sock_accept (local.get $f) (i32.const 0) (global.get $OUT)))
  (call $expect (str "sock_accept.stdin") (global.get $NOTSOCK) (call $sock_accept (i32.const 0) (i32.const 0) (global.get $OUT)))
  (call $expect (str "sock_recv.badf") (global.get $BADF)
    (call $sock_recv (i32.const 99) (global.get $IOV) (i32.const 1) (i32.const 0) (global.get $OUT) (global.get $OUT64)))
  (call $expect (str "sock_recv.file") (global.get $NOTSOCK)
    (call $sock_recv (local.get $f) (global.get $IOV) (i32.const 1) (i32.const 0) (global.get $OUT) (global.get $OUT64)))
  (call $expect (str "sock_send.badf") (global.get $BADF)
    (call $sock_send (i32.const 99) (global.get $IOV) (i32.const 1) (i32.const 0) (global.get $OUT)))
  (call $expect (str "sock_send.file") (global.get $NOTSOCK)
    (call $sock_send (local.get $f) (global.get $IOV) (i32.const 1) (i32.const 0) (global.get $OUT)))
  (call $expect (str "sock_shutdown.badf") (global.get $BADF) (call $sock_shutdown (i32.const 99) (i32.const 1)))
  (call $expect (str "sock_shutdown.file") (global.get $NOTSOCK) (call $sock_shutdown (local.get $f) (i32.const 1)))
  (call $expect (str "sock_shutdown.dir") (global.get $NOTSOCK) (call $sock_shutdown (i32.const 3) (i32.const 1)))
)
