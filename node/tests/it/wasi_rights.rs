//! preview1 rights are enforced (docs/wasi.md, *Rights*; issue 18).
//!
//! The oracle is the preview1 specification's `rights` type, not wasmtime
//! (which no longer enforces rights and answers `ENOTSUP` to a narrowing).
//! Every right a call checks gets one case: the call works with the right,
//! then the right is dropped with `fd_fdstat_set_rights` and the same call
//! must fail with `ENOTCAPABLE` (76). The programs are WAT, spliced into the
//! errno tests' prelude (`node/tests/wat/prelude.wat`, one preopen at fd 3
//! with its fixture tree). The three wasi-testsuite cases that failed are
//! reproduced, a narrowed descriptor stays narrowed across a capture of
//! the WASI state, its CBOR encoding and a rebuild mid-run, and an ordinary
//! C program (`wasi_rights/libc_narrowed.c`) works within narrowed rights.

use std::path::Path;
use std::sync::{Arc, Mutex};

use meshnode::dock::services::{BufferHub, ServiceHub};
use meshnode::dock::wasi::{
    DirMapping, InputSource, OutputSink, Services, Stdio, WasiCtx, WasiOptions,
};
use meshnode::dock::{DockConfig, Exit, Mode, Slice, Vessel, VesselModule};

use crate::wasi_errno::expand;

/// ENOTCAPABLE.
const NOTCAPABLE: u16 = 76;

/// The preview1 rights by name, as WAT globals, and the helpers the cases
/// share: `$drop` takes rights from a descriptor's base, `$drop_inh` from
/// its inheriting rights, `$root` opens `.` with the preopen's own rights,
/// and `$poll1` polls one fd subscription and returns its event's errno.
const HELPERS: &str = r#"
  (global $RIGHT_FD_DATASYNC i64 (i64.const 0x1))
  (global $RIGHT_FD_READ i64 (i64.const 0x2))
  (global $RIGHT_FD_SEEK i64 (i64.const 0x4))
  (global $RIGHT_FD_FDSTAT_SET_FLAGS i64 (i64.const 0x8))
  (global $RIGHT_FD_SYNC i64 (i64.const 0x10))
  (global $RIGHT_FD_TELL i64 (i64.const 0x20))
  (global $RIGHT_FD_WRITE i64 (i64.const 0x40))
  (global $RIGHT_FD_ADVISE i64 (i64.const 0x80))
  (global $RIGHT_FD_ALLOCATE i64 (i64.const 0x100))
  (global $RIGHT_PATH_CREATE_DIRECTORY i64 (i64.const 0x200))
  (global $RIGHT_PATH_CREATE_FILE i64 (i64.const 0x400))
  (global $RIGHT_PATH_LINK_SOURCE i64 (i64.const 0x800))
  (global $RIGHT_PATH_LINK_TARGET i64 (i64.const 0x1000))
  (global $RIGHT_PATH_OPEN i64 (i64.const 0x2000))
  (global $RIGHT_FD_READDIR i64 (i64.const 0x4000))
  (global $RIGHT_PATH_READLINK i64 (i64.const 0x8000))
  (global $RIGHT_PATH_RENAME_SOURCE i64 (i64.const 0x10000))
  (global $RIGHT_PATH_RENAME_TARGET i64 (i64.const 0x20000))
  (global $RIGHT_PATH_FILESTAT_GET i64 (i64.const 0x40000))
  (global $RIGHT_PATH_FILESTAT_SET_SIZE i64 (i64.const 0x80000))
  (global $RIGHT_PATH_FILESTAT_SET_TIMES i64 (i64.const 0x100000))
  (global $RIGHT_FD_FILESTAT_GET i64 (i64.const 0x200000))
  (global $RIGHT_FD_FILESTAT_SET_SIZE i64 (i64.const 0x400000))
  (global $RIGHT_FD_FILESTAT_SET_TIMES i64 (i64.const 0x800000))
  (global $RIGHT_PATH_SYMLINK i64 (i64.const 0x1000000))
  (global $RIGHT_PATH_REMOVE_DIRECTORY i64 (i64.const 0x2000000))
  (global $RIGHT_PATH_UNLINK_FILE i64 (i64.const 0x4000000))
  (global $RIGHT_POLL_FD_READWRITE i64 (i64.const 0x8000000))
  (global $EV_FD_READ i32 (i32.const 1))
  (global $EV_FD_WRITE i32 (i32.const 2))

  ;; base rights of `fd` (fd_fdstat_get)
  (func $base (param $fd i32) (result i64)
    (call $must (str "fdstat") (call $fd_fdstat_get (local.get $fd) (global.get $BUF)))
    (i64.load (i32.add (global.get $BUF) (i32.const 8))))
  (func $inh (param $fd i32) (result i64)
    (call $must (str "fdstat") (call $fd_fdstat_get (local.get $fd) (global.get $BUF)))
    (i64.load (i32.add (global.get $BUF) (i32.const 16))))
  (func $drop (param $fd i32) (param $r i64)
    (call $must (str "drop")
      (call $fd_fdstat_set_rights (local.get $fd)
        (i64.and (call $base (local.get $fd)) (i64.xor (local.get $r) (i64.const -1)))
        (call $inh (local.get $fd)))))
  (func $drop_inh (param $fd i32) (param $r i64)
    (call $must (str "drop_inh")
      (call $fd_fdstat_set_rights (local.get $fd)
        (call $base (local.get $fd))
        (i64.and (call $inh (local.get $fd)) (i64.xor (local.get $r) (i64.const -1))))))
  ;; `.` of the preopen, with the preopen's own rights (as wasi-testsuite's
  ;; root_directory)
  (func $root (result i32)
    (call $must (str "root")
      (call $path_open (i32.const 3) (i32.const 0) (str ".") (global.get $O_DIRECTORY)
        (call $base (i32.const 3)) (call $inh (i32.const 3)) (i32.const 0) (global.get $OUT)))
    (i32.load (global.get $OUT)))
  (func $poll1 (param $fd i32) (param $type i32) (result i32)
    (local $r i32)
    (memory.fill (global.get $BIG) (i32.const 0) (i32.const 128))
    (i64.store (global.get $BIG) (i64.const 7))
    (i32.store8 (i32.add (global.get $BIG) (i32.const 8)) (local.get $type))
    (i32.store (i32.add (global.get $BIG) (i32.const 16)) (local.get $fd))
    (local.set $r (call $poll_oneoff (global.get $BIG) (i32.add (global.get $BIG) (i32.const 64))
      (i32.const 1) (global.get $OUT)))
    (if (result i32) (local.get $r)
      (then (local.get $r))
      (else (i32.load16_u (i32.add (global.get $BIG) (i32.const 72))))))
