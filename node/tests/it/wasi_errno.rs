//! errno edge cases of every preview1 function, as WAT programs.
//!
//! Each `node/tests/wat/errno_*.wat` holds the body of one program; the loader
//! here splices it into `prelude.wat`, which imports every preview1 function
//! and prints `label=errno` for each check (with ` MISMATCH want=N` when the
//! errno is not the expected one). The expected values were checked against
//! wasmtime (the `wasmtime` PyPI package) and Node's `node:wasi` with
//! `node/tests/wat/refcheck.py`; where those references disagree, the WAT
//! says which one meshnode follows, and docs/wasi.md has the table.

use std::path::Path;
use std::sync::{Arc, Mutex};

use meshnode::dock::wasi::{DirMapping, OutputSink, Stdio, WasiCtx, WasiOptions};
use meshnode::dock::{DockConfig, Exit, Mode, Vessel, VesselModule};

/// Where the WAT files live.
pub const WAT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wat");

/// Where `(str "...")` literals are placed in memory (see prelude.wat).
const STRINGS_AT: u32 = 16384;

/// Length in bytes of the contents of a WAT string literal.
fn wat_len(lit: &str) -> u32 {
    let b = lit.as_bytes();
    let (mut n, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' {
            i += if b"tnr\"'\\".contains(&b[i + 1]) {
                2
            } else {
                3
            };
        } else {
            i += 1;
        }
        n += 1;
    }
    n
}

/// The prelude with `test` spliced in and every `(str "...")` placed in a data
/// segment. The Python twin is `expand` in node/tests/wat/refcheck.py.
pub fn expand(test: &str) -> String {
    let prelude =
        std::fs::read_to_string(Path::new(WAT_DIR).join("prelude.wat")).expect("read prelude.wat");
    let text = prelude.replace(";; {{TEST}}", test);
    let mut out = String::with_capacity(text.len());
    let mut placed: Vec<(String, u32)> = Vec::new();
    let mut data = Vec::new();
    let mut at = STRINGS_AT;
    let mut rest = text.as_str();
    while let Some(start) = rest.find("(str \"") {
        out.push_str(&rest[..start]);
        let body = &rest[start + 6..];
        // Find the closing quote, skipping escapes.
        let b = body.as_bytes();
        let mut i = 0;
        while b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        let lit = &body[..i];
        assert_eq!(&body[i..i + 2], "\")", "(str ...) takes one literal");
        let len = wat_len(lit);
        let ptr = match placed.iter().find(|(l, _)| l == lit) {
            Some(&(_, p)) => p,
            None => {
                placed.push((lit.to_string(), at));
                data.push(format!("(data (i32.const {at}) \"{lit}\")"));
                at += len;
                at - len
            }
        };
        out.push_str(&format!("(i32.const {ptr}) (i32.const {len})"));
        rest = &body[i + 2..];
    }
    out.push_str(rest);
    out.replace(";; {{DATA}}", &data.join("\n  "))
}

/// What one run printed and how it ended.
pub struct Run {
    pub stdout: String,
    pub exit: Exit,
}

/// Runs WAT text as a vessel with `sandbox` preopened at `/sandbox` (fd 3).
pub fn run_wat_text(name: &str, wat: &str, sandbox: &Path) -> Run {
    let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = DockConfig::default();
    let engine = config.engine();
    let module =
        VesselModule::prepare(&engine, Path::new(name), bytes, Mode::Plain).expect("load module");
    let out = Arc::new(Mutex::new(Vec::new()));
    let wasi = WasiCtx::new(WasiOptions {
        args: vec![name.as_bytes().to_vec()],
        env: Vec::new(),
        dirs: vec![DirMapping {
            host: sandbox.to_path_buf(),
            guest: "/sandbox".into(),
        }],
        stdio: Stdio {
            stdout: OutputSink::Buffer(out.clone()),
            ..Default::default()
        },
    })
    .expect("wasi context");
    let mut vessel = Vessel::new(&engine, &module, wasi, &config).expect("instantiate");
    let exit = vessel.run_to_end();
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    Run { stdout, exit }
}

/// Runs a test body through the prelude in a fresh empty sandbox.
pub fn run_body(name: &str, body: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    run_wat_text(name, &expand(body), &sandbox)
}

/// Asserts that every check of a run got its expected errno.
pub fn assert_all_expected(name: &str, run: &Run) {
    let bad: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("MISMATCH") || l.contains("SETUP"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: unexpected errnos:\n{}\n\nfull output:\n{}",
        bad.join("\n"),
        run.stdout
    );
    assert!(
        run.stdout.contains("fails=0"),
        "{name} did not finish: {:?}\n{}",
        run.exit,
        run.stdout
    );
    assert_eq!(run.exit, Exit::Code(0), "{name}");
}

