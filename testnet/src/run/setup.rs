//! Setting a run up: the output directory, a namespace and a TUN device per
//! node, the user key, the servers outside the mesh, the nodes, and the
//! wait until every node sees every other (t = 0).

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering as AtOrd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::processes::Procs;
use crate::checks::converged::CONVERGE_PARALLEL;
use crate::ctx::{interrupted, stale_ms, Ctx, CLI_TIMEOUT};
use crate::netns::NetNs;
use crate::nodes::{output_within, NodeRt};
use crate::record::Recorder;
use crate::scenario::{secs, Discovery, Scenario, Server};
use crate::view::{sees_row, up_member_row};

/// Marker file of an output directory (testnet only empties such a one).
const OUT_MARKER: &str = ".testnet-out";
/// How long a server gets to start listening.
const SERVER_START: Duration = Duration::from_secs(20);
/// How long one connect to a starting server may take.
const SERVER_CONNECT: Duration = Duration::from_millis(200);
/// How often a starting server is tried.
const SERVER_POLL: Duration = Duration::from_millis(100);
/// How often every node is asked whom it sees while the mesh forms.
const MESH_POLL: Duration = Duration::from_millis(300);

/// Empties (one testnet wrote) or creates the output directory.
pub fn prepare_out(out: &Path) -> Result<(), String> {
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

/// Runs `ip -batch -` in a namespace with these commands: one process per
/// namespace instead of one per command (at 100 nodes, 100 processes
/// rather than 400).
fn ip_batch(ns: &NetNs, commands: &[String]) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = ns
        .command("ip", false)
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip -batch: {e}"))?;
    let script = commands.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
    }
    let o = child
        .wait_with_output()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch ({}): {}",
            commands.join("; "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A namespace with its TUN device `tn0` up at the node's address, and the
/// node's directories.
fn namespace(sc: &Scenario, i: usize, out: &Path) -> Result<(NodeRt, OwnedFd), String> {
    let spec = &sc.nodes[i];
    let ns = NetNs::create().map_err(|e| e.to_string())?;
    let tun = ns.open_tun("tn0").map_err(|e| e.to_string())?;
    let a = Scenario::addr(i);
    ip_batch(
        &ns,
        &[
            "link set lo up".into(),
            format!("addr add {a}/24 dev tn0"),
            "link set tn0 mtu 1500 up".into(),
            "route add 224.0.0.0/4 dev tn0".into(),
        ],
    )?;
    let node = NodeRt::new(
        &spec.name,
        i,
        (spec.arch, spec.frozen),
        spec.env.clone(),
        ns,
        out,
    )
    .map_err(|e| e.to_string())?;
    Ok((node, tun))
}

/// Namespaces set up at once: each is a few syscalls and one `ip`
/// process, mostly waiting on the kernel, so a few in parallel make 100 of
/// them take about a second instead of several.
const SETUP_WORKERS: usize = 8;
/// A progress line every this many namespaces (when there are more).
const SETUP_PROGRESS_EVERY: usize = 25;

/// A node's namespace set up, or why not.
type NamespaceResult = Result<(NodeRt, OwnedFd), String>;

/// Every node's namespace and TUN device, set up by SETUP_WORKERS threads;
/// says how far it got every SETUP_PROGRESS_EVERY namespaces.
pub fn namespaces(
    sc: &Scenario,
    out: &Path,
    rec: &Recorder,
) -> Result<(Vec<NodeRt>, Vec<OwnedFd>), String> {
    let n = sc.nodes.len();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<NamespaceResult>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..SETUP_WORKERS.min(n) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, AtOrd::SeqCst);
                if i >= n {
                    return;
                }
                let r = namespace(sc, i, out)
                    .map_err(|e| format!("node {}: namespace setup: {e}", sc.nodes[i].name));
                let failed = r.is_err();
                *slots[i].lock().unwrap() = Some(r);
                if failed {
                    // The others stop taking new ones.
                    next.store(n, AtOrd::SeqCst);
                }
                let d = done.fetch_add(1, AtOrd::SeqCst) + 1;
                if n > SETUP_PROGRESS_EVERY && d.is_multiple_of(SETUP_PROGRESS_EVERY) && d < n {
                    rec.say(format!(
                        "namespaces: {d}/{n} set up ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            });
        }
    });
    let mut nodes = Vec::with_capacity(n);
    let mut tuns = Vec::with_capacity(n);
    for (i, slot) in slots.into_iter().enumerate() {
        match slot.into_inner().unwrap() {
            Some(Ok((node, tun))) => {
                nodes.push(node);
                tuns.push(tun);
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(format!(
                    "node {}: namespace setup: not started (an earlier one failed)",
                    sc.nodes[i].name
                ))
            }
        }
    }
    rec.say(format!(
        "namespaces: {n} set up in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok((nodes, tuns))
}

/// One user key for the whole mesh, at `out/user.key`.
pub fn keygen(meshnode: &Path, out: &Path) -> Result<PathBuf, String> {
    let user_key = out.join("user.key");
    let mut kg = std::process::Command::new(meshnode);
    kg.args(["keygen", "--json", "--user-key"]).arg(&user_key);
    match output_within(kg, CLI_TIMEOUT) {
        Ok((true, _, _)) => Ok(user_key),
        Ok((false, _, e)) => Err(format!(
            "meshnode keygen: {}",
            String::from_utf8_lossy(&e).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", meshnode.display())),
    }
}

/// Everything up to t = 0: servers, nodes, and every node seeing every
/// other. Ok(false) when Ctrl-C came first.
pub fn bring_up(ctx: &Ctx, procs: &mut Procs) -> Result<bool, String> {
    let started = Instant::now();
    let deadline = started + ctx.sc.setup_timeout;
    // Servers outside the mesh, first: they are ready by t = 0.
    for s in &ctx.sc.servers {
        start_server(ctx, procs, s)?;
    }
    start_nodes(ctx, procs, deadline)?;
    if ctx.sc.wait_for_mesh && !mesh_up(ctx, procs, deadline)? {
        return Ok(false);
    }
    *ctx.setup_secs.lock().unwrap() = started.elapsed().as_secs_f64();
    Ok(true)
}

/// `meshnode run --tcplisten` in the node's namespace, waited for until it
/// accepts a connection.
fn start_server(ctx: &Ctx, procs: &mut Procs, s: &Server) -> Result<(), String> {
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
    procs.servers.push(child);
    let addr = SocketAddr::from((n.addr, s.port));
    let up =
        n.ns.run(|| {
            let until = Instant::now() + SERVER_START;
            while Instant::now() < until {
                if TcpStream::connect_timeout(&addr, SERVER_CONNECT).is_ok() {
                    return Ok(true);
                }
                std::thread::sleep(SERVER_POLL);
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
    Ok(())
}

/// The first node, then the others with it as their peer (or all at once
/// with mDNS only).
fn start_nodes(ctx: &Ctx, procs: &mut Procs, deadline: Instant) -> Result<(), String> {
    let all = 0..ctx.nodes.len();
    let first = if ctx.sc.discovery == Discovery::Mdns {
        0..0
    } else {
        0..1
    };
    let _ = ctx.cold_start.set(Instant::now());
    for i in first.clone() {
        procs.start_node(ctx, i)?;
        procs.wait_ready(ctx, i, deadline)?;
    }
    let rest = first.end..all.end;
    for i in rest.clone() {
        procs.start_node(ctx, i)?;
    }
    for i in rest {
        procs.wait_ready(ctx, i, deadline)?;
    }
    for n in &ctx.nodes {
        ctx.rec.say(format!(
            "node {} ({}) started: {} {}",
            n.name,
            n.build_words(),
            n.addr,
            n.peer_id.get().map(String::as_str).unwrap_or("?")
        ));
    }
    Ok(())
}

/// What node `i`'s `peers --json` says now: (it sees every other node, it
/// lists every other node as an up member). (false, false) when the CLI
/// call fails.
pub fn node_view(ctx: &Ctx, i: usize) -> (bool, bool) {
    let Ok(rows) = ctx.nodes[i].peers(&ctx.bins, &ctx.user_key) else {
        return (false, false);
    };
    let stale = stale_ms(&ctx.sc);
    let others = || ctx.nodes.iter().filter(|m| m.index != i);
    let row_of = |m: &NodeRt| {
        let id = m.peer_id.get().map(String::as_str).unwrap_or_default();
        rows.iter().find(|r| r["peer_id"] == id)
    };
    let sees = others().all(|m| row_of(m).is_some_and(|r| sees_row(r, stale)));
    let members = others().all(|m| row_of(m).is_some_and(up_member_row));
    (sees, members)
}

/// Records that node `i` listed every other as an up member now, if it is
/// the first time.
pub fn note_converged(ctx: &Ctx, i: usize) {
    let since = ctx
        .cold_start
        .get()
        .map_or(0.0, |t| t.elapsed().as_secs_f64());
    let mut c = ctx.converged.lock().unwrap();
    if c[i].is_none() {
        c[i] = Some(since);
    }
}

/// How often a progress line says how far the mesh is while it forms.
const MESH_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Waits until every node sees every other; Ok(false) on Ctrl-C. Each
/// round asks only the nodes that do not yet (one `peers` call each,
/// CONVERGE_PARALLEL at a time: at 100 nodes a round takes seconds, which
/// is the poll rate), and notes when each first lists every other as an up member
/// (the `converged` check).
fn mesh_up(ctx: &Ctx, procs: &mut Procs, deadline: Instant) -> Result<bool, String> {
    let n = ctx.nodes.len();
    let mut done = vec![false; n];
    let mut last_progress = Instant::now();
    loop {
        let round = Instant::now();
        let todo: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        for batch in todo.chunks(CONVERGE_PARALLEL) {
            let seen: Vec<(usize, bool)> = std::thread::scope(|s| {
                let calls: Vec<_> = batch
                    .iter()
                    .map(|&i| {
                        s.spawn(move || {
                            let (sees, members) = node_view(ctx, i);
                            if members {
                                note_converged(ctx, i);
                            }
                            (i, sees)
                        })
                    })
                    .collect();
                calls.into_iter().filter_map(|c| c.join().ok()).collect()
            });
            for (i, sees) in seen {
                done[i] = sees;
            }
        }
        let count = done.iter().filter(|d| **d).count();
        if count == n {
            return Ok(true);
        }
        if last_progress.elapsed() >= MESH_PROGRESS_EVERY {
            last_progress = Instant::now();
            ctx.rec.say(format!(
                "mesh forming: {count}/{n} nodes see every other ({:.1}s since the first start; a round of `peers` took {:.1}s)",
                ctx.cold_start.get().map_or(0.0, |t| t.elapsed().as_secs_f64()),
                round.elapsed().as_secs_f64()
            ));
        }
        if let Some(e) = procs.exited_early(ctx) {
            return Err(e);
        }
        if interrupted() {
            return Ok(false);
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
                "the mesh was not up within setup_timeout {}: {} of {n} nodes did not see every other node: {} (logs in {})",
                secs(ctx.sc.setup_timeout),
                missing.len(),
                missing.join(", "),
                ctx.out.join("nodes").display()
            ));
        }
        std::thread::sleep(MESH_POLL.saturating_sub(round.elapsed()));
    }
}
