//! Differential tests of the C corpus (`tests/corpus/*.c`) against reference
//! runtimes.
//!
//! Every program is compiled with clang to wasm32-wasi twice (plain `-O2`, and
//! with the feature flags that newer toolchains use by default), then run by
//! `meshnode run`, by Node's `node:wasi` (`tests/refs/node_wasi.mjs`) and by
//! wasmtime (`tests/refs/wasmtime_run.py`, the `wasmtime` package on PyPI).
//! Each run gets a fresh host directory that holds the preopened `/sandbox`
//! (and `/data` where a program asks for it). Compared: stdout, stderr (not for
//! trapping programs), the exit code, and the files left in that host
//! directory (paths, types, contents, symlink targets).
//!
//! A program describes how it is run in `//@` lines at its top:
//!
//! ```text
//! //@ args: A B C                 program arguments (split on whitespace)
//! //@ env: K=V K2=V2              environment
//! //@ stdin: text\nwith escapes   stdin (\n, \t, \\ escapes)
//! //@ exit: 7                     expected exit code (default 0)
//! //@ trap                        must exit non-zero (a trap); stderr not compared
//! //@ dirs: /sandbox /data        guest directories to preopen (default /sandbox)
//! //@ setup: file P=TEXT | dir P | symlink P=TARGET
//!                                 host-side fixtures, P relative to the host
//!                                 directory that holds the preopens; {root}
//!                                 in a target is that directory's path
//! //@ known-diff REF PREFIX|PREFIX: REASON
//!                                 reference REF (node or wasmtime) is wrong on
//!                                 stdout lines starting with these prefixes;
//!                                 `*` instead of prefixes: on everything
//! //@ refs-disagree PREFIX|PREFIX: REASON
//!                                 the references disagree on these lines and
//!                                 both are defensible: meshnode must match one
//! //@ skip REF: REASON            do not run REF at all (it hangs, say)
//! ```
//!
//! A missing reference (Node >= 20 with `node:wasi`, or the python `wasmtime`
//! module) fails the tests under CI (`CI=true`), naming what is missing;
//! elsewhere it is skipped, said on stderr and logged for the summary of
//! scripts/test-all.sh (`support::missing_reference`). A missing clang or
//! wasi-libc is always a failure that names the Debian packages to install.
//!
//! Environment knobs: `MESHNODE_BIN` (binary under test, default the one
//! cargo built), `WASI_CC` (default `clang`), `WASI_SYSROOT` (default `/usr`),
//! `CORPUS_ONLY=name,name` (run only these programs), `CORPUS_JOBS` (parallel
//! runs, default 3).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// `tests/` at the top of the repository.
fn repo_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
}

/// Directory of the C test programs.
#[allow(dead_code)] // used by other test modules
pub(crate) fn corpus_dir() -> PathBuf {
    repo_tests_dir().join("corpus")
}

/// Directory of the CPU benchmark programs.
pub(crate) fn bench_programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("benches")
        .join("programs")
}

/// The two ways every program is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Flavor {
    /// `clang --target=wasm32-wasi -O2`
    Plain,
    /// plus `-mbulk-memory -mmultivalue -mreference-types -msign-ext -mnontrapping-fptoint`
    /// (and `-ftls-model=local-exec`, which clang 14 needs with bulk memory)
    Features,
}

impl Flavor {
    pub(crate) const ALL: [Flavor; 2] = [Flavor::Plain, Flavor::Features];

    fn name(self) -> &'static str {
        match self {
            Flavor::Plain => "plain",
            Flavor::Features => "features",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Flavor::Plain => &[],
            Flavor::Features => &[
                "-mbulk-memory",
                "-mmultivalue",
                "-mreference-types",
                "-msign-ext",
                "-mnontrapping-fptoint",
                // With bulk memory on, clang 14 lowers wasi-libc's
                // `_Thread_local errno` as real TLS and supports only this
                // model ("only -ftls-model=local-exec is supported").
                "-ftls-model=local-exec",
            ],
        }
    }
}

const INSTALL_HINT: &str = "install the wasm32-wasi C toolchain: \
     `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32` (Debian 12), \
     or point WASI_CC / WASI_SYSROOT at another clang and wasi-libc sysroot";

/// Names (without `.c`) of every corpus program, sorted.
#[allow(dead_code)] // used by other test modules
pub(crate) fn corpus_names() -> Vec<String> {
    c_files(&corpus_dir())
}

