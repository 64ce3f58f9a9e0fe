//! Vessels on a mesh of real nodes: `meshnode start` processes on 127.0.0.1
//! with explicit peers, each with its own data directory (so no shared
//! filesystem can hide a file that did not travel), driven by the real CLI.
//!
//! Method: the *workload* is a corpus program deployed with `meshnode
//! deploy`; the *mover* is the test calling `meshnode migrate`; the *fault
//! injector* is `MESHNODE_FAULT=<step>` on one node (it exits at that step of
//! the migration protocol, as if it crashed there) plus `kill -9`. The
//! oracle is `meshnode run` of the same program on its own: same output
//! (from `meshnode logs`), same exit, same files.
//!
//! Nodes pace their vessels (`MESHNODE_TEST_SLICE_PACE_MS`, small fuel
//! slices) so that even a short program is still running while it moves;
//! the program's instructions and migration points are unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshnode::vessel::Record;
use serde_json::Value;

use crate::corpus::{apply_setup, corpus_wasm, spec, Spec};
use crate::mesh::{stderr, Node, User};

/// Long enough for a migration on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

/// The nodes' names, in order: a mesh has the first three, and a fourth
/// when a test adds it ([`Mesh::add_node`]).
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// One user's mesh of three nodes, a, b and c (also used by the placement
/// tests).
pub(crate) struct Mesh {
    pub(crate) user: User,
    pub(crate) nodes: Vec<Node>,
    addrs: Vec<String>,
    pub(crate) ids: Vec<String>,
    pace_ms: u32,
    fuel_slice: u64,
    /// Added to every `deploy` (the fault tests: `--replicas 0`).
    deploy_extra: Vec<String>,
    /// Given to every node it starts, before a start's own.
    env: Vec<(String, String)>,
    /// How many vessels [`Mesh::deploy`] named after each module: the
    /// second and later get `-2`, `-3`, … (a name a live vessel holds is
    /// refused, `mesh::clash`).
    deployed_names: std::cell::RefCell<std::collections::HashMap<String, u32>>,
}

impl Mesh {
    pub(crate) fn new(pace_ms: u32, fuel_slice: u64) -> Mesh {
        Mesh::with_config(pace_ms, fuel_slice, "")
    }

    /// A mesh whose nodes start with `config` as their config.toml (the
    /// settings not named keep their defaults).
    pub(crate) fn with_config(pace_ms: u32, fuel_slice: u64, config: &str) -> Mesh {
        Mesh::with_node_configs(pace_ms, fuel_slice, [config, config, config])
    }

    /// A mesh whose nodes a, b and c start with these config.toml files
    /// (an empty one: the defaults).
    pub(crate) fn with_node_configs(pace_ms: u32, fuel_slice: u64, configs: [&str; 3]) -> Mesh {
        Mesh::build(pace_ms, fuel_slice, configs, &[])
    }

    /// A mesh whose nodes all start with `env` in their environment (test
    /// knobs such as `MESHNODE_TEST_DOWN_AFTER_MS`).
    pub(crate) fn with_env(pace_ms: u32, fuel_slice: u64, env: &[(&str, &str)]) -> Mesh {
        Mesh::build(pace_ms, fuel_slice, ["", "", ""], env)
    }

