//! Control commands forwarded between member nodes on the vessel protocol:
//! the CLI talks to one node, which checked the user's signature and trust,
//! and asks the node that has the vessel (or is to be drained) to act. The
//! user's request travels as that node's word: members trust each other's
//! control decisions. Carried in `peer::PeerRequest::Forward`.

use serde::{Deserialize, Serialize};

use crate::control::{CheckpointReport, DrainReport, LogChunk, MigrationReport, VesselInfo};
use crate::ids::{serde_bytes_vec, ChunkBytes, PeerIdBytes, VesselId};
use crate::vessel::Deployment;

/// A command a member node forwards to another.
// `Deploy` is large (a deployment), the rest small: a request is built once
// and sent, never kept in bulk, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Run this deployment here (`meshnode deploy --on`): the user's
    /// signature travels, the receiving node checks its own trust list.
    Deploy {
        deployment: Deployment,
        #[serde(with = "serde_bytes_vec")]
        module: Vec<u8>,
        volume_chunks: Vec<ChunkBytes>,
        /// Start it pinned (`deploy --pin --on`).
        #[serde(default)]
        pinned: bool,
    },
    /// The vessels this node runs or knows the fate of (for `ps`).
    Vessels,
    /// Log records from an absolute offset (for `logs`), of the current
    /// log or of a rolled-back generation (`Command::Logs`).
    Logs {
        vessel: VesselId,
        from: u64,
        #[serde(default)]
        generation: Option<u32>,
    },
    /// Stop a vessel running here.
    Stop { vessel: VesselId },
    /// Move a vessel that runs here (for `meshnode migrate` sent to another
    /// node).
    Migrate { vessel: VesselId, to: PeerIdBytes },
    /// How the migration of a vessel that this node started is going.
    MigrationStatus { vessel: VesselId },
    /// Pin (or unpin) a vessel that runs here (`meshnode pin`/`unpin` sent
    /// to another node).
    Pin { vessel: VesselId, pinned: bool },
    /// Move every vessel off this node (`meshnode drain` sent to another
    /// node); answers with the drain's report at once.
    Drain { include_pinned: bool },
    /// How this node's drain is going.
    DrainStatus,
    /// Take a durable checkpoint of a vessel that runs here.
    Checkpoint { vessel: VesselId },
}

/// The answer to a [`ForwardRequest`] (a refusal is
/// `peer::PeerResponse::Refused`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardResponse {
    Deployed,
    Vessels(Vec<VesselInfo>),
    Logs(LogChunk),
    Migration(MigrationReport),
    Done,
    Drain(DrainReport),
    Checkpointed(CheckpointReport),
}
