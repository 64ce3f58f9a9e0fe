//! Watching a node (issue 16): `meshnode status`, Prometheus `/metrics` and
//! the live dashboard.
//!
//! - [`OpsBook`]: what the rest of the node records for them: a bounded
//!   ring of recent events (migrations, placement's changes of mind), the
//!   event loop's lag, the metric counters, and the latest snapshot of the
//!   node and the mesh, which the event loop publishes once a second.
//!   Every node's [`crate::vessel::Host`] holds one.
//! - [`status`]: assembles the [`StatusReport`] from the node's state and
//!   judges its health.
//! - [`metrics`]: the Prometheus registry, with bounded labels.
//! - [`http`]: the local HTTP server (`/metrics`, `/`, `/events`, `/login`,
//!   `/logs`); [`login`]: the dashboard's one-time logins and sessions.
//! - [`logfile`]: the node's own log to a file with rotation, or journald.

pub mod dashboard_stream;
pub mod events;
pub mod http;
pub mod logfile;
pub mod login;
pub mod metrics;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::control::{OpsEvent, StatusReport};
use protocol::ids::VesselId;

use crate::sync::lock;

/// How often the event loop ticks for the lag measurement.
pub const OPS_TICK: Duration = Duration::from_millis(250);

/// The event loop publishes a snapshot every this-many ops ticks (1 s):
/// often enough for a live dashboard, rare enough to cost nothing.
pub const SNAPSHOT_EVERY_TICKS: u64 = 4;

/// What the node records for status, metrics and the dashboard.
pub struct OpsBook {
    pub started: Instant,
    pub events: Mutex<events::EventRing>,
    pub lag: events::LoopLag,
    pub metrics: metrics::Counters,
    /// The latest snapshot; the dashboard's event stream follows it.
    pub snapshot: tokio::sync::watch::Sender<Arc<Snapshot>>,
    /// Where the HTTP server listens, once it does.
    pub http_addr: Mutex<Option<std::net::SocketAddr>>,
    pub logins: Mutex<login::Logins>,
    /// When each vessel here entered the state it is in (for "stuck").
    pub state_since: Mutex<HashMap<VesselId, (String, Instant)>>,
    /// Placement's last kind of judgement per vessel: a change is an event.
    pub last_judgement: Mutex<HashMap<VesselId, &'static str>>,
    /// The user keys the node trusts, as of the last snapshot (a dashboard
    /// login must be signed by one).
    pub trusted: Mutex<Vec<protocol::membership::PublicKey>>,
}

impl Default for OpsBook {
    fn default() -> OpsBook {
        OpsBook {
            started: Instant::now(),
            events: Mutex::new(events::EventRing::default()),
            lag: events::LoopLag::default(),
            metrics: metrics::Counters::default(),
            snapshot: tokio::sync::watch::Sender::new(Arc::new(Snapshot::default())),
            http_addr: Mutex::new(None),
            logins: Mutex::new(login::Logins::default()),
            state_since: Mutex::new(HashMap::new()),
            last_judgement: Mutex::new(HashMap::new()),
            trusted: Mutex::new(Vec::new()),
        }
    }
}

/// The node and the mesh as of one moment: what `/metrics` and the
/// dashboard show between two event-loop ticks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    pub report: Option<StatusReport>,
    /// Every running vessel in the mesh and the node that runs it.
    pub mesh_vessels: Vec<MeshVessel>,
    /// Links between members with their smoothed RTT (each pair once).
    pub links: Vec<Link>,
    /// The node's CPU count and load, for the dashboard's node list.
    pub cpus: u32,
    pub load_milli: Option<u32>,
    pub arch: String,
    /// The membership protocol's traffic and drops (`mesh::swim`).
    pub membership: crate::mesh::swim::Traffic,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshVessel {
    pub vessel: String,
    pub name: String,
    pub node: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub rtt_us: u64,
}

impl OpsBook {
    /// Records an event in the ring (and nothing else).
    pub fn note(&self, event: OpsEvent) {
        lock(&self.events).push(event);
    }