fn c_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".c").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The compiled plain-flavor wasm of corpus program `name` (e.g. "long_files").
/// Compiles on first use, and again whenever the source is newer.
#[allow(dead_code)] // used by other test modules
pub(crate) fn corpus_wasm(name: &str) -> PathBuf {
    corpus_wasm_flavor(name, Flavor::Plain)
}

/// The compiled wasm of corpus program `name` in the given flavor.
pub(crate) fn corpus_wasm_flavor(name: &str, flavor: Flavor) -> PathBuf {
    compile(&corpus_dir(), "corpus", name, flavor)
}

/// The compiled wasm of benchmark program `name` (benches/programs/NAME.c).
#[allow(dead_code)] // used by other test modules
pub(crate) fn bench_wasm(name: &str) -> PathBuf {
    compile(&bench_programs_dir(), "bench", name, Flavor::Plain)
}

fn cache_dir(kind: &str, flavor: Flavor) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wasm-c")
        .join(kind)
        .join(flavor.name())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn wasi_cc() -> String {
    std::env::var("WASI_CC").unwrap_or_else(|_| "clang".to_owned())
}

fn wasi_sysroot() -> String {
    std::env::var("WASI_SYSROOT").unwrap_or_else(|_| "/usr".to_owned())
}

fn check_clang() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let cc = wasi_cc();
        match Command::new(&cc).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "`{cc} --version` failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
            Err(e) => return Err(format!("cannot run `{cc}`: {e}")),
        }
        let header = Path::new(&wasi_sysroot()).join("include/wasm32-wasi/wasi/api.h");
        let header2 = Path::new(&wasi_sysroot()).join("include/wasi/api.h");
        if !header.exists() && !header2.exists() {
            return Err(format!(
                "wasi-libc not found ({} is missing)",
                header.display()
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("corpus: {e}; {INSTALL_HINT}");
    }
}

fn compile(src_dir: &Path, kind: &str, name: &str, flavor: Flavor) -> PathBuf {
    // One compile at a time per process: several tests may ask for the same
    // program at once, and the machine is small.
    static LOCK: Mutex<()> = Mutex::new(());
    let src = src_dir.join(format!("{name}.c"));
    assert!(src.exists(), "no such program: {}", src.display());
    let out_dir = cache_dir(kind, flavor);
    let out = out_dir.join(format!("{name}.wasm"));
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Rebuild when the program or any header beside it is newer.
    let newest_src = fs::read_dir(src_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h"))
        .chain(std::iter::once(src.clone()))
        .filter_map(|p| mtime(&p))
        .max();
    if let (Some(o), Some(s)) = (mtime(&out), newest_src) {
        if o >= s {
            return out;
        }
    }
    check_clang();
    fs::create_dir_all(&out_dir).unwrap();
    let tmp = out_dir.join(format!(".{name}.{}.wasm", std::process::id()));
    let sysroot = wasi_sysroot();
    let mut cmd = Command::new(wasi_cc());
    cmd.arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={sysroot}"))
        .arg("-O2")
        .args(flavor.flags())
        .arg("-I")
        .arg(src_dir)
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .arg("-lm");
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("corpus: cannot run {}: {e}; {INSTALL_HINT}", wasi_cc()));
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let hint = if err.contains("wasi/api.h")
            || err.contains("crt1")
            || err.contains("libc.a")
            || err.contains("stdio.h")
            || err.contains("wasm-ld")
            || err.contains("clang_rt")
        {
            format!("\n{INSTALL_HINT}")
        } else {
            String::new()
        };
        panic!(
            "corpus: compiling {} ({}) failed:\n{err}{hint}",
            src.display(),
            flavor.name()
        );
    }
    fs::rename(&tmp, &out).unwrap();
    out
}

// ---------------------------------------------------------------------------
// Program specs (the `//@` lines)

#[derive(Clone, Debug, Default)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) stdin: Vec<u8>,
    pub(crate) exit: i32,
    pub(crate) trap: bool,
    pub(crate) dirs: Vec<String>,
    pub(crate) setup: Vec<String>,
    pub(crate) known_diffs: Vec<KnownDiff>,
    pub(crate) disagree: Vec<(Vec<String>, String)>,
    pub(crate) skips: Vec<(Runtime, String)>,
}

#[derive(Clone, Debug)]
pub(crate) struct KnownDiff {
    runtime: Runtime,
    /// None: the whole run (stdout, stderr, exit code, files).
    prefixes: Option<Vec<String>>,
    reason: String,
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('\\') => out.push(b'\\'),
                Some(o) => {
                    out.push(b'\\');
                    out.extend(o.to_string().as_bytes());
                }
                None => out.push(b'\\'),
            }
        } else {
            out.extend(c.to_string().as_bytes());
        }
    }
    out
}

