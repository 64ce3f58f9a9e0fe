//! `testnet run`: set up the namespaces, links and nodes, play the
//! scenario's timeline, check its assertions, and write the report.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::netns::{capability_problem, NetNs};
use crate::nodes::{output_within, sees_row, Binaries, NodeRt};
use crate::record::{median, MarkKind, Recorder};
use crate::router::Router;
use crate::scenario::{
    secs, Action, Arch, Check, ClientKind, Discovery, ProgramSource, Scenario, Target,
};

/// Exit codes.
pub const EXIT_PASSED: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
/// This machine cannot run the scenario (no root, no namespaces, no TUN, no
/// aarch64 build, no clang): nothing was run. The automake convention.
pub const EXIT_SKIPPED: i32 = 77;
pub const EXIT_INTERRUPTED: i32 = 130;

/// How often windowed assertions are checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the vessel watcher asks `ps`.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often `vessel-once` reads every node's record of the vessel.
const ONCE_EVERY: Duration = Duration::from_millis(100);
/// How often the timeline looks for nodes that exited by themselves.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// The keys a kv client cycles through: each GET reads back the write
/// made this many SETs before (about 6 s at 100 ms a request).
pub const KV_KEYS: u64 = 32;
/// How often a progress summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// How long CLI commands may take (deploy and migrate get longer).
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
const SLOW_CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nodes get to stop after SIGTERM at the end.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a server gets to start listening.
const SERVER_START: Duration = Duration::from_secs(20);
/// Failed requests shown per client in the progress (all are counted).
const MAX_FAILURES_SHOWN: u64 = 5;
/// Marker file of an output directory (testnet only empties such a one).
const OUT_MARKER: &str = ".testnet-out";

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub out: Option<PathBuf>,
    pub seed: Option<u64>,
    pub meshnode: Option<PathBuf>,
    pub quiet: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    NotRun,
    Pass,
    Fail,
    Pending,
}

#[derive(Debug, Clone)]
pub struct AssertResult {
    pub verdict: Verdict,
    /// When it was decided (seconds since t = 0).
    pub t: Option<f64>,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub wrong: u64,
    /// GETs that did not answer what the client last wrote (or might have
    /// written, when the SET got no answer): a write that was lost, or a
    /// read served by a state that never saw it. Counted in `wrong` too.
    pub lost: u64,
    pub resets: u64,
    pub connect_failures: u64,
    pub connects: u64,
    pub moves: u64,
    /// (t, latency ms) of each answered request.
    pub latencies: Vec<(f64, f64)>,
    pub last_error: Option<String>,
}

pub struct ClientRt {
    pub node: AtomicUsize,
    pub stats: Mutex<ClientStats>,
}

/// Where each vessel is, as the watcher last saw it.
#[derive(Debug, Clone, Default)]
pub struct VesselSeen {
    pub node: Option<String>,
    pub state: String,
    pub id: Option<String>,
    pub migrations: u64,
}

/// What `vessel-once` saw of one vessel.
#[derive(Debug, Clone, Default)]
pub struct OnceSeen {
    /// Samples taken (after the vessel was deployed).
    pub samples: u64,
    /// The owners in turn: (node, epoch, first seen at t).
    pub owners: Vec<(String, u64, f64)>,
    /// The first sample with two owners, said in words.
    pub twice: Option<String>,
}

/// Everything the run's threads share.
pub struct Ctx {
    pub sc: Scenario,
    pub bins: Binaries,
    pub user_key: PathBuf,
    pub out: PathBuf,
    pub nodes: Vec<NodeRt>,
    pub router: Router,
    pub rec: Recorder,
    pub clients: Vec<ClientRt>,
    pub vessels: Mutex<Vec<VesselSeen>>,
    /// Per vessel, what `vessel-once` sampled.
    pub once: Mutex<Vec<OnceSeen>>,
    pub results: Mutex<Vec<AssertResult>>,
    pub stop: AtomicBool,
    pub wasm: Vec<Option<PathBuf>>,
    /// What each node was doing in `meshnode migrate` (for the report).
    pub migrations: Mutex<Vec<String>>,
    pub setup_secs: Mutex<f64>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The end of a run.
pub enum Outcome {
    Passed,
    Failed,
    Skipped(String),
    Error(String),
    Interrupted,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Passed => EXIT_PASSED,
            Outcome::Failed => EXIT_FAILED,
            Outcome::Skipped(_) => EXIT_SKIPPED,
            Outcome::Error(_) => EXIT_ERROR,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The native meshnode: --meshnode, $MESHNODE_BIN, next to this binary (a
/// cargo target dir), or on PATH.
pub fn find_meshnode(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--meshnode {}: no such file", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("MESHNODE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("MESHNODE_BIN={}: no such file", p.display()))
        };
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for cand in [dir.join("meshnode"), dir.join("../meshnode")] {
                if cand.is_file() {
                    return Ok(cand);
                }
            }
        }
    }
    which("meshnode").ok_or_else(|| {
        "no meshnode binary: build it (`cargo build -p meshnode`), or pass --meshnode PATH or set MESHNODE_BIN".into()
    })
}

/// qemu and the aarch64 build, or why a scenario with aarch64 nodes cannot
/// run here.
fn find_aarch64(sc: &Scenario) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let arm: Vec<&str> = sc
        .nodes
        .iter()
        .filter(|n| n.arch == Arch::Aarch64)
        .map(|n| n.name.as_str())
        .collect();
    if arm.is_empty() {
        return Ok(None);
    }
    let who = arm.join(", ");
    let bin = match std::env::var_os("MESHNODE_AARCH64_BIN") {
        Some(b) if Path::new(&b).is_file() => PathBuf::from(b),
        Some(b) => {
            return Err(format!(
                "nodes {who} are aarch64, and MESHNODE_AARCH64_BIN={} is not a file (scripts/build-aarch64.sh builds it)",
                Path::new(&b).display()
            ))
        }
        None => {
            return Err(format!(
                "nodes {who} are aarch64: set MESHNODE_AARCH64_BIN to the aarch64 meshnode (scripts/build-aarch64.sh builds it)"
            ))
        }
    };
    let qemu = std::env::var_os("QEMU_AARCH64")
        .map(PathBuf::from)
        .or_else(|| which("qemu-aarch64-static"))
        .or_else(|| which("qemu-aarch64"))
        .ok_or_else(|| format!("nodes {who} are aarch64: no qemu-aarch64-static on PATH (install qemu-user-static)"))?;
    Ok(Some((qemu, bin)))
}

/// Compiles or locates the programs that will be used (by servers and by
/// vessels that are not pending).
fn build_programs(sc: &Scenario, out: &Path) -> Result<Vec<Option<PathBuf>>, Outcome> {
    let mut used = vec![false; sc.programs.len()];
    for s in &sc.servers {
        used[s.program] = true;
    }
    for v in &sc.vessels {
        if v.pending.is_none() {
            used[v.program] = true;
        }
    }
    let mut wasm = Vec::new();
    for (i, p) in sc.programs.iter().enumerate() {
        if !used[i] {
            wasm.push(None);
            continue;
        }
        match &p.source {
            ProgramSource::Wasm(w) => {
                if !w.is_file() {
                    return Err(Outcome::Error(format!(
                        "{}: program {}: {} is not a file",
                        sc.file.display(),
                        p.name,
                        w.display()
                    )));
                }
                wasm.push(Some(w.clone()));
            }
            ProgramSource::C(src) => {
                if !src.is_file() {
                    return Err(Outcome::Error(format!(
                        "{}: program {}: {} is not a file",
                        sc.file.display(),
                        p.name,
                        src.display()
                    )));
                }
                let dir = out.join("programs");
                std::fs::create_dir_all(&dir).map_err(|e| Outcome::Error(e.to_string()))?;
                let dst = dir.join(format!("{}.wasm", p.name));
                let r = std::process::Command::new("clang")
                    .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2"])
                    .arg(src)
                    .arg("-o")
                    .arg(&dst)
                    .output();
                match r {
                    Ok(o) if o.status.success() => wasm.push(Some(dst)),
                    Ok(o) => {
                        return Err(Outcome::Skipped(format!(
                            "program {} needs clang for wasm32-wasi, which failed on {}: {} (install Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32)",
                            p.name,
                            src.display(),
                            String::from_utf8_lossy(&o.stderr).trim()
                        )))
                    }
                    Err(e) => {
                        return Err(Outcome::Skipped(format!(
                            "program {} needs clang ({e}); install Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32",
                            p.name
                        )))
                    }
                }
            }
        }
    }
    Ok(wasm)
}

