//! Commands on a node that died, on a mesh that can fail over (issue 15,
//! item 4): `drain` of the dead node, and `stop` of its vessel.
//!
//! Method: three real nodes; `ticker` deployed on a (leased: 3 voters, its
//! replica a voter). The fault: `kill -9` of a. The oracle: `drain a`
//! through another node reports the ticker moved to its replica (`ID
//! ticker -> REPLICA`) and exits 0 within its bound, the ticker at epoch 2
//! there; and `stop ticker` issued at once after the kill waits for the
//! failover (saying so) and stops it on the replica, instead of failing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;
use crate::support::compile_c;

/// Detection (3 s), a takeover (about 2 s), the drain's polling, and a
/// loaded 2-core CI machine; the drain itself gives up 20 s after the
/// host's silence.
const DRAIN_BOUND: Duration = Duration::from_secs(40);
const WAIT: Duration = Duration::from_secs(30);
/// The whole of the `logs -f` test's reading, kill to the last tick.
const FOLLOW_BOUND: Duration = Duration::from_secs(60);

fn row(mesh: &Mesh, via: usize, name: &str) -> Option<Value> {
    mesh.ps(via).into_iter().find(|r| r["name"] == name)
}

/// Waits until node `via` holds a status of node a (index 0) that a sent
/// after `since` and that names vessel `id`: the voters and replicas a
/// gossips of it are then those `ps` showed at `since`, and they are all
/// `via` knows of the vessel once a is dead.
fn status_since(mesh: &Mesh, via: usize, id: &str, since: Instant) {
    crate::mesh::wait_for_peers(&mesh.user, &mesh.nodes[via], "a fresh status of a", |p| {
        p.iter().any(|x| {
            x["peer_id"] == mesh.ids[0].as_str()
                && x["vessels"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v == id))
                && x["status_age_ms"]
                    .as_u64()
                    .is_some_and(|age| Duration::from_millis(age) < since.elapsed())
        })
    });
}