fn parse_runtime(s: &str, program: &str) -> Runtime {
    match s {
        "node" => Runtime::Node,
        "wasmtime" => Runtime::Wasmtime,
        other => panic!("{program}: unknown reference runtime `{other}` in a //@ line"),
    }
}

/// Reads the `//@` lines of corpus program `name`.
pub(crate) fn spec(name: &str) -> Spec {
    let src = corpus_dir().join(format!("{name}.c"));
    let text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut s = Spec {
        name: name.to_owned(),
        dirs: vec!["/sandbox".to_owned()],
        ..Spec::default()
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("//@") else {
            continue;
        };
        let rest = rest.trim();
        let (key, val) = match rest.find([':', ' ']) {
            Some(i) => (&rest[..i], rest[i..].trim_start_matches(':').trim()),
            None => (rest, ""),
        };
        match key {
            "args" => s.args = val.split_whitespace().map(str::to_owned).collect(),
            "env" => s.env = val.split_whitespace().map(str::to_owned).collect(),
            "stdin" => s.stdin = unescape(val),
            "exit" => {
                s.exit = val
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: bad //@ exit"))
            }
            "trap" => s.trap = true,
            "dirs" => s.dirs = val.split_whitespace().map(str::to_owned).collect(),
            "setup" => s.setup.push(val.to_owned()),
            "known-diff" | "refs-disagree" | "skip" => {
                let (head, reason) = val
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{name}: //@ {key} needs `: reason`"));
                let reason = reason.trim().to_owned();
                match key {
                    "known-diff" => {
                        let (rt, spec) = head.split_once(' ').unwrap_or((head, "*"));
                        let runtime = parse_runtime(rt.trim(), name);
                        let spec = spec.trim();
                        let prefixes =
                            (spec != "*").then(|| spec.split('|').map(str::to_owned).collect());
                        s.known_diffs.push(KnownDiff {
                            runtime,
                            prefixes,
                            reason,
                        });
                    }
                    "refs-disagree" => {
                        s.disagree
                            .push((head.split('|').map(str::to_owned).collect(), reason));
                    }
                    _ => s.skips.push((parse_runtime(head.trim(), name), reason)),
                }
            }
            other => panic!("{name}: unknown //@ key `{other}`"),
        }
    }
    s
}

impl Spec {
    fn whole_known_diff(&self, rt: Runtime) -> Option<&str> {
        self.known_diffs
            .iter()
            .find(|k| k.runtime == rt && k.prefixes.is_none())
            .map(|k| k.reason.as_str())
    }

    fn skip_reason(&self, rt: Runtime) -> Option<&str> {
        self.skips
            .iter()
            .find(|(r, _)| *r == rt)
            .map(|(_, why)| why.as_str())
    }

    /// Line prefixes on which `rt` is known to be wrong.
    fn known_prefixes(&self, rt: Runtime) -> Vec<&str> {
        self.known_diffs
            .iter()
            .filter(|k| k.runtime == rt)
            .filter_map(|k| k.prefixes.as_ref())
            .flatten()
            .map(String::as_str)
            .collect()
    }

    fn disagree_prefixes(&self) -> Vec<&str> {
        self.disagree
            .iter()
            .flat_map(|(p, _)| p.iter().map(String::as_str))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Runtimes

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Runtime {
    Meshnode,
    /// `meshnode run --migrate-every N --max-migrations STORM_MAX_MIGRATIONS`:
    /// storm mode, for the migration differential tests (migrate.rs).
    MeshnodeStorm(u32),
    Node,
    Wasmtime,
}

/// Cap on migrations per storm run, so that `--migrate-every 1` stays fast
/// on long programs while still migrating hundreds of times.
pub(crate) const STORM_MAX_MIGRATIONS: u32 = 400;

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Meshnode => "meshnode",
            Runtime::MeshnodeStorm(_) => "meshnode --migrate-every",
            Runtime::Node => "node",
            Runtime::Wasmtime => "wasmtime",
        }
    }

    /// The command prefix; module path and arguments follow the options.
    fn command(self) -> Command {
        match self {
            Runtime::Meshnode => {
                let mut c = Command::new(meshnode_bin());
                c.arg("run");
                c
            }
            Runtime::MeshnodeStorm(n) => {
                let mut c = Command::new(meshnode_bin());
                c.args(["run", "--migrate-every", &n.to_string(), "--max-migrations"]);
                c.arg(STORM_MAX_MIGRATIONS.to_string());
                c
            }
            Runtime::Node => {
                let mut c = Command::new("node");
                c.arg(repo_tests_dir().join("refs/node_wasi.mjs"));
                c
            }
            Runtime::Wasmtime => {
                let mut c = Command::new("python3");
                c.arg(repo_tests_dir().join("refs/wasmtime_run.py"));
                c
            }
        }
    }
}

