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

/// Waits until node `i` has a fresh status from every other node (a drain
/// chooses destinations by it).
fn wait_statuses(mesh: &Mesh, i: usize) {
    let others: Vec<&String> = (0..mesh.ids.len())
        .filter(|j| *j != i)
        .map(|j| &mesh.ids[j])
        .collect();
    crate::mesh::wait_for_peers(&mesh.user, &mesh.nodes[i], "statuses arrive", |p| {
        others.iter().all(|id| {
            p.iter()
                .any(|x| x["peer_id"] == id.as_str() && !x["status_age_ms"].is_null())
        })
    });
}

fn drain_json(mesh: &Mesh, via: usize, node: &str) -> (std::process::Output, Value) {
    let out = mesh.cli(via, &["drain", "--json", node]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// Goal (the report of issue 16): with 20 short vessels on a node, `drain
/// self` counts each vessel that ended before or during its move as done
/// ("ended", not "failed"), and exits 0 with nothing left running there.
#[test]
fn a_drain_of_short_vessels_reports_the_ended_ones_as_ended_and_exits_0() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let napper = crate::support::compile_c("node/tests/it/programs/napper.c", &[]);
    let wasm = napper.to_str().unwrap();
    // 1 MiB each, running 1.5 s to 5.3 s: some end while they wait their
    // turn, some while they move, some arrive and end elsewhere.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (name, naps) = (format!("short{i}"), (15 + 2 * i).to_string());
        let dir = mesh.nodes[0].dir();
        let args = [
            "deploy",
            "--data-dir",
            dir,
            "--name",
            &name,
            wasm,
            "1",
            &naps,
            "100",
        ];
        let out = mesh.user.run(&args);
        assert!(out.status.success(), "deploy {name}: {}", stderr(&out));
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    wait_statuses(&mesh, 0);
    let started = Instant::now();
    let (out, report) = drain_json(&mesh, 0, "self");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "drain exited {:?}: {}\n{report:#}",
        out.status.code(),
        stderr(&out)
    );
    let items = report["vessels"].as_array().expect("a report");
    let state = |i: &Value| i["state"].as_str().unwrap_or("").to_string();
    let ended = items.iter().filter(|i| state(i) == "ended").count();
    let moved = items.iter().filter(|i| state(i) == "moved").count();
    assert_eq!(
        ended + moved,
        items.len(),
        "every vessel moved or ended: {report:#}"
    );
    assert!(
        ended > 0,
        "the test ran no vessel that ended during the drain: {report:#}"
    );
    eprintln!(
        "drain of {} vessels: {moved} moved, {ended} ended, in {took:?}",
        items.len()
    );
    // Nothing runs on the drained node.
    let running_here: Vec<Value> = mesh
        .ps(1)
        .into_iter()
        .filter(|r| r["node"] == mesh.ids[0].as_str() && r["state"] == "running")
        .collect();
    assert!(
        running_here.is_empty(),
        "still running on a: {running_here:?}"
    );
}

/// Goal: `undrain` ends a drain without a restart: a drain under way stops
/// before its next vessel (those stay, running, and are listed as
/// undrained), `drain` that followed it says so, and the node can be
/// drained afresh; `undrain` of a node not being drained is refused.
#[test]
fn undrain_ends_a_drain_under_way_and_the_rest_stay() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let wasm = ticker_wasm();
    for i in 0..10 {
        deploy(&mesh, 0, &["--name", &format!("t{i}")], &wasm);
    }
    wait_statuses(&mesh, 0);
    let a = mesh.ids[0].clone();
    let mut follower = mesh.user.cmd();
    follower.args([
        "drain",
        &a,
        "--data-dir",
        mesh.nodes[1].dir(),
        "--timeout",
        "60s",
    ]);
    let follower = follower
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // As soon as the drain has started (the follower says so), end it:
    // moves go one at a time, so most vessels are still waiting.
    let mut follower = follower;
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(follower.stderr.take().unwrap()));
    let mut said: Vec<String> = Vec::new();
    while !said.iter().any(|l| l.contains("draining")) {
        let line = lines.next().expect("the drain ended without a word");
        said.push(line.unwrap());
    }
    let out = mesh.cli(2, &["undrain", "--json", &a]);
    assert!(out.status.success(), "undrain: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stayed: Vec<String> = report["vessels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "stays: undrained")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !stayed.is_empty(),
        "the drain ended before the undrain: {report:#}"
    );
    said.extend(lines.map(|l| l.unwrap()));
    let followed = follower.wait_with_output().unwrap();
    let err = said.join("\n");
    assert!(
        !followed.status.success() && err.contains("undrain"),
        "drain: {err}"
    );
    for v in &stayed {
        let row = mesh.row(0, v).unwrap();
        assert_eq!(
            (row["node"].as_str(), row["state"].as_str()),
            (Some(a.as_str()), Some("running")),
            "{row}"
        );
    }
    // Not draining any more: a second undrain is refused, and a new drain
    // starts afresh and moves what stayed.
    let out = mesh.cli(1, &["undrain", &a]);
    assert!(
        !out.status.success() && stderr(&out).contains("not-draining"),
        "{}",
        stderr(&out)
    );
    let (out, report) = drain_json(&mesh, 1, &a);
    assert!(
        out.status.success(),
        "drain again: {}\n{report:#}",
        stderr(&out)
    );
    for v in &stayed {
        assert_ne!(mesh.row(1, v).unwrap()["node"], a.as_str(), "{v} stayed");
    }
}