#[test]
fn drain_of_a_dead_host_reports_its_vessel_moved_to_the_replica_that_took_it_over() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let out = mesh.cli(0, &["deploy", "--name", "ticker", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + WAIT;
    let (replica, leased) = loop {
        let r = row(&mesh, 0, "ticker");
        if let Some(r) = r.filter(|r| {
            r["lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("held at epoch 1"))
                && r["replica_age_ms"].is_u64()
        }) {
            let replica = r["replicas"][0]["node"].as_str().unwrap().to_string();
            break (replica, Instant::now());
        }
        assert!(Instant::now() < deadline, "never leased with a replica");
        std::thread::sleep(Duration::from_millis(200));
    };
    let at = mesh.ids.iter().position(|i| *i == replica).unwrap();
    let via = (1..3).find(|i| *i != at).unwrap();
    // The node asked must know the ticker from a's status before a dies.
    status_since(&mesh, via, &id, leased);

    let _ = mesh.nodes[0].child.kill();
    let _ = mesh.nodes[0].child.wait();
    let killed = Instant::now();
    // Until detection suspects a, the drain is a live node's own, and it
    // fails (a does not answer); from then on it reports.
    let a = mesh.ids[0].clone();
    let out = loop {
        let out = mesh.cli(via, &["drain", &a]);
        if out.status.success() || killed.elapsed() > DRAIN_BOUND {
            break out;
        }
        eprintln!("drain before a is suspected: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "drain: {err}\n{}",
        mesh.nodes[via].log()
    );
    assert!(
        killed.elapsed() < DRAIN_BOUND,
        "drain took {:?}",
        killed.elapsed()
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(said.trim(), format!("{id} ticker -> {replica}"), "{err}");
    let r = row(&mesh, at, "ticker").expect("listed");
    assert_eq!(
        (r["node"].as_str(), r["epoch"].as_u64()),
        (Some(replica.as_str()), Some(2)),
        "{r}"
    );
}

/// Goal (issue 15, item 4): `stop` right after the host of a leased vessel
/// dies does not fail or hang: it waits, bounded and saying so, for the
/// failover, and stops the vessel on the replica that took it over.
#[test]
fn stop_right_after_the_host_dies_waits_for_the_failover_and_stops_it_on_the_new_host() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let out = mesh.cli(0, &["deploy", "--name", "ticker", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + WAIT;
    let (replica, leased) = loop {
        let r = row(&mesh, 0, "ticker");
        if let Some(r) = r.filter(|r| {
            r["lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("held at epoch 1"))
                && r["replica_age_ms"].is_u64()
        }) {
            let replica = r["replicas"][0]["node"].as_str().unwrap().to_string();
            break (replica, Instant::now());
        }
        assert!(Instant::now() < deadline, "never leased with a replica");
        std::thread::sleep(Duration::from_millis(200));
    };
    let at = mesh.ids.iter().position(|i| *i == replica).unwrap();
    let via = (1..3).find(|i| *i != at).unwrap();
    status_since(&mesh, via, &id, leased);

    let _ = mesh.nodes[0].child.kill();
    let _ = mesh.nodes[0].child.wait();
    let killed = Instant::now();
    let out = mesh.cli(via, &["stop", "ticker"]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "stop: {err}\n{}",
        mesh.nodes[via].log()
    );
    assert!(
        killed.elapsed() < DRAIN_BOUND,
        "stop took {:?}",
        killed.elapsed()
    );
    let r = row(&mesh, at, "ticker").expect("listed");
    assert_eq!(
        (r["node"].as_str(), r["epoch"].as_u64(), r["state"].as_str()),
        (Some(replica.as_str()), Some(2), Some("stopped")),
        "{r}\nstop said: {err}"
    );
    eprintln!(
        "stop after the host's death: {:?}; it said: {err}",
        killed.elapsed()
    );
}

/// Goal (issue 15, item 4): `logs -f` on a vessel whose host dies neither
/// hangs nor gives up: it goes on printing the vessel's ticks once a
/// replica took it over (from the new host), in order; if it goes back to
/// the replica's checkpoint, it prints a marker first.
#[test]
fn logs_follow_goes_on_from_the_new_host_after_a_failover() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let out = mesh.cli(0, &["deploy", "--name", "ticker", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + WAIT;
    let (replica, leased) = loop {
        let r = row(&mesh, 0, "ticker");
        if let Some(r) = r.filter(|r| {
            r["lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("held at epoch 1"))
                && r["replica_age_ms"].is_u64()
        }) {
            let replica = r["replicas"][0]["node"].as_str().unwrap().to_string();
            break (replica, Instant::now());
        }
        assert!(Instant::now() < deadline, "never leased with a replica");
        std::thread::sleep(Duration::from_millis(200));
    };
    let at = mesh.ids.iter().position(|i| *i == replica).unwrap();
    let via = (1..3).find(|i| *i != at).unwrap();
    status_since(&mesh, via, &id, leased);

    let mut follow = mesh
        .user
        .cmd()
        .args(["logs", "-f", "ticker", "--data-dir", mesh.nodes[via].dir()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A follower that blocks is killed after FOLLOW_BOUND, so that the
    // reads below end (and fail) instead of hanging the test.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = follow.id().to_string();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(FOLLOW_BOUND).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
    });
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    // A tick's number, or None for a rollback marker.
    let mut next = |what: &str| -> Option<u64> {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{what}: logs -f ended"))
            .unwrap();
        if line.starts_with("-- rolled back to offset ") {
            return None;
        }
        let n = line.strip_prefix("tick ").and_then(|n| n.parse().ok());
        Some(n.unwrap_or_else(|| panic!("{what}: not a tick: {line}")))
    };
    let mut last = next("before the kill").expect("a tick");
    let _ = mesh.nodes[0].child.kill();
    let _ = mesh.nodes[0].child.wait();
    let killed = Instant::now();
    // Ticks go on, each one more than the last (after a marker: at or
    // before the next one). A reader blocked on the dead host stops here.
    let r = loop {
        let mut rolled = false;
        let n = loop {
            match next("after the kill") {
                None => rolled = true,
                Some(n) => break n,
            }
        };
        if rolled {
            assert!(n <= last + 1, "rolled back to tick {n} after tick {last}");
        } else {
            assert_eq!(n, last + 1, "ticks in order, none twice");
        }
        last = n;
        let r = row(&mesh, at, "ticker");
        if r.as_ref().is_some_and(|r| r["epoch"] == 2) {
            break r.unwrap();
        }
        assert!(killed.elapsed() < DRAIN_BOUND, "no failover seen");
    };
    // Then ticks that did not exist before the failover: past what the new
    // host has printed by now (the pipe may still hold the old host's).
    let out = mesh.cli(at, &["logs", &id]);
    assert!(
        out.status.success(),
        "logs on the new host: {}",
        stderr(&out)
    );
    let printed = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
    while last < printed + 5 {
        let n = loop {
            if let Some(n) = next("from the new host") {
                break n;
            }
        };
        assert!(n <= last + 1, "tick {n} after tick {last}");
        last = n;
    }
    assert_eq!(r["node"].as_str(), Some(replica.as_str()), "{r}");
    let _ = done.send(());
    let _ = follow.kill();
    let _ = follow.wait();
}