fn meshnode_bin() -> PathBuf {
    std::env::var_os("MESHNODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_meshnode")))
}

/// The oldest Node whose `node:wasi` runs `tests/refs/node_wasi.mjs`: it
/// passes `version: 'preview1'`, which `new WASI` requires from Node 20 on
/// (Node 18, Debian 12's, predates it), and uses `getImportObject()`.
const MIN_NODE_MAJOR: u32 = 20;

/// Ok(()) when the reference can run here, else the reason it cannot.
pub(crate) fn reference_available(rt: Runtime) -> Result<(), String> {
    static NODE: OnceLock<Result<(), String>> = OnceLock::new();
    static WASMTIME: OnceLock<Result<(), String>> = OnceLock::new();
    fn probe(cmd: &str, args: &[&str], what: &str) -> Result<(), String> {
        match Command::new(cmd).args(args).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("{what}: cannot run `{cmd}`: {e}")),
        }
    }
    match rt {
        Runtime::Meshnode | Runtime::MeshnodeStorm(_) => Ok(()),
        Runtime::Node => NODE
            .get_or_init(|| {
                let check = format!(
                    "const v=+process.versions.node.split('.')[0]; if (v < {MIN_NODE_MAJOR}) {{ console.error('Node '+process.version+' is older than {MIN_NODE_MAJOR}'); process.exit(1) }} require('node:wasi')"
                );
                probe(
                    "node",
                    &["-e", &check],
                    &format!("Node with node:wasi (Node >= {MIN_NODE_MAJOR}) is not available"),
                )
            })
            .clone(),
        Runtime::Wasmtime => WASMTIME
            .get_or_init(|| {
                probe(
                    "python3",
                    &["-c", "import wasmtime"],
                    "the python `wasmtime` module is not available (pip install wasmtime)",
                )
            })
            .clone(),
    }
}

// ---------------------------------------------------------------------------
// Running one program

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    /// None: killed by a signal or by the timeout.
    pub(crate) code: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Files under the host directory that holds the preopens.
    pub(crate) tree: BTreeMap<String, Entry>,
}

const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `wasm` with runtime `rt`, as `spec` says, in a fresh host directory.
pub(crate) fn run_program(
    rt: Runtime,
    wasm: &Path,
    spec: &Spec,
    args: Option<&[String]>,
) -> Outcome {
    let root = tempfile::Builder::new()
        .prefix("corpus-root-")
        .tempdir()
        .unwrap();
    let io = tempfile::Builder::new()
        .prefix("corpus-io-")
        .tempdir()
        .unwrap();
    let rootp = root.path().canonicalize().unwrap();
    let mut cmd = rt.command();
    for d in &spec.dirs {
        let host = rootp.join(d.trim_start_matches('/'));
        fs::create_dir_all(&host).unwrap();
        cmd.arg("--dir").arg(format!("{}::{d}", host.display()));
    }
    for s in &spec.setup {
        apply_setup(&rootp, s, &spec.name);
    }
    for e in &spec.env {
        cmd.arg("--env").arg(e);
    }
    cmd.arg(wasm);
    cmd.args(args.unwrap_or(&spec.args));
    let stdin_path = io.path().join("stdin");
    fs::write(&stdin_path, &spec.stdin).unwrap();
    let out_path = io.path().join("stdout");
    let err_path = io.path().join("stderr");
    // Plain files for stdio: no pipe to drain, and Node's uvwasi does not see
    // a non-blocking pipe (it then fails large writes with EAGAIN).
    cmd.stdin(fs::File::open(&stdin_path).unwrap())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .current_dir(io.path());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} for {}: {e}", rt.name(), spec.name));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| {
        let mut v = Vec::new();
        fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let mut tree = BTreeMap::new();
    walk(&rootp, &rootp, &mut tree);
    Outcome {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: read(&out_path),
        stderr: read(&err_path),
        tree,
    }
}

