//! The vessel commands of issue 16, item 5, on a mesh of real nodes (the
//! 3-node harness of `mesh_vessels`), driven by the real CLI: `rm` and
//! its tombstones, `ps -a`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;

/// Long enough for a few CLI round trips on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

fn ticker_wasm() -> PathBuf {
    crate::support::compile_c("node/tests/it/programs/ticker.c", &[])
}

/// `meshnode deploy ARGS… WASM` through node `via`: the vessel's id.
fn deploy(mesh: &Mesh, via: usize, args: &[&str], wasm: &Path) -> String {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    all.push(wasm.to_str().unwrap());
    let out = mesh.cli(via, &all);
    assert!(out.status.success(), "deploy {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Polls until `ok` holds, or fails saying `what`.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool, mesh: &Mesh) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} within {WAIT:?}\n{}",
            mesh.logs_of_nodes()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn vessel_dir(mesh: &Mesh, node: usize, id: &str) -> PathBuf {
    mesh.nodes[node].data_dir.join("vessels").join(id)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Goal: `rm` refuses a running vessel (saying to stop it first), and
/// removes an ended one with its records and logs on every node that holds
/// them, the node it left included; `ps` hides ended vessels unless `-a`
/// and says how many it hid. A node that was down during the removal
/// (holding a stale copy: its `Left` record and old log) is told of the
/// tombstone once it is seen naming the vessel, and deletes its copy; a
/// stale `Owned` record put back on a node that holds the tombstone is
/// deleted at its start, never resumed.
#[test]
fn rm_removes_an_ended_vessel_everywhere_and_no_stale_copy_comes_back() {
    let _cpu = crate::support::shared_cpu();
    let mut mesh = Mesh::new(0, 4_000_000);
    let wasm = ticker_wasm();
    let t1 = deploy(&mesh, 0, &["--name", "t1", "--replicas", "0"], &wasm);
    let keep = deploy(&mesh, 1, &["--name", "keep", "--replicas", "0"], &wasm);
    mesh.migrate(0, &t1, 1).expect("t1 moves to b");
    assert!(
        vessel_dir(&mesh, 0, &t1).join("record.cbor").exists(),
        "a keeps its Left record"
    );
    // A stale copy for later: b's record of t1 while it runs there.
    let stale_owned = std::fs::read(vessel_dir(&mesh, 1, &t1).join("record.cbor")).unwrap();

    // Running: refused, with what to do.
    let out = mesh.cli(2, &["rm", "t1"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a running vessel was removed: {err}");
    assert!(
        err.contains("meshnode stop") && err.contains("running"),
        "{err}"
    );
    assert!(mesh.row(2, &t1).is_some());

    // Node a goes down; t1 is stopped on b.
    let _ = mesh.nodes[0].child.kill();
    let _ = mesh.nodes[0].child.wait();
    let out = mesh.cli(2, &["stop", "t1"]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    wait_until(
        "t1 is stopped",
        || mesh.row(2, &t1).is_some_and(|r| r["state"] == "stopped"),
        &mesh,
    );

    // ps hides it and says so; ps -a lists it.
    let out = mesh.cli(2, &["ps"]);
    let table = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !table.contains(&t1[..8]) && table.contains(&keep[..8]),
        "{table}"
    );
    assert!(table.contains("1 ended vessel hidden"), "{table}");
    let all = stdout(&mesh.cli(2, &["ps", "-a"]));
    assert!(all.contains(&t1[..8]) && all.contains("stopped"), "{all}");
    assert!(!all.contains("hidden"), "{all}");

    // rm through c, with a still down: b deletes it, c keeps the tombstone.
    let out = mesh.cli(2, &["rm", "t1"]);
    assert!(out.status.success(), "rm: {}", stderr(&out));
    assert!(stderr(&out).contains("removed t1"), "{}", stderr(&out));
    assert!(
        !vessel_dir(&mesh, 1, &t1).exists(),
        "b deleted its record and log"
    );
    for via in [1, 2] {
        assert!(
            mesh.row(via, &t1).is_none(),
            "ps through {via} still lists t1"
        );
        let tombstones = mesh.nodes[via].data_dir.join("tombstones.cbor");
        assert!(tombstones.exists(), "node {via} keeps no tombstone");
    }
    let out = mesh.cli(1, &["logs", &t1]);
    assert!(
        !out.status.success(),
        "the log of a removed vessel is still read"
    );
    let out = mesh.cli(2, &["rm", "t1"]);
    assert!(!out.status.success(), "a second rm finds it again");
    assert!(stderr(&out).contains("no vessel `t1`"), "{}", stderr(&out));

    // a comes back with its stale Left record and old log: it is told.
    assert!(vessel_dir(&mesh, 0, &t1).exists());
    mesh.restart(0, &[]);
    wait_until(
        "a deletes its stale copy of t1",
        || {
            // Every `ps` asks a for its rows; one naming t1 is answered
            // with the tombstone.
            let listed = mesh.row(2, &t1).is_some();
            assert!(!listed, "ps lists the removed t1 again");
            !vessel_dir(&mesh, 0, &t1).exists()
        },
        &mesh,
    );
    assert!(mesh.row(0, &t1).is_none(), "a lists t1 again");

    // A stale Owned record of t1 put back on b (a backup restored): b
    // holds the tombstone, so it deletes it at start and runs nothing.
    let dir = vessel_dir(&mesh, 1, &t1);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.cbor"), stale_owned).unwrap();
    mesh.restart(1, &[]);
    assert!(!dir.exists(), "b kept the stale record");
    let rows: Vec<Value> = mesh.ps(2);
    assert!(rows.iter().all(|r| r["id"] != t1.as_str()), "{rows:?}");
    assert!(
        mesh.nodes[1].log().contains("removed (tombstone)"),
        "{}",
        mesh.nodes[1].log()
    );
}

/// Goal: `volumes` lists a vessel's volumes (guest path, files, bytes) and
/// `cp` copies a file, or a directory whole, out of one, through a node
/// that does not host it, after the vessel moved; a file of several pages
/// arrives byte for byte. A path outside every volume, a `..` and a
/// missing file are refused, each saying why.
#[test]
fn volumes_and_cp_read_a_vessels_files_wherever_it_runs() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let wasm = ticker_wasm();
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(seed.join("sub")).unwrap();
    std::fs::write(seed.join("a.txt"), b"hello").unwrap();
    // Three pages and a bit, not all alike.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(seed.join("sub/big.bin"), &big).unwrap();
    let volume = format!("/data={}", seed.display());
    let args = ["--name", "vol", "--replicas", "0", "--volume", &volume];
    let id = deploy(&mesh, 0, &args, &wasm);
    mesh.migrate(0, &id, 1).expect("vol moves to b");

    let out = mesh.cli(2, &["volumes", "--json", "vol"]);
    assert!(out.status.success(), "volumes: {}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["guest"], "/data", "{rows}");
    assert_eq!(rows[0]["files"], 2, "{rows}");
    assert_eq!(rows[0]["size_bytes"], 5 + big.len() as u64, "{rows}");
    assert_eq!(rows[0]["node"], mesh.ids[1].as_str(), "{rows}");
    let table = stdout(&mesh.cli(2, &["volumes", "vol"]));
    assert!(
        table.contains("/data") && table.contains("3.0 MiB"),
        "{table}"
    );

    let dest = tmp.path().join("out");
    std::fs::create_dir_all(&dest).unwrap();
    let file = dest.join("big.bin");
    let out = mesh.cli(2, &["cp", "vol:/data/sub/big.bin", file.to_str().unwrap()]);
    assert!(out.status.success(), "cp file: {}", stderr(&out));
    assert!(std::fs::read(&file).unwrap() == big, "the copy differs");
    let out = mesh.cli(0, &["cp", &format!("{id}:/data"), dest.to_str().unwrap()]);
    assert!(out.status.success(), "cp dir: {}", stderr(&out));
    assert_eq!(std::fs::read(dest.join("data/a.txt")).unwrap(), b"hello");
    assert!(std::fs::read(dest.join("data/sub/big.bin")).unwrap() == big);

    let x = dest.join("x");
    for (source, why) in [
        ("vol:/etc/passwd", "none of the vessel's volumes (/data)"),
        ("vol:/data/../etc/passwd", "`..` is not allowed"),
        (
            "vol:/data/nope.txt",
            "no file or directory `/data/nope.txt`",
        ),
        ("vol:data/a.txt", "VESSEL:/guest/path"),
    ] {
        let out = mesh.cli(2, &["cp", source, x.to_str().unwrap()]);
        assert!(!out.status.success(), "{source} was copied");
        assert!(stderr(&out).contains(why), "{source}: {}", stderr(&out));
    }
    assert!(!x.exists());
}

/// `meshnode deploy ARGS… WASM PROGRAM_ARGS…` through node `via`.
fn deploy_with(mesh: &Mesh, via: usize, args: &[&str], wasm: &Path, program: &[&str]) -> String {
    // The node's flags before the module: what follows it is the program's.
    let mut all = vec!["deploy", "--data-dir", mesh.nodes[via].dir()];
    all.extend_from_slice(args);
    all.push(wasm.to_str().unwrap());
    all.extend_from_slice(program);
    let out = mesh.user.run(&all);
    assert!(out.status.success(), "deploy {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Goal: `deploy --max-memory` traps a vessel that grows past it, saying
/// so in `ps VESSEL`; `deploy --restart on-failure` runs a failed vessel
/// again, afresh and with its volume as it was (the program counts its
/// runs in a file of its volume), after a back-off that `ps` shows as
/// `restarting (N) in Ts`, and not after it exits 0.
#[test]
fn max_memory_traps_and_restart_runs_the_vessel_afresh_after_a_backoff() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let grower = crate::support::compile_c("node/tests/it/programs/grower.c", &[]);
    let restarter = crate::support::compile_c("node/tests/it/programs/restarter.c", &[]);

    let args = ["--name", "grow", "--replicas", "0", "--max-memory", "8MiB"];
    let grow = deploy_with(&mesh, 0, &args, &grower, &["64"]);
    let row = mesh.row(1, &grow).unwrap();
    assert_eq!(
        row["max_memory_bytes"],
        8 * 1024 * 1024,
        "the limit travels: {row}"
    );
    wait_until(
        "grow traps",
        || {
            mesh.row(1, &grow)
                .is_some_and(|r| r["state"].as_str().unwrap().starts_with("failed"))
        },
        &mesh,
    );
    let row = mesh.row(1, &grow).unwrap();
    let state = row["state"].as_str().unwrap();
    assert!(state.contains("--max-memory of 8388608 bytes"), "{row}");
    assert_eq!(row["max_memory_bytes"], 8 * 1024 * 1024, "{row}");
    assert_eq!(row["state_short"], "trapped", "{row}");
    let details = stdout(&mesh.cli(2, &["ps", "grow"]));
    assert!(details.contains("max memory:  8.0 MiB"), "{details}");
    let (log, _) = mesh.logs(2, &grow);
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(
        log.contains("held 4 MiB") && !log.contains("held 8 MiB"),
        "{log}"
    );
    assert!(!log.contains("malloc failed"), "{log}");

    // A module that starts with more memory than its bound is refused at
    // the deploy, naming both, rather than started over its bound.
    let dir = mesh.nodes[0].dir();
    let wasm = grower.to_str().unwrap();
    let args = ["deploy", "--data-dir", dir, "--max-memory", "64KiB", wasm];
    let out = mesh.user.run(&args);
    assert!(!out.status.success(), "deployed over its bound");
    assert!(
        stderr(&out).contains("more than its --max-memory of 65536 bytes"),
        "{}",
        stderr(&out)
    );

    let tmp = tempfile::tempdir().unwrap();
    let volume = format!("/data={}", tmp.path().display());
    let args = [
        "--name",
        "again",
        "--replicas",
        "0",
        "--restart",
        "on-failure",
        "--volume",
        &volume,
    ];
    let again = deploy_with(&mesh, 0, &args, &restarter, &["3"]);
    let mut states = Vec::new();
    wait_until(
        "again runs 3 times and exits 0",
        || {
            let Some(r) = mesh.row(2, &again) else {
                return false;
            };
            let state = r["state"].as_str().unwrap().to_string();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            state == "exited"
        },
        &mesh,
    );
    assert!(
        states.iter().any(|s| s.starts_with("restarting (1) in ")),
        "{states:?}"
    );
    assert!(
        states.iter().any(|s| s.starts_with("restarting (2) in ")),
        "{states:?}"
    );
    let row = mesh.row(2, &again).unwrap();
    assert_eq!(
        (row["restarts"].as_u64(), row["exit_code"].as_i64()),
        (Some(2), Some(0)),
        "{row}"
    );
    assert_eq!(row["restart"], "on-failure", "{row}");
    let (log, _) = mesh.logs(1, &again);
    assert_eq!(String::from_utf8_lossy(&log), "run 1\nrun 2\nrun 3\n");
    // Exited 0 under on-failure: it stays ended.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mesh.row(2, &again).unwrap()["state"], "exited");
}
