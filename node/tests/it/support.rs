//! Shared test helpers: building C programs to wasm32-wasi, and comparing
//! directory trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Whether this is a CI run (`CI` set, and not to `false` or `0`, as CI
/// services and `.ci/run` set it). There a reference or tool that a test
/// compares against must be present: a run that skips it is not green.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Part of `test` cannot run because `missing` (what, and how to get it) is
/// not here. Under CI that fails the test, naming it. Elsewhere the test says
/// so on stderr and appends `test: missing` to the file `MESHNODE_SKIP_LOG`
/// names (scripts/test-all.sh lists those lines in its summary, since cargo
/// test hides a passing test's output), and the caller skips that part.
#[track_caller]
pub fn missing_reference(test: &str, missing: &str) {
    if in_ci() {
        panic!("{test}: {missing}. CI must run every comparison (bash scripts/test-all.sh installs what the tests need)");
    }
    eprintln!("SKIP {test}: {missing}");
    if let Some(log) = std::env::var_os("MESHNODE_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {}\n", missing.replace('\n', " "));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "cannot append to MESHNODE_SKIP_LOG={}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// Compiles a C source (path relative to the repository root) to wasm32-wasi
/// with `clang -O2` and `extra_flags`, caching the result under the cargo
/// target dir until the source changes. A missing toolchain is a failure
/// that says what to install: CI installs it, so it must be there.
pub fn compile_c(source: &str, extra_flags: &[&str]) -> PathBuf {
    let src = repo_root().join(source);
    let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
    let tag = if extra_flags.is_empty() {
        String::new()
    } else {
        format!("-{:08x}", fnv(extra_flags.join(" ").as_bytes()))
    };
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{stem}{tag}.wasm"));
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        let result = Command::new("clang")
            .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2"])
            .args(extra_flags)
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .output();
        match result {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "clang failed on {source}: {}\n(install Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32: bash scripts/test-all.sh does)",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "cannot run clang ({e}); install Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (bash scripts/test-all.sh does)"
            ),
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    })
}

/// What a directory tree holds: relative path → file contents, symlink
/// target, or directory marker.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    File(Vec<u8>),
    Symlink(PathBuf),
    Dir,
}

pub fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, Node::Symlink(std::fs::read_link(&p).unwrap()));
            } else if ft.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &p, out);
            } else {
                out.insert(rel, Node::File(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Copies a tree of plain files, directories and symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (rel, node) in tree(from) {
        let dst = to.join(&rel);
        match node {
            Node::Dir => std::fs::create_dir_all(&dst).unwrap(),
            Node::File(bytes) => std::fs::write(&dst, bytes).unwrap(),
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &dst).unwrap(),
        }
    }
}

/// Tests in this binary run in parallel threads. The tests that load the
/// CPU (many processes, long programs) take this lock shared. None takes it
/// exclusively since wall-clock fairness became a benchmark
/// (`examples/dock_fairness.rs`); a test that needs the CPU to itself would
/// take `CPU.write()`.
static CPU: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that loads the CPU heavily.
pub fn shared_cpu() -> std::sync::RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|p| p.into_inner())
}