pub(crate) fn apply_setup(root: &Path, line: &str, program: &str) {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (path, value) = rest.split_once('=').unwrap_or((rest, ""));
    let p = root.join(path.trim());
    let value = value.replace("{root}", &root.display().to_string());
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    match kind {
        "dir" => fs::create_dir_all(&p).unwrap(),
        "file" => fs::write(&p, value).unwrap(),
        "symlink" => std::os::unix::fs::symlink(&value, &p).unwrap(),
        other => panic!("{program}: unknown //@ setup kind `{other}`"),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&p)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.insert(
                rel,
                Entry::Symlink(t.replace(&root.display().to_string(), "{root}")),
            );
        } else if ft.is_dir() {
            out.insert(rel, Entry::Dir);
            walk(root, &p, out);
        } else if ft.is_file() {
            out.insert(rel, Entry::File(fs::read(&p).unwrap_or_default()));
        } else {
            out.insert(rel, Entry::Other);
        }
    }
}

// ---------------------------------------------------------------------------
// Comparing

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn drop_prefixed(ls: &[String], prefixes: &[&str]) -> Vec<String> {
    ls.iter()
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p)))
        .cloned()
        .collect()
}

fn keep_prefixed(ls: &[String], prefixes: &[&str]) -> Vec<String> {
    ls.iter()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .cloned()
        .collect()
}

fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 600;
    let s = String::from_utf8_lossy(b);
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{:?}… ({} bytes)", &s[..cut], b.len())
    } else {
        format!("{s:?}")
    }
}

/// The first differing line of two line lists, for messages.
fn first_line_diff(a: &[String], b: &[String]) -> String {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            let show = |v: Option<&String>| match v {
                Some(l) if l.len() > 300 => format!(
                    "{:?}…",
                    &l[..l.char_indices().nth(300).map_or(l.len(), |c| c.0)]
                ),
                Some(l) => format!("{l:?}"),
                None => "<end of output>".to_owned(),
            };
            return format!("line {}: expected {} got {}", i + 1, show(x), show(y));
        }
    }
    "identical".to_owned()
}

fn tree_diff(a: &BTreeMap<String, Entry>, b: &BTreeMap<String, Entry>) -> Option<String> {
    let mut msgs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => msgs.push(format!("missing {k}")),
            Some(Entry::File(got)) if matches!(v, Entry::File(_)) && w_ne(v, got) => {
                let Entry::File(exp) = v else { unreachable!() };
                let at = exp
                    .iter()
                    .zip(got.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(exp.len().min(got.len()));
                let from = at.saturating_sub(16);
                let snip = |c: &[u8]| show_short(&c[from.min(c.len())..(at + 48).min(c.len())]);
                msgs.push(format!(
                    "{k}: contents differ at byte {at} (expected {} bytes, got {}): expected …{}… got …{}…",
                    exp.len(),
                    got.len(),
                    snip(exp),
                    snip(got)
                ));
            }
            Some(w) if w != v => msgs.push(format!(
                "{k}: expected {} got {}",
                entry_str(v),
                entry_str(w)
            )),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            msgs.push(format!("unexpected {k} ({})", entry_str(&b[k])));
        }
    }
    if msgs.is_empty() {
        None
    } else {
        msgs.truncate(8);
        Some(msgs.join("; "))
    }
}

fn w_ne(a: &Entry, b: &[u8]) -> bool {
    !matches!(a, Entry::File(x) if x.as_slice() == b)
}

fn show_short(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

fn entry_str(e: &Entry) -> String {
    match e {
        Entry::Dir => "directory".to_owned(),
        Entry::File(c) if c.len() > 64 => {
            format!("file of {} bytes {}…", c.len(), show_short(&c[..64]))
        }
        Entry::File(c) => format!("file {}", show_short(c)),
        Entry::Symlink(t) => format!("symlink -> {t:?}"),
        Entry::Other => "special file".to_owned(),
    }
}

fn code_str(o: &Outcome) -> String {
    match (o.code, o.timed_out) {
        (_, true) => format!("timed out after {}s", RUN_TIMEOUT.as_secs()),
        (Some(c), _) => format!("exit {c}"),
        (None, _) => "killed by a signal".to_owned(),
    }
}

/// Checks one run against what the spec itself demands (exit code).
fn check_exit(spec: &Spec, o: &Outcome) -> Option<String> {
    if spec.trap {
        match o.code {
            Some(c) if c != 0 && !o.timed_out => None,
            _ => Some(format!(
                "expected a trap (non-zero exit), got {}",
                code_str(o)
            )),
        }
    } else if o.code == Some(spec.exit) && !o.timed_out {
        None
    } else {
        Some(format!(
            "expected exit {}, got {}; stderr {}",
            spec.exit,
            code_str(o),
            show_bytes(&o.stderr)
        ))
    }
}

/// Compares `got` with `expected` after dropping the lines named by
/// `ignore`. Returns the differences found.
fn compare(spec: &Spec, expected: &Outcome, got: &Outcome, ignore: &[&str]) -> Vec<String> {
    let mut d = Vec::new();
    if expected.code != got.code
        && !(spec.trap && got.code.unwrap_or(0) != 0 && expected.code.unwrap_or(0) != 0)
    {
        d.push(format!(
            "exit: expected {} got {}",
            code_str(expected),
            code_str(got)
        ));
    }
    let (el, gl) = (
        drop_prefixed(&lines(&expected.stdout), ignore),
        drop_prefixed(&lines(&got.stdout), ignore),
    );
    if el != gl {
        d.push(format!("stdout: {}", first_line_diff(&el, &gl)));
    } else if ignore.is_empty() && expected.stdout != got.stdout {
        d.push("stdout: same lines, different bytes (line endings or final newline)".to_owned());
    }
    if !spec.trap && expected.stderr != got.stderr {
        d.push(format!(
            "stderr: expected {} got {}",
            show_bytes(&expected.stderr),
            show_bytes(&got.stderr)
        ));
    }
    if let Some(t) = tree_diff(&expected.tree, &got.tree) {
        d.push(format!("files: {t}"));
    }
    d
}

// ---------------------------------------------------------------------------
// The test driver

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    notes: Vec<String>,
}

