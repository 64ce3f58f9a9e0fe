//! The log stays truthful across crashes (issue 13): a real node running a
//! printing vessel is killed with `kill -9` and started again, twice. The
//! vessel resumes from an older image, so its log is rolled back: each
//! rollback is a new generation (`logs --generations`), whose rolled-back
//! lines `logs --generation N` prints, and a `logs -f` started before the
//! first crash follows through both restarts and prints one marker per
//! rollback, after which it goes on from the marker's offset.
//!
//! Nothing here depends on how far back a crash goes (the arrival image
//! today, the newest checkpoint once there are periodic ones): offsets are
//! read from the node's answers and checked against each other.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::{stderr, Node, User};

/// Long enough for a node restart and a resume on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);
const CRASHES: usize = 2;

fn start(user: &User) -> Node {
    let mut node = user.start("a", &[], &[]);
    node.wait_ready();
    node
}

/// The lines a `logs -f` process prints, as they come.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follower {
    fn start(user: &User, node: &Node, vessel: &str) -> Follower {
        let mut child = user
            .cmd()
            .args(["logs", "-f", vessel, "--data-dir", node.dir()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until `ok` holds for everything printed so far.
    fn wait_for(&mut self, what: &str, node: &Node, ok: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "logs -f: {what} within {WAIT:?}; it printed {:?}\nnode log:\n{}",
                    self.seen,
                    node.log()
                ),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_marker(line: &str) -> bool {
    line.starts_with("-- rolled back to offset ")
}

/// Ticks printed since the last marker.
fn ticks_since_marker(lines: &[String]) -> usize {
    lines.iter().rev().take_while(|l| !is_marker(l)).count()
}

fn cli_ok(user: &User, args: &[&str]) -> Vec<u8> {
    let out = user.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out.stdout
}

/// `logs --json` records: text → offset (the ticker writes one line per
/// record, and every generation prints the same line at the same offset).
fn offsets(user: &User, node: &Node, vessel: &str) -> HashMap<String, u64> {
    let out = cli_ok(user, &["logs", "--json", vessel, "--data-dir", node.dir()]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let text = v["text"].as_str().unwrap().trim_end().to_string();
            (text, v["offset"].as_u64().unwrap())
        })
        .collect()
}

/// Ticks `tick a`, `tick a+1`, … with no gap: the number of the first.
fn consecutive_ticks(lines: &[String], what: &str) -> u64 {
    let n = |l: &String| -> u64 {
        l.strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: not a tick: {l:?} in {lines:?}"))
    };
    let first = n(&lines[0]);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(n(l), first + i as u64, "{what}: {lines:?}");
    }
    first
}

#[test]
fn a_crash_rolls_the_log_back_into_a_generation_that_logs_f_marks_once() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut node = start(&user);
    let wasm = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    let out = cli_ok(
        &user,
        // No checkpoints: each crash then rolls the ticker back to its
        // arrival, whenever it comes (a crash right after a checkpoint,
        // before a new tick, rolls nothing back and shows no marker).
        &[
            "deploy",
            "--data-dir",
            node.dir(),
            "--checkpoint-every",
            "off",
            wasm.to_str().unwrap(),
        ],
    );
    let vessel = String::from_utf8(out).unwrap().trim().to_string();
    let mut follow = Follower::start(&user, &node, &vessel);

    for crash in 1..=CRASHES {
        follow.wait_for("three ticks before the crash", &node, |l| {
            ticks_since_marker(l) >= 3
        });
        // kill -9: no checkpoint at a clean stop, the page cache survives.
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        let _ = std::fs::remove_file(node.data_dir.join("node.addrs"));
        node = start(&user);
        follow.wait_for("a marker and three ticks after the restart", &node, |l| {
            l.iter().filter(|l| is_marker(l)).count() == crash && ticks_since_marker(l) >= 3
        });
    }

    // Each rollback is a generation, listed with where it went back to.
    let list = cli_ok(
        &user,
        &[
            "logs",
            "--generations",
            "--json",
            &vessel,
            "--data-dir",
            node.dir(),
        ],
    );
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(list["current"], CRASHES as u64, "{list}");
    let rolled = list["rolled_back"].as_array().unwrap().clone();
    assert_eq!(rolled.len(), CRASHES, "{list}");
    assert_eq!(list["current_start"], rolled[CRASHES - 1]["rolled_back_to"]);
    let plain = cli_ok(
        &user,
        &["logs", "--generations", &vessel, "--data-dir", node.dir()],
    );
    let plain = String::from_utf8(plain).unwrap();
    assert!(plain.contains("ROLLED BACK TO"), "{plain}");
    assert!(
        plain.contains(&format!("{CRASHES}          current")),
        "{plain}"
    );

    // The follower stops when the vessel does.
    cli_ok(&user, &["stop", &vessel, "--data-dir", node.dir()]);
    let status = follow.child.wait().unwrap();
    for line in follow.lines.iter() {
        follow.seen.push(line);
    }
    let mut err = String::new();
    std::io::Read::read_to_string(follow.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "logs -f: {status}: {err}");
    // Quietly: the restarts were retried, not reported.
    assert_eq!(err, "", "logs -f wrote to stderr");

    // The follower's output, cut at its markers: one marker per rollback,
    // naming the offset that rollback went back to; before each, the lines
    // it had printed past that offset are the rolled-back lines
    // (`logs --generation N`, the journal's record of them, which may reach
    // further); after each, the log goes on at that offset.
    let at = offsets(&user, &node, &vessel);
    let segments: Vec<&[String]> = follow.seen.split(|l| is_marker(l)).collect();
    let markers: Vec<&String> = follow.seen.iter().filter(|l| is_marker(l)).collect();
    assert_eq!(markers.len(), CRASHES, "{:?}", follow.seen);
    assert_eq!(consecutive_ticks(segments[0], "before the first crash"), 0);
    for (g, r) in rolled.iter().enumerate() {
        let to = r["rolled_back_to"].as_u64().unwrap();
        assert_eq!(r["generation"], g as u64);
        assert_eq!(
            *markers[g],
            format!("-- rolled back to offset {to} after a crash --")
        );
        let after = segments[g + 1];
        consecutive_ticks(after, "after a rollback");
        assert_eq!(at[&after[0]], to, "{after:?}");

        let gen = cli_ok(
            &user,
            &[
                "logs",
                "--generation",
                &g.to_string(),
                &vessel,
                "--data-dir",
                node.dir(),
            ],
        );
        let gen: Vec<String> = String::from_utf8(gen)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert!(!gen.is_empty(), "generation {g} kept nothing");
        assert_eq!(at[&gen[0]], to, "generation {g}: {gen:?}");
        consecutive_ticks(&gen, "a rolled-back generation");
        let printed_past: Vec<&String> = segments[g]
            .iter()
            .filter(|l| at.get(*l).is_none_or(|o| *o >= to))
            .collect();
        assert!(
            !printed_past.is_empty() && printed_past.len() <= gen.len(),
            "generation {g}: logs -f printed {printed_past:?} past {to}, kept {gen:?}"
        );
        for (p, k) in printed_past.iter().zip(&gen) {
            assert_eq!(*p, k, "generation {g}");
        }
    }

    // The current log is one run with no repetition.
    let current = cli_ok(&user, &["logs", &vessel, "--data-dir", node.dir()]);
    let current: Vec<String> = String::from_utf8(current)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(consecutive_ticks(&current, "the current log"), 0);

    // A generation that does not exist is a clear refusal.
    let out = user.run(&[
        "logs",
        "--generation",
        "99",
        &vessel,
        "--data-dir",
        node.dir(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("generation 99"), "{}", stderr(&out));
}
