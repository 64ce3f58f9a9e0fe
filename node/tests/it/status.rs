//! `meshnode status` (issue 16 item 2) on a mesh of real nodes: what it
//! reports, the migration it lists with its reason and downtime, and its
//! exit status as a health check (0 healthy, 2 unhealthy).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;
use crate::support::compile_c;

const WAIT: Duration = Duration::from_secs(60);

/// `status --json` on node `i`: its exit code and report.
pub(crate) fn status(mesh: &Mesh, i: usize) -> (i32, Value) {
    let out = mesh.cli(i, &["status", "--json"]);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 2, "status: {code}: {}", stderr(&out));
    (
        code,
        serde_json::from_slice(&out.stdout).expect("status --json"),
    )
}

/// Waits until `f` holds of node `i`'s status; returns it.
pub(crate) fn wait_status(
    mesh: &Mesh,
    i: usize,
    what: &str,
    f: impl Fn(i32, &Value) -> bool,
) -> (i32, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, s) = status(mesh, i);
        if f(code, &s) {
            return (code, s);
        }
        assert!(Instant::now() < deadline, "never {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_reports_the_node_and_the_mesh_and_exits_2_when_no_member_is_reachable() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let out = mesh.cli(
        0,
        &[
            "deploy",
            "--name",
            "ticker",
            "--replicas",
            "0",
            wasm.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let (code, s) = wait_status(&mesh, 0, "two members up and the ticker running", |_, s| {
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "up")
            .count()
            == 2
            && s["vessels_here"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["vessel"] == id.as_str() && v["state"] == "running")
    });
    assert_eq!(code, 0, "healthy: {s:#}");
    assert!(s["unhealthy"].as_array().unwrap().is_empty(), "{s:#}");
    assert_eq!(s["peer_id"], mesh.ids[0].as_str());
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_ms"].as_u64().unwrap() > 0, "{s:#}");
    assert!(
        s["http_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{s:#}"
    );
    assert!(s["disk"]["store_bytes"].as_u64().unwrap() > 0, "{s:#}");
    assert!(s["memory"]["vessels_bytes"].as_u64().unwrap() > 0, "{s:#}");

    mesh.migrate(0, &id, 1).expect("migrate");
    let (_, s) = wait_status(&mesh, 0, "the migration listed", |_, s| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "Migrated")
    });
    let e = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "Migrated")
        .unwrap();
    assert_eq!(e["vessel"], id.as_str(), "{e}");
    assert_eq!(e["to"], mesh.ids[1].as_str(), "{e}");
    assert!(e["downtime_us"].as_u64().is_some(), "{e}");
    assert!(e["reason"].as_str().unwrap().contains("by hand"), "{e}");
    // The mesh count comes from node b's status once it gossips it.
    wait_status(&mesh, 0, "the ticker counted in the mesh", |_, s| {
        s["vessels_in_mesh"].as_u64() == Some(1)
    });

    // The text form: one screen, with the move.
    let out = mesh.cli(0, &["status"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("healthy"), "{text}");
    assert!(text.contains("members  2 up of 2"), "{text}");
    assert!(
        text.contains("ticker") && text.contains("moved to"),
        "{text}"
    );

    for n in [1, 2] {
        let _ = mesh.nodes[n].child.kill();
        let _ = mesh.nodes[n].child.wait();
    }
    let (code, s) = wait_status(&mesh, 0, "unhealthy without members", |code, _| code == 2);
    let why = s["unhealthy"].to_string();
    assert!(why.contains("no member is reachable (2 known)"), "{s:#}");
    assert_eq!(code, 2);
}

#[test]
fn start_logs_to_a_rotated_file_serves_http_where_told_and_refuses_exposing_it_silently() {
    let user = crate::mesh::User::new();
    let logs = user.home.path().join("logs");
    let log_file = logs.join("node.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let at = format!("127.0.0.1:{port}");
    let mut node = user.start(
        "a",
        &[],
        &["--log-file", log_file.to_str().unwrap(), "--http", &at],
    );
    node.wait_ready();
    let out = user.run(&["status", "--json", "--data-dir", node.dir()]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["http_addr"], at.as_str(), "{s:#}");
    let (code, _, body) = crate::metrics::http_get(&at, "/metrics", &[]);
    assert_eq!(code, 200, "{body}");
    // The file: NAME.YYYY-MM-DD beside it, with what stderr has.
    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("node.log.20"), "{name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("node started"), "{text}");
    assert!(node.log().contains("node started"), "stderr too");

    let mut exposed = user.start("b", &[], &["--http", "0.0.0.0:0"]);
    let (code, log) = exposed.wait_exit();
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("is not a loopback address") && log.contains("--http-expose"),
        "{log}"
    );
    let mut bad = user.start("c", &[], &["--http", "localhost"]);
    let (code, log) = bad.wait_exit();
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("`localhost` is not an address"), "{log}");
}
