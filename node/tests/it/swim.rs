//! The SWIM-style membership protocol on real nodes (issue 19, its first
//! wiring step: `mesh::swim`).
//!
//! Method: four real `meshnode start` processes (a, b, c, d). The oracle:
//! every node's `peers --json` shows the three others `alive`; after
//! `kill -9` of d, each of a, b and c logs d suspected and then confirmed
//! dead, and its `peers --json` says `dead` within the bound the
//! protocol's limits give for a fleet of four (computed below from the
//! crate's constants, not written down); d restarted in its data
//! directory comes back `alive` at every node with a higher incarnation
//! (it refutes its death); c stopped with SIGTERM is `left` at the
//! others within the leave's bound. On the way, `/metrics` gives each node's
//! membership bytes per second, which must be a handful of messages'
//! worth, not a flood.

use std::time::{Duration, Instant};

use membership::limits::{
    suspicion_timeout_ms, INDIRECT_TIMEOUT_MS, NEAREST_PROBE_EVERY_ROUNDS, PROBE_INTERVAL_MS,
    PROBE_TIMEOUT_MS,
};
use serde_json::Value;

use crate::mesh::{peers, sigterm, Node, User};
use crate::metrics::http_get;

const NODES: usize = 4;
/// What CI load adds to any bound: a late tick, a slow CLI.
const SLACK: Duration = Duration::from_secs(4);
/// Long enough for four nodes to find each other and verify certificates.
const SETUP_WAIT: Duration = Duration::from_secs(30);
/// The window over which the background traffic is measured.
const TRAFFIC_WINDOW: Duration = Duration::from_secs(5);

/// Within this every live member has probed a given member at least once:
/// about two passes of the walk, `ceil(N × 4/3)` rounds each (one round
/// in `NEAREST_PROBE_EVERY_ROUNDS` goes to a nearest member instead).
fn probed_within(n: u64) -> Duration {
    let per_pass = (n * NEAREST_PROBE_EVERY_ROUNDS).div_ceil(NEAREST_PROBE_EVERY_ROUNDS - 1);
    Duration::from_millis(2 * per_pass * PROBE_INTERVAL_MS)
}

/// A member that died is suspected within this: probed, its ping
/// unanswered, the ping requests unanswered.
fn suspected_within(n: u64) -> Duration {
    probed_within(n) + Duration::from_millis(PROBE_TIMEOUT_MS + INDIRECT_TIMEOUT_MS)
}

/// And confirmed dead within this: the suspicion timed out.
fn dead_within(n: u64) -> Duration {
    suspected_within(n) + Duration::from_millis(suspicion_timeout_ms(n as usize))
}

struct Fleet {
    user: User,
    nodes: Vec<Node>,
    ids: Vec<String>,
    addrs: Vec<String>,
}

impl Fleet {
    fn start() -> Fleet {
        let user = User::new();
        let (mut nodes, mut ids, mut addrs) = (Vec::new(), Vec::new(), Vec::new());
        for name in ["a", "b", "c", "d"] {
            let mut n = user.start(name, &addrs, &["--placement-interval", "0"]);
            addrs.push(n.wait_ready());
            ids.push(n.peer_id());
            nodes.push(n);
        }
        Fleet {
            user,
            nodes,
            ids,
            addrs,
        }
    }

    /// Node `i`'s row for node `j` in its `peers --json`, if listed.
    fn row(&self, i: usize, j: usize) -> Option<Value> {
        let listing = peers(&self.user, &self.nodes[i], false).ok()?;
        listing.into_iter().find(|p| p["peer_id"] == self.ids[j])
    }

    /// Polls until `cond` holds of node `i`'s row for `j`; panics after
    /// `within` with the last row.
    fn wait_row(
        &self,
        i: usize,
        j: usize,
        within: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.row(i, j);
            if last.as_ref().is_some_and(&cond) {
                return last.unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node {i} on node {j}: {what} not within {within:?}; last row: {last:?}\nlog:\n{}",
            self.nodes[i].log()
        );
    }

    /// Node `i`'s membership counters from `/metrics`: bytes sent and
    /// received.
    fn traffic(&self, i: usize) -> (f64, f64) {
        let out = self
            .user
            .run(&["status", "--json", "--data-dir", self.nodes[i].dir()]);
        let s: Value = serde_json::from_slice(&out.stdout).expect("status --json");
        let addr = s["http_addr"].as_str().expect("http_addr").to_string();
        let (_, _, body) = http_get(&addr, "/metrics", &[]);
        let value = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
        };
        (
            value("meshnode_membership_sent_bytes_total"),
            value("meshnode_membership_received_bytes_total"),
        )
    }
}