"#;

/// What a case's descriptor is: a fresh read-write file `rf` ("hello
/// world\n"), or `.` of the preopen with the preopen's own rights.
#[derive(Clone, Copy)]
enum On {
    File,
    Dir,
}

/// One right one call checks. `setup` and `call` are WAT with `$fd` the
/// descriptor and `{n}` a name suffix, different for the run with the
/// right (`a`) and without (`b`), so that calls that change the tree act
/// on fresh names.
struct Case {
    label: &'static str,
    right: &'static str,
    on: On,
    setup: &'static str,
    call: &'static str,
}

const fn case(label: &'static str, right: &'static str, on: On, call: &'static str) -> Case {
    Case {
        label,
        right,
        on,
        setup: "",
        call,
    }
}

/// Every right a call checks, per the specification's `rights` type.
const CASES: &[Case] = &[
    case("fd_read", "FD_READ", On::File,
        "(call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT))"),
    case("fd_pread", "FD_READ", On::File,
        "(call $fd_pread (local.get $fd) (global.get $IOV) (i32.const 1) (i64.const 0) (global.get $OUT))"),
    // "If FD_SEEK is set, [FD_READ] includes the right to invoke fd_pread."
    case("fd_pread.seek", "FD_SEEK", On::File,
        "(call $fd_pread (local.get $fd) (global.get $IOV) (i32.const 1) (i64.const 0) (global.get $OUT))"),
    case("fd_write", "FD_WRITE", On::File,
        "(call $write (local.get $fd) (str \"x\"))"),
    case("fd_pwrite", "FD_WRITE", On::File,
        "(call $fd_pwrite (local.get $fd) (global.get $IOV) (i32.const 1) (i64.const 0) (global.get $OUT))"),
    case("fd_pwrite.seek", "FD_SEEK", On::File,
        "(call $fd_pwrite (local.get $fd) (global.get $IOV) (i32.const 1) (i64.const 0) (global.get $OUT))"),
    case("fd_seek", "FD_SEEK", On::File,
        "(call $fd_seek (local.get $fd) (i64.const 1) (i32.const 0) (global.get $OUT64))"),
    // FD_SEEK implies FD_TELL: both go for fd_tell to fail.
    case("fd_tell", "FD_TELL|FD_SEEK", On::File,
        "(call $fd_tell (local.get $fd) (global.get $OUT64))"),
    case("fd_seek.cur0", "FD_TELL|FD_SEEK", On::File,
        "(call $fd_seek (local.get $fd) (i64.const 0) (i32.const 1) (global.get $OUT64))"),
    case("fd_sync", "FD_SYNC", On::File, "(call $fd_sync (local.get $fd))"),
    case("fd_datasync", "FD_DATASYNC", On::File, "(call $fd_datasync (local.get $fd))"),
    case("fd_advise", "FD_ADVISE", On::File,
        "(call $fd_advise (local.get $fd) (i64.const 0) (i64.const 4) (i32.const 0))"),
    case("fd_allocate", "FD_ALLOCATE", On::File,
        "(call $fd_allocate (local.get $fd) (i64.const 0) (i64.const 16))"),
    case("fd_filestat_get", "FD_FILESTAT_GET", On::File,
        "(call $fd_filestat_get (local.get $fd) (global.get $BUF))"),
    case("fd_filestat_get.dir", "FD_FILESTAT_GET", On::Dir,
        "(call $fd_filestat_get (local.get $fd) (global.get $BUF))"),
    case("fd_filestat_set_size", "FD_FILESTAT_SET_SIZE", On::File,
        "(call $fd_filestat_set_size (local.get $fd) (i64.const 16))"),
    case("fd_filestat_set_times", "FD_FILESTAT_SET_TIMES", On::File,
        "(call $fd_filestat_set_times (local.get $fd) (i64.const 0) (i64.const 0) (i32.or (global.get $ATIM_NOW) (global.get $MTIM_NOW)))"),
    case("fd_filestat_set_times.dir", "FD_FILESTAT_SET_TIMES", On::Dir,
        "(call $fd_filestat_set_times (local.get $fd) (i64.const 0) (i64.const 0) (global.get $MTIM_NOW))"),
    case("fd_fdstat_set_flags", "FD_FDSTAT_SET_FLAGS", On::File,
        "(call $fd_fdstat_set_flags (local.get $fd) (i32.const 0))"),
    case("fd_readdir", "FD_READDIR", On::Dir,
        "(call $fd_readdir (local.get $fd) (global.get $BUF) (i32.const 256) (i64.const 0) (global.get $OUT))"),
    // poll_oneoff: "If FD_READ is set, includes the right to subscribe to
    // FD_READ" (POLL_FD_READWRITE); an fd's error is in its event.
    case("poll_oneoff.read", "POLL_FD_READWRITE", On::File,
        "(call $poll1 (local.get $fd) (global.get $EV_FD_READ))"),
    case("poll_oneoff.read.fd_read", "FD_READ", On::File,
        "(call $poll1 (local.get $fd) (global.get $EV_FD_READ))"),
    case("poll_oneoff.write", "POLL_FD_READWRITE", On::File,
        "(call $poll1 (local.get $fd) (global.get $EV_FD_WRITE))"),
    case("poll_oneoff.write.fd_write", "FD_WRITE", On::File,
        "(call $poll1 (local.get $fd) (global.get $EV_FD_WRITE))"),
    case("path_open", "PATH_OPEN", On::Dir,
        "(call $path_open (local.get $fd) (i32.const 0) (str \"f\") (i32.const 0) (global.get $R_READ) (i64.const 0) (i32.const 0) (global.get $OUT))"),
    case("path_open.creat", "PATH_CREATE_FILE", On::Dir,
        "(call $path_open (local.get $fd) (i32.const 0) (str \"cr{n}\") (global.get $O_CREAT) (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT))"),
    Case {
        label: "path_open.trunc",
        right: "PATH_FILESTAT_SET_SIZE",
        on: On::Dir,
        setup: "(call $mkfile (str \"tr{n}\") (str \"0123\"))",
        call: "(call $path_open (local.get $fd) (i32.const 0) (str \"tr{n}\") (global.get $O_TRUNC) (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT))",
    },
    case("path_create_directory", "PATH_CREATE_DIRECTORY", On::Dir,
        "(call $path_create_directory (local.get $fd) (str \"cd{n}\"))"),
    Case {
        label: "path_remove_directory",
        right: "PATH_REMOVE_DIRECTORY",
        on: On::Dir,
        setup: "(call $must (str \"mkdir\") (call $path_create_directory (i32.const 3) (str \"rd{n}\")))",
        call: "(call $path_remove_directory (local.get $fd) (str \"rd{n}\"))",
    },
    Case {
        label: "path_unlink_file",
        right: "PATH_UNLINK_FILE",
        on: On::Dir,
        setup: "(call $mkfile (str \"ul{n}\") (str \"u\"))",
        call: "(call $path_unlink_file (local.get $fd) (str \"ul{n}\"))",
    },
    Case {
        label: "path_rename.source",
        right: "PATH_RENAME_SOURCE",
        on: On::Dir,
        setup: "(call $mkfile (str \"rs{n}\") (str \"r\"))",
        call: "(call $path_rename (local.get $fd) (str \"rs{n}\") (i32.const 3) (str \"rs{n}.to\"))",
    },
    Case {
        label: "path_rename.target",
        right: "PATH_RENAME_TARGET",
        on: On::Dir,
        setup: "(call $mkfile (str \"rt{n}\") (str \"r\"))",
        call: "(call $path_rename (i32.const 3) (str \"rt{n}\") (local.get $fd) (str \"rt{n}.to\"))",
    },
    Case {
        label: "path_link.source",
        right: "PATH_LINK_SOURCE",
        on: On::Dir,
        setup: "(call $mkfile (str \"ls{n}\") (str \"l\"))",
        call: "(call $path_link (local.get $fd) (i32.const 0) (str \"ls{n}\") (i32.const 3) (str \"ls{n}.to\"))",
    },
    Case {
        label: "path_link.target",
        right: "PATH_LINK_TARGET",
        on: On::Dir,
        setup: "(call $mkfile (str \"lt{n}\") (str \"l\"))",
        call: "(call $path_link (i32.const 3) (i32.const 0) (str \"lt{n}\") (local.get $fd) (str \"lt{n}.to\"))",
    },
    case("path_symlink", "PATH_SYMLINK", On::Dir,
        "(call $path_symlink (str \"f\") (local.get $fd) (str \"sl{n}\"))"),
    case("path_readlink", "PATH_READLINK", On::Dir,
        "(call $path_readlink (local.get $fd) (str \"lf\") (global.get $BUF) (i32.const 64) (global.get $OUT))"),
    case("path_filestat_get", "PATH_FILESTAT_GET", On::Dir,
        "(call $path_filestat_get (local.get $fd) (i32.const 0) (str \"f\") (global.get $BUF))"),
    case("path_filestat_set_times", "PATH_FILESTAT_SET_TIMES", On::Dir,
        "(call $path_filestat_set_times (local.get $fd) (global.get $FOLLOW) (str \"f\") (i64.const 0) (i64.const 0) (global.get $MTIM_NOW))"),
];

