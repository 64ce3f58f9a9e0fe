//! What a run's threads share ([`Ctx`]), and the run's clock: sleeping
//! until a scenario time, and Ctrl-C. `Ctx` is the [`View`] that checks
//! and load clients get.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::checks::{AssertResult, Judge};
use crate::nodes::{Binaries, NodeRt};
use crate::record::Recorder;
use crate::router::Router;
use crate::scenario::Scenario;
use crate::view::{ClientRt, View};

/// How long CLI commands may take (deploy and migrate get longer).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a sleep goes without looking at the stop flag and Ctrl-C.
const WAKE_EVERY: Duration = Duration::from_millis(50);

/// Where each vessel is, as the watcher last saw it.
#[derive(Debug, Clone, Default)]
pub struct VesselSeen {
    pub node: Option<String>,
    pub state: String,
    pub id: Option<String>,
    pub migrations: u64,
    /// When the watcher last saw it on `node` (scenario seconds).
    pub seen_t: f64,
    /// Every move the watcher saw, in order.
    pub moves: Vec<SeenMove>,
}

/// A move of a vessel as the watcher saw it: on node `from` at `before`
/// (the last `ps` that showed it there) and on node `to` at `after` (the
/// first that showed it there). The move's commit lies between the two.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenMove {
    pub from: usize,
    pub to: usize,
    pub before: f64,
    pub after: f64,
    /// The configured RTT (2 × one-way latency) from `from` to each node
    /// when the move was seen (0 to itself): what one round trip between
    /// the old host and a client's entry node cost then.
    pub rtt_from_ms: Vec<f64>,
}

/// Everything the run's threads share.
pub struct Ctx {
    pub sc: Scenario,
    pub bins: Binaries,
    pub user_key: PathBuf,
    pub out: PathBuf,
    pub nodes: Vec<NodeRt>,
    pub router: Router,
    pub rec: Recorder,
    pub clients: Vec<ClientRt>,
    pub vessels: Mutex<Vec<VesselSeen>>,
    /// Per assertion, its judge for this run.
    pub judges: Vec<Box<dyn Judge>>,
    pub results: Mutex<Vec<AssertResult>>,
    pub stop: AtomicBool,
    pub wasm: Vec<Option<PathBuf>>,
    /// What each node was doing in `meshnode migrate` (for the report).
    pub migrations: Mutex<Vec<String>>,
    pub setup_secs: Mutex<f64>,
    /// When the first node was started (the cold start).
    pub cold_start: OnceLock<Instant>,
    /// Per node, when (seconds since the cold start) its `peers` first
    /// listed every other node as an up member, as far as anyone looked.
    pub converged: Mutex<Vec<Option<f64>>>,
    /// Snapshots of the router's per-node counts, every TRAFFIC_EVERY.
    pub traffic: crate::traffic::TrafficLog,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C ends the run (the report is still written).
pub fn catch_ctrl_c() {
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps until `t` (since t0), waking early only on Ctrl-C: windowed
/// assertions end by their own deadline, which is within the run.
pub fn sleep_until_unless_interrupted(t0: Instant, t: Duration) -> bool {
    sleep_until_or(t0, t, interrupted)
}

fn sleep_until_or(t0: Instant, t: Duration, stop: impl Fn() -> bool) -> bool {
    loop {
        if stop() {
            return false;
        }
        let now = t0.elapsed();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(WAKE_EVERY));
    }
}

/// A status older than this is not fresh: as long as a node waits for a
/// status before it counts it stale (the sender's refresh and two
/// intervals: a node sends its status only when it changed, or at its
/// refresh), plus two more intervals for the CLI's view, at least 2 s.
pub fn stale_ms(sc: &Scenario) -> u64 {
    let refresh = Some(protocol::control::STATUS_REFRESH_INTERVALS);
    let intervals = u64::from(protocol::control::stale_after_intervals(refresh) + 2);
    (intervals * sc.status_interval.as_millis() as u64).max(2000)
}

impl Ctx {
    /// A node to ask about the mesh: the first one that is up.
    pub fn any_up(&self) -> Option<&NodeRt> {
        self.nodes.iter().find(|n| n.is_up())
    }

    /// `meshnode SUB REST` on a node, with this run's binaries and key.
    pub fn cli(
        &self,
        node: &NodeRt,
        sub: &str,
        rest: &[&str],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        node.cli(&self.bins, &self.user_key, sub, rest, timeout)
    }
}

impl View for Ctx {
    fn rec(&self) -> &Recorder {
        &self.rec
    }

    fn sleep_until(&self, t0: Instant, t: Duration) -> bool {
        sleep_until_or(t0, t, || self.stopping())
    }

    fn stopping(&self) -> bool {
        interrupted() || self.stop.load(Ordering::SeqCst)
    }

    fn duration(&self) -> Duration {
        self.sc.duration
    }

    fn stale_ms(&self) -> u64 {
        stale_ms(&self.sc)
    }

    fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node_up(&self, node: usize) -> bool {
        self.nodes[node].is_up()
    }

    fn node_addr(&self, node: usize) -> Ipv4Addr {
        self.nodes[node].addr
    }

    fn node_peer_id(&self, node: usize) -> Option<String> {
        self.nodes[node].peer_id.get().cloned()
    }

    fn node_data_dir(&self, node: usize) -> &Path {
        &self.nodes[node].data_dir
    }

    fn enter_node(&self, node: usize) -> std::io::Result<()> {
        self.nodes[node].ns.enter()
    }

    fn name_of(&self, peer_id: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.peer_id.get().is_some_and(|p| p == peer_id))
            .map(|n| n.name.clone())
    }

    fn peers(&self, node: usize) -> Result<Vec<serde_json::Value>, String> {
        self.nodes[node].peers(&self.bins, &self.user_key)
    }

    fn ps(&self, via: Option<usize>) -> Result<Vec<serde_json::Value>, String> {
        let via = match via {
            Some(n) => &self.nodes[n],
            None => self.any_up().ok_or("no node is up")?,
        };
        let out = self.cli(via, "ps", &["--json"], CLI_TIMEOUT)?;
        Ok(serde_json::from_slice::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default())
    }

    fn node_version(&self, node: usize) -> Result<String, String> {
        // An unhealthy node (one on probation after a restart) makes
        // `status` exit 1: an error here, and the windowed check asks again.
        let out = self.cli(&self.nodes[node], "status", &["--json"], CLI_TIMEOUT)?;
        let v: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| format!("status --json on {}: {e}", self.nodes[node].name))?;
        v["version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("status --json on {}: no version", self.nodes[node].name))
    }

    fn build_version(&self, frozen: bool) -> Option<String> {
        match frozen {
            true => self.bins.versions.1.clone(),
            false => Some(self.bins.versions.0.clone()),
        }
    }

    fn link_latency_ms(&self, a: usize, b: usize) -> f64 {
        self.router.params(a, b).latency_ms
    }

    fn vessel_name(&self, vessel: usize) -> &str {
        &self.sc.vessels[vessel].name
    }

    fn vessel_id(&self, vessel: usize) -> Option<String> {
        self.vessels.lock().unwrap()[vessel].id.clone()
    }

    fn client(&self, client: usize) -> &ClientRt {
        &self.clients[client]
    }

    fn traffic_rates(&self, w: (Duration, Duration)) -> Option<crate::traffic::Rates> {
        self.traffic.rates(w.0.as_secs_f64(), w.1.as_secs_f64())
    }

    fn converged(&self) -> Vec<Option<f64>> {
        self.converged.lock().unwrap().clone()
    }

    fn since_cold_start(&self) -> f64 {
        self.cold_start
            .get()
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}