fn run_file(file: &str) {
    let body = std::fs::read_to_string(Path::new(WAT_DIR).join(file)).unwrap();
    let run = run_body(file, &body);
    assert_all_expected(file, &run);
    // Every check ran (a trap would have cut the list short).
    let checks = run.stdout.lines().filter(|l| l.contains('=')).count();
    let expected = body.matches("(call $expect").count() + body.matches("(call $ok").count();
    assert_eq!(
        checks,
        expected + 1,
        "{file}: ran {checks} checks, the file has {expected}"
    );
}

#[test]
fn fd_functions() {
    run_file("errno_fd.wat");
}

#[test]
fn path_functions() {
    run_file("errno_path.wat");
}

#[test]
fn misc_functions() {
    run_file("errno_misc.wat");
}

/// `proc_exit` ends the vessel with its code, wherever it is called from,
/// and nothing after it runs.
#[test]
fn proc_exit_codes() {
    for code in [0u32, 1, 42, 125, 255] {
        let body = format!(
            r#"(func $main
                 (call $print (str "before\n"))
                 (call $helper)
                 (call $print (str "after\n")))
               (func $helper (call $proc_exit (i32.const {code})))"#
        );
        let run = run_body("proc_exit", &body);
        assert_eq!(run.exit, Exit::Code(code), "proc_exit({code})");
        assert_eq!(run.stdout, "before\n", "proc_exit({code})");
    }
}

/// `proc_raise` is not supported (preview1 dropped signals): ENOTSUP, as
/// wasmtime (Node really raises the signal).
#[test]
fn proc_raise_is_notsup() {
    let run = run_body(
        "proc_raise",
        r#"(func $main
             (call $expect (str "proc_raise.abrt") (global.get $NOTSUP) (call $proc_raise (i32.const 6))))"#,
    );
    assert_all_expected("proc_raise", &run);
}

/// Writes whose iovecs name the same memory over and over are bounded: the
/// host never buffers more than one write's worth (a short write), and a
/// list longer than IOV_MAX is EINVAL rather than a huge allocation.
#[test]
fn huge_iovec_totals_are_bounded() {
    let run = run_body(
        "iovecs",
        r#"(func $main
             (local $i i32) (local $fd i32)
             (local.set $fd (call $open (str "big") (global.get $O_CREAT) (global.get $R_ALL) (i32.const 0)))
             ;; 1024 iovecs, each the whole 128 KiB memory: 128 MiB named.
             (loop $fill
               (i32.store (i32.add (global.get $BIG) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0))
               (i32.store (i32.add (global.get $BIG) (i32.add (i32.mul (local.get $i) (i32.const 8)) (i32.const 4))) (global.get $END))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))
             (call $ok (str "fd_write.huge") (call $fd_write (local.get $fd) (global.get $BIG) (i32.const 1024) (global.get $OUT)))
             ;; a short write, of at most 16 MiB
             (call $expect (str "fd_write.huge.short") (i32.const 1)
               (i32.le_u (i32.load (global.get $OUT)) (i32.const 16777216)))
             (call $ok (str "fd_read.huge") (call $fd_pread (local.get $fd) (global.get $BIG) (i32.const 1024) (i64.const 0) (global.get $OUT)))
             (call $expect (str "fd_write.over_iov_max") (global.get $INVAL)
               (call $fd_write (local.get $fd) (global.get $BIG) (i32.const 1025) (global.get $OUT))))"#,
    );
    assert_all_expected("iovecs", &run);
}

/// Argument vectors near the end of memory: EFAULT, never a wrap-around.
#[test]
fn args_at_the_end_of_memory() {
    let run = run_body(
        "args_end",
        r#"(func $main
             ;; argv[0] pointer fits, its string does not
             (call $expect (str "args_get.buf_at_end") (global.get $FAULT)
               (call $args_get (global.get $BUF) (i32.sub (global.get $END) (i32.const 2))))
             (call $expect (str "args_get.ptrs_at_end") (global.get $FAULT)
               (call $args_get (i32.sub (global.get $END) (i32.const 2)) (global.get $BUF)))
             (call $expect (str "environ_get.ptrs_wrap") (i32.const 0)
               (call $environ_get (i32.const -4) (global.get $BUF))))"#,
    );
    assert_all_expected("args_end", &run);
}

/// docs/wasi.md has a row for every preview1 function meshnode provides.
#[test]
fn docs_list_every_function() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wasi.md")).unwrap();
    for f in meshnode::dock::wasi::FUNCTIONS {
        assert!(
            docs.contains(&format!("| `{f}` |")),
            "docs/wasi.md has no row for {f}"
        );
    }
}