fn prepare_out(out: &Path) -> Result<(), String> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !out.join(OUT_MARKER).exists() {
            return Err(format!(
                "{} exists and is not a testnet output directory (no {OUT_MARKER}); refusing to overwrite it",
                out.display()
            ));
        }
        std::fs::remove_dir_all(out).map_err(|e| format!("cannot empty {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    std::fs::write(
        out.join(OUT_MARKER),
        "written by testnet; emptied by the next run\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs `ip ARGS` in a namespace.
fn ip(ns: &NetNs, args: &[&str]) -> Result<(), String> {
    let o = ns
        .command("ip", false)
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Runs a scenario file.
pub fn run(path: &Path, opts: &Options) -> Outcome {
    let mut sc = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e.0),
    };
    if let Some(s) = opts.seed {
        sc.seed = s;
    }
    let meshnode = match find_meshnode(opts.meshnode.as_deref()) {
        Ok(m) => m,
        Err(e) => return Outcome::Error(e),
    };
    let aarch64 = match find_aarch64(&sc) {
        Ok(a) => a,
        Err(e) => return Outcome::Skipped(e),
    };
    if let Some(why) = capability_problem() {
        return Outcome::Skipped(why);
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("testnet-out").join(&sc.name));
    if let Err(e) = prepare_out(&out) {
        return Outcome::Error(e);
    }
    let out = out.canonicalize().unwrap_or(out);
    let wasm = match build_programs(&sc, &out) {
        Ok(w) => w,
        Err(o) => return o,
    };
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let rec = Recorder::new(opts.quiet);
    if let Ok(f) = std::fs::File::create(out.join("progress.log")) {
        rec.log_to(f);
    }
    rec.say(format!(
        "scenario {} ({}), seed {}, {} nodes, run {} after the mesh is up; output in {}",
        sc.name,
        sc.file.display(),
        sc.seed,
        sc.nodes.len(),
        secs(sc.duration),
        out.display()
    ));

    // Namespaces and TUN devices.
    let mut nodes = Vec::new();
    let mut tuns = Vec::new();
    for (i, spec) in sc.nodes.iter().enumerate() {
        let setup = (|| -> Result<(NodeRt, std::os::fd::OwnedFd), String> {
            let ns = NetNs::create().map_err(|e| e.to_string())?;
            let tun = ns.open_tun("tn0").map_err(|e| e.to_string())?;
            let a = Scenario::addr(i);
            ip(&ns, &["link", "set", "lo", "up"])?;
            ip(&ns, &["addr", "add", &format!("{a}/24"), "dev", "tn0"])?;
            ip(&ns, &["link", "set", "tn0", "mtu", "1500", "up"])?;
            ip(&ns, &["route", "add", "224.0.0.0/4", "dev", "tn0"])?;
            let node = NodeRt::new(&spec.name, i, spec.arch, spec.env.clone(), ns, &out)
                .map_err(|e| e.to_string())?;
            Ok((node, tun))
        })();
        match setup {
            Ok((n, t)) => {
                nodes.push(n);
                tuns.push(t);
            }
            Err(e) => return Outcome::Error(format!("node {}: namespace setup: {e}", spec.name)),
        }
    }
    let names: Vec<String> = sc.nodes.iter().map(|n| n.name.clone()).collect();
    let router = match Router::start(tuns, &sc.links, &names, sc.seed) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("router: {e}")),
    };
    rec.say(format!(
        "{} namespaces up (10.77.0.1–10.77.0.{} on tn0), router forwarding",
        nodes.len(),
        nodes.len()
    ));

    // One user key for the whole mesh.
    let user_key = out.join("user.key");
    let mut kg = std::process::Command::new(&meshnode);
    kg.args(["keygen", "--json", "--user-key"]).arg(&user_key);
    match output_within(kg, CLI_TIMEOUT) {
        Ok((true, _, _)) => {}
        Ok((false, _, e)) => {
            return Outcome::Error(format!(
                "meshnode keygen: {}",
                String::from_utf8_lossy(&e).trim()
            ))
        }
        Err(e) => return Outcome::Error(format!("cannot run {}: {e}", meshnode.display())),
    }

    let clients = sc
        .clients
        .iter()
        .map(|c| ClientRt {
            node: AtomicUsize::new(c.at),
            stats: Mutex::new(ClientStats::default()),
        })
        .collect();
    let results = sc
        .asserts
        .iter()
        .map(|a| AssertResult {
            verdict: if a.pending.is_some() {
                Verdict::Pending
            } else {
                Verdict::NotRun
            },
            t: None,
            detail: a
                .pending
                .clone()
                .map(|p| format!("pending: {p}"))
                .unwrap_or_default(),
        })
        .collect();
    let ctx = Arc::new(Ctx {
        vessels: Mutex::new(vec![VesselSeen::default(); sc.vessels.len()]),
        once: Mutex::new(vec![OnceSeen::default(); sc.vessels.len()]),
        sc,
        bins: Binaries { meshnode, aarch64 },
        user_key,
        out: out.clone(),
        nodes,
        router,
        rec,
        clients,
        results: Mutex::new(results),
        stop: AtomicBool::new(false),
        wasm,
        migrations: Mutex::new(Vec::new()),
        setup_secs: Mutex::new(0.0),
    });

    let mut children: Vec<Option<Child>> = (0..ctx.nodes.len()).map(|_| None).collect();
    let mut servers: Vec<Child> = Vec::new();
    let outcome = play(&ctx, &mut children, &mut servers);

    // Teardown.
    ctx.stop.store(true, Ordering::SeqCst);
    for s in servers.iter_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }
    stop_nodes(&ctx, &mut children);
    let router_err = ctx.router.stop().err();
    if let Some(e) = &router_err {
        ctx.rec.say(format!("router failed: {e}"));
    }
    let outcome = match outcome {
        Ok(()) if interrupted() => Outcome::Interrupted,
        Ok(()) => {
            let results = ctx.results.lock().unwrap();
            if results.iter().any(|r| r.verdict == Verdict::Fail) || router_err.is_some() {
                Outcome::Failed
            } else {
                Outcome::Passed
            }
        }
        Err(_) if interrupted() => Outcome::Interrupted,
        Err(e) => Outcome::Error(e),
    };
    if let Err(e) = crate::report::write(&ctx, &outcome) {
        ctx.rec.say(format!("cannot write the report: {e}"));
    }
    let results = ctx.results.lock().unwrap();
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    ctx.rec.say(format!(
        "{}: {} passed, {} failed, {} pending, {} not run; report: {}",
        match &outcome {
            Outcome::Passed => "PASSED".to_string(),
            Outcome::Failed => "FAILED".to_string(),
            Outcome::Interrupted => "INTERRUPTED".to_string(),
            Outcome::Error(e) => format!("ERROR ({e})"),
            Outcome::Skipped(s) => format!("SKIPPED ({s})"),
        },
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Pending),
        count(Verdict::NotRun),
        out.join("report.md").display()
    ));
    outcome
}

