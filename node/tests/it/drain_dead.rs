//! `meshnode drain DEAD` (issue 15, item 4): a drain of a node that died
//! fails its vessels over instead of failing at once.
//!
//! Method: three real nodes; `ticker` deployed on a (leased: 3 voters, its
//! replica a voter). The fault: `kill -9` of a. The oracle: `drain a`
//! through another node reports the ticker failing over to its replica,
//! then moved there (`ID ticker -> REPLICA`), exits 0 within its bound,
//! and the ticker runs on the replica at epoch 2.

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

#[test]
fn drain_of_a_dead_host_reports_its_vessel_moved_to_the_replica_that_took_it_over() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let out = mesh.cli(0, &["deploy", "--name", "ticker", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + WAIT;
    let replica = loop {
        let r = row(&mesh, 0, "ticker");
        if let Some(r) = r.filter(|r| {
            r["lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("held at epoch 1"))
                && r["replica_age_ms"].is_u64()
        }) {
            break r["replicas"][0]["node"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never leased with a replica");
        std::thread::sleep(Duration::from_millis(200));
    };
    let at = mesh.ids.iter().position(|i| *i == replica).unwrap();
    let via = (1..3).find(|i| *i != at).unwrap();
    // The node asked must know the ticker from a's status before a dies.
    crate::mesh::wait_for_peers(&mesh.user, &mesh.nodes[via], "a names the ticker", |p| {
        p.iter().any(|x| {
            x["peer_id"] == mesh.ids[0].as_str()
                && x["vessels"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v == id.as_str()))
        })
    });

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
