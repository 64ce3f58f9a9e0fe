//! A node that dies for good (issue 15, item 4): the CLI and the ingress
//! tell the truth about it, and nothing waits on it.
//!
//! Method: three real `meshnode start` processes (a, b, c); a service
//! vessel (examples/kvserver.c) runs on b, with an idle client entering at
//! a. The *fault* is `kill -9` of b, never restarted. The oracle: each
//! command through a (`peers`, `ps`, `stop`, `pin`, `migrate`, `logs`,
//! `logs -f`, `drain b`) answers within its bound with the message that
//! says what it waited for and why it gave up; a new client entering at c
//! is *reset* once it has waited `NEW_CLIENT_WAIT` (5 s) for b to answer
//! again (not accepted and left hanging); the idle client is
//! held while b is only unreachable (a partition or a restart is ridden
//! out) and reset once b is down; `peers` shows b unreachable, then down.
//!
//! Bounds: failure detection suspects a silent peer after 3 s
//! (`UNREACHABLE_AFTER`, its value is checked by the unit tests of
//! `mesh::liveness`); the down threshold is 30 s, shortened here to
//! [`DOWN_AFTER`] with `MESHNODE_TEST_DOWN_AFTER_MS` so that the test sees
//! it. Each bound below adds slack for a loaded 2-core CI machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::{peers, stderr, Node, User};
use crate::support::compile_c;

/// The detection threshold the nodes use (the default).
const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);
/// The down threshold the nodes use here (`MESHNODE_TEST_DOWN_AFTER_MS`).
const DOWN_AFTER: Duration = Duration::from_secs(12);
/// What CI load may add to any bound: process start-up, a late tick.
const SLACK: Duration = Duration::from_secs(4);
/// A command on a vessel of a suspected host fails at once: this is its
/// whole run, from the CLI's start to its exit.
const COMMAND_BOUND: Duration = Duration::from_secs(5);
/// A new client of the suspected host waits this long for it to answer
/// again, then is reset.
const NEW_CLIENT_BOUND: Duration =
    Duration::from_secs(meshnode::mesh::ingress::NEW_CLIENT_WAIT.as_secs() + SLACK.as_secs());
/// An idle client of the dead host is reset by its entry's next look
/// (`IDLE_LOOK_EVERY`, 1 s) after the host is down.
const IDLE_RESET_BOUND: Duration = Duration::from_secs(DOWN_AFTER.as_secs() + 1);
/// Long enough for the mesh to form and the vessel's route to spread.
const SETUP_WAIT: Duration = Duration::from_secs(60);

struct DeadNodeMesh {
    user: User,
    nodes: Vec<Node>,
    ids: Vec<String>,
}

fn service_ip(i: usize) -> String {
    // Their own addresses: the other mesh tests use 127.0.0.2-4.
    format!("127.0.0.{}", 12 + i)
}