type Key = (String, Flavor, Runtime);

/// Runs `jobs` on a few worker threads.
fn run_all(
    jobs: Vec<(Key, Spec)>,
    args_override: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<Key, Outcome> {
    let workers = std::env::var("CORPUS_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(BTreeMap::new());
    // Compile first (serially) so that workers only run programs.
    for ((name, flavor, _), _) in &jobs {
        corpus_wasm_flavor(name, *flavor);
    }
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(((name, flavor, rt), spec)) = jobs.get(i) else {
                    break;
                };
                let wasm = corpus_wasm_flavor(name, *flavor);
                let args = args_override.get(name).map(Vec::as_slice);
                let o = run_program(*rt, &wasm, spec, args);
                results
                    .lock()
                    .unwrap()
                    .insert((name.clone(), *flavor, *rt), o);
            });
        }
    });
    results.into_inner().unwrap()
}

fn selected_names() -> Vec<String> {
    let all = corpus_names();
    match std::env::var("CORPUS_ONLY") {
        Ok(only) if !only.trim().is_empty() => {
            let want: Vec<&str> = only.split(',').map(str::trim).collect();
            all.into_iter()
                .filter(|n| want.contains(&n.as_str()))
                .collect()
        }
        _ => all,
    }
}

/// Arguments used in tests where a program's own `//@ args` would be too slow.
fn test_args() -> BTreeMap<String, Vec<String>> {
    BTreeMap::new()
}

/// Specs, reference outcomes and notes (skips), computed once per test binary.
type RefData = (Vec<Spec>, BTreeMap<Key, Outcome>, Vec<String>);

fn reference_outcomes() -> &'static RefData {
    static REFS: OnceLock<RefData> = OnceLock::new();
    REFS.get_or_init(|| {
        let mut notes = Vec::new();
        let specs: Vec<Spec> = selected_names().iter().map(|n| spec(n)).collect();
        let mut jobs = Vec::new();
        for rt in [Runtime::Wasmtime, Runtime::Node] {
            if let Err(why) = reference_available(rt) {
                crate::support::missing_reference(
                    "corpus (references_agree, meshnode_matches_references)",
                    &format!("reference {}: {why}", rt.name()),
                );
                notes.push(format!("SKIP reference {}: {why}", rt.name()));
                continue;
            }
            for s in &specs {
                if let Some(why) = s.skip_reason(rt) {
                    notes.push(format!("SKIP {} under {}: {why}", s.name, rt.name()));
                    continue;
                }
                for f in Flavor::ALL {
                    jobs.push(((s.name.clone(), f, rt), s.clone()));
                }
            }
        }
        let outcomes = run_all(jobs, &test_args());
        (specs, outcomes, notes)
    })
}

fn print_report(title: &str, r: &Report) {
    println!("== {title}");
    for n in &r.notes {
        println!("  note: {n}");
    }
    for f in &r.failures {
        println!("  FAIL: {f}");
    }
}

