//! The CLI's rough edges (issue 16, item 5) on a mesh of real nodes (the
//! 3-node harness of `mesh_vessels`), driven by the real CLI: name and
//! port clashes, drains of vessels that end, `undrain`, `logs --tail`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;

/// Long enough for a few CLI round trips on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

fn ticker_wasm() -> std::path::PathBuf {
    crate::support::compile_c("node/tests/it/programs/ticker.c", &[])
}

/// `meshnode deploy ARGS… WASM` through node `via`: the vessel's id.
fn deploy(mesh: &Mesh, via: usize, args: &[&str], wasm: &std::path::Path) -> String {
    let out = deploy_out(mesh, via, args, wasm);
    assert!(out.status.success(), "deploy {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn deploy_out(
    mesh: &Mesh,
    via: usize,
    args: &[&str],
    wasm: &std::path::Path,
) -> std::process::Output {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    all.push(wasm.to_str().unwrap());
    mesh.cli(via, &all)
}

/// Polls `ps` through node `via` until `ok` holds for the vessel's row.
fn wait_row(mesh: &Mesh, via: usize, vessel: &str, what: &str, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if mesh.row(via, vessel).is_some_and(|r| ok(&r)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{vessel}: {what} within {WAIT:?}; ps {:?}",
            mesh.ps(via)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Goal: a name or a service port that a running vessel holds anywhere in
/// the mesh is refused, with its code and the vessel that holds it, even
/// when asked through another node for a third one; an ended vessel frees
/// both; a deploy without --name never clashes (it picks NAME-2).
#[test]
fn deploy_refuses_a_name_or_port_a_live_vessel_holds() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let wasm = ticker_wasm();
    let port = "47311";
    let kv = deploy(&mesh, 0, &["--name", "kv", "--port", port], &wasm);

    // The same name, through b, for c: refused, naming kv's id and node.
    let on_c = ["--name", "kv", "--on", mesh.ids[2].as_str()];
    let out = deploy_out(&mesh, 1, &on_c, &wasm);
    let err = stderr(&out);
    assert!(!out.status.success(), "a second kv was deployed: {err}");
    assert!(err.contains("name-taken"), "{err}");
    assert!(err.contains(&kv) && err.contains(&mesh.ids[0]), "{err}");

    // Another name on kv's port: refused, naming kv.
    let out = deploy_out(&mesh, 2, &["--name", "web", "--port", port], &wasm);
    let err = stderr(&out);
    assert!(!out.status.success(), "port {port} was taken over: {err}");
    assert!(err.contains("port-taken") && err.contains(&kv), "{err}");
    let names: Vec<String> = mesh.ps(0).iter().map(|r| r["name"].to_string()).collect();
    assert_eq!(names, ["\"kv\""], "nothing else was deployed");
    let row = mesh.row(1, &kv).unwrap();
    assert_eq!(row["ports"], serde_json::json!([47311]), "{row}");

    // Without --name: the module's name, then the first free NAME-N.
    let first = deploy(&mesh, 1, &[], &wasm);
    let second = deploy(&mesh, 2, &[], &wasm);
    let stem = wasm.file_stem().unwrap().to_str().unwrap().to_string();
    assert_eq!(mesh.row(0, &first).unwrap()["name"], stem.as_str());
    assert_eq!(mesh.row(0, &second).unwrap()["name"], format!("{stem}-2"));

    // Once kv ended, its name and port are free.
    let out = mesh.cli(2, &["stop", &kv]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    wait_row(&mesh, 1, &kv, "is stopped", |r| r["state"] == "stopped");
    deploy(&mesh, 1, &["--name", "kv", "--port", port], &wasm);
}