/// `FD_TELL|FD_SEEK` as a WAT i64 expression.
fn rights_expr(rights: &str) -> String {
    let mut parts = rights
        .split('|')
        .map(|r| format!("(global.get $RIGHT_{r})"));
    let first = parts.next().expect("a right");
    parts.fold(first, |acc, p| format!("(i64.or {acc} {p})"))
}

/// The WAT of one case: a fresh descriptor; the call with the right (must
/// succeed); the right dropped; the call again (must be ENOTCAPABLE).
fn case_wat(c: &Case) -> String {
    let open = match c.on {
        On::File => "(call $open (str \"rf\") (i32.const 0) (global.get $R_ALL) (i32.const 0))",
        On::Dir => "(call $root)",
    };
    let step = |n: &str, want: &str, label: String| {
        let setup = c.setup.replace("{n}", n);
        let call = c.call.replace("{n}", n);
        format!("{setup}\n  (call $expect (str \"{label}\") {want} {call})\n")
    };
    format!(
        "  (local.set $fd {open})\n  {with}  (call $drop (local.get $fd) {rights})\n  {without}",
        with = step(
            "a",
            "(i32.const 0)",
            format!("{}.with_{}", c.label, c.right)
        ),
        rights = rights_expr(c.right),
        without = step(
            "b",
            "(global.get $NOTCAPABLE)",
            format!("{}.without_{}", c.label, c.right)
        ),
    )
}