    fn build(pace_ms: u32, fuel_slice: u64, configs: [&str; 3], env: &[(&str, &str)]) -> Mesh {
        let user = User::new();
        for (name, config) in ["a", "b", "c"].into_iter().zip(configs) {
            if !config.is_empty() {
                let dir = user.home.path().join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("config.toml"), config).unwrap();
            }
        }
        let mut m = Mesh {
            user,
            nodes: Vec::new(),
            addrs: Vec::new(),
            ids: Vec::new(),
            pace_ms,
            fuel_slice,
            deploy_extra: Vec::new(),
            deployed_names: Default::default(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for name in ["a", "b", "c"] {
            let peers = m.addrs.clone();
            let mut n = m.start(name, &peers, &[]);
            m.addrs.push(n.wait_ready());
            m.ids.push(n.peer_id());
            m.nodes.push(n);
        }
        m.wait_members();
        m
    }

    /// Where node `i` accepts the clients of service vessels.
    pub(crate) fn service_ip(i: usize) -> String {
        format!("127.0.0.{}", 2 + i)
    }

    /// Where node `i` accepts the clients of a service on `port`.
    pub(crate) fn service_addr(i: usize, port: u16) -> std::net::SocketAddr {
        format!("{}:{port}", Self::service_ip(i)).parse().unwrap()
    }

    /// `meshnode deploy --name NAME --port PORT WASM` on node `node`: the
    /// vessel's id.
    pub(crate) fn deploy_service(&self, node: usize, name: &str, port: u16, wasm: &Path) -> String {
        let p = port.to_string();
        let out = self.cli(
            node,
            &[
                "deploy",
                "--name",
                name,
                "--port",
                &p,
                wasm.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "deploy {name}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.user.home.path().join(name)
    }

    fn start(&self, name: &str, peers: &[String], envs: &[(&str, &str)]) -> Node {
        let pace = self.pace_ms.to_string();
        let mut all: Vec<(&str, &str)> = vec![("MESHNODE_TEST_SLICE_PACE_MS", &pace)];
        all.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all.extend_from_slice(envs);
        let slice = self.fuel_slice.to_string();
        // One loopback address per node for service vessels' clients.
        let service = Self::service_ip(NAMES.iter().position(|n| *n == name).unwrap());
        self.user.start_env(
            &self.data_dir(name),
            peers,
            &[
                "--fuel-slice",
                &slice,
                "--ping-interval",
                "200ms",
                "--service-address",
                &service,
            ],
            &all,
        )
    }

    /// Restarts node `i` (after it died), with the others as its peers.
    pub(crate) fn restart(&mut self, i: usize, envs: &[(&str, &str)]) {
        self.restart_together(&[i], envs);
    }

    /// Kills the nodes `which` (those still running) and starts them all
    /// again before waiting for the mesh: nodes that are down together
    /// come back together.
    pub(crate) fn restart_together(&mut self, which: &[usize], envs: &[(&str, &str)]) {
        for &i in which {
            let _ = self.nodes[i].child.kill();
            let _ = self.nodes[i].child.wait();
            let _ = std::fs::remove_file(self.nodes[i].data_dir.join("node.addrs"));
        }
        for &i in which {
            let peers: Vec<String> = (0..self.nodes.len())
                .filter(|j| *j != i)
                .map(|j| self.addrs[j].clone())
                .collect();
            let name = NAMES[i];
            let mut n = self.start(name, &peers, envs);
            self.addrs[i] = n.wait_ready();
            self.nodes[i] = n;
        }
        self.wait_members();
    }

    /// Starts the next node (d) with every node before it as its peers;
    /// waits until every node sees every other as a member.
    pub(crate) fn add_node(&mut self) {
        let name = NAMES[self.nodes.len()];
        let peers = self.addrs.clone();
        let mut n = self.start(name, &peers, &[]);
        self.addrs.push(n.wait_ready());
        self.ids.push(n.peer_id());
        self.nodes.push(n);
        self.wait_members();
    }

    /// Waits until every node sees every other as a member.
    fn wait_members(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let others: Vec<&str> = (0..self.nodes.len())
                .filter(|j| *j != i)
                .map(|j| self.ids[j].as_str())
                .collect();
            crate::mesh::wait_for_peers(&self.user, n, "members see each other", |p| {
                others
                    .iter()
                    .all(|id| p.iter().any(|x| x["peer_id"] == *id && x["member"] == true))
            });
        }
    }

    pub(crate) fn cli(&self, node: usize, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", self.nodes[node].dir(), "--timeout", "60s"]);
        self.user.run(&all)
    }

    pub(crate) fn deploy(
        &self,
        node: usize,
        wasm: &Path,
        spec: &Spec,
        volumes: &[(String, PathBuf)],
    ) -> String {
        let module = wasm.file_name().unwrap().to_str().unwrap();
        let name = {
            let mut seen = self.deployed_names.borrow_mut();
            let n = seen.entry(module.to_string()).or_default();
            *n += 1;
            match *n {
                1 => module.to_string(),
                n => format!("{module}-{n}"),
            }
        };
        let mut args: Vec<String> = vec!["deploy".into(), "--name".into(), name.clone()];
        for (guest, local) in volumes {
            args.push("--volume".into());
            args.push(format!("{guest}={}", local.display()));
        }
        for e in &spec.env {
            args.push("--env".into());
            args.push(e.clone());
        }
        args.extend(["--data-dir".into(), self.nodes[node].dir().into()]);
        args.extend(self.deploy_extra.iter().cloned());
        args.push(wasm.to_str().unwrap().into());
        args.extend(spec.args.iter().cloned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.user.run(&a);
        assert!(out.status.success(), "deploy {name}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `meshnode migrate --json`: Ok(report) or Err(stderr).
    pub(crate) fn migrate(&self, via: usize, vessel: &str, to: usize) -> Result<Value, String> {
        let out = self.cli(via, &["migrate", "--json", "--to", &self.ids[to], vessel]);
        if !out.status.success() {
            return Err(stderr(&out));
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    }

    pub(crate) fn ps(&self, via: usize) -> Vec<Value> {
        let out = self.cli(via, &["ps", "--json"]);
        assert!(out.status.success(), "ps: {}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    }

    pub(crate) fn row(&self, via: usize, vessel: &str) -> Option<Value> {
        self.ps(via).into_iter().find(|r| r["id"] == vessel)
    }

    /// Waits until the vessel has ended; returns its `ps` row.
    pub(crate) fn wait_end(&self, via: usize, vessel: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.row(via, vessel) {
                let s = r["state"].as_str().unwrap_or("");
                if s == "exited" || s.starts_with("failed") {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "vessel {vessel} did not end in {WAIT:?}; ps: {:?}\n{}",
                self.ps(via),
                self.logs_of_nodes()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The vessel's log as (stdout, stderr).
    pub(crate) fn logs(&self, via: usize, vessel: &str) -> (Vec<u8>, Vec<u8>) {
        let out = self.cli(via, &["logs", vessel]);
        assert!(out.status.success(), "logs: {}", stderr(&out));
        (out.stdout, out.stderr)
    }

    pub(crate) fn logs_of_nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}\n{}", n.data_dir.display(), n.log()))
            .collect()
    }

    /// The host directory of a vessel's first volume on node `i`.
    fn volume(&self, i: usize, vessel: &str) -> PathBuf {
        self.nodes[i]
            .data_dir
            .join("vessels")
            .join(vessel)
            .join("vol0")
    }
}

/// A plain `meshnode run` of the program with the same argv[0], args, env,
/// empty stdin and directories: the oracle.
struct Plain {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn plain_run(wasm: &Path, spec: &Spec, dirs: &[(String, PathBuf)]) -> Plain {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshnode"));
    c.arg("run");
    for (guest, host) in dirs {
        c.arg("--dir").arg(format!("{}::{guest}", host.display()));
    }
    for e in &spec.env {
        c.arg("--env").arg(e);
    }
    c.arg(wasm.file_name().unwrap())
        .args(&spec.args)
        .current_dir(wasm.parent().unwrap())
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    Plain {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A fresh host tree for a program's directories, with its `//@ setup`.
fn setup_tree(spec: &Spec) -> (tempfile::TempDir, Vec<(String, PathBuf)>) {
    let root = tempfile::tempdir().unwrap();
    let rootp = root.path().canonicalize().unwrap();
    let mut dirs = Vec::new();
    for d in &spec.dirs {
        let host = rootp.join(d.trim_start_matches('/'));
        std::fs::create_dir_all(&host).unwrap();
        dirs.push((d.clone(), host));
    }
    for s in &spec.setup {
        apply_setup(&rootp, s, &spec.name);
    }
    (root, dirs)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Goal: every corpus program, deployed on A and moved A→B→C→A while it
/// runs, ends exactly as a plain run does (stdout, stderr, exit), its log
/// complete; and the second visit to A sends only what changed.
#[test]
fn corpus_programs_move_a_b_c_a_while_they_run_and_end_as_a_plain_run() {
    let _cpu = crate::support::shared_cpu();
    // 2,000 instructions a slice, 4 ms after each: a program of 100k
    // instructions runs for 200 ms, time for the moves.
    let mesh = Mesh::new(4, 2_000);
    let mut moved_thrice = 0;
    let mut names = crate::corpus::corpus_names();
    // Traps end the vessel as a plain run's trap does, but their stderr
    // line comes from the CLI, not the program: compared by state below.
    names.retain(|n| n != "stdin_echo"); // the mesh gives vessels no stdin
                                         // Replay one program: MESHNODE_TEST_PROGRAM=poll.
    if let Ok(only) = std::env::var("MESHNODE_TEST_PROGRAM") {
        names.retain(|n| *n == only);
    }
    for name in names {
        let started = Instant::now();
        let spec = spec(&name);
        let wasm = corpus_wasm(&name);
        let (_plain_root, plain_dirs) = setup_tree(&spec);
        let plain = plain_run(&wasm, &spec, &plain_dirs);
        let (_mesh_root, mesh_dirs) = setup_tree(&spec);
        let vessel = mesh.deploy(0, &wasm, &spec, &mesh_dirs);

        let mut hops = Vec::new();
        for to in [1, 2, 0] {
            match mesh.migrate(0, &vessel, to) {
                Ok(r) => hops.push(r),
                // A program may end before the next move: that is the
                // only refusal allowed.
                Err(e) if e.contains("not running") || e.contains("ended before it could move") => {
                    break
                }
                Err(e) => panic!("{name}: migrate to {to}: {e}\n{}", mesh.logs_of_nodes()),
            }
        }
        let row = mesh.wait_end(0, &vessel);
        let (stdout, stderr_log) = mesh.logs(0, &vessel);
        if spec.trap {
            assert!(
                row["state"].as_str().unwrap().starts_with("failed: trap"),
                "{name}: {row}"
            );
            assert_eq!(plain.code, Some(134), "{name}: plain run of a trap");
        } else {
            assert_eq!(
                row["exit_code"].as_i64().map(|c| c as i32),
                plain.code,
                "{name}: exit code; row {row}"
            );
            assert_eq!(text(&stderr_log), text(&plain.stderr), "{name}: stderr");
        }
        assert_eq!(
            text(&stdout),
            text(&plain.stdout),
            "{name}: stdout after {} moves",
            hops.len()
        );
        assert_eq!(
            row["migrations"].as_u64(),
            Some(hops.len() as u64),
            "{name}: {row}"
        );
        eprintln!(
            "{name}: {} moves, {:?}: {hops:?}",
            hops.len(),
            started.elapsed()
        );
        if hops.len() == 3 {
            moved_thrice += 1;
            // Back on A: A kept the chunks of its own first visit, so only
            // what changed since travels.
            let first = &hops[0];
            let back = &hops[2];
            // Skipped counts chunks of the final image the destination
            // had before the move began: for A, its module and what did
            // not change since it sent them. The first move's count is no
            // bound: a program whose memory grows between moves (the
            // regression: clocks_random sent 9, then 12, then 10 with 2
            // skipped) needs more chunks on the way back than on the way
            // out, so the check is that A skipped the chunks it still had.
            let sent = back["chunks_sent"].as_u64().unwrap();
            let skipped = back["chunks_skipped"].as_u64().unwrap();
            assert!(
                skipped > 0,
                "{name}: the return to A sent {sent} chunks and skipped none (the first move sent {} and skipped {})",
                first["chunks_sent"],
                first["chunks_skipped"]
            );
            for h in &hops {
                assert!(h["downtime_ms"].as_f64().unwrap() > 0.0, "{name}: {h}");
            }
        }
    }
    assert!(
        moved_thrice >= 10 || std::env::var("MESHNODE_TEST_PROGRAM").is_ok(),
        "only {moved_thrice} programs ran long enough for three moves"
    );
}

/// Goal: `logs -f`, started before the moves, shows every line exactly once
/// while the vessel moves A→B→C→A, and stops when the vessel ends.
#[test]
fn logs_follow_a_vessel_across_moves_without_loss_or_repetition() {
    let _cpu = crate::support::shared_cpu();
    // About 240M instructions: 2,400 slices, 5 s paced.
    let mesh = Mesh::new(2, 100_000);
    let wasm = corpus_wasm("cpu_loop");
    let mut spec = spec("cpu_loop");
    spec.args = vec!["40000".into()];
    let plain = plain_run(&wasm, &spec, &[]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let follow = mesh
        .user
        .cmd()
        .args(["logs", "-f", &vessel, "--data-dir", mesh.nodes[1].dir()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for to in [1, 2, 0] {
        mesh.migrate(0, &vessel, to)
            .unwrap_or_else(|e| panic!("migrate to {to}: {e}\n{}", mesh.logs_of_nodes()));
    }
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success(), "logs -f: {}", stderr(&out));
    assert_eq!(text(&out.stdout), text(&plain.stdout));
    assert_eq!(mesh.wait_end(2, &vessel)["migrations"], 3);
}

/// Goal: a vessel's volume travels with it. The file-writing program moves
/// mid-run between nodes with separate data roots; its files end up
/// identical to a plain run's.
#[test]
fn files_travel_with_their_vessel() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(2, 5_000);
    let wasm = corpus_wasm("long_files");
    let spec = spec("long_files");
    let (plain_root, plain_dirs) = setup_tree(&spec);
    let plain = plain_run(&wasm, &spec, &plain_dirs);
    let (_mesh_root, mesh_dirs) = setup_tree(&spec);
    let vessel = mesh.deploy(0, &wasm, &spec, &mesh_dirs);
    let first = mesh
        .migrate(0, &vessel, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let second = mesh
        .migrate(1, &vessel, 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first["phase"], "done");
    assert_eq!(second["phase"], "done");
    let row = mesh.wait_end(2, &vessel);
    assert_eq!(row["exit_code"], 0, "{row}");
    assert_eq!(row["node"], mesh.ids[2].as_str());
    let (stdout, _) = mesh.logs(2, &vessel);
    assert_eq!(text(&stdout), text(&plain.stdout));
    let want = crate::support::tree(&plain_dirs[0].1);
    let got = crate::support::tree(&mesh.volume(2, &vessel));
    assert_eq!(got, want, "files on C differ from a plain run's");
    drop(plain_root);
}

// ---------------------------------------------------------------------------
// Faults: one node dies at one step of the protocol.

/// What a fault test checks at the end: the vessel ended exactly once, on
/// `owner`, with the plain run's output, and no other node runs it.
fn assert_completed_once(mesh: &Mesh, vessel: &str, owner: usize, plain: &Plain) {
    let row = mesh.wait_end(owner, vessel);
    assert_eq!(row["node"], mesh.ids[owner].as_str(), "{row}");
    assert_eq!(
        row["exit_code"].as_i64().map(|c| c as i32),
        plain.code,
        "{row}"
    );
    let (stdout, _) = mesh.logs(owner, vessel);
    assert_eq!(
        text(&stdout),
        text(&plain.stdout),
        "{}",
        mesh.logs_of_nodes()
    );
    // The owner's record says it ended there; every other node's says it
    // left, or was only prepared: nobody else ended it or holds it as its
    // own (an `Owned` record runs again when that node restarts).
    for (i, record) in records(mesh, vessel).into_iter().enumerate() {
        match (i == owner, &record) {
            (true, Some(Record::Ended { .. })) => {}
            (false, None | Some(Record::Left { .. } | Record::Prepared { .. })) => {}
            _ => panic!(
                "node {i}'s record of {vessel}: {record:?} (owner: node {owner})\n{}",
                mesh.logs_of_nodes()
            ),
        }
    }
}

/// Each node's durable record of the vessel (`vessels/<id>/record.cbor`),
/// `None` where there is none.
fn records(mesh: &Mesh, vessel: &str) -> Vec<Option<Record>> {
    mesh.nodes
        .iter()
        .map(|n| {
            let path = n.data_dir.join("vessels").join(vessel).join("record.cbor");
            match std::fs::read(&path) {
                Ok(bytes) => Some(
                    protocol::cbor::decode::<Record>(&bytes)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        })
        .collect()
}

fn fault_setup() -> (Mesh, PathBuf, Spec, Plain) {
    // About 180M instructions: 1,800 slices, 4 s paced.
    let mut mesh = Mesh::new(2, 100_000);
    // The migration protocol alone: no replica, so no lease and no
    // failover (with one, a replica would take the vessel over while a
    // node killed after the commit point is down; leases.rs tests that).
    mesh.deploy_extra = vec!["--replicas".into(), "0".into()];
    let wasm = corpus_wasm("cpu_loop");
    let mut spec = spec("cpu_loop");
    spec.args = vec!["30000".into()];
    let plain = plain_run(&wasm, &spec, &[]);
    (mesh, wasm, spec, plain)
}

/// Goal: the source dies just before its commit point. Nothing was
/// committed, so the vessel is the source's: when the source is back it
/// runs it (from its last durable image) to the same end; B never runs it.
#[test]
fn source_killed_before_commit_keeps_the_vessel() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    mesh.restart(0, &[("MESHNODE_FAULT", "before-commit")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let err = mesh.migrate(0, &vessel, 1).unwrap_err();
    assert!(!err.is_empty());
    assert!(mesh.nodes[0]
        .log()
        .contains("fault injection: exiting at before-commit"));
    mesh.restart(0, &[]);
    assert_completed_once(&mesh, &vessel, 0, &plain);
}

/// Regression: a source that died between its `Prepare` and its commit
/// point left the destination holding `Prepared` at the next epoch, and
/// every later move of the vessel there was refused as stale, for good. Now
/// the refusal names the epoch the destination knows, and the source's next
/// attempt offers above it: the first retry is refused, the second moves.
#[test]
fn a_node_left_holding_a_stale_prepare_takes_the_vessel_on_the_next_try() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, mut spec, _) = fault_setup();
    // Long enough for a crash, a restart and two more moves.
    spec.args = vec!["60000".into()];
    let plain = plain_run(&wasm, &spec, &[]);
    mesh.restart(0, &[("MESHNODE_FAULT", "before-commit")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    mesh.migrate(0, &vessel, 1).unwrap_err();
    mesh.restart(0, &[]);
    let deadline = Instant::now() + WAIT;
    while mesh.row(0, &vessel).is_none_or(|r| r["state"] != "running") {
        assert!(Instant::now() < deadline, "it never ran again on A");
        std::thread::sleep(Duration::from_millis(50));
    }
    let prepared = records(&mesh, &vessel).swap_remove(1);
    assert!(
        matches!(prepared, Some(Record::Prepared { epoch: 2, .. })),
        "B: {prepared:?}"
    );
    let refused = mesh.migrate(0, &vessel, 1).unwrap_err();
    assert!(refused.contains("stale"), "{refused}");
    let report = mesh
        .migrate(0, &vessel, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["phase"], "done", "{report}");
    assert_completed_once(&mesh, &vessel, 1, &plain);
    let ended = records(&mesh, &vessel).swap_remove(1);
    assert!(
        matches!(ended, Some(Record::Ended { epoch: 3, .. })),
        "B ran it above the stale epoch: {ended:?}"
    );
}

/// Goal: packing the paused vessel fails at the source (a disk error in
/// the pause, before the commit point). The vessel must not stay paused: it
/// runs on at the source (from its last durable image) to the same end as
/// a plain run. Regression: it stayed paused until the node restarted.
#[test]
fn a_packing_failure_in_the_pause_leaves_the_vessel_running_at_the_source() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    mesh.restart(0, &[("MESHNODE_FAULT", "pack-fails")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let err = mesh.migrate(0, &vessel, 1).unwrap_err();
    assert!(err.contains("packing the paused vessel failed"), "{err}");
    assert_completed_once(&mesh, &vessel, 0, &plain);
}

/// Goal: the source dies right after its commit record, before it told the
/// destination. The destination holds the prepared vessel and never runs
/// it alone; when the source is back it sends the commit, and B runs it.
#[test]
fn source_killed_at_commit_finishes_the_move_when_back() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    mesh.restart(0, &[("MESHNODE_FAULT", "after-commit-record")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let err = mesh.migrate(0, &vessel, 1).unwrap_err();
    assert!(!err.is_empty());
    // The fault fired: A exited at its commit record, as if it crashed.
    let (code, log) = mesh.nodes[0].wait_exit();
    assert_eq!(code, 86, "A did not exit by the fault:\n{log}");
    assert!(
        log.contains("fault injection: exiting at after-commit-record"),
        "{log}"
    );
    // Not running anywhere while A is down: A's record says it left, and B
    // only prepared it.
    let records = records(&mesh, &vessel);
    assert!(
        matches!(records[0], Some(Record::Left { .. })),
        "A: {:?}",
        records[0]
    );
    assert!(
        matches!(records[1], Some(Record::Prepared { .. })),
        "B: {:?}",
        records[1]
    );
    let row = mesh.row(1, &vessel);
    assert!(
        row.is_none() || row.as_ref().unwrap()["state"] != "running",
        "{row:?}"
    );
    mesh.restart(0, &[]);
    assert_completed_once(&mesh, &vessel, 1, &plain);
}

/// Goal: the source dies after the move completed. The vessel runs on at
/// the destination; the source, back, does not run it again.
#[test]
fn source_killed_after_commit_does_not_run_it_again() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let r = mesh.migrate(0, &vessel, 1).unwrap();
    assert_eq!(r["phase"], "done");
    let _ = mesh.nodes[0].child.kill();
    mesh.restart(0, &[]);
    assert_completed_once(&mesh, &vessel, 1, &plain);
    let row = mesh.row(0, &vessel).unwrap();
    assert_eq!(row["node"], mesh.ids[1].as_str());
}

/// Goal: the destination dies before it prepared the vessel. The source
/// aborts and the vessel runs on at the source; B, back, never runs it.
#[test]
fn destination_killed_before_commit_leaves_the_vessel_at_the_source() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    mesh.restart(1, &[("MESHNODE_FAULT", "dest-prepare")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let err = mesh.migrate(0, &vessel, 1).unwrap_err();
    assert!(err.contains("aborted"), "{err}");
    mesh.restart(1, &[]);
    assert_completed_once(&mesh, &vessel, 0, &plain);
}

/// Goal: the destination dies as the commit arrives. The source has
/// committed: it retries until B is back, and B runs the vessel from what
/// it prepared.
#[test]
fn destination_killed_at_commit_runs_the_vessel_when_back() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    mesh.restart(1, &[("MESHNODE_FAULT", "dest-commit")]);
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let via_c = {
        // The migrate command waits for the retried commit; run it aside.
        let mut c = mesh.user.cmd();
        c.args([
            "migrate",
            "--json",
            "--to",
            &mesh.ids[1],
            &vessel,
            "--data-dir",
            mesh.nodes[0].dir(),
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let deadline = Instant::now() + WAIT;
    while !mesh.nodes[1].log().contains("exiting at dest-commit") {
        assert!(
            Instant::now() < deadline,
            "B never got the commit\n{}",
            mesh.logs_of_nodes()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    mesh.restart(1, &[]);
    let out = via_c.wait_with_output().unwrap();
    assert!(out.status.success(), "migrate: {}", stderr(&out));
    assert_completed_once(&mesh, &vessel, 1, &plain);
}

/// Goal: the destination dies after it took over. It resumes the vessel
/// from the image it received when it is back; the log shows every line
/// once (the re-run writes the same records at the same offsets).
#[test]
fn destination_killed_after_commit_resumes_it_when_back() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let r = mesh.migrate(0, &vessel, 1).unwrap();
    assert_eq!(r["phase"], "done");
    let _ = mesh.nodes[1].child.kill();
    mesh.restart(1, &[]);
    assert_completed_once(&mesh, &vessel, 1, &plain);
}

// ---------------------------------------------------------------------------
// Refusals at the CLI.

/// Goal: a user key the mesh does not trust cannot deploy; the CLI and the
/// node's log both say why.
#[test]
fn an_untrusted_deployer_is_refused() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let mallory = User::new();
    let wasm = corpus_wasm("hello");
    let out = mallory.run(&[
        "deploy",
        "--data-dir",
        mesh.nodes[0].dir(),
        wasm.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("is not trusted by this node"), "{err}");
    assert!(mesh.nodes[0].log().contains("is not trusted by this node"));
    assert!(mesh.ps(0).is_empty());
}

/// Goal: a vessel that waits in `poll_oneoff` (a 6 s sleep) moves at once,
/// without waiting for the sleep to end, and on the destination sleeps only
/// for what was left. Method: let it sleep 2 s, then migrate it: the move
/// must end before it wakes (its second line is not there yet when the
/// migration is done), and by the guest's own monotonic clock, which stands
/// still while it moves, it slept its 6 s and less than the 6 s plus the
/// time it had already slept before the move (a sleep that started over on
/// the destination would show 8 s). No wall-clock bound: a loaded machine
/// slows the move, not the guest's clock.
#[test]
fn a_sleeping_vessel_moves_at_once_and_sleeps_only_what_was_left() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let wasm = crate::support::compile_c("node/tests/it/programs/sleeper.c", &[]);
    let spec = Spec {
        name: "sleeper".into(),
        ..Default::default()
    };
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let deadline = Instant::now() + WAIT;
    while !text(&mesh.logs(0, &vessel).0).contains("before") {
        assert!(Instant::now() < deadline, "it never printed its first line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let asleep_since = Instant::now();
    // Not synchronisation: the scenario needs the guest well into its
    // sleep before the move, so that a restarted sleep would show.
    std::thread::sleep(SLEPT_BEFORE_THE_MOVE);
    let slept_before_move = asleep_since.elapsed();
    let r = mesh
        .migrate(0, &vessel, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r["phase"], "done");
    let (out, _) = mesh.logs(1, &vessel);
    let lines: Vec<String> = text(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "it woke before the move ended: {lines:?}");
    let row = mesh.wait_end(1, &vessel);
    assert_eq!(row["exit_code"], 0);
    let out = text(&mesh.logs(1, &vessel).0);
    let at_ms = |prefix: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_suffix(" ms")?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in {out:?}"))
    };
    let slept = Duration::from_millis(at_ms("after at ") - at_ms("before at "));
    assert!(
        slept >= GUEST_SLEEP,
        "the guest woke after {slept:?} of its own clock, before its {GUEST_SLEEP:?}"
    );
    assert!(
        slept < GUEST_SLEEP + slept_before_move,
        "the guest slept {slept:?} by its own clock, {slept_before_move:?} of them before the move: the sleep started over after it"
    );
}

/// The sleep in `programs/sleeper.c`.
const GUEST_SLEEP: Duration = Duration::from_secs(6);

/// How long the sleeper sleeps at the source before it moves: long enough
/// that a restarted sleep would take 2 s longer by the guest's clock, and
/// short enough to leave the move 4 s before the guest wakes.
const SLEPT_BEFORE_THE_MOVE: Duration = Duration::from_secs(2);

/// Goal: a mount is a node-local directory that each node maps by name in
/// its config; it does not travel. A node that maps no such name refuses the
/// vessel. Method: nodes a and b map `media` to different directories, c
/// maps none; the program prints a file from /media before and after a move
/// from a to b.
#[test]
fn mounts_are_node_local_and_a_node_without_the_name_refuses() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let media = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (name, mount) in [("a", Some("on a")), ("b", Some("on b")), ("c", None)] {
        let dir = user.home.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = String::from("[mounts]\n");
        if let Some(text) = mount {
            let m = media.path().join(name);
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("where.txt"), text).unwrap();
            config.push_str(&format!("media = \"{}\"\n", m.display()));
        }
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut n = user.start_env(
            &dir,
            &addrs,
            &["--config", dir.join("config.toml").to_str().unwrap()],
            &[],
        );
        addrs.push(n.wait_ready());
        nodes.push(n);
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id()).collect();
    crate::mesh::wait_for_peers(&user, &nodes[0], "a sees b and c", |p| {
        ids[1..].iter().all(|id| {
            p.iter()
                .any(|x| x["peer_id"] == id.as_str() && x["member"] == true)
        })
    });
    let wasm = crate::support::compile_c("node/tests/it/programs/mount_reader.c", &[]);
    let deploy = |node: &Node| {
        user.run(&[
            "deploy",
            "--mount",
            "/media=media",
            "--data-dir",
            node.dir(),
            wasm.to_str().unwrap(),
        ])
    };
    let refused = deploy(&nodes[2]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("maps no directory named `media`"),
        "{}",
        stderr(&refused)
    );
    let out = deploy(&nodes[0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vessel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let logs = |node: &Node| {
        let o = user.run(&["logs", &vessel, "--data-dir", node.dir()]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let deadline = Instant::now() + WAIT;
    while !logs(&nodes[0]).contains("on a") {
        assert!(Instant::now() < deadline, "no first line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = user.run(&[
        "migrate",
        "--json",
        "--to",
        &ids[1],
        &vessel,
        "--data-dir",
        nodes[0].dir(),
    ]);
    assert!(m.status.success(), "{}", stderr(&m));
    let deadline = Instant::now() + WAIT;
    while !logs(&nodes[1]).contains("on b") {
        assert!(
            Instant::now() < deadline,
            "no second line: {}",
            logs(&nodes[1])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logs(&nodes[1]), "on a\non b\n");
}

/// Goal: a clean stop (SIGTERM, Ctrl-C) writes every running vessel down
/// where it is, and the next start continues it there: same output as a
/// plain run, and a new durable record taken at the stop.
#[test]
fn a_clean_stop_checkpoints_running_vessels_and_the_next_start_continues_them() {
    let _cpu = crate::support::shared_cpu();
    let (mut mesh, wasm, spec, plain) = fault_setup();
    let vessel = mesh.deploy(0, &wasm, &spec, &[]);
    let record = mesh.nodes[0]
        .data_dir
        .join("vessels")
        .join(&vessel)
        .join("record.cbor");
    let at_deploy = std::fs::read(&record).unwrap();
    let deadline = Instant::now() + WAIT;
    while !text(&mesh.logs(0, &vessel).0).contains("progress") {
        assert!(Instant::now() < deadline, "no progress line");
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::mesh::sigterm(&mesh.nodes[0].child);
    let (code, log) = mesh.nodes[0].wait_exit();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("checkpointed"), "{log}");
    assert_ne!(
        std::fs::read(&record).unwrap(),
        at_deploy,
        "the stop wrote no new record"
    );
    mesh.restart(0, &[]);
    assert_completed_once(&mesh, &vessel, 0, &plain);
}
