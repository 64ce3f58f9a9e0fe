//! The commands a user sends a node ([`Command`]), inside a signed
//! [`super::RequestBody`].

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkBytes, VesselId};
use crate::membership::{serde_bytes_vec, InviteGrant, MemberCertificate, PublicKey};
use crate::snapshot::Hash;

// Named in doc links only.
#[cfg(doc)]
use super::ControlResponse;

/// What a user can ask a node to do. New commands (deploy, ps, logs,
/// migrate, stop) are added as new variants at the end; an old node answers
/// a variant it does not know with a decode error, which the CLI reports.
// `Deploy` is large (a deployment), the rest small: a command is built once
// and sent, never kept in bulk, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The node's view of the mesh: its members (and, with `all`, every
    /// peer it knows, including refused ones).
    Peers {
        all: bool,
    },
    TrustList,
    TrustAdd {
        user_key: PublicKey,
    },
    TrustRemove {
        user_key: PublicKey,
    },
    /// Hold an invite for `ttl_secs` (measured on the node's monotonic
    /// clock): the first device that presents the secret behind the grant's
    /// `secret_hash` in that time is enrolled.
    CreateInvite {
        grant: InviteGrant,
        ttl_secs: u64,
    },
    /// Who the node is: its PeerId, addresses and membership.
    Info,
    /// Run a vessel: on this node, or (`on`) on the member peer with that
    /// PeerId. The deployment is signed by the user key on its own (it
    /// travels with the vessel); the module and the volumes' file chunks
    /// come along.
    Deploy {
        deployment: crate::vessel::Deployment,
        #[serde(with = "serde_bytes_vec")]
        module: Vec<u8>,
        volume_chunks: Vec<ChunkBytes>,
        on: Option<String>,
        /// Start it pinned (`deploy --pin`): placement never moves it.
        #[serde(default)]
        pinned: bool,
    },
    /// Every vessel in the mesh, as this node and its member peers know them.
    Ps,
    /// Log records of a vessel (id, id prefix or name) from an absolute
    /// offset, wherever it runs now.
    Logs {
        vessel: String,
        from: u64,
        /// A log generation whose rolled-back lines to read instead of the
        /// current log (`logs --generation N`); None: the current log. An
        /// older node ignores it and answers with its current log, which
        /// the answer's `generation` shows.
        #[serde(default)]
        generation: Option<u32>,
        /// Only records printed at or after this time (Unix ms, by the
        /// CLI's clock; `logs --since`): the node starts the page there
        /// when that is past `from`. An older node ignores it.
        #[serde(default)]
        since_unix_ms: Option<u64>,
    },
    /// Move a vessel (id, id prefix or name) to the member with this PeerId.
    /// Answers at once; `MigrationStatus` follows it.
    Migrate {
        vessel: String,
        to: String,
    },
    /// How the last migration of a vessel is going, asked of the node that
    /// started it (`source`, a PeerId, as the `Migrate` answer named it).
    MigrationStatus {
        vessel: VesselId,
        source: String,
    },
    Stop {
        vessel: String,
    },
    /// Pin a vessel (id, id prefix or name) where it runs: placement never
    /// moves it (by-hand migrations still do). The pin travels with it.
    Pin {
        vessel: String,
    },
    /// Let placement move a pinned vessel again.
    Unpin {
        vessel: String,
    },
    /// Move every vessel off the member with this PeerId (or this node, for
    /// `self`), one at a time, to the best other nodes with room. Answers
    /// at once; `DrainStatus` follows it. Pinned vessels stay unless
    /// `include_pinned`.
    Drain {
        node: String,
        include_pinned: bool,
    },
    /// How the drain of a node is going, asked of any node.
    DrainStatus {
        node: String,
    },
    /// Take a durable checkpoint of a vessel (id, id prefix or name) now,
    /// on the node that runs it.
    Checkpoint {
        vessel: String,
    },
    /// Revoke a node key mesh-wide (`meshnode revoke`): the node gossips
    /// the revocation and cuts the node off; answered with the nodes the
    /// revoked one had enrolled.
    Revoke {
        revocation: crate::revocation::Revocation,
    },
    /// Keep nodes a revoked node enrolled (`meshnode endorse`): each
    /// certificate is signed by the user key itself, without a grant.
    Endorse {
        certificates: Vec<MemberCertificate>,
    },
    /// Run a vessel (id, id prefix or name) on the member `on` (a PeerId,
    /// or `self`) from the newest checkpoint that member holds of it, as
    /// its replica, without its voters' majority (`meshnode recover
    /// --force`, issue 15). Refused unless `force`, unless `on` holds a
    /// replica, and while the vessel's host is up or holds its lease.
    Recover {
        vessel: String,
        on: String,
        force: bool,
    },
    /// End the drain of the member with this PeerId (or this node, for
    /// `self`) without a restart (`meshnode undrain`): vessels not moved
    /// yet stay, a move under way finishes, and placement may put vessels
    /// on the node again. Answered with the drain's last report.
    Undrain {
        node: String,
    },
    /// The node's health and the mesh at a glance (`meshnode status`,
    /// issue 16): answered with [`ControlResponse::Status`].
    Status,
    /// Which of these chunks of a release's binaries the node lacks
    /// (`upgrade publish`, before it sends them): answered with
    /// [`ControlResponse::Lacking`]. At most
    /// `release::MAX_RELEASE_BINARIES × MAX_RELEASE_BINARY_CHUNKS` hashes.
    ReleaseLacking {
        hashes: Vec<Hash>,
    },
    /// Chunks of a release's binaries (`upgrade publish`), each stored
    /// under its own hash and kept until the release that names them is
    /// published here (or the node restarts).
    ReleaseChunks {
        chunks: Vec<ChunkBytes>,
    },
    /// Keep this release, whose chunks the node holds, for the other nodes
    /// to fetch their binaries from (`upgrade publish`).
    ReleasePublish {
        release: Box<crate::release::SignedRelease>,
    },
    /// Install the release on this node (`upgrade roll`): fetch its binary
    /// for this node's CPU, the chunks it lacks from `sources` (PeerIds of
    /// members that hold the release), verify it, make it the current
    /// binary (keeping the previous one) and restart into it. Answered
    /// with [`ControlResponse::Upgrade`] before the restart. A release
    /// older than the running version is refused unless
    /// `allow_downgrade`.
    UpgradeApply {
        release: Box<crate::release::SignedRelease>,
        sources: Vec<String>,
        allow_downgrade: bool,
    },
    /// Make the previous binary current again and restart into it (a roll
    /// that stopped, or by hand).
    UpgradeRollback,
    /// The releases the node keeps, newest version first
    /// (`upgrade list`, and `upgrade roll` to find what to roll).
    Releases,
    /// Remove an ended vessel for good (`meshnode rm`, issue 16): the node
    /// that holds its newest record checks that it ended and deletes it
    /// with its log, then every member is told to forget its copies below
    /// the tombstone's epoch. The tombstone is user-signed, so it needs no
    /// nonce: repeating it changes nothing. Answered `Done`.
    Rm {
        tombstone: Box<crate::vessel::Tombstone>,
    },
    /// A vessel's volumes, as its host holds them now (`meshnode volumes`):
    /// answered with [`ControlResponse::Volumes`].
    Volumes {
        vessel: String,
    },
    /// A path in a vessel's volume (absolute, as the vessel sees it): the
    /// file itself, or everything under a directory (`meshnode cp`, its
    /// first step). Answered with [`ControlResponse::VolumeListing`].
    VolumeList {
        vessel: String,
        path: String,
    },
    /// At most `volumes::VOLUME_PAGE_BYTES` of a file in a vessel's volume
    /// from `offset` (`meshnode cp`, once per page). Answered with
    /// [`ControlResponse::VolumePage`].
    VolumeRead {
        vessel: String,
        path: String,
        offset: u64,
    },
}
