//! Signed rolling upgrades (issue 17 item 4) on three real nodes, driven
//! by the real CLI: `upgrade publish`, `upgrade roll`, a second roll that
//! has nothing to do, a downgrade refused, a broken binary refused before
//! any restart, and `upgrade rollback`.
//!
//! The "new" release is this build's binary, stripped, with its release
//! marker saying the next patch version: a different file (another hash,
//! other chunks) that runs and reports that version, so the roll's every
//! step is real (fetch, verify, try-run, switch, exec, probation). A roll
//! from a frozen older build is the testnet's (docs/testnet.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::{stderr, Node, User};

/// Long enough for a restart and a probation on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(120);

/// A port free for both TCP and UDP on 127.0.0.1: nodes keep their
/// addresses across the restart of an upgrade, as nodes on the default
/// port 7646 do.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start(user: &User, name: &str, port: u16, ip: &str, peers: &[String]) -> Node {
    let data_dir = user.home.path().join(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let log = data_dir.with_extension("log");
    let mut c = user.cmd();
    c.arg("start")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--listen", &format!("/ip4/127.0.0.1/udp/{port}/quic-v1")])
        .args([
            "--no-mdns",
            "--status-interval",
            "500ms",
            "--ping-interval",
            "200ms",
        ])
        .args(["--name", name, "--service-address", ip, "--http", "off"]);
    for p in peers {
        c.args(["--peer", p]);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = c.stdout(Stdio::null()).stderr(file).spawn().unwrap();
    Node {
        child,
        data_dir,
        log,
    }
}

fn cli(user: &User, node: &Node, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--data-dir", node.dir(), "--timeout", "60s"]);
    user.run(&all)
}

fn status(user: &User, node: &Node) -> Value {
    let out = cli(user, node, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// This build's binary, stripped, with its marker's version replaced
/// (same length), written to `to`.
fn binary_as(version: &str, to: &Path) -> PathBuf {
    let status = Command::new("strip")
        .arg("-o")
        .arg(to)
        .arg(env!("CARGO_BIN_EXE_meshnode"))
        .status()
        .expect("strip (binutils) runs");
    assert!(status.success(), "strip failed");
    let ours = format!("MESHNODE-RELEASE;version={};", env!("CARGO_PKG_VERSION"));
    let theirs = format!("MESHNODE-RELEASE;version={version};");
    assert_eq!(ours.len(), theirs.len(), "a version of the same length");
    let mut bytes = std::fs::read(to).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..]
        .windows(ours.len())
        .position(|w| w == ours.as_bytes())
    {
        bytes[at + i..at + i + ours.len()].copy_from_slice(theirs.as_bytes());
        at += i + ours.len();
        found += 1;
    }
    assert!(found > 0, "no release marker in the binary");
    std::fs::write(to, bytes).unwrap();
    to.to_path_buf()
}

/// The next patch version of this build (`0.2.0` → `0.2.1`).
fn next_patch() -> String {
    let v = env!("CARGO_PKG_VERSION");
    let (head, patch) = v.rsplit_once('.').unwrap();
    let next = format!("{head}.{}", patch.parse::<u64>().unwrap() + 1);
    assert_eq!(
        next.len(),
        v.len(),
        "the test patches a version of the same length"
    );
    next
}

fn wait_version(user: &User, nodes: &[&Node], version: &str) {
    let deadline = Instant::now() + WAIT;
    for n in nodes {
        loop {
            let s = status(user, n);
            if s["version"] == version && s["upgrade"].is_null() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} not on {version}: {s}\n{}",
                n.dir(),
                n.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The ticks a vessel has printed, from `logs`.
fn ticks(user: &User, node: &Node, vessel: &str) -> Vec<u64> {
    let out = cli(user, node, &["logs", vessel]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect()
}

/// Goal: a release published once rolls out to every node, one at a time:
/// each process execs the new binary (same PID) and reports its version,
/// the vessel keeps running through every drain with no tick lost or
/// repeated, a second roll does nothing, and a downgrade, a broken binary
/// and a rollback each do what docs/guide.md ("Upgrading") says.
#[test]
fn a_roll_upgrades_every_node_and_the_vessel_keeps_running() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let ip = format!("127.0.0.{}", 2 + i);
        let mut n = start(&user, name, free_port(), &ip, &addrs);
        addrs.push(n.wait_ready());
        nodes.push(n);
    }
    let ids: Vec<String> = nodes.iter().map(Node::peer_id).collect();
    let refs: Vec<&str> = ids[..2].iter().map(String::as_str).collect();
    crate::mesh::wait_for_peers(&user, &nodes[2], "the mesh forms", |p| {
        crate::mesh::sees_all(p, &refs)
    });
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();

    let ticker = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    let out = cli(
        &user,
        &nodes[0],
        &["deploy", "--name", "ticker", ticker.to_str().unwrap()],
    );
    assert!(out.status.success(), "deploy: {}", stderr(&out));

    let next = next_patch();
    let dir = tempfile::tempdir().unwrap();
    let new = binary_as(&next, &dir.path().join("meshnode-next"));
    let out = cli(
        &user,
        &nodes[2],
        &["upgrade", "publish", new.to_str().unwrap()],
    );
    assert!(out.status.success(), "publish: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("published meshnode {next}")),
        "{said}"
    );

    let t0 = Instant::now();
    let out = cli(&user, &nodes[2], &["upgrade", "roll", "--json"]);
    let roll_s = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "roll: {}\n{}",
        stderr(&out),
        nodes[0].log()
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert!(r["state"].as_str().unwrap().starts_with("upgraded"), "{r}");
    }
    eprintln!("roll of 3 nodes: {roll_s:.1} s\n{}", stderr(&out));
    let all: Vec<&Node> = nodes.iter().collect();
    wait_version(&user, &all, &next);
    for (n, pid) in nodes.iter_mut().zip(&pids) {
        assert!(n.child.try_wait().unwrap().is_none(), "{} exited", n.dir());
        assert_eq!(n.child.id(), *pid, "exec keeps the process");
        let current = std::fs::read_link(n.data_dir.join("bin/current")).unwrap();
        assert!(current.to_string_lossy().contains(&next), "{current:?}");
    }

    // The vessel ran through three drains: its ticks go on, none lost or
    // repeated.
    let before = ticks(&user, &nodes[2], "ticker").len();
    std::thread::sleep(Duration::from_secs(1));
    let seen = ticks(&user, &nodes[2], "ticker");
    assert!(
        seen.len() > before,
        "the vessel stopped ticking: {before} then {}",
        seen.len()
    );
    assert!(
        seen.iter().enumerate().all(|(i, t)| *t == i as u64),
        "ticks lost or repeated: {seen:?}"
    );

    // Nothing to do the second time.
    let out = cli(&user, &nodes[2], &["upgrade", "roll"]);
    assert!(out.status.success(), "second roll: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.matches(&format!("already runs {next}")).count(),
        3,
        "{said}"
    );

    // The original version is a downgrade: refused before any drain.
    let old = binary_as(env!("CARGO_PKG_VERSION"), &dir.path().join("meshnode-old"));
    let out = cli(
        &user,
        &nodes[2],
        &["upgrade", "publish", old.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "publish the old one: {}",
        stderr(&out)
    );
    let version = env!("CARGO_PKG_VERSION");
    let out = cli(&user, &nodes[2], &["upgrade", "roll", "--version", version]);
    assert!(!out.status.success(), "a downgrade rolled");
    assert!(
        stderr(&out).contains("--allow-downgrade"),
        "{}",
        stderr(&out)
    );

    broken_binary_is_refused_before_any_restart(&user, &nodes, dir.path());

    // Rollback by hand: a goes back to the binary it started with.
    let out = cli(&user, &nodes[0], &["upgrade", "rollback"]);
    assert!(out.status.success(), "rollback: {}", stderr(&out));
    wait_version(&user, &[&nodes[0]], version);
    assert_eq!(nodes[0].child.id(), pids[0]);
}

/// A release whose binary does not run (a torn copy: its marker intact,
/// the rest cut short) is refused by the node's try-run: the roll stops at
/// the first node, which keeps its version and ends its drain.
fn broken_binary_is_refused_before_any_restart(user: &User, nodes: &[Node], dir: &Path) {
    let v = next_patch();
    let (head, patch) = v.rsplit_once('.').unwrap();
    let broken_version = format!("{head}.{}", patch.parse::<u64>().unwrap() + 1);
    let torn = binary_as(&broken_version, &dir.join("meshnode-torn"));
    let mut bytes = std::fs::read(&torn).unwrap();
    let marker = format!("MESHNODE-RELEASE;version={broken_version};");
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    // Keep the ELF header and the marker; zero the program's code.
    bytes[64..at].fill(0);
    std::fs::write(&torn, bytes).unwrap();
    let out = cli(
        user,
        &nodes[2],
        &["upgrade", "publish", torn.to_str().unwrap()],
    );
    assert!(out.status.success(), "publish: {}", stderr(&out));
    let out = cli(user, &nodes[2], &["upgrade", "roll"]);
    assert!(!out.status.success(), "a broken binary rolled out");
    assert!(stderr(&out).contains("bad-release"), "{}", stderr(&out));
    for n in nodes {
        let s = status(user, n);
        assert_eq!(s["version"], v.as_str(), "{s}");
    }
    crate::mesh::wait_for_peers(user, &nodes[2], "no node is left draining", |p| {
        p.iter().all(|p| p["draining"] == false)
    });
}
