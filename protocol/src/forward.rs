//! Control commands forwarded between member nodes on the vessel protocol:
//! the CLI talks to one node, which asks the node that has the vessel (or
//! is to be drained) to act. Carried in `peer::PeerRequest::Forward`.
//!
//! A member's word is not the user's (issue 14, item 2): a command that
//! acts on a vessel for the user (stop, logs, migrate, pin, drain,
//! checkpoint, migration and drain status) reaches the node that acts only
//! as [`ForwardRequest::Signed`], the user's own `SignedRequest`, signed for
//! a nonce that *that* node issued ([`ForwardRequest::Challenge`], relayed
//! to the CLI as `ControlResponse::SignFor`); the acting node checks the
//! signature, its own trust list and the nonce itself. Only what the mesh
//! needs between nodes stays a member's word: the vessel list behind `ps`
//! and name resolution, and `deploy --on`, whose deployment carries the
//! user's signature and is checked against the receiver's trust list.

use serde::{Deserialize, Serialize};

use crate::control::{
    CheckpointReport, ControlResponse, DrainReport, LogChunk, MigrationReport, SignedRequest,
    VesselInfo,
};
use crate::ids::{serde_bytes_vec, ChunkBytes, PeerIdBytes, VesselId};
use crate::membership::{Nonce, PublicKey};
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
        /// `logs --since` (`Command::Logs`).
        #[serde(default)]
        since_unix_ms: Option<u64>,
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
    /// A nonce for the user's signature, issued by the receiver to the
    /// sender (the forwarding node), which relays it to the CLI.
    Challenge,
    /// The user's request, signed for the receiver and its nonce: the
    /// receiver checks it as if the CLI had sent it, and runs it.
    Signed(Box<SignedRequest>),
    /// Run the vessel here from the replica this node holds, by the
    /// user's decision (`meshnode recover --force`; user-signed).
    Recover { vessel: VesselId, force: bool },
    /// A forced recovery took the vessel over: its old host fences its
    /// copy if the certificate holds (docs/protocol.md, "Forced
    /// recovery"). Sent by the recovering node itself, not the user.
    Fence {
        certificate: crate::forced::ForcedCertificate,
    },
    /// A page of the log in the newest checkpoint this node holds of the
    /// vessel as its replica (its host does not answer; user-signed).
    ReplicaLogs { vessel: VesselId, from: u64 },
    /// End this node's drain (`meshnode undrain` sent to another node).
    Undrain,
    /// Remove a vessel that ended here (`meshnode rm`): refused while it
    /// runs here. The tombstone carries the user's signature.
    Remove { tombstone: crate::vessel::Tombstone },
    /// Forget every copy of a removed vessel below the tombstone's epoch
    /// (record, log, checkpoints, replica) and keep the tombstone. Sent by
    /// the node that removed it to every member, and to any node seen
    /// naming a stale copy.
    Tombstone { tombstone: crate::vessel::Tombstone },
    /// The volumes of a vessel here (`meshnode volumes`; user-signed).
    Volumes { vessel: VesselId },
    /// A listing of a path in a vessel's volume here (`meshnode cp`;
    /// user-signed).
    VolumeList { vessel: VesselId, path: String },
    /// A page of a file in a vessel's volume here (`meshnode cp`;
    /// user-signed).
    VolumeRead {
        vessel: VesselId,
        path: String,
        offset: u64,
    },
}

impl ForwardRequest {
    /// Whether the receiver acts for the user on this request's word alone:
    /// only with the user's signature (`Signed`), never on a member's.
    pub fn needs_user_signature(&self) -> bool {
        !matches!(
            self,
            ForwardRequest::Deploy { .. }
                | ForwardRequest::Vessels
                | ForwardRequest::Challenge
                | ForwardRequest::Signed(_)
                | ForwardRequest::Fence { .. }
                | ForwardRequest::Remove { .. }
                | ForwardRequest::Tombstone { .. }
        )
    }
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
    /// The nonce for [`ForwardRequest::Challenge`] and the receiver's key.
    Challenge {
        nonce: Nonce,
        node: PublicKey,
    },
    /// The receiver's answer to a [`ForwardRequest::Signed`], for the CLI.
    Signed(Box<ControlResponse>),
    Recovered(crate::control::RecoverReport),
    Volumes {
        node: String,
        volumes: Vec<crate::volumes::VolumeInfo>,
    },
    VolumeListing(crate::volumes::VolumeListing),
    VolumePage(crate::volumes::VolumePage),
}
