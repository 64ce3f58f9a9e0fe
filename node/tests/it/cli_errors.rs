//! Bad inputs to `meshnode run`: each exits non-zero with one line on stderr
//! that names what failed and why, and never panics.

use std::path::Path;
use std::process::{Command, Output};

fn meshnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(args)
        .output()
        .expect("run meshnode")
}

/// Asserts a failed run: non-zero exit, exactly one stderr line that contains
/// every one of `needles`, and no panic.
fn assert_one_line_error(what: &str, out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what}: exited successfully; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{what}: expected one stderr line, got:\n{stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{what}: stderr does not mention {n:?}: {stderr}"
        );
    }
    stderr
}

fn write_wat(dir: &Path, name: &str, wat: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

const OK_MODULE: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

#[test]
fn missing_file() {
    let out = meshnode(&["run", "/nonexistent/meshnode-test/app.wasm"]);
    assert_one_line_error(
        "missing file",
        &out,
        &["/nonexistent/meshnode-test/app.wasm", "No such file"],
    );
}

#[test]
fn not_wasm() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.wasm");
    std::fs::write(&path, "#!/bin/sh\necho this is a shell script\n").unwrap();
    let out = meshnode(&["run", path.to_str().unwrap()]);
    assert_one_line_error("text file", &out, &["app.wasm", "not a WebAssembly module"]);

    std::fs::write(&path, "").unwrap();
    let out = meshnode(&["run", path.to_str().unwrap()]);
    assert_one_line_error(
        "empty file",
        &out,
        &["app.wasm", "not a WebAssembly module"],
    );

    let out = meshnode(&["run", tmp.path().to_str().unwrap()]);
    assert_one_line_error("a directory", &out, &["cannot read"]);
}

#[test]
fn truncated_module() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 3))))"#,
    )
    .unwrap();
    for cut in [
        4,
        8,
        9,
        12,
        20,
        bytes.len() / 2,
        bytes.len() / 2 + 1,
        bytes.len() - 1,
    ] {
        let path = tmp.path().join("cut.wasm");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let out = meshnode(&["run", path.to_str().unwrap()]);
        let what = format!("module cut to {cut} of {} bytes", bytes.len());
        // A cut at a section boundary leaves a valid module without `_start`.
        let valid = wasmparser::Validator::new()
            .validate_all(&bytes[..cut])
            .is_ok();
        let needle = if valid {
            "no `_start`"
        } else {
            "invalid WebAssembly module"
        };
        assert_one_line_error(&what, &out, &["cut.wasm", needle]);
    }
}

#[test]
fn unknown_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_wat(
        tmp.path(),
        "env.wasm",
        r#"(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_one_line_error(
        "env.foo",
        &meshnode(&["run", &p]),
        &["env.wasm", "env.foo", "does not provide"],
    );

    let p = write_wat(
        tmp.path(),
        "nosuch.wasm",
        r#"(module (import "wasi_snapshot_preview1" "fd_teleport" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_one_line_error(
        "unknown wasi function",
        &meshnode(&["run", &p]),
        &["wasi_snapshot_preview1.fd_teleport"],
    );

    let p = write_wat(
        tmp.path(),
        "global.wasm",
        r#"(module (import "env" "g" (global i32)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_one_line_error(
        "imported global",
        &meshnode(&["run", &p]),
        &["env.g", "global"],
    );

    // A preview1 function with the wrong signature.
    let p = write_wat(
        tmp.path(),
        "sig.wasm",
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
                   (memory (export "memory") 1) (func (export "_start")))"#,
    );
    assert_one_line_error(
        "wrong signature",
        &meshnode(&["run", &p]),
        &["sig.wasm", "fd_write"],
    );
}

#[test]
fn no_start_function() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_wat(
        tmp.path(),
        "lib.wasm",
        r#"(module (memory (export "memory") 1) (func (export "main")))"#,
    );
    assert_one_line_error(
        "no _start",
        &meshnode(&["run", &p]),
        &["lib.wasm", "_start"],
    );
    // `_start` that is not a function
    let p = write_wat(
        tmp.path(),
        "glob.wasm",
        r#"(module (global (export "_start") i32 (i32.const 0)))"#,
    );
    assert_one_line_error(
        "_start is a global",
        &meshnode(&["run", &p]),
        &["glob.wasm", "_start"],
    );
}