    /// The ring's events, oldest first.
    pub fn recent_events(&self) -> Vec<OpsEvent> {
        lock(&self.events).list()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Placement judged `vessel` (`name`) as `kind` (`why` in words): counted
    /// by kind, and a change of kind is an event.
    pub fn note_judgement(&self, vessel: VesselId, name: &str, kind: &'static str, why: &str) {
        self.metrics.placement_decision(kind);
        let changed = lock(&self.last_judgement).insert(vessel, kind) != Some(kind);
        if changed {
            self.note(OpsEvent {
                at_unix_ms: unix_ms(),
                vessel: vessel.to_hex(),
                name: name.to_string(),
                kind: protocol::control::OpsEventKind::Placement,
                from: None,
                to: None,
                reason: why.to_string(),
                downtime_us: None,
            });
        }
    }

    /// Forgets what is kept per vessel for vessels no longer here.
    pub fn retain_vessels(&self, here: &dyn Fn(&VesselId) -> bool) {
        lock(&self.last_judgement).retain(|v, _| here(v));
        lock(&self.state_since).retain(|v, _| here(v));
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A migration of `id` out of this node ended (`done`, or aborted), as its
/// report says: an event, and the migration counters.
pub fn note_migration(
    host: &Mutex<crate::vessel::Host>,
    id: VesselId,
    why: &str,
    report: Option<protocol::control::MigrationReport>,
    done: bool,
) {
    let (ops, name) = {
        let h = lock(host);
        let name = h
            .vessels
            .get(&id)
            .map(|l| l.deployment.body.name.clone())
            .unwrap_or_default();
        (h.ops.clone(), name)
    };
    let Some(report) = report else {
        return;
    };
    ops.metrics.migration(id, &report, done);
    let reason = match (&report.error, done) {
        (Some(e), false) => format!("aborted: {}", e.detail),
        _ => why.to_string(),
    };
    ops.note(OpsEvent {
        at_unix_ms: unix_ms(),
        vessel: id.to_hex(),
        name,
        kind: if done {
            protocol::control::OpsEventKind::Migrated
        } else {
            protocol::control::OpsEventKind::MigrationAborted
        },
        from: Some(report.from.clone()),
        to: Some(report.to.clone()),
        reason,
        downtime_us: report.downtime_us,
    });
}

/// Placement's verdict on `id`: counted by reason, and an event when its
/// kind changed (a move is always one).
pub fn note_verdict(
    ops: &OpsBook,
    host: &Mutex<crate::vessel::Host>,
    id: VesselId,
    verdict: &crate::placement::Verdict,
) {
    use crate::placement::Verdict;
    let name = || {
        lock(host)
            .vessels
            .get(&id)
            .map(|l| l.deployment.body.name.clone())
            .unwrap_or_default()
    };
    match verdict {
        Verdict::Stay(w) => {
            let kind = metrics::why_kind(w);
            if lock(&ops.last_judgement).get(&id) == Some(&kind) {
                ops.metrics.placement_decision(kind);
            } else {
                ops.note_judgement(id, &name(), kind, &w.to_string());
            }
        }
        Verdict::Move { why, .. } => ops.note_judgement(id, &name(), "move", why),
    }
}

/// The event loop's ops tick (every [`OPS_TICK`]): the lag measurement,
/// and every [`SNAPSHOT_EVERY_TICKS`] a new snapshot. `last` is when the
/// tick before came; `ticks` counts them.
pub fn tick(state: &crate::mesh::state::NodeState, last: &mut Instant, ticks: &mut u64) {
    let ops = lock(&state.host).ops.clone();
    let now = Instant::now();
    ops.lag.tick(now.duration_since(*last), OPS_TICK);
    *last = now;
    *ticks += 1;
    if *ticks % SNAPSHOT_EVERY_TICKS == 1 {
        *lock(&ops.trusted) = state.trusted.clone();
        let here: Vec<VesselId> = lock(&state.host).vessels.keys().copied().collect();
        ops.retain_vessels(&|v| here.contains(v));
        ops.snapshot.send_replace(Arc::new(status::snapshot(state)));
    }
}