impl DeadNodeMesh {
    fn new() -> DeadNodeMesh {
        let user = User::new();
        let down_ms = DOWN_AFTER.as_millis().to_string();
        let mut nodes: Vec<Node> = Vec::new();
        let mut addrs: Vec<String> = Vec::new();
        let mut ids = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let ip = service_ip(i);
            let extra = [
                "--ping-interval",
                "200ms",
                "--placement-interval",
                "0",
                "--service-address",
                &ip,
            ];
            let dir = user.home.path().join(name);
            let envs = [("MESHNODE_TEST_DOWN_AFTER_MS", down_ms.as_str())];
            let mut n = user.start_env(&dir, &addrs, &extra, &envs);
            addrs.push(n.wait_ready());
            ids.push(n.peer_id());
            nodes.push(n);
        }
        let m = DeadNodeMesh { user, nodes, ids };
        for i in 0..3 {
            m.wait_peer_state(i, "every member up", SETUP_WAIT, |p| {
                let others = (0..3).filter(|j| *j != i);
                others.clone().count() == 2
                    && others.into_iter().all(|j| {
                        p.iter().any(|x| {
                            x["peer_id"] == m.ids[j].as_str()
                                && x["member"] == true
                                && x["state"] == "up"
                        })
                    })
            });
        }
        m
    }

    /// A CLI command against node `i`, and how long it ran.
    fn cli(&self, i: usize, args: &[&str]) -> (Output, Duration) {
        let mut all = args.to_vec();
        all.extend(["--data-dir", self.nodes[i].dir()]);
        let t = Instant::now();
        let out = self.user.run(&all);
        (out, t.elapsed())
    }

    /// Polls `peers --json` on node `i` until `cond` holds; panics after
    /// `within`, with the last listing.
    fn wait_peer_state(
        &self,
        i: usize,
        what: &str,
        within: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut last = Err(String::new());
        while Instant::now() < deadline {
            last = peers(&self.user, &self.nodes[i], false);
            if let Ok(p) = &last {
                if cond(p) {
                    return p.clone();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within {within:?}; last `peers`: {last:?}");
    }

    fn peer_row(listing: &[Value], id: &str) -> Value {
        listing
            .iter()
            .find(|p| p["peer_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// A port free on every node's service address.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind((service_ip(0).as_str(), 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if (0..3).all(|i| std::net::TcpListener::bind((service_ip(i).as_str(), port)).is_ok()) {
            return port;
        }
    }
}

/// A client of the kv vessel entering at `addr`, once the entry serves it:
/// its connection, after one answered `COUNT`.
fn served_client(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            s.set_read_timeout(Some(SETUP_WAIT)).unwrap();
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if (&s).write_all(b"COUNT\n").is_ok()
                && r.read_line(&mut line).is_ok()
                && line.starts_with("COUNT")
            {
                return s;
            }
        }
        assert!(
            start.elapsed() < SETUP_WAIT,
            "{addr} never served the vessel"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    )
}

/// Waits on an idle client until its connection ends; what ended it.
fn wait_end(mut s: TcpStream, bound: Duration) -> std::io::Result<usize> {
    s.set_read_timeout(Some(bound + SLACK)).unwrap();
    let mut buf = [0u8; 64];
    s.read(&mut buf)
}

#[test]
fn a_dead_host_is_seen_dead_and_nothing_hangs_on_it() {
    let _cpu = crate::support::shared_cpu();
    let mut mesh = DeadNodeMesh::new();
    let (a, b, c) = (0, 1, 2);
    let b_id = mesh.ids[b].clone();
    let port = free_port();
    let wasm = compile_c("examples/kvserver.c", &[]);
    let p = port.to_string();
    let w = wasm.to_str().unwrap();
    // No replica: this is the host that dies with nothing to fail over to
    // (failover itself is leases.rs's).
    let deploy = [
        "deploy",
        "--name",
        "kv",
        "--port",
        &p,
        "--on",
        &b_id,
        "--replicas",
        "0",
        w,
    ];
    let (out, _) = mesh.cli(a, &deploy);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let vessel = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let at = |i: usize| -> SocketAddr { format!("{}:{port}", service_ip(i)).parse().unwrap() };
    let idle = served_client(at(a));
    // c must know the route too before b dies.
    drop(served_client(at(c)));

    // b dies for good.
    mesh.nodes[b].child.kill().unwrap();
    mesh.nodes[b].child.wait().unwrap();
    let killed = Instant::now();
    let idle_client = std::thread::spawn(move || {
        let r = wait_end(idle, IDLE_RESET_BOUND);
        (r, killed.elapsed())
    });

    // peers: unreachable within the threshold, its status stale.
    let listing = mesh.wait_peer_state(a, "b unreachable", UNREACHABLE_AFTER + SLACK, |p| {
        DeadNodeMesh::peer_row(p, &b_id)["state"] == "unreachable"
    });
    let row = DeadNodeMesh::peer_row(&listing, &b_id);
    assert!(
        !idle_client.is_finished(),
        "the idle client is held while its host is only unreachable"
    );
    assert_eq!(row["status_stale"], true, "{row}");
    assert!(row["silent_ms"].as_u64().unwrap() >= 1000, "{row}");
    let (out, _) = mesh.cli(a, &["peers"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("unreachable "), "{table}");
    assert!(table.contains("its last status is stale ("), "{table}");

    // ps: the vessel on b's row, with b's state, at once.
    let (out, took) = mesh.cli(a, &["ps", "--json"]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    assert!(took < COMMAND_BOUND, "ps took {took:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == vessel.as_str())
        .unwrap_or_else(|| panic!("ps lists the vessel of the dead host: {rows}"));
    assert_eq!(
        (&row["node"], &row["state"]),
        (&Value::from(b_id.as_str()), &Value::from("unreachable")),
        "{row}"
    );
    // Deployed with --replicas 0: nothing can take it over, and ps says so.
    let why = row["why"].as_str().unwrap();
    assert!(why.starts_with("host unreachable "), "{row}");
    assert!(
        why.contains("it cannot fail over: no replica holds a checkpoint of it"),
        "{row}"
    );

    // Commands on its vessel fail at once and say why.
    let to_c = ["migrate", "--to", &mesh.ids[c], "kv"];
    for args in [&["stop", "kv"][..], &["pin", "kv"], &["logs", "kv"], &to_c] {
        let (out, took) = mesh.cli(a, args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded on a dead host");
        assert!(took < COMMAND_BOUND, "{args:?} took {took:?}: {err}");
        let want = format!("unreachable: {b_id}: host unreachable ");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(
            err.contains("it cannot fail over: no replica holds a checkpoint of it"),
            "{args:?}: {err}"
        );
    }
    let (out, took) = mesh.cli(a, &["drain", &b_id]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && took < COMMAND_BOUND,
        "drain took {took:?}: {err}"
    );
    // Its vessel has no replica: the drain says so, and that it did not move.
    assert!(
        err.contains("it cannot fail over: no replica holds a checkpoint of it"),
        "{err}"
    );
    assert!(err.contains("could not be moved off"), "{err}");

    // logs -f says so, and keeps waiting for the vessel to come back.
    let mut follow = mesh
        .user
        .cmd()
        .args(["logs", "-f", "kv", "--data-dir", mesh.nodes[a].dir()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stderr.take().unwrap()).lines();
    let said = lines.next().expect("a line on stderr").unwrap();
    assert!(
        said.contains(": host unreachable ")
            && said.contains("waiting for the vessel to come back"),
        "{said}"
    );
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f gave up at once"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // A new client entering at c is reset once it has waited for b.
    mesh.wait_peer_state(c, "c suspects b", UNREACHABLE_AFTER + SLACK, |p| {
        DeadNodeMesh::peer_row(p, &b_id)["state"] != "up"
    });
    let t = Instant::now();
    let ended = TcpStream::connect_timeout(&at(c), Duration::from_secs(2)).and_then(|mut s| {
        let _ = s.write_all(b"COUNT\n");
        wait_end(s, NEW_CLIENT_BOUND)
    });
    match ended {
        Err(e) if is_reset(&e) => {}
        other => panic!(
            "a new client at c: expected a reset, got {other:?} after {:?}",
            t.elapsed()
        ),
    }
    assert!(
        t.elapsed() < NEW_CLIENT_BOUND,
        "new client reset after {:?}",
        t.elapsed()
    );

    // Down after the down threshold, and ps says so too.
    let left = (DOWN_AFTER + SLACK).saturating_sub(killed.elapsed());
    mesh.wait_peer_state(a, "b down", left, |p| {
        DeadNodeMesh::peer_row(p, &b_id)["state"] == "down"
    });
    // Measured from the last word before the kill (a ping, 200 ms apart).
    let earliest = DOWN_AFTER - Duration::from_secs(1);
    assert!(killed.elapsed() >= earliest, "down before its threshold");
    let (out, _) = mesh.cli(a, &["ps"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains(" down ") && table.contains("host down "),
        "{table}"
    );

    // The idle client entered at a was held until b was down, then reset,
    // not left hanging.
    let (ended, after) = idle_client.join().unwrap();
    match ended {
        Err(e) if is_reset(&e) => {}
        other => panic!("the idle client: expected a reset, got {other:?} after {after:?}"),
    }
    assert!(
        after >= earliest,
        "idle client reset after {after:?}, before b was down"
    );
    assert!(
        after < IDLE_RESET_BOUND + SLACK,
        "idle client reset after {after:?}"
    );
}
