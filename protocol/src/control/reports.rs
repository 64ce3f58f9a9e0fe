//! What a node answers a command with ([`ControlResponse`]) and the
//! reports it carries.

use serde::{Deserialize, Serialize};

use crate::ids::{PeerIdBytes, VesselId};
use crate::membership::{serde_bytes_vec, MemberCertificate, Nonce, PublicKey};
use crate::refusal::{Refusal, RefusalCode};
use crate::snapshot::Hash;
use crate::status::PeerInfo;

// Named in doc links only.
use super::status_report::StatusReport;
#[cfg(doc)]
use super::Command;

/// One answer on the control protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    Challenge {
        nonce: Nonce,
        node: PublicKey,
    },
    Joined(Box<JoinAccepted>),
    Peers(Vec<PeerInfo>),
    Trust(Vec<PublicKey>),
    InviteCreated {
        inviter: PeerIdBytes,
        addrs: Vec<String>,
        ttl_secs: u64,
    },
    Info(NodeInfo),
    Deployed {
        vessel: VesselId,
        node: String,
    },
    Vessels(Vec<VesselInfo>),
    Logs(LogChunk),
    Migration(MigrationReport),
    Done,
    /// The request was refused: a code, and one line for the user.
    Refused(Refusal),
    Drain(DrainReport),
    Checkpointed(CheckpointReport),
    /// A revocation was accepted; `enrolled` lists the PeerIds of the nodes
    /// the revoked node had enrolled (each now needs `meshnode endorse`,
    /// or nothing, if it is not yours).
    Revoked {
        node: String,
        enrolled: Vec<String>,
    },
    /// The command acts on another node (`node`, a PeerId, key `node_key`):
    /// sign it again for that node and this nonce, which it issued, and
    /// send it here; this node relays it, and that node checks it itself.
    SignFor {
        node: String,
        node_key: PublicKey,
        nonce: Nonce,
    },
    /// A vessel runs on `node` by a forced recovery.
    Recovered(RecoverReport),
    /// The answer to [`Command::Status`].
    Status(Box<StatusReport>),
    /// The chunks of a [`Command::ReleaseLacking`] the node lacks.
    Lacking(Vec<Hash>),
    /// What [`Command::UpgradeApply`], [`Command::UpgradeRollback`] or
    /// [`Command::ReleasePublish`] did.
    Upgrade(UpgradeReport),
    /// The answer to [`Command::Releases`].
    Releases(Vec<crate::release::SignedRelease>),
    /// The answer to [`Command::Volumes`]: the host, and each volume.
    Volumes {
        node: String,
        volumes: Vec<crate::volumes::VolumeInfo>,
    },
    VolumeListing(crate::volumes::VolumeListing),
    VolumePage(crate::volumes::VolumePage),
}

/// What an upgrade command did on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The version the node runs now.
    pub running: String,
    /// It restarts now (into `into_version`, when it knows the version).
    pub restarting: bool,
    pub into_version: Option<String>,
    /// Chunks of the binary fetched from other nodes, and those it had.
    pub fetched_chunks: u64,
    pub fetched_bytes: u64,
    pub had_chunks: u64,
    /// One line for a human.
    pub detail: String,
}

/// A forced recovery (`meshnode recover --force`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverReport {
    pub vessel: VesselId,
    /// The node that runs it now.
    pub node: String,
    /// The epoch it runs at, and the epoch of the checkpoint it ran from.
    pub epoch: u64,
    pub from_epoch: u64,
    /// The host it was recovered from.
    pub from_host: String,
    /// How old that checkpoint was when it arrived on `node`, in ms (by
    /// that node's clock), if known: what the vessel lost.
    pub checkpoint_age_ms: Option<u64>,
}

/// A durable checkpoint (`meshnode checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReport {
    pub vessel: VesselId,
    /// The node that holds it (a PeerId).
    pub node: String,
    /// The checkpoint's image in that node's store: what its record now
    /// names, and what `meshnode resume --image` continues from.
    pub image: Hash,
    /// How long the vessel was paused for it.
    pub pause_us: u64,
    /// Chunks of memory that changed since the checkpoint before.
    pub changed_chunks: u64,
    /// Chunks of memory the pause compared to find them: the whole memory
    /// when write tracking could not say which were written (the first
    /// checkpoint, a grown memory), else only the written ones. Absent
    /// from older nodes.
    #[serde(default)]
    pub compared_chunks: u64,
}

/// How a drain is going: one line per vessel that was on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// The node being drained (a PeerId).
    pub node: String,
    /// Every vessel has been dealt with (moved, left pinned or failed).
    pub done: bool,
    pub vessels: Vec<DrainItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainItem {
    pub id: VesselId,
    pub name: String,
    /// Where it goes or went (a PeerId), once chosen.
    pub to: Option<String>,
    /// `waiting`, `moving`, `moved`, `pinned` (stays: not moved), `failed: …`.
    pub state: String,
}

