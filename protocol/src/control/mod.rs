//! The control protocol (`/meshnode/control/2`): what the `meshnode` CLI
//! (a short-lived libp2p peer) asks a node, and what the node answers. The
//! peers listing and the gossiped node status are in [`crate::status`]
//! (re-exported here). Plain data; see docs/protocol.md.
//!
//! Every command is a [`SignedRequest`]: a user key signs the command, the
//! node it is meant for (its node key) and a nonce that the node issued a
//! moment before ([`ControlRequest::Challenge`]). The node accepts each nonce
//! once, and only from the connection it was issued to, so a recorded request
//! can be replayed neither to the same node nor to another one.

use serde::{Deserialize, Serialize};

use crate::membership::{verify, Domain, Nonce, PublicKey, Signature, SignatureError};
use crate::refusal::{Refusal, RefusalCode};
use crate::snapshot::Hash;
pub use crate::status::*;

// Split by job: the commands a user sends, the node's answers, `meshnode
// status`'s report and the fuzz oracle; the request envelope and its
// signatures stay here.
mod commands;
mod oracle;
mod reports;
mod status_report;

pub use crate::ids::PeerIdBytes;
pub use commands::Command;
pub use oracle::mesh_messages_oracle;
pub use reports::{
    CheckpointReport, ControlResponse, DrainItem, DrainReport, FailureKind, JoinAccepted, LogChunk,
    LogGeneration, MigrationFailure, MigrationPhase, MigrationReport, NodeInfo, RecoverReport,
    ReplicaInfo, UpgradeReport, VesselInfo,
};
pub use status_report::{
    DiskUse, MemoryUse, OpsEvent, OpsEventKind, StatusMember, StatusReport, StatusVesselLine,
};

/// One request on the control protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Ask for a fresh nonce to sign the next command with. Anyone may ask.
    Challenge,
    /// A device that runs `meshnode start --join TOKEN` asks the inviting
    /// node for its certificate. Authenticated by the token's one-time
    /// secret; the certificate is issued for the connection's PeerId.
    Join(JoinRequest),
    /// A command, signed by a user key.
    Signed(Box<SignedRequest>),
    /// Never on the wire: a request whose body the node's codec did not
    /// read (over the strangers' bound, and its header not signed for this
    /// node by a user it trusts; see `ControlHeader`), with the refusal to
    /// answer it with, so that the sender hears why.
    #[serde(skip)]
    Unread(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub invite_id: Nonce,
    pub secret: Nonce,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub body: RequestBody,
    pub user_key: PublicKey,
    pub signature: Signature,
    /// The same user's signature of the node and the body's hash
    /// ([`HeaderAuth`]), which goes in the header before the request so
    /// that the node checks who sent a large request before reading it.
    pub header_signature: Signature,
}

/// What precedes every control request on the wire (length-prefixed, at
/// most `MAX_CONTROL_HEADER_BYTES`): the request's size, and, for a signed
/// request, who vouches for it. A node reads a request of more than a few
/// KiB only behind a header whose `auth` verifies for it, by a user key it
/// trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlHeader {
    /// The bytes of the request (its CBOR) that follow the header.
    pub body_bytes: u64,
    pub auth: Option<HeaderAuth>,
}

/// A user's signature (domain `control-header`) of [`HeaderBody`]: the
/// node the request is for and the hash of its `RequestBody`'s CBOR.
/// Bound to the node, so a node that received it cannot make another one
/// read a large request with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderAuth {
    pub user_key: PublicKey,
    pub body_hash: Hash,
    pub signature: Signature,
}

/// What a [`HeaderAuth`] signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderBody {
    pub node: PublicKey,
    pub body_hash: Hash,
}

impl HeaderAuth {
    /// Checks the signature, for `node`.
    pub fn verify_for(&self, node: &PublicKey) -> Result<(), SignatureError> {
        let body = HeaderBody {
            node: *node,
            body_hash: self.body_hash,
        };
        verify(
            &self.user_key,
            Domain::ControlHeader,
            &body,
            &self.signature,
        )
    }
}

impl ControlRequest {
    /// The header this request is sent behind, `body_bytes` long.
    pub fn header(&self, body_bytes: u64) -> ControlHeader {
        let auth = match self {
            ControlRequest::Signed(r) => Some(HeaderAuth {
                user_key: r.user_key,
                body_hash: Hash::of(&crate::cbor::encode(&r.body)),
                signature: r.header_signature,
            }),
            _ => None,
        };
        ControlHeader { body_bytes, auth }
    }