#[test]
fn traps() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unreachable",
            r#"(func (export "_start") unreachable)"#,
            "unreachable",
        ),
        (
            "divide",
            r#"(func (export "_start") (drop (i32.div_s (i32.const 1) (i32.const 0))))"#,
            "divide by zero",
        ),
        (
            "oob",
            r#"(func (export "_start") (drop (i32.load (i32.const 0x7fffffff))))"#,
            "out of bounds",
        ),
        (
            "recursion",
            r#"(func $f (export "_start") (call $f))"#,
            "stack",
        ),
    ];
    for (name, func, needle) in cases {
        let p = write_wat(
            tmp.path(),
            &format!("{name}.wasm"),
            &format!("(module (memory (export \"memory\") 1) {func})"),
        );
        let out = meshnode(&["run", &p]);
        let line = assert_one_line_error(name, &out, &[&format!("{name}.wasm"), "trap", needle]);
        assert!(line.to_lowercase().contains(needle), "{name}: {line}");
    }
    // A WASI call from a module without an exported memory traps cleanly.
    let p = write_wat(
        tmp.path(),
        "nomem.wasm",
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
                   (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))))"#,
    );
    assert_one_line_error(
        "no memory",
        &meshnode(&["run", &p]),
        &["nomem.wasm", "memory"],
    );
}

#[test]
fn bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_wat(tmp.path(), "ok.wasm", OK_MODULE);
    let out = meshnode(&["run", "--dir", "/nonexistent/meshnode-dir", &p]);
    assert_one_line_error("missing --dir", &out, &["/nonexistent/meshnode-dir"]);
    let out = meshnode(&["run", "--env", "=x", &p]);
    assert_one_line_error("empty env name", &out, &["--env"]);
    // and the good module runs
    let out = meshnode(&["run", &p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regression: `proc_exit(256)` made `meshnode run` exit 0, because a
/// process status keeps only 8 bits. It must not look like success.
#[test]
fn proc_exit_above_255_is_not_success() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_wat(
        dir.path(),
        "exit256.wasm",
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 256))))"#,
    );
    let out = meshnode(&["run", &wasm]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error("proc_exit(256)", &out, &["256", "exit status"]);
}

/// A module the rewriter refuses (here: it mutates a table) still runs with
/// `meshnode run`, as given, with a note that it cannot be migrated; asking
/// for a capture of it is a clear error.
#[test]
fn unmigratable_module_runs_as_given_and_refuses_capture() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_wat(
        dir.path(),
        "tableset.wasm",
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (table 2 funcref)
          (func $seven (result i32) (i32.const 7))
          (elem declare func $seven)
          (type $r (func (result i32)))
          (func (export "_start")
            (table.set (i32.const 1) (ref.func $seven))
            (call $exit (call_indirect (type $r) (i32.const 1)))))"#,
    );
    let out = meshnode(&["run", &wasm]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr: {stderr}");
    assert!(
        stderr.contains("not migratable") && stderr.contains("table"),
        "{stderr}"
    );
    let snaps = dir.path().join("snaps");
    let out = meshnode(&[
        "run",
        "--checkpoint-at-point",
        "1",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
        &wasm,
    ]);
    assert_one_line_error(
        "capture of an unmigratable module",
        &out,
        &["cannot make it migratable", "table"],
    );
}

/// Index of the function that the `name` section of `wasm` calls `name`, and
/// whether `wasm` has a `name` section at all.
fn named_func(wasm: &[u8], name: &str) -> (Option<u32>, bool) {
    use wasmparser::{KnownCustom, Name, Parser, Payload};
    let mut has_names = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let Payload::CustomSection(section) = payload.unwrap() else {
            continue;
        };
        let KnownCustom::Name(reader) = section.as_known() else {
            continue;
        };
        has_names = true;
        for sub in reader {
            if let Name::Function(map) = sub.unwrap() {
                for naming in map {
                    let naming = naming.unwrap();
                    if naming.name == name {
                        return (Some(naming.index), true);
                    }
                }
            }
        }
    }
    (None, has_names)
}

