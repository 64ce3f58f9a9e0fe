//! `meshnode recover VESSEL --on PEER --force` (issue 15): on a mesh of
//! two, where nothing can fail over by itself (a lease needs 3 voters).
//!
//! Method: two real nodes, a and b; `ticker` (prints "tick N" every
//! 100 ms) deployed on a with its replica on b (the default), and `lone`
//! with `--replicas 0`. The fault: `kill -9` of a. The oracle: `ps` on b
//! says, within its bound, that the ticker cannot fail over by itself and
//! names the command; the command's refusals (host up, no --force, no
//! replica) say why; recovered, the ticker ticks on b at epoch 2 from its
//! replica; and a, started again, has its copy fenced by b (record
//! `Fenced`), so one copy runs.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::{stderr, Node, User};
use crate::support::compile_c;

/// Long enough for the mesh, a checkpoint's shipping, detection (3 s) and
/// a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(60);
/// `ps` on a dead host's vessels answers at once (it asks no silent node):
/// its whole run, CLI start-up included, on a loaded machine.
const PS_BOUND: Duration = Duration::from_secs(8);

struct Two {
    user: User,
    nodes: Vec<Node>,
    addrs: Vec<String>,
    ids: Vec<String>,
}

const EXTRA: [&str; 4] = ["--ping-interval", "200ms", "--placement-interval", "0"];

impl Two {
    fn new() -> Two {
        let user = User::new();
        let mut t = Two {
            user,
            nodes: Vec::new(),
            addrs: Vec::new(),
            ids: Vec::new(),
        };
        for name in ["a", "b"] {
            let dir = t.user.home.path().join(name);
            let mut n = t.user.start_env(&dir, &t.addrs, &EXTRA, &[]);
            t.addrs.push(n.wait_ready());
            t.ids.push(n.peer_id());
            t.nodes.push(n);
        }
        t.wait_up(0, 1);
        t.wait_up(1, 0);
        t
    }

    /// Waits until node `i` sees node `j` as an up member.
    fn wait_up(&self, i: usize, j: usize) {
        let id = self.ids[j].clone();
        crate::mesh::wait_for_peers(&self.user, &self.nodes[i], "member up", |p| {
            p.iter()
                .any(|x| x["peer_id"] == id.as_str() && x["member"] == true && x["state"] == "up")
        });
    }

    fn cli(&self, i: usize, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--data-dir", self.nodes[i].dir(), "--timeout", "30s"]);
        self.user.run(&all)
    }