    /// Whether this request is the one `auth` vouched for.
    pub fn matches(&self, auth: &HeaderAuth) -> bool {
        match self {
            ControlRequest::Signed(r) => {
                r.user_key == auth.user_key
                    && Hash::of(&crate::cbor::encode(&r.body)) == auth.body_hash
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    pub version: u32,
    /// The node key of the node this command is for.
    pub node: PublicKey,
    /// The nonce that node issued in answer to [`ControlRequest::Challenge`].
    pub nonce: Nonce,
    pub command: Command,
}

impl SignedRequest {
    pub fn sign(user: &ed25519_dalek::SigningKey, body: RequestBody) -> SignedRequest {
        let signature = crate::membership::sign(user, Domain::ControlRequest, &body);
        let header = HeaderBody {
            node: body.node,
            body_hash: Hash::of(&crate::cbor::encode(&body)),
        };
        let header_signature = crate::membership::sign(user, Domain::ControlHeader, &header);
        SignedRequest {
            body,
            user_key: PublicKey::of(user),
            signature,
            header_signature,
        }
    }

    /// Checks the signature, the version and that the request is meant for
    /// `node`. Nonce freshness and trust in the user key are the node's to
    /// check (they need its state).
    pub fn verify_for(&self, node: &PublicKey) -> Result<(), ControlError> {
        if self.body.version != CONTROL_VERSION {
            return Err(ControlError::Version {
                found: self.body.version,
                expected: CONTROL_VERSION,
            });
        }
        verify(
            &self.user_key,
            Domain::ControlRequest,
            &self.body,
            &self.signature,
        )
        .map_err(ControlError::Signature)?;
        if &self.body.node != node {
            return Err(ControlError::WrongNode {
                addressed: self.body.node,
                actual: *node,
            });
        }
        Ok(())
    }
}

/// Why a signed request was refused before looking at its command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control protocol version {found}, this node speaks version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("forged or corrupt control request: {0}")]
    Signature(SignatureError),
    #[error("the request was signed for node key {addressed}, but this node's key is {actual}")]
    WrongNode {
        addressed: PublicKey,
        actual: PublicKey,
    },
}

impl ControlError {
    /// The refusal code a node answers this error with.
    pub fn code(&self) -> RefusalCode {
        match self {
            ControlError::Version { .. } => RefusalCode::Version,
            ControlError::Signature(_) => RefusalCode::Forged,
            ControlError::WrongNode { .. } => RefusalCode::Misdirected,
        }
    }
}

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
    }
}

/// The hash a node keeps of an invite secret (the secret itself stays in
/// the token).
pub fn secret_hash(secret: &Nonce) -> Hash {
    Hash::of(&secret.0)
}
/// What `meshnode dashboard` signs (domain `dashboard-login`): a one-time
/// login to one node's dashboard until `expires_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardLoginBody {
    /// The node key of the node whose dashboard it opens.
    pub node: PublicKey,
    pub user_key: PublicKey,
    pub expires_unix_ms: u64,
    /// Makes it one-time: a node accepts each nonce once.
    pub nonce: Nonce,
}

/// A signed [`DashboardLoginBody`], carried in the URL that `meshnode
/// dashboard` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardLogin {
    pub body: DashboardLoginBody,
    pub signature: Signature,
}

impl DashboardLogin {
    pub fn sign(user: &ed25519_dalek::SigningKey, body: DashboardLoginBody) -> DashboardLogin {
        let signature = crate::membership::sign(user, Domain::DashboardLogin, &body);
        DashboardLogin { body, signature }
    }

    /// Checks the signature by the user key it names, and that it is for
    /// `node`. Trust, expiry and one-time use are the node's to check.
    pub fn verify_for(&self, node: &PublicKey) -> Result<(), ControlError> {
        verify(
            &self.body.user_key,
            Domain::DashboardLogin,
            &self.body,
            &self.signature,
        )
        .map_err(ControlError::Signature)?;
        if &self.body.node != node {
            return Err(ControlError::WrongNode {
                addressed: self.body.node,
                actual: *node,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod phase_tests;

#[cfg(test)]
mod smoke;

#[cfg(test)]
mod log_generation_tests;