/// The references agree with each other and with each program's own
/// expectations, except where a `//@` line says why not.
#[test]
fn corpus_references_agree() {
    let _cpu = crate::support::shared_cpu();
    let (specs, outs, notes) = reference_outcomes();
    let mut r = Report {
        notes: notes.clone(),
        ..Report::default()
    };
    for s in specs {
        for f in Flavor::ALL {
            let w = outs.get(&(s.name.clone(), f, Runtime::Wasmtime));
            let n = outs.get(&(s.name.clone(), f, Runtime::Node));
            for (rt, o) in [(Runtime::Wasmtime, w), (Runtime::Node, n)] {
                let Some(o) = o else { continue };
                if let Some(why) = s.whole_known_diff(rt) {
                    if f == Flavor::Plain {
                        r.notes
                            .push(format!("{}: {} not compared ({why})", s.name, rt.name()));
                    }
                    continue;
                }
                if let Some(e) = check_exit(s, o) {
                    r.failures.push(format!(
                        "{} [{}] under {}: {e}",
                        s.name,
                        f.name(),
                        rt.name()
                    ));
                }
            }
            // Both builds of a program print the same under one runtime.
            if f == Flavor::Features {
                for rt in [Runtime::Wasmtime, Runtime::Node] {
                    let (Some(a), Some(b)) = (
                        outs.get(&(s.name.clone(), Flavor::Plain, rt)),
                        outs.get(&(s.name.clone(), f, rt)),
                    ) else {
                        continue;
                    };
                    if s.whole_known_diff(rt).is_none() && lines(&a.stdout) != lines(&b.stdout) {
                        r.failures.push(format!(
                            "{} under {}: plain and features builds differ: {}",
                            s.name,
                            rt.name(),
                            first_line_diff(&lines(&a.stdout), &lines(&b.stdout))
                        ));
                    }
                }
            }
            let (Some(w), Some(n)) = (w, n) else { continue };
            if s.whole_known_diff(Runtime::Wasmtime).is_some()
                || s.whole_known_diff(Runtime::Node).is_some()
            {
                continue;
            }
            let mut ignore = s.disagree_prefixes();
            ignore.extend(s.known_prefixes(Runtime::Node));
            ignore.extend(s.known_prefixes(Runtime::Wasmtime));
            for d in compare(s, w, n, &ignore) {
                r.failures
                    .push(format!("{} [{}] wasmtime vs node: {d}", s.name, f.name()));
            }
            if f == Flavor::Plain {
                // Say which explained differences were actually seen.
                let (wl, nl) = (lines(&w.stdout), lines(&n.stdout));
                for k in &s.known_diffs {
                    if let Some(p) = &k.prefixes {
                        let p: Vec<&str> = p.iter().map(String::as_str).collect();
                        let seen = keep_prefixed(&wl, &p) != keep_prefixed(&nl, &p);
                        r.notes.push(format!(
                            "{}: known {} difference{}: {}",
                            s.name,
                            k.runtime.name(),
                            if seen { "" } else { " (not seen in this run)" },
                            k.reason
                        ));
                    }
                }
                for (p, why) in &s.disagree {
                    let p: Vec<&str> = p.iter().map(String::as_str).collect();
                    let seen = keep_prefixed(&wl, &p) != keep_prefixed(&nl, &p);
                    r.notes.push(format!(
                        "{}: references disagree{}: {why}",
                        s.name,
                        if seen { "" } else { " (not seen in this run)" }
                    ));
                }
            }
        }
    }
    print_report("corpus: references", &r);
    assert!(
        r.failures.is_empty(),
        "{} reference disagreement(s), see above",
        r.failures.len()
    );
}