fn stop_nodes(ctx: &Ctx, children: &mut [Option<Child>]) {
    for (i, c) in children.iter_mut().enumerate() {
        if let Some(c) = c {
            // Only a child that has not been reaped: the pid of one that
            // exited by itself (reaped by `reap_exited`) may be another
            // process's by now.
            if let Ok(None) = c.try_wait() {
                // SAFETY: signals a child we own, still running or a zombie.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            }
            ctx.nodes[i].up.store(false, Ordering::SeqCst);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for c in children.iter_mut().flatten() {
        while Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sleeps until `t` (since t0), waking early when the run is stopped.
fn sleep_until(ctx: &Ctx, t0: Instant, t: Duration) -> bool {
    loop {
        if interrupted() || ctx.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = t0.elapsed();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// Sleeps until `t` (since t0), waking early only on Ctrl-C: windowed
/// assertions end by their own deadline, which is within the run.
fn sleep_until_unless_interrupted(t0: Instant, t: Duration) -> bool {
    loop {
        if interrupted() {
            return false;
        }
        let now = t0.elapsed();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// A node to ask about the mesh: the first one that is up.
fn any_up(ctx: &Ctx) -> Option<&NodeRt> {
    ctx.nodes.iter().find(|n| n.is_up())
}

fn peers_for(ctx: &Ctx, i: usize) -> Vec<String> {
    if ctx.sc.discovery == Discovery::Mdns {
        return Vec::new();
    }
    // The first other node that is up and known.
    ctx.nodes
        .iter()
        .filter(|n| n.index != i && n.is_up())
        .filter_map(|n| n.quic.lock().unwrap().clone())
        .take(1)
        .collect()
}

fn start_node(ctx: &Ctx, children: &mut [Option<Child>], i: usize) -> Result<(), String> {
    let n = &ctx.nodes[i];
    let peers = peers_for(ctx, i);
    let child = n
        .start(&ctx.sc, &ctx.bins, &ctx.user_key, &peers)
        .map_err(|e| format!("cannot start node {}: {e}", n.name))?;
    children[i] = Some(child);
    n.up.store(true, Ordering::SeqCst);
    Ok(())
}

/// Marks the nodes whose `meshnode start` exited by itself (a crash, or a
/// fault injection's exit) as down, and says so with the end of its log:
/// CLI calls, checks and clients then treat it as a killed node, and a
/// `restart` starts it again.
fn reap_exited(ctx: &Ctx, children: &mut [Option<Child>]) {
    for (i, c) in children.iter_mut().enumerate() {
        let n = &ctx.nodes[i];
        if !n.is_up() {
            continue;
        }
        if let Some(Ok(Some(status))) = c.as_mut().map(|c| c.try_wait()) {
            n.up.store(false, Ordering::SeqCst);
            let last = n.log_tail(1);
            ctx.rec.say(format!(
                "node {} exited by itself ({status}); its log ends: {}",
                n.name,
                last.trim()
            ));
            ctx.rec
                .mark(MarkKind::Event, format!("{} exited ({status})", n.name));
        }
    }
}

/// Waits until node `i` has written its addresses.
fn wait_ready(
    ctx: &Ctx,
    children: &mut [Option<Child>],
    i: usize,
    deadline: Instant,
) -> Result<(), String> {
    let n = &ctx.nodes[i];
    loop {
        if let Some(c) = children[i].as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "node {} exited ({status}) while starting; its log ({}) ends:\n{}",
                    n.name,
                    n.log.display(),
                    n.log_tail(20)
                ));
            }
        }
        if let Some(q) = n.ready_addr() {
            let id = q.rsplit("/p2p/").next().unwrap_or_default().to_string();
            let _ = n.peer_id.set(id);
            *n.quic.lock().unwrap() = Some(q);
            return Ok(());
        }
        if interrupted() {
            return Err("interrupted".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {} did not start within the setup timeout; its log ({}) ends:\n{}",
                n.name,
                n.log.display(),
                n.log_tail(20)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn stale_ms(sc: &Scenario) -> u64 {
    (4 * sc.status_interval.as_millis() as u64).max(2000)
}

/// The name of the node with this peer id.
pub fn name_of(ctx: &Ctx, peer_id: &str) -> Option<String> {
    ctx.nodes
        .iter()
        .find(|n| n.peer_id.get().is_some_and(|p| p == peer_id))
        .map(|n| n.name.clone())
}

/// The setup, the timeline and the checks; Err for a setup failure.
fn play(
    ctx: &Arc<Ctx>,
    children: &mut [Option<Child>],
    servers: &mut Vec<Child>,
) -> Result<(), String> {
    let sc = &ctx.sc;
    let setup_started = Instant::now();
    let deadline = setup_started + sc.setup_timeout;

    // Servers outside the mesh, first: they are ready by t = 0.
    for s in &sc.servers {
        let n = &ctx.nodes[s.node];
        let wasm = ctx.wasm[s.program].clone().expect("built");
        let log_path = ctx.out.join("servers").join(format!("{}.log", s.name));
        std::fs::create_dir_all(log_path.parent().unwrap()).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut c = n.ns.command(&ctx.bins.meshnode, true);
        c.arg("run")
            .args(["--tcplisten", &format!("{}:{}", n.addr, s.port)])
            .arg(&wasm)
            .args(&s.args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = c.spawn().map_err(|e| format!("server {}: {e}", s.name))?;
        servers.push(child);
        let addr = SocketAddr::from((n.addr, s.port));
        let up =
            n.ns.run(|| {
                let until = Instant::now() + SERVER_START;
                while Instant::now() < until {
                    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                        return Ok(true);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(false)
            })
            .unwrap_or(false);
        if !up {
            return Err(format!(
                "server {} did not listen on {addr} within {SERVER_START:?}; see {}",
                s.name,
                log_path.display()
            ));
        }
        ctx.rec.say(format!(
            "server {} listening on {addr} (node {})",
            s.name, n.name
        ));
    }

    // Nodes: the first, then the others with it as their peer (or all at
    // once with mDNS only).
    if sc.discovery == Discovery::Mdns {
        for i in 0..ctx.nodes.len() {
            start_node(ctx, children, i)?;
        }
        for i in 0..ctx.nodes.len() {
            wait_ready(ctx, children, i, deadline)?;
        }
    } else {
        start_node(ctx, children, 0)?;
        wait_ready(ctx, children, 0, deadline)?;
        for i in 1..ctx.nodes.len() {
            start_node(ctx, children, i)?;
        }
        for i in 1..ctx.nodes.len() {
            wait_ready(ctx, children, i, deadline)?;
        }
    }
    for n in &ctx.nodes {
        ctx.rec.say(format!(
            "node {} ({}) started: {} {}",
            n.name,
            if n.arch == Arch::Aarch64 {
                "aarch64 under qemu"
            } else {
                "native"
            },
            n.addr,
            n.peer_id.get().map(String::as_str).unwrap_or("?")
        ));
    }

    // The mesh is up when every node sees every other.
    let stale = stale_ms(sc);
    let mut done = vec![false; ctx.nodes.len()];
    loop {
        for (i, n) in ctx.nodes.iter().enumerate() {
            if done[i] {
                continue;
            }
            if let Ok(rows) = n.peers(&ctx.bins, &ctx.user_key) {
                done[i] = ctx.nodes.iter().filter(|m| m.index != i).all(|m| {
                    let id = m.peer_id.get().unwrap();
                    rows.iter()
                        .any(|r| r["peer_id"] == id.as_str() && sees_row(r, stale))
                });
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
        for (i, c) in children.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = c.as_mut().map(|c| c.try_wait()) {
                let n = &ctx.nodes[i];
                return Err(format!(
                    "node {} exited ({status}) before the mesh was up; its log ends:\n{}",
                    n.name,
                    n.log_tail(20)
                ));
            }
        }
        if interrupted() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let missing: Vec<&str> = ctx
                .nodes
                .iter()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|(n, _)| n.name.as_str())
                .collect();
            return Err(format!(
                "the mesh was not up within setup_timeout {}: {} did not see every other node (logs in {})",
                secs(sc.setup_timeout),
                missing.join(", "),
                ctx.out.join("nodes").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    *ctx.setup_secs.lock().unwrap() = setup_started.elapsed().as_secs_f64();
    let t0 = ctx.rec.set_t0();
    ctx.rec.say(format!(
        "mesh up: every node sees every other ({:.1}s of setup); t = 0",
        setup_started.elapsed().as_secs_f64()
    ));

    let mut threads = Vec::new();
    for (i, c) in sc.clients.iter().enumerate() {
        if let Some(p) = &c.pending {
            ctx.rec
                .say(format!("client {}: pending ({p}); not started", c.name));
            continue;
        }
        let cx = ctx.clone();
        threads.push(std::thread::spawn(move || client_loop(&cx, i, t0)));
    }
    for (i, a) in sc.asserts.iter().enumerate() {
        if a.pending.is_some() || a.check.at_end() {
            continue;
        }
        let cx = ctx.clone();
        threads.push(std::thread::spawn(move || check_window(&cx, i, t0)));
    }
    if sc.vessels.iter().any(|v| v.pending.is_none()) {
        let cx = ctx.clone();
        threads.push(std::thread::spawn(move || watch_vessels(&cx, t0)));
    }
    let mut sampled = vec![false; sc.vessels.len()];
    for a in &sc.asserts {
        if let (Check::VesselOnce { vessel }, None) = (&a.check, &a.pending) {
            if !std::mem::replace(&mut sampled[*vessel], true) {
                let (cx, v) = (ctx.clone(), *vessel);
                threads.push(std::thread::spawn(move || watch_owners(&cx, v, t0)));
            }
        }
    }

    // The timeline: events and deployments, in time order.
    enum Step {
        Event(usize),
        Deploy(usize),
    }
    let mut steps: Vec<(Duration, usize, Step)> = Vec::new();
    for (i, v) in sc.vessels.iter().enumerate() {
        steps.push((v.at, 0, Step::Deploy(i)));
    }
    for (i, e) in sc.events.iter().enumerate() {
        steps.push((e.at, 1, Step::Event(i)));
    }
    steps.sort_by_key(|s| (s.0, s.1));
    let mut next_summary = SUMMARY_EVERY;
    let mut helpers = Vec::new();
    let mut step_iter = steps.into_iter().peekable();
    loop {
        reap_exited(ctx, children);
        let next_step = step_iter.peek().map(|s| s.0);
        let until = [next_step, Some(next_summary), Some(sc.duration)]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        if !sleep_until(ctx, t0, until.min(t0.elapsed() + REAP_EVERY)) {
            break;
        }
        if t0.elapsed() < until {
            continue;
        }
        reap_exited(ctx, children);
        if next_step.is_some_and(|t| t <= until) {
            let (_, _, step) = step_iter.next().unwrap();
            match step {
                Step::Deploy(v) => {
                    let cx = ctx.clone();
                    helpers.push(std::thread::spawn(move || deploy(&cx, v)));
                }
                Step::Event(e) => {
                    if let Some(h) = event(ctx, children, e)? {
                        helpers.push(h);
                    }
                }
            }
            continue;
        }
        if until == sc.duration {
            break;
        }
        if until == next_summary {
            summary(ctx);
            next_summary += SUMMARY_EVERY;
        }
    }
    ctx.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    for t in helpers {
        let _ = t.join();
    }
    if interrupted() {
        return Ok(());
    }
    // End-of-run assertions.
    for (i, a) in sc.asserts.iter().enumerate() {
        if a.pending.is_some() || !a.check.at_end() {
            continue;
        }
        let (ok, detail) = check_at_end(ctx, &a.check);
        decide(ctx, i, ok, detail);
    }
    Ok(())
}

fn decide(ctx: &Ctx, i: usize, ok: bool, detail: String) {
    let t = ctx.rec.t();
    let what = ctx.sc.describe(&ctx.sc.asserts[i]);
    ctx.rec.say(format!(
        "{} {what}: {detail}",
        if ok { "PASS" } else { "FAIL" }
    ));
    ctx.rec.mark(
        if ok { MarkKind::Pass } else { MarkKind::Fail },
        format!("assert[{i}]"),
    );
    ctx.results.lock().unwrap()[i] = AssertResult {
        verdict: if ok { Verdict::Pass } else { Verdict::Fail },
        t: Some(t),
        detail,
    };
}

fn summary(ctx: &Ctx) {
    let mut parts = Vec::new();
    let samples = ctx.rec.samples();
    let mut series: Vec<&str> = samples.iter().map(|s| s.series.as_str()).collect();
    series.sort();
    series.dedup();
    for s in series {
        if let Some(pair) = s.strip_prefix("rtt ") {
            if let Some(v) = ctx.rec.latest(s) {
                parts.push(format!("{pair} {v:.1}ms"));
            }
        }
    }
    for (i, c) in ctx.sc.clients.iter().enumerate() {
        if matches!(c.kind, ClientKind::Kv { .. }) && c.pending.is_none() {
            let st = ctx.clients[i].stats.lock().unwrap();
            let mut recent: Vec<f64> = st.latencies.iter().rev().take(20).map(|x| x.1).collect();
            let m = median(&mut recent)
                .map(|m| format!("{m:.1}ms"))
                .unwrap_or("-".into());
            parts.push(format!(
                "{}: {} ok, {} failed, {} resets, median {m}",
                c.name, st.ok, st.failed, st.resets
            ));
        }
    }
    if !parts.is_empty() {
        ctx.rec.say(format!("status: {}", parts.join("; ")));
    }
}

/// Runs one event; slow ones (migrate) return a thread.
fn event(
    ctx: &Arc<Ctx>,
    children: &mut [Option<Child>],
    e: usize,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    let sc = &ctx.sc;
    let nm = |i: usize| sc.nodes[i].name.clone();
    let label;
    match &sc.events[e].action {
        Action::SetLink { a, b, change } => {
            ctx.router.change_link(*a, *b, change);
            let p = ctx.router.params(*a, *b);
            label = format!(
                "link {}–{}: latency {} ms, jitter {} ms, loss {}, bandwidth {}",
                nm(*a),
                nm(*b),
                p.latency_ms,
                p.jitter_ms,
                p.loss,
                if p.bandwidth_kbps > 0.0 {
                    format!("{} kbit/s", p.bandwidth_kbps)
                } else {
                    "unlimited".into()
                }
            );
        }
        Action::Partition { group } => {
            ctx.router.set_sides(group);
            let mut sides: Vec<Vec<String>> = Vec::new();
            let max = group.iter().copied().max().unwrap_or(0);
            for g in 0..=max {
                let members: Vec<String> = (0..group.len())
                    .filter(|i| group[*i] == g)
                    .map(nm)
                    .collect();
                if !members.is_empty() {
                    sides.push(members);
                }
            }
            label = format!(
                "partition: {}",
                sides
                    .iter()
                    .map(|s| format!("{{{}}}", s.join(",")))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        Action::Heal => {
            ctx.router.set_sides(&vec![0; sc.nodes.len()]);
            label = "heal: every node reaches every other".into();
        }
        Action::Kill { node, term } => {
            reap_exited(ctx, children);
            let n = &ctx.nodes[*node];
            match children[*node].as_mut() {
                Some(c) if n.is_up() => {
                    if *term {
                        // SAFETY: signals a child we own.
                        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
                    } else {
                        let _ = c.kill();
                    }
                    n.up.store(false, Ordering::SeqCst);
                    label = format!(
                        "kill {} ({})",
                        n.name,
                        if *term { "SIGTERM" } else { "SIGKILL" }
                    );
                }
                _ => label = format!("kill {}: it is not running", n.name),
            }
        }
        Action::Restart { node, env } => {
            reap_exited(ctx, children);
            let n = &ctx.nodes[*node];
            if n.is_up() {
                label = format!("restart {}: it is still running (kill it first)", n.name);
            } else {
                if let Some(mut c) = children[*node].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let mut with = String::new();
                if let Some(env) = env {
                    *n.env.lock().unwrap() = env.clone();
                    with = if env.is_empty() {
                        " (no extra environment)".into()
                    } else {
                        format!(
                            " with {}",
                            env.iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        )
                    };
                }
                start_node(ctx, children, *node)?;
                label = format!("restart {}{with}", n.name);
            }
        }
        Action::Migrate { vessel, to } => {
            let v = &sc.vessels[*vessel];
            if let Some(p) = &v.pending {
                ctx.rec.say(format!(
                    "migrate {} → {}: skipped, the vessel is pending ({p})",
                    v.name,
                    nm(*to)
                ));
                return Ok(None);
            }
            label = format!("migrate {} → {}", v.name, nm(*to));
            ctx.rec.say(format!("event: {label}"));
            ctx.rec.mark(MarkKind::Event, label);
            let cx = ctx.clone();
            let (vessel, to) = (*vessel, *to);
            return Ok(Some(std::thread::spawn(move || migrate(&cx, vessel, to))));
        }
        Action::MoveClient { client, to } => {
            let c = &sc.clients[*client];
            let from = ctx.clients[*client].node.swap(*to, Ordering::SeqCst);
            label = format!("client {} moves {} → {}", c.name, nm(from), nm(*to));
        }
    }
    ctx.rec.say(format!("event: {label}"));
    ctx.rec.mark(MarkKind::Event, label);
    Ok(None)
}

fn deploy(ctx: &Ctx, v: usize) {
    let spec = &ctx.sc.vessels[v];
    if let Some(p) = &spec.pending {
        ctx.rec
            .say(format!("vessel {}: pending ({p}); not deployed", spec.name));
        return;
    }
    let on = &ctx.nodes[spec.on];
    let wasm = ctx.wasm[spec.program].clone().expect("built");
    let id = on.peer_id.get().cloned().unwrap_or_default();
    let port = spec.port.map(|p| p.to_string());
    let wasm_s = wasm.to_string_lossy().into_owned();
    let mut rest: Vec<&str> = vec!["--json", "--name", &spec.name, "--on", &id];
    if let Some(p) = &port {
        rest.extend(["--port", p]);
    }
    if spec.pin {
        rest.push("--pin");
    }
    rest.push(&wasm_s);
    rest.extend(spec.args.iter().map(String::as_str));
    match on.cli(&ctx.bins, &ctx.user_key, "deploy", &rest, SLOW_CLI_TIMEOUT) {
        Ok(out) => {
            let j: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            let vid = j["vessel"].as_str().unwrap_or("?").to_string();
            ctx.rec.say(format!(
                "deployed vessel {} on {} (id {})",
                spec.name,
                on.name,
                short(&vid)
            ));
            ctx.rec.mark(
                MarkKind::Event,
                format!("deploy {} on {}", spec.name, on.name),
            );
            ctx.vessels.lock().unwrap()[v].id = Some(vid);
        }
        Err(e) => {
            ctx.rec.say(format!("deploy {} failed: {e}", spec.name));
            ctx.rec.mark(
                MarkKind::ClientError,
                format!("deploy {} failed", spec.name),
            );
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn migrate(ctx: &Ctx, vessel: usize, to: usize) {
    let spec = &ctx.sc.vessels[vessel];
    // Asked of the node the vessel was last seen on, as its user would
    // (during a partition it is the one that can follow the move), else
    // of any node that is up.
    let host = ctx.vessels.lock().unwrap()[vessel].node.clone();
    let Some(via) = ctx
        .nodes
        .iter()
        .find(|n| n.is_up() && host.as_ref() == Some(&n.name))
        .or_else(|| any_up(ctx))
    else {
        ctx.rec.say(format!("migrate {}: no node is up", spec.name));
        return;
    };
    let to_id = ctx.nodes[to].peer_id.get().cloned().unwrap_or_default();
    let started = Instant::now();
    let r = via.cli(
        &ctx.bins,
        &ctx.user_key,
        "migrate",
        &["--json", "--to", &to_id, &spec.name],
        SLOW_CLI_TIMEOUT,
    );
    let line = match r {
        Ok(out) => {
            let j: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            format!(
                "migrate {} → {}: {} in {:.0} ms, downtime {} ms, {} bytes, {} chunks sent, {} skipped",
                spec.name,
                ctx.nodes[to].name,
                j["phase"].as_str().unwrap_or("?"),
                started.elapsed().as_secs_f64() * 1000.0,
                j["downtime_ms"].as_f64().map(|d| format!("{d:.1}")).unwrap_or("?".into()),
                j["bytes_sent"],
                j["chunks_sent"],
                j["chunks_skipped"]
            )
        }
        Err(e) => format!(
            "migrate {} → {} failed: {}",
            spec.name,
            ctx.nodes[to].name,
            last_line(&e)
        ),
    };
    ctx.rec.say(&line);
    ctx.migrations
        .lock()
        .unwrap()
        .push(format!("t={:.2}s {line}", ctx.rec.t()));
}

/// The node a `ps --json` row puts the vessel on, or None when the row is
/// a node's record that the vessel left it (`left`, or `waiting` for the
/// destination to confirm): `ps` shows such a row when the node that runs
/// the vessel does not answer (a partition, a restart), and the vessel is
/// not there.
pub fn where_it_is(row: &serde_json::Value) -> Option<&str> {
    match row["state"].as_str() {
        Some("left") | Some("waiting") => None,
        _ => row["node"].as_str(),
    }
}

/// The last line of a CLI error that printed its progress first, with the
/// command's name (`meshnode migrate on a: `) kept.
pub fn last_line(e: &str) -> String {
    let mut lines = e.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        None => first.to_string(),
        Some(last) => {
            let who = first.split_once(": ").map(|(w, _)| w).unwrap_or_default();
            format!("{who}: {}", last.trim_start_matches("meshnode: "))
        }
    }
}

/// Polls `ps --json` and marks every change of a vessel's node.
fn watch_vessels(ctx: &Ctx, t0: Instant) {
    let mut next = Duration::ZERO;
    while sleep_until(ctx, t0, next) {
        next += WATCH_EVERY;
        let Some(via) = any_up(ctx) else { continue };
        let Ok(out) = via.cli(&ctx.bins, &ctx.user_key, "ps", &["--json"], CLI_TIMEOUT) else {
            continue;
        };
        let rows: Vec<serde_json::Value> = serde_json::from_slice::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        for (i, spec) in ctx.sc.vessels.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| r["name"] == spec.name.as_str()) else {
                continue;
            };
            let node = where_it_is(r).and_then(|p| name_of(ctx, p));
            let state = r["state"].as_str().unwrap_or("?").to_string();
            let mut seen = ctx.vessels.lock().unwrap();
            let s = &mut seen[i];
            if s.node != node && node.is_some() {
                let label = match &s.node {
                    Some(old) => format!("{}: {} → {}", spec.name, old, node.as_deref().unwrap()),
                    None => format!("{} on {}", spec.name, node.as_deref().unwrap()),
                };
                if s.node.is_some() {
                    ctx.rec.mark(MarkKind::Migration, label.clone());
                }
                ctx.rec.say(format!("vessel {label} ({state})"));
                s.node = node;
            }
            if s.state != state {
                s.state = state;
            }
            s.id = r["id"].as_str().map(str::to_string);
            s.migrations = r["migrations"].as_u64().unwrap_or(0);
        }
    }
}

/// A node's durable record of a vessel (`DATA/vessels/ID/record.cbor`,
/// written atomically): its kind (`Owned`, `Left`, `Prepared`, `Ended`)
/// and epoch. None when there is none or it cannot be read.
pub fn read_record(data_dir: &Path, vessel_id: &str) -> Option<(String, u64)> {
    let bytes = std::fs::read(data_dir.join("vessels").join(vessel_id).join("record.cbor")).ok()?;
    parse_record(&bytes)
}

/// The kind and epoch of a CBOR-encoded record: serde's external tagging,
/// `{"Owned": {"epoch": 3, "image": …}}`.
pub fn parse_record(bytes: &[u8]) -> Option<(String, u64)> {
    use ciborium::Value;
    let v: Value = ciborium::from_reader(bytes).ok()?;
    let Value::Map(outer) = v else { return None };
    let [(Value::Text(kind), Value::Map(fields))] = outer.as_slice() else {
        return None;
    };
    let epoch = fields.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Integer(e)) if k == "epoch" => u64::try_from(*e).ok(),
        _ => None,
    })?;
    Some((kind.clone(), epoch))
}

/// `vessel-once`: every ONCE_EVERY, reads each node's record of the vessel
/// (up or not: a stopped node that holds `Owned` runs the vessel again when
/// it starts) and notes every sample where two nodes hold `Owned`.
fn watch_owners(ctx: &Ctx, v: usize, t0: Instant) {
    let mut next = Duration::ZERO;
    while sleep_until(ctx, t0, next) {
        next += ONCE_EVERY;
        let Some(id) = ctx.vessels.lock().unwrap()[v].id.clone() else {
            continue;
        };
        let t = ctx.rec.t();
        let owners: Vec<(String, u64)> = ctx
            .nodes
            .iter()
            .filter_map(|n| {
                read_record(&n.data_dir, &id)
                    .filter(|(kind, _)| kind == "Owned")
                    .map(|(_, epoch)| (n.name.clone(), epoch))
            })
            .collect();
        let mut seen = ctx.once.lock().unwrap();
        let s = &mut seen[v];
        s.samples += 1;
        if let [(node, epoch)] = owners.as_slice() {
            if s.owners
                .last()
                .is_none_or(|(n, e, _)| n != node || e != epoch)
            {
                s.owners.push((node.clone(), *epoch, t));
            }
        }
        if owners.len() > 1 && s.twice.is_none() {
            let who = owners
                .iter()
                .map(|(n, e)| format!("{n} (epoch {e})"))
                .collect::<Vec<_>>()
                .join(" and ");
            let line = format!("at {t:.2}s {who} both hold an Owned record");
            drop(seen);
            ctx.rec.say(format!(
                "vessel {} runs twice: {line}",
                ctx.sc.vessels[v].name
            ));
            ctx.rec.mark(
                MarkKind::ClientError,
                format!("{} twice", ctx.sc.vessels[v].name),
            );
            ctx.once.lock().unwrap()[v].twice = Some(line);
        }
    }
}

/// One poll of a windowed check: (holds, what was seen).
fn check_once(ctx: &Ctx, check: &Check) -> (bool, String) {
    let sc = &ctx.sc;
    match check {
        Check::Rtt {
            from,
            to,
            expect_ms,
            tolerance,
            slack_ms,
        } => {
            let n = &ctx.nodes[*from];
            if !n.is_up() {
                return (false, format!("{} is not running", n.name));
            }
            let expect =
                expect_ms.unwrap_or_else(|| 2.0 * ctx.router.params(*from, *to).latency_ms);
            let id = ctx.nodes[*to].peer_id.get().cloned().unwrap_or_default();
            match n.peers(&ctx.bins, &ctx.user_key) {
                // Only a peer seen now counts: after a partition a node
                // still lists the last smoothed RTT of a connection that
                // carries nothing.
                Ok(rows) => match rows
                    .iter()
                    .find(|r| r["peer_id"] == id.as_str())
                    .filter(|r| sees_row(r, stale_ms(&ctx.sc)))
                    .and_then(|r| r["rtt_ms"].as_f64())
                {
                    Some(rtt) => {
                        let margin = (tolerance * expect).max(*slack_ms);
                        let ok = (rtt - expect).abs() <= margin;
                        (
                            ok,
                            format!("measured {rtt:.2} ms, expected {expect:.2} ± {margin:.2} ms"),
                        )
                    }
                    None => (
                        false,
                        format!(
                            "{} does not see {} (no RTT, or no fresh status)",
                            n.name, ctx.nodes[*to].name
                        ),
                    ),
                },
                Err(e) => (false, e),
            }
        }
        Check::Sees { node, peer, expect } => {
            let n = &ctx.nodes[*node];
            if !n.is_up() {
                return (false, format!("{} is not running", n.name));
            }
            let id = ctx.nodes[*peer].peer_id.get().cloned().unwrap_or_default();
            match n.peers(&ctx.bins, &ctx.user_key) {
                Ok(rows) => {
                    let row = rows.iter().find(|r| r["peer_id"] == id.as_str());
                    let seen = row.is_some_and(|r| sees_row(r, stale_ms(sc)));
                    let what = match row {
                        None => "not listed".to_string(),
                        Some(r) => format!(
                            "member {}, rtt {}, status age {} ms",
                            r["member"], r["rtt_ms"], r["status_age_ms"]
                        ),
                    };
                    (
                        seen == *expect,
                        format!(
                            "{} {}: {what}",
                            if seen { "sees" } else { "does not see" },
                            ctx.nodes[*peer].name
                        ),
                    )
                }
                Err(e) => (false, e),
            }
        }
        Check::VesselOn { vessel, nodes } => {
            let Some(via) = any_up(ctx) else {
                return (false, "no node is up".into());
            };
            let name = &sc.vessels[*vessel].name;
            match via.cli(&ctx.bins, &ctx.user_key, "ps", &["--json"], CLI_TIMEOUT) {
                Ok(out) => {
                    let rows: Vec<serde_json::Value> =
                        serde_json::from_slice::<serde_json::Value>(&out)
                            .ok()
                            .and_then(|v| v.as_array().cloned())
                            .unwrap_or_default();
                    match rows.iter().find(|r| r["name"] == name.as_str()) {
                        Some(r) => {
                            let on = r["node"].as_str().and_then(|p| name_of(ctx, p));
                            let state = r["state"].as_str().unwrap_or("?");
                            let ok = state == "running"
                                && on.as_ref().is_some_and(|o| {
                                    nodes.iter().any(|i| &ctx.nodes[*i].name == o)
                                });
                            (
                                ok,
                                format!(
                                    "{name} is {state} on {}",
                                    on.unwrap_or_else(|| "?".into())
                                ),
                            )
                        }
                        None => (false, format!("{name} is not in `ps`")),
                    }
                }
                Err(e) => (false, e),
            }
        }
        _ => (false, "not a windowed check".into()),
    }
}

fn check_window(ctx: &Ctx, i: usize, t0: Instant) {
    let a = &ctx.sc.asserts[i];
    if !sleep_until_unless_interrupted(t0, a.at) {
        return;
    }
    let end = a.at + a.within;
    let mut last = String::new();
    loop {
        let (ok, detail) = check_once(ctx, &a.check);
        if ok {
            decide(
                ctx,
                i,
                true,
                format!(
                    "{detail} (after {:.1}s)",
                    (t0.elapsed().as_secs_f64() - a.at.as_secs_f64()).max(0.0)
                ),
            );
            return;
        }
        last = if detail.is_empty() { last } else { detail };
        if t0.elapsed() >= end {
            decide(
                ctx,
                i,
                false,
                format!("not true within {}; last: {last}", secs(a.within)),
            );
            return;
        }
        let next = (t0.elapsed() + CHECK_EVERY).min(end);
        if !sleep_until_unless_interrupted(t0, next) {
            return;
        }
    }
}

fn in_window(t: f64, w: &(Duration, Duration)) -> bool {
    t >= w.0.as_secs_f64() && t < w.1.as_secs_f64()
}

fn check_at_end(ctx: &Ctx, check: &Check) -> (bool, String) {
    match check {
        Check::ClientClean { client } => {
            let s = ctx.clients[*client].stats.lock().unwrap();
            let ok = s.failed == 0
                && s.resets == 0
                && s.connect_failures == 0
                && s.wrong == 0
                && s.ok > 0;
            (
                ok,
                format!(
                    "{} requests: {} ok, {} failed ({} wrong answers, {} lost writes), {} resets, {} failed connects{}",
                    s.requests,
                    s.ok,
                    s.failed,
                    s.wrong,
                    s.lost,
                    s.resets,
                    s.connect_failures,
                    s.last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default()
                ),
            )
        }
        Check::ClientLatency {
            client,
            window,
            expect_ms,
            tolerance,
            slack_ms,
        } => {
            let s = ctx.clients[*client].stats.lock().unwrap();
            let mut v: Vec<f64> = s
                .latencies
                .iter()
                .filter(|x| in_window(x.0, window))
                .map(|x| x.1)
                .collect();
            let n = v.len();
            match median(&mut v) {
                Some(m) => {
                    let margin = (tolerance * expect_ms).max(*slack_ms);
                    ((m - expect_ms).abs() <= margin, format!("median {m:.2} ms over {n} requests, expected {expect_ms} ± {margin:.2} ms"))
                }
                None => (false, "no answered request in the window".into()),
            }
        }
        Check::ClientLatencyDrop {
            client,
            before,
            after,
            factor,
        } => {
            let s = ctx.clients[*client].stats.lock().unwrap();
            let mut b: Vec<f64> = s
                .latencies
                .iter()
                .filter(|x| in_window(x.0, before))
                .map(|x| x.1)
                .collect();
            let mut a: Vec<f64> = s
                .latencies
                .iter()
                .filter(|x| in_window(x.0, after))
                .map(|x| x.1)
                .collect();
            match (median(&mut b), median(&mut a)) {
                (Some(mb), Some(ma)) => {
                    let ratio = mb / ma.max(1e-6);
                    (
                        ratio >= *factor,
                        format!("median {mb:.2} ms before, {ma:.2} ms after: {ratio:.1}×"),
                    )
                }
                _ => (false, "no answered request in one of the windows".into()),
            }
        }
        Check::VesselOnce { vessel } => {
            let s = ctx.once.lock().unwrap()[*vessel].clone();
            let owners = s
                .owners
                .iter()
                .map(|(n, e, t)| format!("{n}@{e} from {t:.1}s"))
                .collect::<Vec<_>>()
                .join(", ");
            match (&s.twice, s.samples) {
                (Some(line), _) => (false, format!("{line}; owners in turn: {owners}")),
                (None, 0) => (false, "never sampled (was it deployed?)".into()),
                (None, n) => (
                    !s.owners.is_empty(),
                    format!("{n} samples, never two owners; owners in turn: {owners}"),
                ),
            }
        }
        _ => (false, "not an end-of-run check".into()),
    }
}

fn client_loop(ctx: &Ctx, i: usize, t0: Instant) {
    let spec = &ctx.sc.clients[i];
    if !sleep_until(ctx, t0, spec.start) {
        return;
    }
    ctx.rec.say(format!(
        "client {} ({}) starts at {}",
        spec.name,
        match spec.kind {
            ClientKind::RttProbe => "rtt-probe",
            ClientKind::Kv { .. } => "kv",
        },
        ctx.nodes[ctx.clients[i].node.load(Ordering::SeqCst)].name
    ));
    match &spec.kind {
        ClientKind::RttProbe => probe_loop(ctx, i, t0),
        ClientKind::Kv { target, timeout } => kv_loop(ctx, i, t0, *target, *timeout),
    }
}

fn probe_loop(ctx: &Ctx, i: usize, t0: Instant) {
    let spec = &ctx.sc.clients[i];
    let mut next = spec.start;
    while sleep_until(ctx, t0, next) {
        next += spec.interval;
        let at = ctx.clients[i].node.load(Ordering::SeqCst);
        let n = &ctx.nodes[at];
        if !n.is_up() {
            continue;
        }
        if let Ok(rows) = n.peers(&ctx.bins, &ctx.user_key) {
            for r in rows {
                if let (Some(p), Some(rtt)) = (r["peer_id"].as_str(), r["rtt_ms"].as_f64()) {
                    if let Some(name) = name_of(ctx, p) {
                        ctx.rec.sample(format!("rtt {}→{}", n.name, name), rtt);
                    }
                }
            }
        }
    }
}

/// What a kv client may read back from one key: every value it may hold
/// (None: NOT_FOUND, never written). One value once a SET was answered or
/// a GET told; more while a SET got no answer (it may or may not have been
/// applied).
type MayHold = Vec<Option<String>>;

/// The request number `seq` (from 1) of a kv client: odd ones SET the key
/// `seq / 2 mod KV_KEYS` to `v<seq>`, even ones GET the key the next SET
/// will write, i.e. read back the write made KV_KEYS − 1 SETs before.
/// Returns (request line, key index, the value a SET writes).
pub fn kv_request(client: &str, seq: u64) -> (String, usize, Option<String>) {
    let m = (seq - 1) / 2;
    if seq % 2 == 1 {
        let k = (m % KV_KEYS) as usize;
        let v = format!("v{seq}");
        (format!("SET {client}-k{k} {v}\n"), k, Some(v))
    } else {
        let k = ((m + 1) % KV_KEYS) as usize;
        (format!("GET {client}-k{k}\n"), k, None)
    }
}

/// Judges the answer `line` to a kv request against what the key may
/// hold, and updates it: Ok(()) for a right answer, Err((what, lost)).
pub fn kv_judge(may: &mut MayHold, set: Option<&str>, line: &str) -> Result<(), (String, bool)> {
    match set {
        Some(v) => {
            if line == "OK" {
                *may = vec![Some(v.to_string())];
                Ok(())
            } else {
                may.push(Some(v.to_string()));
                Err((format!("SET answered {line:?}"), false))
            }
        }
        None => {
            let got = if line == "NOT_FOUND" {
                None
            } else if let Some(v) = line.strip_prefix("VALUE ") {
                Some(v.to_string())
            } else {
                return Err((format!("GET answered {line:?}"), false));
            };
            let ok = may.contains(&got);
            let want = may
                .iter()
                .map(|v| v.as_deref().unwrap_or("NOT_FOUND"))
                .collect::<Vec<_>>()
                .join(" or ");
            // From now on the key holds what the server said: a lost write
            // is counted once.
            *may = vec![got];
            if ok {
                Ok(())
            } else {
                Err((format!("lost write: expected {want}, got {line:?}"), true))
            }
        }
    }
}

/// When a kv client sends its next request, given when this one was due
/// and now: one interval later, except after a stall (a request that
/// waited for a migration or a partition), where the slots it missed are
/// skipped rather than sent back to back.
pub fn next_request(due: Duration, now: Duration, interval: Duration) -> Duration {
    if now > due + interval {
        now + interval
    } else {
        due + interval
    }
}

/// The kv client: one connection at a time from the node it is attached
/// to, one request per interval, alternating SET and a GET that reads back
/// an earlier write (`kv_request`), so a write lost in a move or a restart
/// shows as a wrong answer. A reset, a timeout or a wrong answer is a
/// failed request and the connection is made again. It stops at its
/// `stop` time or the end of the run.
fn kv_loop(ctx: &Ctx, i: usize, t0: Instant, target: Target, timeout: Duration) {
    let spec = &ctx.sc.clients[i];
    let rt = &ctx.clients[i];
    let series = format!("client {}", spec.name);
    let stop = spec.stop.unwrap_or(ctx.sc.duration);
    let mut may: Vec<MayHold> = vec![vec![None]; KV_KEYS as usize];
    let mut next = spec.start;
    let mut seq: u64 = 0;
    'outer: while !ctx.stop.load(Ordering::SeqCst) && !interrupted() && t0.elapsed() < stop {
        let at = rt.node.load(Ordering::SeqCst);
        let n = &ctx.nodes[at];
        if let Err(e) = n.ns.enter() {
            rt.stats.lock().unwrap().last_error = Some(format!("setns: {e}"));
            return;
        }
        let (node, port) = match target {
            Target::Node(j, p) => (j, p),
            Target::Local(p) => (at, p),
        };
        let addr = SocketAddr::from((ctx.nodes[node].addr, port));
        let stream = match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => s,
            Err(e) => {
                let mut st = rt.stats.lock().unwrap();
                st.connect_failures += 1;
                st.last_error = Some(format!("connect {addr} from {}: {e}", n.name));
                drop(st);
                ctx.rec.mark(
                    MarkKind::ClientError,
                    format!("{}: connect failed", spec.name),
                );
                next = t0.elapsed().max(next) + spec.interval;
                if next >= stop || !sleep_until(ctx, t0, next) {
                    break;
                }
                continue;
            }
        };
        rt.stats.lock().unwrap().connects += 1;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        let mut w = match stream.try_clone() {
            Ok(w) => w,
            Err(_) => continue,
        };
        let mut r = BufReader::new(stream);
        loop {
            if next >= stop || !sleep_until(ctx, t0, next) {
                let _ = w.shutdown(std::net::Shutdown::Both);
                break 'outer;
            }
            next = next_request(next, t0.elapsed(), spec.interval);
            if rt.node.load(Ordering::SeqCst) != at {
                rt.stats.lock().unwrap().moves += 1;
                let _ = w.shutdown(std::net::Shutdown::Both);
                continue 'outer;
            }
            seq += 1;
            let (req, key, set) = kv_request(&spec.name, seq);
            let started = Instant::now();
            let t = ctx.rec.t();
            let mut line = String::new();
            let res = w
                .write_all(req.as_bytes())
                .and_then(|_| r.read_line(&mut line));
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut st = rt.stats.lock().unwrap();
            st.requests += 1;
            match res {
                Ok(0) => {
                    st.failed += 1;
                    st.last_error = Some(format!("{addr} closed the connection"));
                }
                Ok(_) => match kv_judge(&mut may[key], set.as_deref(), line.trim_end()) {
                    Ok(()) => {
                        st.ok += 1;
                        st.latencies.push((t, ms));
                        drop(st);
                        ctx.rec.sample(series.clone(), ms);
                        continue;
                    }
                    Err((what, lost)) => {
                        st.failed += 1;
                        st.wrong += 1;
                        if lost {
                            st.lost += 1;
                        }
                        st.last_error = Some(format!("{}: {what}", req.trim_end()));
                    }
                },
                Err(e) => {
                    st.failed += 1;
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) {
                        st.resets += 1;
                    }
                    st.last_error = Some(format!("{addr}: {e}"));
                    // A SET without an answer may or may not have been
                    // applied.
                    if let Some(v) = &set {
                        may[key].push(Some(v.clone()));
                    }
                }
            }
            let err = st.last_error.clone().unwrap_or_default();
            drop(st);
            ctx.rec
                .mark(MarkKind::ClientError, format!("{}: {err}", spec.name));
            let failures = rt.stats.lock().unwrap().failed;
            if failures <= MAX_FAILURES_SHOWN {
                ctx.rec
                    .say(format!("client {}: request failed: {err}", spec.name));
                if failures == MAX_FAILURES_SHOWN {
                    ctx.rec.say(format!(
                        "client {}: further failures are counted and marked on the timeline, not shown",
                        spec.name
                    ));
                }
            }
            continue 'outer;
        }
    }
    if spec.stop.is_some() && !ctx.stop.load(Ordering::SeqCst) {
        ctx.rec.say(format!("client {} stops", spec.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_does_not_move_a_vessel_to_a_node_it_left() {
        // A partition hid the host: `ps` through a shows a's own record.
        let left = serde_json::json!({"name": "svc", "node": "A", "state": "left"});
        assert_eq!(where_it_is(&left), None);
        let waiting = serde_json::json!({"name": "svc", "node": "A", "state": "waiting"});
        assert_eq!(where_it_is(&waiting), None);
        for state in ["running", "migrating", "stopped", "exited"] {
            let r = serde_json::json!({"name": "svc", "node": "D", "state": state});
            assert_eq!(where_it_is(&r), Some("D"), "{state}");
        }
    }

    #[test]
    fn a_failed_migrate_is_one_line() {
        let e = "meshnode migrate on a: warming: round 0, 0.0 MiB sent\nfinal: round 0\nmeshnode: migration of 5acd aborted; it runs on at X: Y refused\n";
        assert_eq!(
            last_line(e),
            "meshnode migrate on a: migration of 5acd aborted; it runs on at X: Y refused"
        );
        assert_eq!(
            last_line("meshnode migrate on a: no vessel"),
            "meshnode migrate on a: no vessel"
        );
    }

    #[test]
    fn a_stalled_kv_client_does_not_fire_its_missed_requests_at_once() {
        let ms = Duration::from_millis;
        // On time, or a little late: the schedule holds.
        assert_eq!(next_request(ms(1000), ms(1000), ms(100)), ms(1100));
        assert_eq!(next_request(ms(1000), ms(1060), ms(100)), ms(1100));
        // A request that waited 5 s: the next one comes an interval after
        // it, not 49 requests back to back.
        assert_eq!(next_request(ms(1000), ms(6000), ms(100)), ms(6100));
    }

    #[test]
    fn a_kv_get_reads_back_the_oldest_write() {
        assert_eq!(
            kv_request("c", 1),
            ("SET c-k0 v1\n".into(), 0, Some("v1".into()))
        );
        assert_eq!(kv_request("c", 2), ("GET c-k1\n".into(), 1, None));
        assert_eq!(
            kv_request("c", 3),
            ("SET c-k1 v3\n".into(), 1, Some("v3".into()))
        );
        // After a full round the GET reads the key the next SET writes,
        // written KV_KEYS − 1 SETs before.
        let round = 2 * KV_KEYS;
        assert_eq!(kv_request("c", round).1, 0);
        assert_eq!(kv_request("c", round + 1).1, 0);
        assert_eq!(kv_request("c", round + 2), ("GET c-k1\n".into(), 1, None));
    }

    #[test]
    fn a_lost_write_is_a_wrong_answer_counted_once() {
        let mut may: MayHold = vec![None];
        assert!(kv_judge(&mut may, None, "NOT_FOUND").is_ok());
        assert!(kv_judge(&mut may, Some("v1"), "OK").is_ok());
        assert!(kv_judge(&mut may, None, "VALUE v1").is_ok());
        // A server that restarted from an older state forgot v1.
        let e = kv_judge(&mut may, None, "NOT_FOUND").unwrap_err();
        assert!(e.1 && e.0.contains("expected v1"), "{e:?}");
        // What it said is what the key holds now.
        assert!(kv_judge(&mut may, None, "NOT_FOUND").is_ok());
        // A SET without an answer may or may not have been applied.
        may = vec![Some("v1".into()), Some("v3".into())];
        assert!(kv_judge(&mut may.clone(), None, "VALUE v1").is_ok());
        assert!(kv_judge(&mut may, None, "VALUE v3").is_ok());
        assert_eq!(may, vec![Some("v3".to_string())]);
        let e = kv_judge(&mut may, Some("v5"), "ERR").unwrap_err();
        assert!(!e.1, "{e:?}");
        assert!(kv_judge(&mut may, None, "garbage").is_err());
    }

    #[test]
    fn records_are_read_as_the_node_writes_them() {
        // The node's encoding (serde, externally tagged, in CBOR).
        #[derive(serde::Serialize)]
        enum Record {
            Owned {
                epoch: u64,
                image: [u8; 4],
            },
            Left {
                epoch: u64,
                image: [u8; 4],
                to: Vec<u8>,
                acked: bool,
            },
        }
        let enc = |r: &Record| {
            let mut b = Vec::new();
            ciborium::into_writer(r, &mut b).unwrap();
            b
        };
        assert_eq!(
            parse_record(&enc(&Record::Owned {
                epoch: 3,
                image: [1; 4]
            })),
            Some(("Owned".into(), 3))
        );
        assert_eq!(
            parse_record(&enc(&Record::Left {
                epoch: 4,
                image: [1; 4],
                to: vec![9],
                acked: false
            })),
            Some(("Left".into(), 4))
        );
        assert_eq!(parse_record(b"not cbor"), None);
    }
}
