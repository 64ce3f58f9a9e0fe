//! What checks and load clients see of a running testnet: the [`View`]
//! trait (the run's `Ctx` implements it), and the state a client shares
//! with the checks that judge it. Checks and clients depend on this, never
//! on the run itself, so a new one touches only its own file (and a unit
//! test can give it a made-up mesh).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::record::Recorder;

/// A running testnet, as checks and clients see it. Nodes, vessels and
/// clients are numbered as in the scenario.
pub trait View: Sync {
    /// Progress lines, samples and timeline marks.
    fn rec(&self) -> &Recorder;
    /// Sleeps until `t` after `t0`; false when the run is stopping first.
    fn sleep_until(&self, t0: Instant, t: Duration) -> bool;
    /// The run is ending (its end, or Ctrl-C).
    fn stopping(&self) -> bool;
    /// How long the run lasts after t = 0.
    fn duration(&self) -> Duration;
    /// A status older than this means a peer is not seen (see [`sees_row`]).
    fn stale_ms(&self) -> u64;

    fn node_name(&self, node: usize) -> &str;
    fn node_count(&self) -> usize;
    /// A `meshnode start` of this node is running.
    fn node_up(&self, node: usize) -> bool;
    fn node_addr(&self, node: usize) -> Ipv4Addr;
    fn node_peer_id(&self, node: usize) -> Option<String>;
    /// Its data directory (records of vessels are there).
    fn node_data_dir(&self, node: usize) -> &Path;
    /// Moves the calling thread into the node's network namespace.
    fn enter_node(&self, node: usize) -> std::io::Result<()>;
    /// The name of the node with this peer id.
    fn name_of(&self, peer_id: &str) -> Option<String>;
    /// `meshnode peers --json` on the node, as rows.
    fn peers(&self, node: usize) -> Result<Vec<serde_json::Value>, String>;
    /// `meshnode ps --json` through a node that is up, as rows.
    /// `meshnode ps --json` through `via`, or any node that is up.
    fn ps(&self, via: Option<usize>) -> Result<Vec<serde_json::Value>, String>;
    /// The version the node says it runs (`meshnode status --json`).
    fn node_version(&self, node: usize) -> Result<String, String>;
    /// The version of this run's meshnode (`frozen`: of the frozen older
    /// build), as `meshnode --version` says.
    fn build_version(&self, frozen: bool) -> Option<String>;
    /// The link's one-way latency now.
    fn link_latency_ms(&self, a: usize, b: usize) -> f64;

    fn vessel_name(&self, vessel: usize) -> &str;
    /// The vessel's id, once it is deployed.
    fn vessel_id(&self, vessel: usize) -> Option<String>;

    fn client(&self, client: usize) -> &ClientRt;

    /// Every node's traffic rates over a window of scenario time, from the
    /// run's snapshots of the router's counts; None without two snapshots
    /// in it.
    fn traffic_rates(&self, _window: (Duration, Duration)) -> Option<crate::traffic::Rates> {
        None
    }

    /// Per node, when (seconds since the cold start) its `peers` first
    /// listed every other node as an up member, as far as the run looked.
    fn converged(&self) -> Vec<Option<f64>> {
        Vec::new()
    }

    /// Seconds since the cold start (the first node's start).
    fn since_cold_start(&self) -> f64 {
        0.0
    }
}

/// What a load client counts.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub wrong: u64,
    /// GETs that did not answer what the client last wrote (or might have
    /// written, when the SET got no answer): a write that was lost, or a
    /// read served by a state that never saw it. Counted in `wrong` too.
    pub lost: u64,
    pub resets: u64,
    /// Requests that waited their whole timeout for an answer: a hang,
    /// where a reset would have told the client at once.
    pub timeouts: u64,
    /// For each lost write: when (scenario t, s) the client made the SET
    /// whose answered value the server no longer held.
    pub lost_writes_at: Vec<f64>,
    pub connect_failures: u64,
    pub connects: u64,
    pub moves: u64,
    /// (t, latency ms) of each answered request (t: when it was sent).
    pub latencies: Vec<(f64, f64)>,
    /// (t, node) of each connection the client opened: from t on its
    /// requests enter the mesh at that node.
    pub entries: Vec<(f64, usize)>,
    pub last_error: Option<String>,
}

/// A load client during a run: where it is attached (a `move-client` event
/// changes it) and what it counted.
pub struct ClientRt {
    pub node: AtomicUsize,
    pub stats: Mutex<ClientStats>,
}

impl ClientRt {
    pub fn new(node: usize) -> ClientRt {
        ClientRt {
            node: AtomicUsize::new(node),
            stats: Mutex::new(ClientStats::default()),
        }
    }
}

/// Whether `row` (from `peers --json`) is a connected member that failure
/// detection calls up, with a fresh status: what testnet calls "sees".
/// The state counts since statuses go only when they change (or every 10
/// intervals): a status's age alone said "still seen" for up to 7 s after
/// a partition, and rtt.toml's "a no longer sees c within 5 s" failed.
/// A row without a state (an older node's) is judged by the rest.
pub fn sees_row(row: &serde_json::Value, stale_ms: u64) -> bool {
    row["member"] == true
        && row["state"].as_str().is_none_or(|s| s == "up")
        && row["rtt_ms"].as_f64().is_some()
        && row["status_age_ms"].as_u64().is_some_and(|a| a <= stale_ms)
}

/// Whether `row` (from `peers --json`) is a member whose state is up: what
/// the `converged` check asks of every pair. Unlike [`sees_row`] it needs
/// no RTT and no fresh status, which bounded probing and gossip do not give
/// every pair.
pub fn up_member_row(row: &serde_json::Value) -> bool {
    row["member"] == true && row["state"] == "up"
}
