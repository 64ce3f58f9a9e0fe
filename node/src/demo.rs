//! `meshnode demo`: a small mesh of local nodes, a vessel moving around it
//! while it runs, and what happens, step by step.
//!
//! Real parts only: the nodes are `meshnode start` processes (this same
//! binary) on 127.0.0.1, each with its own data directory under one scratch
//! directory, enrolled with a scratch user key (your own keys and data are
//! not touched); the commands go through the same signed control protocol as
//! the CLI's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse};
use protocol::snapshot::Hash;
use protocol::vessel::{log_records, Deployment, DeploymentBody, VesselId, VESSEL_VERSION};

use crate::control::client::Session;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many nodes (2 to 8).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Move the vessel this often.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::control::cli::parse_duration)]
    pub every: Duration,
    /// Keep the scratch directory (node logs, data) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Run this WASI module instead of the built-in ticker.
    pub module: Option<PathBuf>,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The built-in vessel (node/wat/ticker.wat, assembled by build.rs): 30
/// ticks, each some arithmetic, a line `tick N total T` (T carries its state
/// across every move), and a 300 ms sleep.
const TICKER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ticker.wasm"));

struct DemoNode {
    name: String,
    child: Child,
    dir: PathBuf,
    peer_id: String,
    addrs: Vec<String>,
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        // SIGTERM: the node stops cleanly (and says so in its log).
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child pid"),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn say(text: impl std::fmt::Display) {
    println!("{text}");
}