/// A test program: the helpers, and `$main` with a descriptor local `$fd`
/// and a read-write file `rf` next to the fixture.
fn program(main_body: &str) -> String {
    format!(
        "{HELPERS}\n(func $main (local $fd i32) (local $g i32)\n  (call $fixture)\n  \
         (call $mkfile (str \"rf\") (str \"hello world\\n\"))\n  \
         (i32.store (global.get $IOV) (global.get $BUF))\n  \
         (i32.store (i32.add (global.get $IOV) (i32.const 4)) (i32.const 4))\n{main_body})"
    )
}

/// Runs `main_body` as a vessel with a fresh sandbox preopened at
/// `/sandbox` (fd 3) and stdin holding "in", in fuel slices of
/// `fuel_slice` when given; after each slice that yields, `on_yield` gets
/// the vessel, its stdio and the sandbox's host directory (which it may
/// replace). Returns how it ended and what it printed.
fn run_vessel(
    name: &str,
    main_body: &str,
    fuel_slice: Option<u64>,
    mut on_yield: impl FnMut(&mut Vessel, &Stdio, &mut tempfile::TempDir),
) -> (Exit, String) {
    let bytes =
        wat::parse_str(expand(&program(main_body))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = DockConfig {
        fuel_slice,
        ..Default::default()
    };
    let engine = config.engine();
    let module =
        VesselModule::prepare(&engine, Path::new(name), bytes, Mode::Plain).expect("load module");
    let out = Arc::new(Mutex::new(Vec::new()));
    let stdio = Stdio {
        stdin: InputSource::Bytes(Arc::new(b"in".to_vec())),
        stdout: OutputSink::Buffer(out.clone()),
        ..Default::default()
    };
    let mut sandbox = tempfile::tempdir().unwrap();
    let wasi = WasiCtx::new(WasiOptions {
        args: vec![name.as_bytes().to_vec()],
        dirs: sandbox_mapping(sandbox.path()),
        stdio: stdio.clone(),
        ..Default::default()
    })
    .expect("wasi context");
    let mut vessel = Vessel::new(&engine, &module, wasi, &config).expect("instantiate");
    let exit = loop {
        match vessel.run_slice() {
            Slice::Exited(e) => break e,
            Slice::Yielded => on_yield(&mut vessel, &stdio, &mut sandbox),
            Slice::Unwound => {}
        }
    };
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    (exit, stdout)
}

fn sandbox_mapping(host: &Path) -> Vec<DirMapping> {
    vec![DirMapping {
        host: host.to_path_buf(),
        guest: "/sandbox".into(),
    }]
}

/// Asserts that every check of a run got its expected errno and that the
/// run finished.
fn assert_passed(name: &str, exit: &Exit, stdout: &str) {
    let bad: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("MISMATCH") || l.contains("SETUP"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: unexpected errnos:\n{}\n\n{stdout}",
        bad.join("\n")
    );
    assert!(
        stdout.contains("fails=0"),
        "{name} did not finish: {exit:?}\n{stdout}"
    );
    assert_eq!(*exit, Exit::Code(0), "{name}");
}

fn run_checked(name: &str, main_body: &str) -> String {
    let (exit, stdout) = run_vessel(name, main_body, None, |_, _, _| {});
    assert_passed(name, &exit, &stdout);
    stdout
}

/// Every call checks its right: works with it, ENOTCAPABLE without it.
#[test]
fn every_call_checks_the_rights_the_spec_names() {
    let body: String = CASES.iter().map(case_wat).collect();
    let stdout = run_checked("rights_per_call", &body);
    for c in CASES {
        let line = format!("{}.without_{}={NOTCAPABLE}", c.label, c.right);
        assert!(stdout.contains(&line), "no line {line:?} in:\n{stdout}");
    }
}

/// FD_SEEK implies FD_TELL: without FD_SEEK a descriptor can still say
/// where it is, but not move.
#[test]
fn tell_without_seek_reports_but_does_not_move() {
    run_checked(
        "tell_only",
        r#"
  (local.set $fd (call $open (str "rf") (i32.const 0) (global.get $R_ALL) (i32.const 0)))
  (call $drop (local.get $fd) (global.get $RIGHT_FD_SEEK))
  (call $ok (str "fd_tell") (call $fd_tell (local.get $fd) (global.get $OUT64)))
  (call $ok (str "fd_seek.cur0") (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 1) (global.get $OUT64)))
  (call $expect (str "fd_seek.set") (global.get $NOTCAPABLE)
    (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (global.get $OUT64)))
  (call $expect (str "fd_seek.cur1") (global.get $NOTCAPABLE)
    (call $fd_seek (local.get $fd) (i64.const 1) (i32.const 1) (global.get $OUT64)))
"#,
    );
}