/// One vessel as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VesselInfo {
    pub id: VesselId,
    pub name: String,
    /// The node it runs on (or ran on last), as a PeerId.
    pub node: String,
    /// `running`, `migrating`, `exited`, `stopped`, `failed` or
    /// `waiting` (committed to a node that has not answered yet).
    pub state: String,
    pub epoch: u64,
    pub run_ms: u64,
    pub migrations: u32,
    pub exit_code: Option<i32>,
    /// How it came to be where it is (deployed here, migrated by hand, …).
    pub reason: String,
    /// Why it is where it is now, as placement sees it ("pinned", "nearest
    /// to its clients: …", "cool-down 12 s after a move", …); empty from
    /// nodes older than placement.
    #[serde(default)]
    pub why: String,
    /// Placement never moves it (`meshnode pin`).
    #[serde(default)]
    pub pinned: bool,
    /// How old its newest durable checkpoint on this node is, in
    /// milliseconds: what a crash here would cost it now (`None`: none yet,
    /// or it does not run here).
    #[serde(default)]
    pub checkpoint_age_ms: Option<u64>,
    /// Why its last checkpoint was skipped or failed, until one succeeds.
    #[serde(default)]
    pub checkpoint_problem: Option<String>,
    /// Its lease, in words (issue 15): "held at epoch 2 by 3 voters, 1.2 s
    /// left", "no lease: …", "fenced by epoch 3". None from older nodes.
    #[serde(default)]
    pub lease: Option<String>,
    /// Replicas its deployment asks for (`deploy --replicas`; `None` from
    /// a node older than replicas, or a row of a node that does not run it).
    #[serde(default)]
    pub replicas_wanted: Option<u32>,
    /// The nodes that keep its replicas, as its host last chose them.
    #[serde(default)]
    pub replicas: Vec<ReplicaInfo>,
    /// How old the newest checkpoint that reached every replica is, in
    /// milliseconds: what a failover would lose now (`None`: none yet).
    #[serde(default)]
    pub replica_age_ms: Option<u64>,
    /// Why it has fewer replicas than asked for ("only 1 other member").
    #[serde(default)]
    pub replication_problem: Option<String>,
    /// Bytes and chunks its host sent to replicas since it started there:
    /// only the chunks a replica lacked cross the wire.
    #[serde(default)]
    pub replica_bytes_sent: u64,
    #[serde(default)]
    pub replica_chunks_sent: u64,
    /// `sync 50ms` for a `--durability sync` vessel (its output waits for
    /// its replicas), `None` for async.
    #[serde(default)]
    pub durability: Option<String>,
    /// The service ports it serves (`deploy --port`), as its host knows
    /// them (empty from older nodes, and on a silent host's row).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `deploy --max-memory`, bytes (None: only the node's own limit).
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// `deploy --restart`: `on-failure` or `always` (None: never).
    #[serde(default)]
    pub restart: Option<String>,
    /// How many times its host ran it again under that policy.
    #[serde(default)]
    pub restarts: u32,
}

/// One replica of a vessel, as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The replica node, as a PeerId.
    pub node: String,
    /// The checkpoint image it holds, as hex (`None`: none yet).
    pub image: Option<String>,
    /// How old that checkpoint is, in milliseconds.
    pub age_ms: Option<u64>,
    /// Why the last shipment to it failed, until one succeeds.
    pub problem: Option<String>,
}

/// A page of a vessel's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The oldest offset still kept: a reader that asked for less lost
    /// `start - from` bytes to the log's bound.
    pub start: u64,
    /// The offset of `records[0]`.
    pub from: u64,
    /// Where the next read should start.
    pub next: u64,
    /// Framed records (`vessel::log_records`).
    #[serde(with = "serde_bytes_vec")]
    pub records: Vec<u8>,
    /// The vessel has ended (and this page reaches the end of its log).
    pub ended: Option<String>,
    /// The node that answered.
    pub node: String,
    /// The generation these records belong to: the current one, or the
    /// one asked for. A log starts at generation 0; each crash that rolled
    /// it back starts the next (0 from a node older than generations).
    #[serde(default)]
    pub generation: u32,
    /// The offset at which the current generation begins (the offset its
    /// last rollback went back to; 0 if it never rolled back).
    #[serde(default)]
    pub generation_start: u64,
    /// The generations that were rolled back on the answering node, oldest
    /// first (empty from older nodes).
    #[serde(default)]
    pub generations: Vec<LogGeneration>,
    /// Set when the page comes from a replica's checkpoint because the
    /// vessel's host does not answer: what it is as of (e.g. "the
    /// checkpoint of epoch 1 that 12D3… received 0.8 s ago; its host is
    /// unreachable"). None from the node that runs it.
    #[serde(default)]
    pub as_of: Option<String>,
}

