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