/// Runs `meshnode run` on `wasm` instrumented (the default) and as given
/// (`--no-rewrite`); both must exit 134 with one stderr line containing
/// `expected`.
fn assert_trap_line(what: &str, wasm: &str, expected: &str) {
    for args in [vec!["run", wasm], vec!["run", "--no-rewrite", wasm]] {
        let what = format!("{what} ({})", args.join(" "));
        let out = meshnode(&args);
        assert_eq!(
            out.status.code(),
            Some(134),
            "{what}: stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_one_line_error(&what, &out, &[expected]);
    }
}

/// A trap names the wasm function it happened in: by the module's `name`
/// section, with its index in the module as deployed (not the rewriter's
/// shifted one), whether the module runs instrumented or as given.
#[test]
fn trap_names_its_function() {
    // -O0: at -O1 and above, clang runs binaryen's wasm-opt when it is on
    // the PATH, and wasm-opt drops the name section.
    let wasm = crate::support::compile_c("node/tests/programs/trap_in_function.c", &["-O0"]);
    let (index, _) = named_func(&std::fs::read(&wasm).unwrap(), "crash_here");
    let index = index.expect("clang names crash_here in the name section");
    let path = wasm.to_str().unwrap();
    assert_trap_line(
        "named",
        path,
        &format!(
            ".wasm: wasm trap: wasm `unreachable` instruction executed in function `crash_here` (func[{index}]) (while running _start)"
        ),
    );
    let out = meshnode(&["run", path]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "before the trap: 285\n"
    );

    // Without a name section (stripped at link time), the same function is
    // named by its index: stripping renumbers nothing.
    let stripped = crate::support::compile_c(
        "node/tests/programs/trap_in_function.c",
        &["-O0", "-Wl,--strip-all"],
    );
    let (_, has_names) = named_func(&std::fs::read(&stripped).unwrap(), "crash_here");
    assert!(!has_names, "--strip-all left a name section");
    assert_trap_line(
        "stripped",
        stripped.to_str().unwrap(),
        &format!("instruction executed in func[{index}] (while running _start)"),
    );
}

/// Hand-written modules without names: the index counts imports first;
/// a trap in a callee names the callee, a trap in a start function says so.
#[test]
fn trap_in_unnamed_module_names_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            // func 0 is the import, 1 is _start, 2 traps.
            "callee",
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start") (call 2) (call 0 (i32.const 0)))
                 (func (drop (i32.div_u (i32.const 1) (i32.const 0)))))"#,
            "integer divide by zero in func[2] (while running _start)",
        ),
        (
            "start",
            r#"(module
                 (memory (export "memory") 1)
                 (func (export "_start"))
                 (func unreachable)
                 (start 1))"#,
            "instruction executed in func[1] (while running the start function)",
        ),
        (
            // Named by wat: `$f` recursing until the call stack is exhausted.
            "recursion",
            r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#,
            "call stack exhausted in function `f` (func[0]) (while running _start)",
        ),
    ];
    for (name, wat, expected) in cases {
        let p = write_wat(tmp.path(), &format!("{name}.wasm"), wat);
        let has_names = named_func(&std::fs::read(&p).unwrap(), "").1;
        assert_eq!(has_names, name == "recursion", "{name}: name section");
        assert_trap_line(name, &p, expected);
    }
}

/// A refusal from a node reaches the user as one line with its code and
/// its detail: `meshnode: the node refused: CODE: DETAIL`.
#[test]
fn a_refusal_prints_its_code_and_detail() {
    let _cpu = crate::support::shared_cpu();
    let user = crate::mesh::User::new();
    let mut a = user.start("a", &[], &[]);
    a.wait_ready();
    let out = user.run(&["stop", "--data-dir", a.dir(), "no-such-vessel"]);
    assert_one_line_error(
        "stop of a vessel that does not exist",
        &out,
        &[
            "the node refused: unknown-vessel: ",
            "no vessel `no-such-vessel` in the mesh",
        ],
    );
}