fn state_is(row: &Value, state: &str) -> bool {
    row["member_state"] == state
}

#[test]
fn swim_sees_a_kill_a_restart_and_a_graceful_stop() {
    let _cpu = crate::support::shared_cpu();
    let mut fleet = Fleet::start();
    let n = NODES as u64;
    for i in 0..NODES {
        for j in (0..NODES).filter(|j| *j != i) {
            fleet.wait_row(i, j, SETUP_WAIT, "alive", |r| state_is(r, "alive"));
        }
    }

    // The background traffic of a settled fleet of four, per node.
    let before: Vec<(f64, f64)> = (0..NODES).map(|i| fleet.traffic(i)).collect();
    let t0 = Instant::now();
    std::thread::sleep(TRAFFIC_WINDOW);
    let after: Vec<(f64, f64)> = (0..NODES).map(|i| fleet.traffic(i)).collect();
    let secs = t0.elapsed().as_secs_f64();
    for i in 0..NODES {
        let sent = (after[i].0 - before[i].0) / secs;
        let received = (after[i].1 - before[i].1) / secs;
        eprintln!("node {i}: membership {sent:.0} B/s sent, {received:.0} B/s received");
        // Something flows (a probe a second), and far from a flood: a
        // 1,400-byte datagram a second would be 1,400 B/s.
        assert!(
            sent > 0.0 && received > 0.0,
            "node {i}: no membership traffic"
        );
        assert!(sent < 4_000.0, "node {i}: {sent:.0} B/s sent");
    }

    let (d, observers) = (3, [0, 1, 2]);
    let incarnation_before = fleet.row(0, d).unwrap()["incarnation"].as_u64().unwrap();
    let log_mark: Vec<usize> = observers
        .iter()
        .map(|i| fleet.nodes[*i].log().len())
        .collect();
    fleet.nodes[d].child.kill().unwrap();
    fleet.nodes[d].child.wait().unwrap();
    let killed = Instant::now();

    // Every observer says dead within the bound; at least one is seen
    // saying suspect on the way (each says it for the suspicion timeout).
    let dead_bound = dead_within(n) + SLACK;
    let mut seen_suspect = false;
    let mut dead = [false; 3];
    while !dead.iter().all(|x| *x) {
        assert!(
            killed.elapsed() < dead_bound,
            "not every observer says d is dead within {dead_bound:?}: {dead:?}"
        );
        for (k, i) in observers.iter().enumerate() {
            if let Some(r) = fleet.row(*i, d) {
                seen_suspect |= state_is(&r, "suspect");
                dead[k] |= state_is(&r, "dead");
            }
        }
    }
    assert!(seen_suspect, "no observer was seen saying suspect");
    // Each observer's log: suspected, then confirmed dead.
    for (k, i) in observers.iter().enumerate() {
        let log = fleet.nodes[*i].log();
        let after_kill = &log[log_mark[k]..];
        let at = |what: &str| {
            after_kill
                .lines()
                .position(|l| l.contains(what) && l.contains(&fleet.ids[d]))
        };
        let (suspected, confirmed) = (at("member suspected"), at("member confirmed dead"));
        assert!(
            suspected.is_some() && suspected < confirmed,
            "node {i}: suspected at {suspected:?}, dead at {confirmed:?}:\n{after_kill}"
        );
    }

    // Restarted: it refutes its death with a higher incarnation.
    let dir = fleet.nodes[d].data_dir.clone();
    let others: Vec<String> = fleet.addrs[..d].to_vec();
    let mut again = fleet
        .user
        .start_in(&dir, &others, &["--placement-interval", "0"]);
    again.wait_ready();
    fleet.nodes[d] = again;
    let alive_bound = SETUP_WAIT.min(probed_within(n) + SLACK + SLACK);
    for i in observers {
        let r = fleet.wait_row(i, d, alive_bound, "alive again", |r| state_is(r, "alive"));
        let incarnation = r["incarnation"].as_u64().unwrap();
        assert!(
            incarnation > incarnation_before,
            "node {i}: d alive at incarnation {incarnation}, not above {incarnation_before}"
        );
    }

    // A graceful stop says goodbye: the others hear it directly.
    let c = 2;
    sigterm(&fleet.nodes[c].child);
    let left_bound = meshnode::mesh::swim::LEAVE_WAIT + SLACK;
    for i in [0, 1, 3] {
        fleet.wait_row(i, c, left_bound, "left", |r| state_is(r, "left"));
    }
}
