;; Shared prelude of the WASI errno tests (node/tests/it/wasi_errno.rs).
;;
;; A test file holds module fields (at least `(func $main ...)`); the loader
;; splices it into this prelude at the TEST marker and turns every
;; `(str "text")` into `(i32.const PTR) (i32.const LEN)` with a data segment
;; at the DATA marker. The same text runs under meshnode, wasmtime and Node
;; (node/tests/wat/refcheck.py), with one preopen at fd 3 (guest "/sandbox").
;;
;; Each check prints `label=errno` on stdout, and ` MISMATCH want=N` when the
;; errno is not the one the test expects; `_start` exits 1 if any mismatched.
(module
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_advise" (func $fd_advise (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func $fd_allocate (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_datasync" (func $fd_datasync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $fd_fdstat_set_flags (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_rights" (func $fd_fdstat_set_rights (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $fd_filestat_set_times (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $fd_pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_sync" (func $fd_sync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func $fd_tell (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times" (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func $path_readlink (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $sock_shutdown (param i32 i32) (result i32)))

  ;; Two pages. Layout: 0..16 print iovec, 16 OUT (u32 result), 24 OUT64,
  ;; 32..64 IOV (two iovecs), 64..96 number text, 1024..5120 BUF,
  ;; 16384.. strings, 65536..131072 BIG. END is one past the last byte.
  (memory (export "memory") 2)
  (global $OUT i32 (i32.const 16))
  (global $OUT64 i32 (i32.const 24))
  (global $IOV i32 (i32.const 32))
  (global $BUF i32 (i32.const 1024))
  (global $BIG i32 (i32.const 65536))
  (global $END i32 (i32.const 131072))
  (global $fails (mut i32) (i32.const 0))
  ;; Whether to run the checks that pass out-of-bounds pointers (EFAULT) or
  ;; out-of-range enum values (whence, advice, clock id, event type). wasmtime
  ;; traps on those instead of returning an errno, so refcheck.py runs it
  ;; with an extra argument, which turns them off.
  (global $check_bad_abi (mut i32) (i32.const 1))

  ;; oflags, lookupflags, fdflags, fstflags, whence.
  (global $O_CREAT i32 (i32.const 1))
  (global $O_DIRECTORY i32 (i32.const 2))
  (global $O_EXCL i32 (i32.const 4))
  (global $O_TRUNC i32 (i32.const 8))
  (global $FOLLOW i32 (i32.const 1))
  (global $APPEND i32 (i32.const 1))
  (global $ATIM i32 (i32.const 1))
  (global $ATIM_NOW i32 (i32.const 2))
  (global $MTIM i32 (i32.const 4))
  (global $MTIM_NOW i32 (i32.const 8))
  ;; rights: everything; what a read-only file needs; what a write-only file
  ;; needs; what a directory opened for listing and path calls gets.
  (global $R_ALL i64 (i64.const 0x0fffffff))
  (global $R_READ i64 (i64.const 0x2200026))  ;; fd_read|seek|tell|filestat_get|poll
  (global $R_WRITE i64 (i64.const 0x8200064)) ;; fd_write|seek|tell|filestat_get|poll
  (global $R_DIR i64 (i64.const 0x0fbffeae))   ;; all but the rights that write a file

  ;; preview1 errno values.
  (global $SUCCESS i32 (i32.const 0))
  (global $TOOBIG i32 (i32.const 1))
  (global $ACCES i32 (i32.const 2))
  (global $ADDRINUSE i32 (i32.const 3))
  (global $ADDRNOTAVAIL i32 (i32.const 4))
  (global $AFNOSUPPORT i32 (i32.const 5))
  (global $AGAIN i32 (i32.const 6))
  (global $ALREADY i32 (i32.const 7))
  (global $BADF i32 (i32.const 8))
  (global $BADMSG i32 (i32.const 9))
  (global $BUSY i32 (i32.const 10))
  (global $CANCELED i32 (i32.const 11))
  (global $CHILD i32 (i32.const 12))
  (global $CONNABORTED i32 (i32.const 13))
  (global $CONNREFUSED i32 (i32.const 14))
  (global $CONNRESET i32 (i32.const 15))
  (global $DEADLK i32 (i32.const 16))
  (global $DESTADDRREQ i32 (i32.const 17))
  (global $DOM i32 (i32.const 18))
  (global $DQUOT i32 (i32.const 19))
  (global $EXIST i32 (i32.const 20))
  (global $FAULT i32 (i32.const 21))
  (global $FBIG i32 (i32.const 22))
  (global $HOSTUNREACH i32 (i32.const 23))
  (global $IDRM i32 (i32.const 24))
  (global $ILSEQ i32 (i32.const 25))
  (global $INPROGRESS i32 (i32.const 26))
  (global $INTR i32 (i32.const 27))
  (global $INVAL i32 (i32.const 28))
  (global $IO i32 (i32.const 29))
  (global $ISCONN i32 (i32.const 30))
  (global $ISDIR i32 (i32.const 31))
  (global $LOOP i32 (i32.const 32))
  (global $MFILE i32 (i32.const 33))
  (global $MLINK i32 (i32.const 34))
  (global $MSGSIZE i32 (i32.const 35))
  (global $MULTIHOP i32 (i32.const 36))
  (global $NAMETOOLONG i32 (i32.const 37))
  (global $NETDOWN i32 (i32.const 38))
  (global $NETRESET i32 (i32.const 39))
  (global $NETUNREACH i32 (i32.const 40))
  (global $NFILE i32 (i32.const 41))
  (global $NOBUFS i32 (i32.const 42))
  (global $NODEV i32 (i32.const 43))
  (global $NOENT i32 (i32.const 44))
  (global $NOEXEC i32 (i32.const 45))
  (global $NOLCK i32 (i32.const 46))
  (global $NOLINK i32 (i32.const 47))
  (global $NOMEM i32 (i32.const 48))
  (global $NOMSG i32 (i32.const 49))
  (global $NOPROTOOPT i32 (i32.const 50))
  (global $NOSPC i32 (i32.const 51))
  (global $NOSYS i32 (i32.const 52))
  (global $NOTCONN i32 (i32.const 53))
  (global $NOTDIR i32 (i32.const 54))
  (global $NOTEMPTY i32 (i32.const 55))
  (global $NOTRECOVERABLE i32 (i32.const 56))
  (global $NOTSOCK i32 (i32.const 57))
  (global $NOTSUP i32 (i32.const 58))
  (global $NOTTY i32 (i32.const 59))
  (global $NXIO i32 (i32.const 60))
  (global $OVERFLOW i32 (i32.const 61))
  (global $OWNERDEAD i32 (i32.const 62))
  (global $PERM i32 (i32.const 63))
  (global $PIPE i32 (i32.const 64))
  (global $PROTO i32 (i32.const 65))
  (global $PROTONOSUPPORT i32 (i32.const 66))
  (global $PROTOTYPE i32 (i32.const 67))
  (global $RANGE i32 (i32.const 68))
  (global $ROFS i32 (i32.const 69))
  (global $SPIPE i32 (i32.const 70))
  (global $SRCH i32 (i32.const 71))
  (global $STALE i32 (i32.const 72))
  (global $TIMEDOUT i32 (i32.const 73))
  (global $TXTBSY i32 (i32.const 74))
  (global $XDEV i32 (i32.const 75))
  (global $NOTCAPABLE i32 (i32.const 76))

  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $print_num (param $n i32)
    (local $p i32) (local $neg i32) (local $u i32)
    (local.set $p (i32.const 96))
    (local.set $neg (i32.lt_s (local.get $n) (i32.const 0)))
    (local.set $u (select (i32.sub (i32.const 0) (local.get $n)) (local.get $n) (local.get $neg)))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digits (local.get $u)))
    (if (local.get $neg)
      (then
        (local.set $p (i32.sub (local.get $p) (i32.const 1)))
        (i32.store8 (local.get $p) (i32.const 45))))
    (call $print (local.get $p) (i32.sub (i32.const 96) (local.get $p))))

  (func $nl (i32.store8 (i32.const 100) (i32.const 10)) (call $print (i32.const 100) (i32.const 1)))

  ;; Prints `label=got`, and flags a mismatch with `want`.
  (func $expect (param $lp i32) (param $ll i32) (param $want i32) (param $got i32)
    (call $print (local.get $lp) (local.get $ll))
    (i32.store8 (i32.const 100) (i32.const 61))
    (call $print (i32.const 100) (i32.const 1))
    (call $print_num (local.get $got))
    (if (i32.ne (local.get $got) (local.get $want))
      (then
        (global.set $fails (i32.add (global.get $fails) (i32.const 1)))
        (call $print (str " MISMATCH want="))
        (call $print_num (local.get $want))))
    (call $nl))

  (func $ok (param $lp i32) (param $ll i32) (param $got i32)
    (call $expect (local.get $lp) (local.get $ll) (i32.const 0) (local.get $got)))

  ;; A setup step that must succeed; traps otherwise.
  (func $must (param $lp i32) (param $ll i32) (param $got i32)
    (if (local.get $got)
      (then
        (call $print (str "SETUP FAILED "))
        (call $expect (local.get $lp) (local.get $ll) (i32.const 0) (local.get $got))
        (unreachable))))

  ;; Opens `path` beneath the preopen (fd 3), following symlinks; returns the fd.
  (func $open (param $p i32) (param $l i32) (param $oflags i32) (param $rights i64) (param $fdflags i32) (result i32)
    (call $must (str "open")
      (call $path_open (i32.const 3) (global.get $FOLLOW) (local.get $p) (local.get $l)
        (local.get $oflags) (local.get $rights) (local.get $rights) (local.get $fdflags) (global.get $OUT)))
    (i32.load (global.get $OUT)))

  ;; Writes `text` to `fd` through one iovec.
  (func $write (param $fd i32) (param $p i32) (param $l i32) (result i32)
    (i32.store (global.get $IOV) (local.get $p))
    (i32.store (i32.add (global.get $IOV) (i32.const 4)) (local.get $l))
    (call $fd_write (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT)))

  ;; Creates a file holding `text`.
  (func $mkfile (param $p i32) (param $l i32) (param $tp i32) (param $tl i32)
    (local $fd i32)
    (local.set $fd (call $open (local.get $p) (local.get $l) (global.get $O_CREAT) (global.get $R_ALL) (i32.const 0)))
    (call $must (str "mkfile write") (call $write (local.get $fd) (local.get $tp) (local.get $tl)))
    (call $must (str "mkfile close") (call $fd_close (local.get $fd))))

  ;; The tree every test starts from, made through WASI itself so that each
  ;; runtime sees the same one:
  ;;   f ("hello world\n"), d/x, ne/y, empty/, lf -> f, loop -> loop,
  ;;   dang -> nothere, ld -> d
  (func $fixture
    (call $mkfile (str "f") (str "hello world\n"))
    (call $must (str "mkdir d") (call $path_create_directory (i32.const 3) (str "d")))
    (call $mkfile (str "d/x") (str "x"))
    (call $must (str "mkdir ne") (call $path_create_directory (i32.const 3) (str "ne")))
    (call $mkfile (str "ne/y") (str "y"))
    (call $must (str "mkdir empty") (call $path_create_directory (i32.const 3) (str "empty")))
    (call $must (str "symlink lf") (call $path_symlink (str "f") (i32.const 3) (str "lf")))
    (call $must (str "symlink loop") (call $path_symlink (str "loop") (i32.const 3) (str "loop")))
    (call $must (str "symlink dang") (call $path_symlink (str "nothere") (i32.const 3) (str "dang")))
    (call $must (str "symlink ld") (call $path_symlink (str "d") (i32.const 3) (str "ld"))))

  ;; {{TEST}}

  (func (export "_start")
    (call $must (str "args_sizes_get") (call $args_sizes_get (global.get $OUT) (global.get $OUT64)))
    (if (i32.gt_u (i32.load (global.get $OUT)) (i32.const 1))
      (then (global.set $check_bad_abi (i32.const 0))))
    (call $main)
    (call $print (str "fails="))
    (call $print_num (global.get $fails))
    (call $nl)
    (if (global.get $fails) (then (call $proc_exit (i32.const 1)))))

  ;; {{DATA}}
)