    fn deploy(&self, i: usize, name: &str, extra: &[&str]) -> String {
        let wasm = compile_c("node/tests/it/programs/ticker.c", &[]);
        let mut args = vec!["deploy", "--name", name];
        args.extend_from_slice(extra);
        args.push(wasm.to_str().unwrap());
        let out = self.cli(i, &args);
        assert!(out.status.success(), "deploy: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn row(&self, i: usize, name: &str) -> (Option<Value>, Duration) {
        let t = Instant::now();
        let out = self.cli(i, &["ps", "--json"]);
        let took = t.elapsed();
        assert!(out.status.success(), "ps: {}", stderr(&out));
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        (rows.into_iter().find(|r| r["name"] == name), took)
    }

    fn wait_row(&self, i: usize, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.row(i, name).0;
            if last.as_ref().is_some_and(&ok) {
                return last.unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not within {WAIT:?}; last row {last:?}\nnode log:\n{}",
            self.nodes[i].log()
        );
    }

    /// The vessel's record kind on node `i`, from its file.
    fn record_kind(&self, i: usize, id: &str) -> Option<String> {
        let path = self.nodes[i]
            .data_dir
            .join("vessels")
            .join(id)
            .join("record.cbor");
        let v: ciborium::Value =
            ciborium::from_reader(std::fs::read(path).ok()?.as_slice()).ok()?;
        v.as_map()?.first()?.0.as_text().map(str::to_string)
    }

    fn ticks(&self, i: usize, id: &str) -> usize {
        let out = self.cli(i, &["logs", id]);
        assert!(out.status.success(), "logs: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("tick "))
            .count()
    }
}

/// Goal (issue 15, items 2 and 4): with too few voters for a failover the
/// user decides; the command refuses what would be wrong, runs the vessel
/// from its replica, and fences the old host when it comes back.
#[test]
fn recover_force_runs_a_vessel_of_a_dead_host_on_its_replica_and_fences_the_old_host() {
    let _cpu = crate::support::shared_cpu();
    let mut two = Two::new();
    let b = two.ids[1].clone();
    let id = two.deploy(0, "ticker", &[]);
    two.deploy(0, "lone", &["--replicas", "0"]);
    two.wait_row(0, "ticker", "its replica on b holds a checkpoint", |r| {
        r["replica_age_ms"].is_u64() && r["replicas"][0]["node"] == b.as_str()
    });
    let replicated = Instant::now();

    // Refused while its host is up: that is a move, not a recovery.
    let out = two.cli(1, &["recover", "ticker", "--on", "self", "--force"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is up"), "{}", stderr(&out));

    // b must have a's status naming the vessel: it is all b knows of them
    // once a is dead.
    let a_id = two.ids[0].clone();
    crate::mesh::wait_for_peers(
        &two.user,
        &two.nodes[1],
        "a's status names the ticker",
        |p| {
            p.iter().any(|x| {
                x["peer_id"] == a_id.as_str()
                    && x["vessels"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|v| v == id.as_str()))
                    && x["status_age_ms"]
                        .as_u64()
                        .is_some_and(|age| Duration::from_millis(age) < replicated.elapsed())
            })
        },
    );
    let _ = two.nodes[0].child.kill();
    let _ = two.nodes[0].child.wait();

    // ps on b: no lease, so no failover by itself; it says so and names
    // the fix, and it does not wait on the dead host.
    let hint = format!("meshnode recover ticker --on {b} --force");
    let r = two.wait_row(1, "ticker", "ps says it cannot fail over", |r| {
        r["state"] == "unreachable" || r["state"] == "down"
    });
    let why = r["why"].as_str().unwrap();
    assert!(
        why.contains("it cannot fail over by itself: it has no lease"),
        "{why}"
    );
    assert!(why.contains(&hint), "{why}");
    let (lone, took) = two.row(1, "lone");
    assert!(took < PS_BOUND, "ps took {took:?}");
    let lone = lone.expect("the dead host's other vessel is listed");
    assert!(
        lone["why"]
            .as_str()
            .unwrap()
            .contains("no replica holds a checkpoint"),
        "{lone}"
    );

    // logs: from the replica's checkpoint, said to be so; every tick once,
    // in order.
    let out = two.cli(1, &["logs", "ticker"]);
    assert!(out.status.success(), "logs: {}", stderr(&out));
    assert!(
        stderr(&out).contains("the log as of its checkpoint of epoch 1 that replica"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "the replica's checkpoint holds ticks");
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("tick {n}"));
    }
    // stop cannot act (no failover is under way): it says why at once.
    let t = Instant::now();
    let out = two.cli(1, &["stop", "ticker"]);
    assert!(!out.status.success());
    assert!(t.elapsed() < PS_BOUND, "stop took {:?}", t.elapsed());
    assert!(stderr(&out).contains(&hint), "{}", stderr(&out));

    // drain of the dead host: nothing can move by itself; it says why for
    // each, at once, and fails.
    let t = Instant::now();
    let out = two.cli(1, &["drain", &two.ids[0]]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(t.elapsed() < PS_BOUND, "drain took {:?}", t.elapsed());
    assert!(err.contains(&hint), "{err}");
    assert!(err.contains("it cannot fail over: no replica"), "{err}");
    assert!(err.contains("2 vessel(s) could not be moved off"), "{err}");

    // Refused without --force, and where no replica is.
    let out = two.cli(1, &["recover", "ticker", "--on", "self"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("add --force"), "{}", stderr(&out));
    let out = two.cli(1, &["recover", "lone", "--on", "self", "--force"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no replica"),
        "{}",
        stderr(&out)
    );

    let out = two.cli(1, &["recover", "ticker", "--on", &b, "--force"]);
    assert!(out.status.success(), "recover: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&format!("runs on {b} at epoch 2")), "{said}");
    two.wait_row(1, "ticker", "running on b at epoch 2", |r| {
        r["state"] == "running" && r["node"] == b.as_str() && r["epoch"] == 2
    });
    let first = two.ticks(1, &id);
    let deadline = Instant::now() + WAIT;
    while two.ticks(1, &id) < first + 10 {
        assert!(
            Instant::now() < deadline,
            "it does not tick on b\n{}",
            two.nodes[1].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // b crashes and restarts before the old host is back: it runs the
    // vessel again, and still owes the old host the forced epoch.
    let _ = two.nodes[1].child.kill();
    let _ = two.nodes[1].child.wait();
    let dir_b = two.nodes[1].data_dir.clone();
    let _ = std::fs::remove_file(dir_b.join("node.addrs"));
    let mut b_again = two.user.start_env(&dir_b, &[], &EXTRA, &[]);
    two.addrs[1] = b_again.wait_ready();
    two.nodes[1] = b_again;
    two.wait_row(1, "ticker", "running on b again at epoch 2", |r| {
        r["state"] == "running" && r["epoch"] == 2
    });

    // The old host comes back: b shows it the forced epoch, and it fences
    // its copy (which it had started again: it had no lease to wait for).
    let dir = two.nodes[0].data_dir.clone();
    let _ = std::fs::remove_file(dir.join("node.addrs"));
    let peers = vec![two.addrs[1].clone()];
    let mut a = two.user.start_env(&dir, &peers, &EXTRA, &[]);
    a.wait_ready();
    two.nodes[0] = a;
    let deadline = Instant::now() + WAIT;
    while two.record_kind(0, &id).as_deref() != Some("Fenced") {
        assert!(
            Instant::now() < deadline,
            "the old host's record is {:?}\n{}",
            two.record_kind(0, &id),
            two.nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = two.wait_row(0, "ticker", "one owner, b", |r| r["node"] == b.as_str());
    assert_eq!(
        (r["epoch"].as_u64(), r["state"].as_str()),
        (Some(2), Some("running")),
        "{r}"
    );
}
