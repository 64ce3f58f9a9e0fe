//! Setting a run up: the output directory, a namespace and a TUN device per
//! node, the user key, the servers outside the mesh, the nodes, and the
//! wait until every node sees every other (t = 0).

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::processes::Procs;
use crate::ctx::{interrupted, stale_ms, Ctx, CLI_TIMEOUT};
use crate::netns::NetNs;
use crate::nodes::{output_within, NodeRt};
use crate::scenario::{secs, Discovery, Scenario, Server};
use crate::view::sees_row;

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

/// A namespace with its TUN device `tn0` up at the node's address, and the
/// node's directories.
fn namespace(sc: &Scenario, i: usize, out: &Path) -> Result<(NodeRt, OwnedFd), String> {
    let spec = &sc.nodes[i];
    let ns = NetNs::create().map_err(|e| e.to_string())?;
    let tun = ns.open_tun("tn0").map_err(|e| e.to_string())?;
    let a = Scenario::addr(i);
    ip(&ns, &["link", "set", "lo", "up"])?;
    ip(&ns, &["addr", "add", &format!("{a}/24"), "dev", "tn0"])?;
    ip(&ns, &["link", "set", "tn0", "mtu", "1500", "up"])?;
    ip(&ns, &["route", "add", "224.0.0.0/4", "dev", "tn0"])?;
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

/// Every node's namespace and TUN device.
pub fn namespaces(sc: &Scenario, out: &Path) -> Result<(Vec<NodeRt>, Vec<OwnedFd>), String> {
    let mut nodes = Vec::new();
    let mut tuns = Vec::new();
    for i in 0..sc.nodes.len() {
        let (n, t) = namespace(sc, i, out)
            .map_err(|e| format!("node {}: namespace setup: {e}", sc.nodes[i].name))?;
        nodes.push(n);
        tuns.push(t);
    }
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
    if !mesh_up(ctx, procs, deadline)? {
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

/// Whether node `i` sees every other node.
fn sees_all(ctx: &Ctx, i: usize) -> bool {
    let Ok(rows) = ctx.nodes[i].peers(&ctx.bins, &ctx.user_key) else {
        return false;
    };
    let stale = stale_ms(&ctx.sc);
    ctx.nodes.iter().filter(|m| m.index != i).all(|m| {
        let id = m.peer_id.get().unwrap();
        rows.iter()
            .any(|r| r["peer_id"] == id.as_str() && sees_row(r, stale))
    })
}

/// Waits until every node sees every other; Ok(false) on Ctrl-C.
fn mesh_up(ctx: &Ctx, procs: &mut Procs, deadline: Instant) -> Result<bool, String> {
    let mut done = vec![false; ctx.nodes.len()];
    loop {
        for (i, d) in done.iter_mut().enumerate() {
            *d = *d || sees_all(ctx, i);
        }
        if done.iter().all(|d| *d) {
            return Ok(true);
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
                "the mesh was not up within setup_timeout {}: {} did not see every other node (logs in {})",
                secs(ctx.sc.setup_timeout),
                missing.join(", "),
                ctx.out.join("nodes").display()
            ));
        }
        std::thread::sleep(MESH_POLL);
    }
}
