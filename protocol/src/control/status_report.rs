//! `meshnode status`'s report (issue 16).

use serde::{Deserialize, Serialize};

/// `meshnode status` (issue 16): the node asked, and the mesh as it sees
/// it. Vessel ids are hex strings here, so that `--json` is plain to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// meshnode's version (the crate's).
    pub version: String,
    pub peer_id: String,
    /// The node's name, where it has one (node names, issue 16 item 1).
    #[serde(default)]
    pub name: Option<String>,
    pub uptime_ms: u64,
    /// Where its HTTP server (`/metrics`, the dashboard) listens, if it runs.
    pub http_addr: Option<String>,
    /// The worst lateness of the node's event loop over its recent window,
    /// in milliseconds (a tick measures it).
    pub loop_lag_ms: u64,
    /// The other members, as this node's failure detection sees them.
    pub members: Vec<StatusMember>,
    /// The vessels this node runs or knows the end of.
    pub vessels_here: Vec<StatusVesselLine>,
    /// Vessels running in the whole mesh (here and on every member up, as
    /// their last status said).
    pub vessels_in_mesh: u64,
    pub disk: DiskUse,
    pub memory: MemoryUse,
    /// The last migrations and placement decisions, oldest first.
    pub events: Vec<OpsEvent>,
    /// Things to look at that do not make the node unhealthy.
    pub warnings: Vec<String>,
    /// Why the node is unhealthy (empty: healthy). docs/guide.md defines it.
    pub unhealthy: Vec<String>,
    /// While an upgrade is on probation (`meshnode upgrade roll`): from
    /// and to which version, and how long it has been healthy.
    #[serde(default)]
    pub upgrade: Option<String>,
}

/// One member, in a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMember {
    pub peer_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `up`, `unreachable` or `down`.
    pub state: String,
    pub rtt_us: Option<u64>,
    pub arch: Option<String>,
    pub cpus: Option<u32>,
    pub load_milli: Option<u32>,
    /// Vessels it runs, by its last status.
    pub vessels: u32,
}

/// One vessel here, in a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusVesselLine {
    pub vessel: String,
    pub name: String,
    pub state: String,
    /// Why it is here, as placement last judged it.
    pub why: String,
    pub migrations: u32,
    pub memory_bytes: u64,
    /// True when it should be running here but has not made progress (a
    /// migration out that does not end, a lease that holds it).
    pub stuck: bool,
}

/// The node's store against its disk budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    pub store_bytes: u64,
    /// `None`: no budget beyond the disk itself.
    pub budget_bytes: Option<u64>,
}

/// Memory: the vessels' linear memories against what one vessel may have,
/// and the machine's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUse {
    pub vessels_bytes: u64,
    /// Most linear memory one vessel may have (`vessel_max_memory_bytes`).
    pub vessel_budget_bytes: u64,
    pub available_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

/// Something the node did with a vessel: a migration (out of here, done or
/// aborted) or a change in placement's judgement of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsEvent {
    /// Wall-clock time, ms since the Unix epoch.
    pub at_unix_ms: u64,
    pub vessel: String,
    pub name: String,
    pub kind: OpsEventKind,
    /// For a migration: the nodes (PeerIds).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Why: placement's reason, or the migration's cause or failure.
    pub reason: String,
    pub downtime_us: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpsEventKind {
    /// A migration out of this node finished.
    Migrated,
    /// A migration out of this node was aborted; the vessel runs on here.
    MigrationAborted,
    /// Placement changed its judgement of a vessel (`reason` says to what).
    Placement,
}