/// A log generation that a crash rolled back: the node resumed the vessel
/// from an image whose log ended at `rolled_back_to`, while this generation
/// had printed up to `ended_at`. Generation `generation + 1` begins at
/// `rolled_back_to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGeneration {
    pub generation: u32,
    /// The offset the log was rolled back to.
    pub rolled_back_to: u64,
    /// Where this generation's log ended when the node went down.
    pub ended_at: u64,
    /// When the rollback was found (at the resume), Unix milliseconds.
    pub at_unix_ms: u64,
    /// How many of the rolled-back bytes are kept for `logs --generation`
    /// (the newest, whole records; the rest are dropped to a bound).
    pub kept_bytes: u64,
}

impl LogGeneration {
    /// How many bytes of log the rollback took back.
    pub fn rolled_back_bytes(&self) -> u64 {
        self.ended_at.saturating_sub(self.rolled_back_to)
    }
}

/// How a migration went (or is going).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub vessel: VesselId,
    pub from: String,
    pub to: String,
    pub phase: MigrationPhase,
    pub rounds: u32,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    pub chunks_skipped: u64,
    /// Chunks sent in the final round, with the vessel paused: what pre-copy
    /// did not take out of the pause (0 from a node that does not count).
    #[serde(default)]
    pub final_chunks_sent: u64,
    /// From the source pausing the vessel to the destination running it.
    pub downtime_us: Option<u64>,
    pub total_ms: u64,
    /// Why it was aborted.
    pub error: Option<MigrationFailure>,
    /// The chunks the destination lacked at the current step (a pre-copy
    /// round, or the final send with the vessel paused), and how many of
    /// them have been sent: a progress bar's length and position (0 from
    /// older nodes).
    #[serde(default)]
    pub step_chunks: u64,
    #[serde(default)]
    pub step_chunks_sent: u64,
}

/// Why a migration was aborted: a kind that code acts on and one line for
/// people (which names the step it failed at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationFailure {
    pub kind: FailureKind,
    pub detail: String,
}

/// What kind of failure ended a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The destination (or this node, before it began) refused, with this code.
    Refused(RefusalCode),
    /// The destination could not be reached.
    Unreachable,
    /// The vessel ended before it could move.
    VesselEnded,
    /// The source node failed (a disk error, a capture it could not pack).
    Local,
}

impl std::fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Where a migration is. On the wire, its name (`"warming"`): the same
/// bytes as the string this field used to be, and a newer node's phase
/// decodes as `Unknown` instead of failing the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum MigrationPhase {
    /// Pre-copy rounds while the vessel runs at the source.
    Warming,
    /// The vessel is paused; the final image is on its way.
    Final,
    /// The source wrote its commit record: the vessel is the destination's.
    Committed,
    /// The destination confirmed that it runs the vessel.
    Done,
    /// Given up before the commit point: the vessel runs on at the source.
    Aborted,
    /// A phase this build does not know (from a newer node).
    Unknown,
}

impl MigrationPhase {
    pub fn name(self) -> &'static str {
        match self {
            MigrationPhase::Warming => "warming",
            MigrationPhase::Final => "final",
            MigrationPhase::Committed => "committed",
            MigrationPhase::Done => "done",
            MigrationPhase::Aborted => "aborted",
            MigrationPhase::Unknown => "unknown",
        }
    }

    /// The migration is over (done or aborted): nothing more will change.
    pub fn is_over(self) -> bool {
        matches!(self, MigrationPhase::Done | MigrationPhase::Aborted)
    }
}

impl std::fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<MigrationPhase> for String {
    fn from(p: MigrationPhase) -> String {
        p.name().to_string()
    }
}

impl From<String> for MigrationPhase {
    fn from(name: String) -> MigrationPhase {
        [
            MigrationPhase::Warming,
            MigrationPhase::Final,
            MigrationPhase::Committed,
            MigrationPhase::Done,
            MigrationPhase::Aborted,
        ]
        .into_iter()
        .find(|p| p.name() == name)
        .unwrap_or(MigrationPhase::Unknown)
    }
}

/// What an inviting node gives an enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAccepted {
    pub certificate: MemberCertificate,
    /// The inviting node's trust list, which the new member adopts.
    pub trusted_users: Vec<PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub user_key: Option<PublicKey>,
    pub version: String,
    /// Its name (`None` from nodes older than node names).
    #[serde(default)]
    pub name: Option<String>,
    /// Its member certificate, so that a CLI that reached it by name or
    /// `HOST:PORT` can check that it is in the user's mesh before it sends
    /// anything (`None`: not enrolled, or older than node names). Boxed:
    /// the other answers are much smaller.
    #[serde(default)]
    pub certificate: Option<Box<MemberCertificate>>,
}