fn start_node(
    exe: &Path,
    root: &Path,
    name: &str,
    key: &Path,
    peers: &[String],
) -> Result<DemoNode> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let log = std::fs::File::create(root.join(format!("{name}.log")))?;
    let mut c = Process::new(exe);
    c.arg("start")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--user-key")
        .arg(key)
        // Nodes on one machine would all take its hostname: a name each.
        .args(["--name", &format!("demo-{name}")])
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--no-mdns",
            "--no-kademlia",
            "--ping-interval",
            "500ms",
            "--status-interval",
            "500ms",
        ]);
    for p in peers {
        c.args(["--peer", p]);
    }
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let child = c
        .spawn()
        .with_context(|| format!("cannot start node {name}"))?;
    let mut node = DemoNode {
        name: name.to_string(),
        child,
        dir,
        peer_id: String::new(),
        addrs: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = node.child.try_wait()? {
            bail!(
                "node {name} exited ({st}); its log: {}",
                root.join(format!("{name}.log")).display()
            );
        }
        if let Ok(text) = std::fs::read_to_string(node.dir.join("node.addrs")) {
            let addrs: Vec<String> = text.lines().map(str::to_string).collect();
            if addrs.iter().any(|a| a.contains("/quic-v1/"))
                && addrs.iter().any(|a| a.contains("/tcp/"))
            {
                node.peer_id = addrs[0].rsplit("/p2p/").next().unwrap_or("").to_string();
                node.addrs = addrs;
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            bail!("node {name} did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn short(peer: &str) -> String {
    let n = peer.len();
    format!("…{}", &peer[n.saturating_sub(6)..])
}

/// `meshnode demo`.
pub fn run_demo(args: DemoArgs) -> Result<i32> {
    if !(2..=8).contains(&args.nodes) {
        bail!("--nodes must be between 2 and 8");
    }
    let exe = std::env::current_exe().context("cannot find the meshnode binary")?;
    let scratch = tempfile::Builder::new()
        .prefix("meshnode-demo-")
        .tempdir()
        .context("cannot make a scratch directory")?;
    let root = scratch.path().to_path_buf();
    let key_path = root.join("user.key");
    let (user, _) = crate::identity::read_or_create_key(&key_path)?;

    let (module, vessel_name, vessel_args) = match &args.module {
        Some(p) => (
            crate::dock::read_module_file(p)?,
            p.file_stem()
                .map_or("vessel".into(), |s| s.to_string_lossy().to_string()),
            args.args.clone(),
        ),
        None => (TICKER_WASM.to_vec(), "ticker".to_string(), Vec::new()),
    };

    say(format_args!(
        "meshnode demo: {} nodes on 127.0.0.1, each a `meshnode start` process with its own data directory under {}",
        args.nodes,
        root.display()
    ));
    let names: Vec<String> = (0..args.nodes)
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect();
    let mut nodes: Vec<DemoNode> = Vec::new();
    for name in &names {
        let peers: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.addrs.iter().find(|a| a.contains("quic")).cloned())
            .collect();
        let n = start_node(&exe, &root, name, &key_path, &peers)?;
        say(format_args!("  node {name}: {}", n.peer_id));
        nodes.push(n);
    }
    let node_name = |peer: &str| -> String {
        nodes
            .iter()
            .find(|n| n.peer_id == peer)
            .map_or_else(|| short(peer), |n| n.name.clone())
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let a_addrs: Vec<libp2p::Multiaddr> = nodes[0]
        .addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut session = rt.block_on(Session::connect(&a_addrs))?;
    let mut call = |command: Command| -> Result<ControlResponse> {
        Ok(rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), session.signed(&user, command)).await
        })??)
    };

    // Wait until node a sees every other node as a member.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let ControlResponse::Peers(p) = call(Command::Peers { all: false })? {
            if p.iter().filter(|x| x.member && x.rtt_us.is_some()).count() >= args.nodes - 1 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not find each other within 30 s (logs in {})",
                root.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    say("  the nodes found each other: every one is a member of your (scratch) mesh\n");

    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let body = DeploymentBody {
        version: VESSEL_VERSION,
        vessel: VesselId(id),
        name: vessel_name.clone(),
        module_hash: Hash::of(&module),
        args: vessel_args,
        env: vec![],
        volumes: vec![],
        mounts: vec![],
        ports: vec![],
        checkpoint_every_ms: None,
        replicas: None,
        durability: None,
        max_memory_bytes: None,
        restart: None,
    };
    let deployment = Deployment::sign(&user, body);
    let ControlResponse::Deployed { vessel, .. } = call(Command::Deploy {
        deployment,
        module,
        volume_chunks: vec![],
        on: None,
        pinned: false,
    })?
    else {
        bail!("unexpected answer to deploy");
    };
    say(format_args!(
        "deployed vessel {vessel_name} ({vessel}) on node a; its output:"
    ));

    let mut from = 0u64;
    let mut last_move = Instant::now();
    let mut moves = 0u32;
    let mut here = 0usize;
    let mut downtimes: Vec<f64> = Vec::new();
    // Partial lines per stream (a program may write a line in pieces).
    let mut pending: [String; 2] = [String::new(), String::new()];
    loop {
        // Print what the vessel wrote since last time, wherever it runs.
        let ended = match call(Command::Logs {
            vessel: vessel.to_hex(),
            from,
            generation: None,
            since_unix_ms: None,
        }) {
            Ok(ControlResponse::Logs(page)) => {
                for (stream, bytes) in log_records(&page.records) {
                    let k = usize::from(stream == 2);
                    pending[k].push_str(&String::from_utf8_lossy(bytes));
                    while let Some(nl) = pending[k].find('\n') {
                        let line: String = pending[k].drain(..=nl).collect();
                        let tag = if k == 1 { "stderr" } else { "stdout" };
                        say(format_args!(
                            "  [{vessel_name} on {} {tag}] {}",
                            node_name(&page.node),
                            line.trim_end()
                        ));
                    }
                }
                let progressed = page.next > from;
                from = page.next;
                page.ended.filter(|_| !progressed)
            }
            _ => None,
        };
        if let Some(exit) = ended {
            say(format_args!(
                "\nthe vessel ended on node {} ({exit}) after {moves} moves; every line above was printed once, in order, wherever it ran.",
                nodes[here].name
            ));
            break;
        }
        if last_move.elapsed() >= args.every {
            let to = (here + 1) % nodes.len();
            let response = call(Command::Migrate {
                vessel: vessel.to_hex(),
                to: nodes[to].peer_id.clone(),
            });
            match response {
                Ok(ControlResponse::Migration(mut r)) => {
                    while !r.phase.is_over() {
                        std::thread::sleep(Duration::from_millis(20));
                        match call(Command::MigrationStatus {
                            vessel,
                            source: r.from.clone(),
                        })? {
                            ControlResponse::Migration(x) => r = x,
                            other => bail!("unexpected answer {other:?}"),
                        }
                    }
                    match &r.error {
                        None => {
                            let ms = r.downtime_us.unwrap_or(0) as f64 / 1000.0;
                            downtimes.push(ms);
                            moves += 1;
                            say(format_args!(
                                "  >> moved {vessel_name} from node {} to node {} while it ran: paused {ms:.1} ms, {} pre-copy rounds, {} chunks sent ({:.0} KiB), {} skipped (already there)",
                                nodes[here].name, nodes[to].name, r.rounds, r.chunks_sent, r.bytes_sent as f64 / 1024.0, r.chunks_skipped
                            ));
                            here = to;
                        }
                        Some(e) => say(format_args!("  >> not moved: {e}")),
                    }
                }
                Ok(other) => bail!("unexpected answer {other:?}"),
                Err(e) => say(format_args!("  >> not moved: {e}")),
            }
            last_move = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !downtimes.is_empty() {
        downtimes.sort_by(f64::total_cmp);
        say(format_args!(
            "pauses: median {:.1} ms, longest {:.1} ms (from the vessel stopping on one node to it running on the next)",
            downtimes[downtimes.len() / 2],
            downtimes[downtimes.len() - 1]
        ));
    }
    if let ControlResponse::Vessels(rows) = call(Command::Ps)? {
        say("\n`meshnode ps` now says:");
        for v in rows {
            let mut why = v.reason.clone();
            for n in &nodes {
                why = why.replace(&n.peer_id, &format!("node {}", n.name));
            }
            say(format_args!(
                "  {} {} on node {}: {}, {} migrations ({why})",
                v.id,
                v.name,
                node_name(&v.node),
                v.state,
                v.migrations,
            ));
        }
    }
    drop(nodes);
    if args.keep {
        let kept = scratch.keep();
        say(format_args!(
            "\nnode logs and data kept in {}",
            kept.display()
        ));
    } else {
        say("\nstopped the nodes and removed their scratch data. Next: `meshnode start` on your devices, then `meshnode deploy APP.wasm` (see README.md).");
    }
    Ok(0)
}