/// Standard streams have their rights checked too; dropping stdin's
/// FD_READ or stderr's FD_WRITE holds.
#[test]
fn stdio_rights_hold() {
    run_checked(
        "stdio",
        r#"
  (call $ok (str "fd_read.stdin.with") (call $fd_read (i32.const 0) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $drop (i32.const 0) (global.get $RIGHT_FD_READ))
  (call $expect (str "fd_read.stdin.without") (global.get $NOTCAPABLE)
    (call $fd_read (i32.const 0) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $ok (str "fd_write.stderr.with") (call $write (i32.const 2) (str "")))
  (call $drop (i32.const 2) (global.get $RIGHT_FD_WRITE))
  (call $expect (str "fd_write.stderr.without") (global.get $NOTCAPABLE) (call $write (i32.const 2) (str "")))
  ;; a right stdio never has is not a capability question: ESPIPE as before
  (call $expect (str "fd_seek.stdout") (global.get $SPIPE)
    (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (global.get $OUT64)))
"#,
    );
}

/// Rights are inherited through path_open: what it asks for must be among
/// the directory's inheriting rights, the new descriptor has no more than
/// it asked for, and a narrowing of a directory's inheriting rights holds
/// for everything opened through it, and through what that opens.
#[test]
fn path_open_inherits_rights_from_the_directory() {
    run_checked(
        "inherit",
        r#"
  (local.set $fd (call $root))
  ;; no more than asked for
  (call $ok (str "open.read_only") (call $path_open (local.get $fd) (i32.const 0) (str "rf") (i32.const 0)
    (global.get $RIGHT_FD_READ) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (local.set $g (i32.load (global.get $OUT)))
  (call $expect (str "open.read_only.base") (i32.const 2) (i32.wrap_i64 (call $base (local.get $g))))
  (call $expect (str "open.read_only.write") (global.get $NOTCAPABLE) (call $write (local.get $g) (str "x")))
  ;; a directory without FD_WRITE among its inheriting rights
  (call $drop_inh (local.get $fd) (global.get $RIGHT_FD_WRITE))
  (call $expect (str "open.write.base") (global.get $NOTCAPABLE)
    (call $path_open (local.get $fd) (i32.const 0) (str "rf") (i32.const 0)
      (global.get $RIGHT_FD_WRITE) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $expect (str "open.write.inheriting") (global.get $NOTCAPABLE)
    (call $path_open (local.get $fd) (i32.const 0) (str "d") (global.get $O_DIRECTORY)
      (i64.const 0) (global.get $RIGHT_FD_WRITE) (i32.const 0) (global.get $OUT)))
  ;; as wasi-libc asks: base within the directory's inheriting rights
  (call $ok (str "open.libc_style") (call $path_open (local.get $fd) (i32.const 0) (str "rf") (i32.const 0)
    (i64.and (call $inh (local.get $fd)) (i64.const -1)) (call $inh (local.get $fd)) (i32.const 0) (global.get $OUT)))
  (local.set $g (i32.load (global.get $OUT)))
  (call $expect (str "open.libc_style.no_write") (i32.const 0)
    (i32.wrap_i64 (i64.and (call $base (local.get $g)) (global.get $RIGHT_FD_WRITE))))
  ;; through a subdirectory: its inheriting rights came from $fd's, so a
  ;; file in it cannot be opened for writing either
  (call $ok (str "open.subdir") (call $path_open (local.get $fd) (i32.const 0) (str "d") (global.get $O_DIRECTORY)
    (call $base (local.get $fd)) (call $inh (local.get $fd)) (i32.const 0) (global.get $OUT)))
  (local.set $g (i32.load (global.get $OUT)))
  (call $expect (str "open.subdir.write") (global.get $NOTCAPABLE)
    (call $path_open (local.get $g) (i32.const 0) (str "x") (i32.const 0)
      (global.get $RIGHT_FD_WRITE) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $ok (str "open.subdir.read") (call $path_open (local.get $g) (i32.const 0) (str "x") (i32.const 0)
    (global.get $RIGHT_FD_READ) (i64.const 0) (i32.const 0) (global.get $OUT)))
  ;; FDFLAGS_DSYNC needs FD_DATASYNC among the inheriting rights
  (call $drop_inh (local.get $fd) (global.get $RIGHT_FD_DATASYNC))
  (call $expect (str "open.dsync") (global.get $NOTCAPABLE)
    (call $path_open (local.get $fd) (i32.const 0) (str "rf") (i32.const 0)
      (global.get $RIGHT_FD_READ) (i64.const 0) (i32.const 2) (global.get $OUT)))
  ;; a narrowing can never be undone
  (call $expect (str "widen") (global.get $NOTCAPABLE)
    (call $fd_fdstat_set_rights (local.get $fd) (call $base (local.get $fd))
      (i64.or (call $inh (local.get $fd)) (global.get $RIGHT_FD_WRITE))))
"#,
    );
}

/// wasi-testsuite `fd_fdstat_set_rights`: a narrowing is reported and
/// holds, and rights cannot be granted back.
#[test]
fn suite_fd_fdstat_set_rights_narrowing_holds() {
    run_checked(
        "suite_set_rights",
        r#"
  (call $ok (str "create") (call $path_open (i32.const 3) (i32.const 0) (str "file.cleanup") (global.get $O_CREAT)
    (i64.or (i64.or (global.get $RIGHT_FD_READ) (global.get $RIGHT_FD_WRITE))
            (i64.or (global.get $RIGHT_FD_SEEK) (global.get $RIGHT_FD_TELL)))
    (i64.const 0) (i32.const 0) (global.get $OUT)))
  (local.set $fd (i32.load (global.get $OUT)))
  (call $ok (str "write") (call $write (local.get $fd) (str "\00\01\02\03")))
  (call $ok (str "seek") (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (global.get $OUT64)))
  (call $ok (str "read") (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $expect (str "read.n") (i32.const 4) (i32.load (global.get $OUT)))
  (call $drop (local.get $fd) (i64.or (global.get $RIGHT_FD_READ) (global.get $RIGHT_FD_WRITE)))
  (call $expect (str "narrowed.no_read_write") (i32.const 0)
    (i32.wrap_i64 (i64.and (call $base (local.get $fd)) (i64.or (global.get $RIGHT_FD_READ) (global.get $RIGHT_FD_WRITE)))))
  (call $expect (str "narrowed.seek_kept") (i32.const 4)
    (i32.wrap_i64 (i64.and (call $base (local.get $fd)) (global.get $RIGHT_FD_SEEK))))
  (call $expect (str "read.narrowed") (global.get $NOTCAPABLE)
    (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $expect (str "write.narrowed") (global.get $NOTCAPABLE) (call $write (local.get $fd) (str "x")))
  (call $expect (str "regrant") (global.get $NOTCAPABLE)
    (call $fd_fdstat_set_rights (local.get $fd)
      (i64.or (call $base (local.get $fd)) (i64.const 0x66)) (i64.or (call $inh (local.get $fd)) (i64.const 0x66))))
  (call $ok (str "close") (call $fd_close (local.get $fd)))
  (call $ok (str "unlink") (call $path_unlink_file (i32.const 3) (str "file.cleanup")))
"#,
    );
}

/// wasi-testsuite `truncation_rights`: O_TRUNC needs the directory's
/// PATH_FILESTAT_SET_SIZE, not FD_FILESTAT_SET_SIZE.
#[test]
fn suite_truncation_needs_path_filestat_set_size() {
    run_checked(
        "suite_truncation",
        r#"
  (local.set $fd (call $root))
  (call $ok (str "create") (call $path_open (local.get $fd) (i32.const 0) (str "file") (global.get $O_CREAT)
    (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $expect (str "dir.no_fd_set_size") (i32.const 0)
    (i32.wrap_i64 (i64.and (call $base (local.get $fd)) (global.get $RIGHT_FD_FILESTAT_SET_SIZE))))
  (call $expect (str "dir.path_set_size") (i32.const 1)
    (i64.ne (i64.and (call $base (local.get $fd)) (global.get $RIGHT_PATH_FILESTAT_SET_SIZE)) (i64.const 0)))
  (call $ok (str "trunc") (call $path_open (local.get $fd) (i32.const 0) (str "file") (global.get $O_TRUNC)
    (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $drop_inh (local.get $fd) (global.get $RIGHT_FD_FILESTAT_SET_SIZE))
  (call $ok (str "trunc.without_fd_set_size") (call $path_open (local.get $fd) (i32.const 0) (str "file") (global.get $O_TRUNC)
    (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $drop (local.get $fd) (global.get $RIGHT_PATH_FILESTAT_SET_SIZE))
  (call $expect (str "dropped") (i32.const 0)
    (i32.wrap_i64 (i64.shr_u (i64.and (call $base (local.get $fd)) (global.get $RIGHT_PATH_FILESTAT_SET_SIZE)) (i64.const 19))))
  (call $mkfile (str "file") (str "kept"))
  (call $expect (str "trunc.without_path_set_size") (global.get $NOTCAPABLE)
    (call $path_open (local.get $fd) (i32.const 0) (str "file") (global.get $O_TRUNC)
      (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  ;; and nothing was truncated
  (call $ok (str "stat") (call $path_filestat_get (i32.const 3) (i32.const 0) (str "file") (global.get $BUF)))
  (call $expect (str "stat.size") (i32.const 4) (i32.load (i32.add (global.get $BUF) (i32.const 32))))
  (call $ok (str "unlink") (call $path_unlink_file (local.get $fd) (str "file")))
"#,
    );
}

/// wasi-testsuite `path_open_preopen`: a preopen has the rights userland
/// expects, and `.` opens with its own rights without O_DIRECTORY.
#[test]
fn suite_path_open_dot_with_the_preopens_rights() {
    // The rights wasi-testsuite requires of a preopen's base and inheriting.
    let base: u64 = 0x200
        | 0x400
        | 0x800
        | 0x1000
        | 0x2000
        | 0x4000
        | 0x8000
        | 0x10000
        | 0x20000
        | 0x1000000
        | 0x2000000
        | 0x4000000
        | 0x40000
        | 0x100000
        | 0x200000
        | 0x800000;
    let inheriting: u64 = base
        | 0x1
        | 0x2
        | 0x4
        | 0x8
        | 0x10
        | 0x20
        | 0x40
        | 0x80
        | 0x100
        | 0x200000
        | 0x400000
        | 0x800000
        | 0x8000000;
    run_checked(
        "suite_preopen",
        &format!(
            r#"
  (call $expect (str "preopen.base") (i32.const 1)
    (i64.eq (i64.and (call $base (i32.const 3)) (i64.const {base})) (i64.const {base})))
  (call $expect (str "preopen.inheriting") (i32.const 1)
    (i64.eq (i64.and (call $inh (i32.const 3)) (i64.const {inheriting})) (i64.const {inheriting})))
  (call $ok (str "dot.same_rights") (call $path_open (i32.const 3) (i32.const 0) (str ".") (i32.const 0)
    (call $base (i32.const 3)) (call $inh (i32.const 3)) (i32.const 0) (global.get $OUT)))
  (call $ok (str "dot.same_rights.is_dir") (call $fd_fdstat_get (i32.load (global.get $OUT)) (global.get $BUF)))
  (call $expect (str "dot.same_rights.filetype") (i32.const 3) (i32.load8_u (global.get $BUF)))
  (call $ok (str "dot.no_rights") (call $path_open (i32.const 3) (i32.const 0) (str ".") (i32.const 0)
    (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $ok (str "dot.dir.no_rights") (call $path_open (i32.const 3) (i32.const 0) (str ".") (global.get $O_DIRECTORY)
    (i64.const 0) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $ok (str "dot.dir.read") (call $path_open (i32.const 3) (i32.const 0) (str ".") (global.get $O_DIRECTORY)
    (global.get $RIGHT_FD_READ) (i64.const 0) (i32.const 0) (global.get $OUT)))
  (call $expect (str "dot.dir.read_write") (global.get $ISDIR)
    (call $path_open (i32.const 3) (i32.const 0) (str ".") (global.get $O_DIRECTORY)
      (i64.or (global.get $RIGHT_FD_READ) (global.get $RIGHT_FD_WRITE)) (i64.const 0) (i32.const 0) (global.get $OUT)))
"#
        ),
    );
}

/// Sockets: a listener's SOCK_ACCEPT, a connection's FD_READ (`sock_recv`,
/// `fd_read`), FD_WRITE (`sock_send`) and SOCK_SHUTDOWN, and a connection
/// gets no more than the listener's inheriting rights.
#[test]
fn socket_rights_hold() {
    let hub = Arc::new(BufferHub::new());
    hub.net_add_service("svc");
    hub.net_add_service("svc2");
    let dyn_hub: Arc<dyn ServiceHub> = hub.clone();
    let services = Services {
        hub: dyn_hub,
        ports: vec!["svc".into()],
    };
    let mut ctx = WasiCtx::new_with_services(WasiOptions::default(), Some(services)).unwrap();
    const LISTENER: u32 = 3;
    const NONBLOCK: u16 = 1 << 2;
    let notcapable = Some(NOTCAPABLE);
    let errno = |r: Result<u32, meshnode::dock::wasi::abi::Errno>| r.err().map(|e| e.0);
    // A non-blocking listener with nobody waiting: EAGAIN, past the rights
    // check.
    ctx.fd_fdstat_set_flags(LISTENER, NONBLOCK).unwrap();
    assert_eq!(errno(ctx.sock_accept(LISTENER, NONBLOCK, &[])), Some(6));
    let (_, _, base, inheriting) = ctx.fd_fdstat(LISTENER).unwrap();
    ctx.fd_fdstat_set_rights(LISTENER, base & !(1 << 29), inheriting)
        .unwrap();
    assert_eq!(errno(ctx.sock_accept(LISTENER, NONBLOCK, &[])), notcapable);
    // and cannot be granted back
    assert_eq!(
        ctx.fd_fdstat_set_rights(LISTENER, base, inheriting)
            .err()
            .map(|e| e.0),
        notcapable
    );

    // A connection through a listener whose inheriting rights lack FD_WRITE.
    let mut ctx = {
        let services = Services {
            hub: hub.clone(),
            ports: vec!["svc2".into()],
        };
        WasiCtx::new_with_services(WasiOptions::default(), Some(services)).unwrap()
    };
    ctx.fd_fdstat_set_flags(LISTENER, NONBLOCK).unwrap();
    ctx.fd_fdstat_set_rights(LISTENER, base, inheriting & !0x40)
        .unwrap();
    hub.net_open("svc2", 1).unwrap();
    hub.net_deliver(1, b"hello").unwrap();
    let conn = ctx.sock_accept(LISTENER, NONBLOCK, &[]).unwrap();
    let (_, _, conn_base, _) = ctx.fd_fdstat(conn).unwrap();
    assert_eq!(conn_base & 0x40, 0, "FD_WRITE was not passed on");
    assert_eq!(
        ctx.sock_send(conn, b"x", &[]).err().map(|e| e.0),
        notcapable
    );
    assert_eq!(ctx.fd_write(conn, b"x", &[]).err().map(|e| e.0), notcapable);
    assert_eq!(ctx.sock_recv(conn, 2, 0, &[]).unwrap(), b"he");
    ctx.fd_fdstat_set_rights(conn, conn_base & !0x2, 0).unwrap();
    assert_eq!(
        ctx.sock_recv(conn, 2, 0, &[]).err().map(|e| e.0),
        notcapable
    );
    assert_eq!(ctx.fd_read(conn, 2, &[]).err().map(|e| e.0), notcapable);
    ctx.sock_shutdown(conn, 2).unwrap();
    ctx.fd_fdstat_set_rights(conn, conn_base & !0x2 & !(1 << 28), 0)
        .unwrap();
    assert_eq!(ctx.sock_shutdown(conn, 1).err().map(|e| e.0), notcapable);
}

/// Rights travel in the WASI state: a descriptor narrowed before a capture
/// stays narrowed after the state is CBOR-encoded, decoded and rebuilt
/// against another directory, mid-run, as a migration does.
#[test]
fn a_narrowed_descriptor_stays_narrowed_across_capture_and_rebuild() {
    let body = r#"
  (local.set $fd (call $open (str "rf") (i32.const 0) (global.get $R_ALL) (i32.const 0)))
  (call $ok (str "before.read") (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $drop (local.get $fd) (global.get $RIGHT_FD_READ))
  (call $print (str "narrowed\n"))
  ;; spin across several fuel slices, so the state is captured and rebuilt
  (local.set $g (i32.const 3000000))
  (loop $spin
    (local.set $g (i32.sub (local.get $g) (i32.const 1)))
    (br_if $spin (local.get $g)))
  (call $expect (str "after.base_read") (i32.const 0)
    (i32.wrap_i64 (i64.and (call $base (local.get $fd)) (global.get $RIGHT_FD_READ))))
  (call $expect (str "after.read") (global.get $NOTCAPABLE)
    (call $fd_read (local.get $fd) (global.get $IOV) (i32.const 1) (global.get $OUT)))
  (call $ok (str "after.seek") (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (global.get $OUT64)))
"#;
    let mut rebuilt_while_narrowed = 0;
    let (exit, stdout) = run_vessel("narrowed", body, Some(200_000), |vessel, stdio, sandbox| {
        let state = vessel.wasi_mut().capture_state().unwrap();
        let decoded: protocol::wasi::WasiState =
            protocol::cbor::decode(&protocol::cbor::encode(&state)).unwrap();
        let next = tempfile::tempdir().unwrap();
        crate::support::copy_tree(sandbox.path(), next.path());
        let rebuilt = WasiCtx::rebuild(
            decoded.clone(),
            &sandbox_mapping(next.path()),
            stdio.clone(),
        )
        .unwrap();
        drop(vessel.replace_wasi(rebuilt));
        *sandbox = next;
        let narrowed = decoded.fds.values().any(|d| {
            matches!(&d.kind, protocol::wasi::DescriptorKind::File { path, .. } if path == b"rf")
                && d.rights_base & 0x2 == 0
        });
        if narrowed {
            rebuilt_while_narrowed += 1;
        }
    });
    assert_passed("narrowed", &exit, &stdout);
    assert!(
        rebuilt_while_narrowed >= 2,
        "the state was rebuilt {rebuilt_while_narrowed} times while narrowed"
    );
}

/// Ordinary C under narrowed rights: wasi-libc asks `path_open` for what
/// the directory can pass on, so reading keeps working after the preopen
/// drops FD_WRITE from its inheriting rights, while writing (also through
/// stdio's buffered `fflush`) and creating without PATH_CREATE_FILE say
/// ENOTCAPABLE (wasi-libc's `write()` alone reports it as EBADF, as POSIX
/// does for a descriptor not open for writing).
#[test]
fn a_c_program_keeps_working_within_its_narrowed_rights() {
    let wasm = crate::support::compile_c("node/tests/it/wasi_rights/libc_narrowed.c", &[]);
    let config = DockConfig::default();
    let engine = config.engine();
    let module = meshnode::dock::load_module(&engine, &wasm).expect("load module");
    let out = Arc::new(Mutex::new(Vec::new()));
    let sandbox = tempfile::tempdir().unwrap();
    let wasi = WasiCtx::new(WasiOptions {
        args: vec![b"libc_narrowed".to_vec()],
        dirs: sandbox_mapping(sandbox.path()),
        stdio: Stdio {
            stdout: OutputSink::Buffer(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let mut vessel = Vessel::new(&engine, &module, wasi, &config).unwrap();
    assert_eq!(vessel.run_to_end(), Exit::Code(0));
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    assert_eq!(
        stdout,
        "create a.txt: ok\n\
         write a.txt: ok\n\
         open a.txt read-only: ok\n\
         read a.txt: ok\n\
         read <hello>\n\
         opendir: ok\n\
         open a.txt write-only: ok\n\
         write a.txt without FD_WRITE: errno 8\n\
         fd_write without FD_WRITE: 76\n\
         fopen a.txt append: ok\n\
         fflush without FD_WRITE: errno 76\n\
         create b.txt without PATH_CREATE_FILE: errno 76\n\
         unlink a.txt: ok\n\
         ENOTCAPABLE is 76\n"
    );
    assert!(!sandbox.path().join("b.txt").exists());
    assert!(!sandbox.path().join("a.txt").exists());
}