/// The ticks `logs ARGS… VESSEL` prints through node `via`, checked to be
/// consecutive (`tick N` lines).
fn ticks_of(mesh: &Mesh, via: usize, args: &[&str], vessel: &str) -> Vec<u64> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    all.push(vessel);
    let out = mesh.cli(via, &all);
    assert!(out.status.success(), "logs {args:?}: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let ticks: Vec<u64> = text
        .lines()
        .map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| panic!("logs {args:?}: not tick lines: {text}"));
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "logs {args:?}: {ticks:?}"
    );
    ticks
}

/// Goal: `logs --tail N` prints the log's last N lines; `--since DURATION`
/// only what was printed in that time (to within a second), by the node's
/// record of when; together, the last N of those.
#[test]
fn logs_tail_and_since_print_the_end_of_the_log() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let t = deploy(&mesh, 0, &["--name", "ticks"], &ticker_wasm());
    // At least 4 s of ticks (one every 100 ms).
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    let started = Instant::now();
    while all.len() < 40 || started.elapsed() < Duration::from_secs(4) {
        assert!(Instant::now() < deadline, "ticks: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
        all = ticks_of(&mesh, 1, &[], &t);
    }
    let tail = ticks_of(&mesh, 1, &["--tail", "3"], &t);
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert!(
        tail[0] >= *all.last().unwrap() - 2,
        "{tail:?} is not the end of {all:?}"
    );

    let since = ticks_of(&mesh, 2, &["--since", "1s"], &t);
    let now = ticks_of(&mesh, 2, &[], &t);
    assert!(!since.is_empty(), "nothing in the last second");
    assert!(since[0] > 0, "--since 1s printed the whole log: {since:?}");
    // One second, plus at most one mark's stretch (1 s) before it, plus
    // the ticks printed while the command ran.
    let window = now.last().unwrap() - since[0];
    assert!(
        window <= 40,
        "--since 1s went back {window} ticks: {since:?}"
    );

    let both = ticks_of(&mesh, 0, &["--since", "1h", "--tail", "2"], &t);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(ticks_of(&mesh, 0, &["--tail", "0"], &t).is_empty());
}

/// Goal: `migrate`'s progress (plain lines when stderr is not a terminal)
/// tells the truth: each line names the round under way and the chunks of
/// its step, nothing it says exceeds the result that follows (rounds,
/// bytes), and the chunks of a step are really counted (some step had
/// chunks to send).
#[test]
fn migrate_progress_lines_agree_with_the_result() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 4_000_000);
    let napper = crate::support::compile_c("node/tests/it/programs/napper.c", &[]);
    let dir = mesh.nodes[0].dir();
    let args = [
        "deploy",
        "--data-dir",
        dir,
        "--name",
        "big",
        napper.to_str().unwrap(),
    ];
    let out = mesh
        .user
        .run(&[&args[..], &["16", "100000", "100"]].concat());
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let v = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&mesh.logs(0, &v).0).contains("ready") {
        assert!(Instant::now() < deadline, "the napper never got ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = mesh.cli(0, &["migrate", "--to", &mesh.ids[1], &v]);
    let err = stderr(&out);
    assert!(out.status.success(), "migrate: {err}");
    let result = String::from_utf8(out.stdout).unwrap();
    // "migrated … N pre-copy rounds, B bytes sent, …"
    let words: Vec<&str> = result.split_whitespace().collect();
    let before = |w: &str| -> u64 {
        let i = words.iter().position(|x| x.starts_with(w)).unwrap();
        words[i - 1].parse().unwrap()
    };
    let (rounds, bytes) = (before("pre-copy"), before("bytes"));
    let mut stepped = false;
    for line in err
        .lines()
        .filter(|l| l.contains("chunks of this step sent"))
    {
        // "pre-copy round R, X MiB sent: a of b chunks of this step sent"
        if let Some(r) = line.strip_prefix("pre-copy round ") {
            let r: u64 = r.split(',').next().unwrap().parse().unwrap();
            assert!(r >= 1 && r <= rounds + 1, "{line} vs {rounds} rounds");
        }
        let mib: f64 = line
            .split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            mib * 1048576.0 <= bytes as f64 + 52429.0,
            "{line} vs {bytes} bytes"
        );
        let of: Vec<u64> = line
            .rsplit(": ")
            .next()
            .unwrap()
            .split(' ')
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(of[0] <= of[1], "{line}");
        stepped |= of[1] > 0;
    }
    assert!(
        stepped,
        "no progress line counted a step's chunks:\n{err}\n{result}"
    );
    assert!(rounds >= 1 && bytes > 0, "{result}");
}