/// `meshnode run` gives the same stdout, stderr, exit code and files as the
/// references, for every corpus program in both compile flavors.
#[test]
fn corpus_meshnode_matches_references() {
    let _cpu = crate::support::shared_cpu();
    let (specs, refs, notes) = reference_outcomes();
    let mut jobs = Vec::new();
    for s in specs {
        for f in Flavor::ALL {
            jobs.push(((s.name.clone(), f, Runtime::Meshnode), s.clone()));
        }
    }
    let mine = run_all(jobs, &test_args());
    let mut r = Report {
        notes: notes.clone(),
        ..Report::default()
    };
    let mut compared_any = false;
    for s in specs {
        for f in Flavor::ALL {
            let key = |rt| (s.name.clone(), f, rt);
            let m = &mine[&key(Runtime::Meshnode)];
            let tag = format!("{} [{}]", s.name, f.name());
            if let Some(e) = check_exit(s, m) {
                r.failures.push(format!("{tag}: {e}"));
            }
            let mut matched_refs = Vec::new();
            for rt in [Runtime::Wasmtime, Runtime::Node] {
                let Some(o) = refs.get(&key(rt)) else {
                    continue;
                };
                if s.whole_known_diff(rt).is_some() {
                    continue;
                }
                compared_any = true;
                let mut ignore = s.disagree_prefixes();
                ignore.extend(s.known_prefixes(rt));
                for d in compare(s, o, m, &ignore) {
                    r.failures.push(format!("{tag} vs {}: {d}", rt.name()));
                }
                matched_refs.push(o);
            }
            // Lines where the references disagree: meshnode must match one.
            let p = s.disagree_prefixes();
            if !p.is_empty() && !matched_refs.is_empty() {
                let ml = keep_prefixed(&lines(&m.stdout), &p);
                let options: Vec<Vec<String>> = matched_refs
                    .iter()
                    .map(|o| keep_prefixed(&lines(&o.stdout), &p))
                    .collect();
                if !options.contains(&ml) {
                    r.failures.push(format!(
                        "{tag}: on the lines where the references disagree, meshnode matches neither: got {ml:?}, references {options:?}"
                    ));
                }
            }
        }
    }
    if !compared_any {
        r.notes
            .push("no reference runtime available: only exit codes were checked".to_owned());
    }
    print_report("corpus: meshnode vs references", &r);
    assert!(
        r.failures.is_empty(),
        "{} mismatch(es) against the references, see above",
        r.failures.len()
    );
}

/// The benchmark programs build, and print the same checksum under meshnode
/// and the references with a small iteration count.
#[test]
fn bench_programs_match_references() {
    let _cpu = crate::support::shared_cpu();
    let mut names = c_files(&bench_programs_dir());
    // memwriter is the migration benchmark's vessel, not a CPU benchmark:
    // it runs for as long as its arguments say and paces itself by the
    // clock, so its output is not a reference comparison.
    names.retain(|n| n != "memwriter");
    assert!(
        names.len() >= 6,
        "benches/programs should hold at least 6 CPU programs"
    );
    let mut failures = Vec::new();
    for name in &names {
        let wasm = bench_wasm(name);
        let spec = Spec {
            name: name.clone(),
            dirs: vec![],
            ..Spec::default()
        };
        let args = vec!["1".to_owned()];
        let m = run_program(Runtime::Meshnode, &wasm, &spec, Some(&args));
        if m.code != Some(0) {
            failures.push(format!(
                "{name}: meshnode {}; stderr {}",
                code_str(&m),
                show_bytes(&m.stderr)
            ));
            continue;
        }
        for rt in [Runtime::Wasmtime, Runtime::Node] {
            if let Err(why) = reference_available(rt) {
                crate::support::missing_reference(
                    "bench_programs_match_references",
                    &format!("reference {}: {why}", rt.name()),
                );
                continue;
            }
            let o = run_program(rt, &wasm, &spec, Some(&args));
            if o.code != Some(0) || o.stdout != m.stdout {
                failures.push(format!(
                    "{name}: {} printed {} ({}), meshnode {}",
                    rt.name(),
                    show_bytes(&o.stdout),
                    code_str(&o),
                    show_bytes(&m.stdout)
                ));
            }
        }
    }
    for f in &failures {
        println!("  FAIL: {f}");
    }
    assert!(
        failures.is_empty(),
        "{} benchmark program mismatch(es)",
        failures.len()
    );
}

/// Every `wasi_snapshot_preview1` function, written out from the
/// specification on purpose rather than taken from the dock's own
/// `meshnode::dock::wasi::FUNCTIONS`: a function the dock forgot must still
/// count as uncovered here.
pub(crate) const PREVIEW1_FUNCTIONS: [&str; 46] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// The `wasi_snapshot_preview1` functions that a module imports.
pub(crate) fn wasi_imports(wasm: &Path) -> Vec<String> {
    let bytes = fs::read(wasm).unwrap();
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ImportSection(reader) = payload.unwrap() {
            for import in reader.into_imports() {
                let import = import.unwrap();
                if import.module == "wasi_snapshot_preview1" {
                    out.push(import.name.to_owned());
                }
            }
        }
    }
    out.sort();
    out
}

/// Together, the corpus programs import every preview1 function (each
/// program also calls what it imports; see tests/corpus/README.md).
#[test]
fn corpus_covers_every_preview1_function() {
    let mut seen = std::collections::BTreeSet::new();
    for name in corpus_names() {
        seen.extend(wasi_imports(&corpus_wasm(&name)));
    }
    let missing: Vec<&str> = PREVIEW1_FUNCTIONS
        .iter()
        .copied()
        .filter(|f| !seen.contains(*f))
        .collect();
    assert!(missing.is_empty(), "no corpus program calls {missing:?}");
}
