//! The request/await link to peers: a task sends a request through the
//! event loop and awaits its answer, with the retry rule for requests whose
//! connection failed. It knows nothing of the node's vessels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use protocol::control::MigrationReport;
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::ingress::{IngressRequest, IngressResponse};
use protocol::membership::PublicKey;
use protocol::migrate::{MigrationRequest, MigrationResponse};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;
use tokio::sync::{mpsc, oneshot};

use super::node::{NodeCommand, NodeState};
use super::vessels::*;
use crate::vessel::Host;

/// What a task needs to talk to peers and answer requests.
#[derive(Clone)]
pub struct Mesh {
    pub incoming: Arc<Mutex<Incoming>>,
    pub tx: mpsc::Sender<NodeCommand>,
    pub host: Arc<Mutex<Host>>,
    pub me: PeerId,
    pub signing: ed25519_dalek::SigningKey,
    pub migrations: Arc<Mutex<HashMap<VesselId, MigrationReport>>>,
    pub trusted: Vec<PublicKey>,
    pub policy: MigrationPolicy,
    pub inputs: Arc<Mutex<super::place::Inputs>>,
    pub drain: Arc<Mutex<Option<protocol::control::DrainReport>>>,
    pub ingress: Arc<super::ingress::Ingress>,
    /// Give up at the first transport error instead of retrying on a new
    /// connection: set for the requests a migration sends while its vessel
    /// is paused, where a dead destination would otherwise keep the vessel
    /// stopped through every retry's dial timeout (16–18 s in testnet's
    /// faults scenario). Giving up there is safe: before the commit point
    /// the vessel runs on at the source.
    pub fail_fast: bool,
}

/// How this node moves vessels. The defaults are what a user wants; the
/// other settings exist to measure what pre-copy and deduplication buy
/// (docs/benchmarks.md).
#[derive(Debug, Clone, Copy)]
pub struct MigrationPolicy {
    /// Pre-copy rounds before the final stop (0: stop-and-copy).
    pub warm_rounds: u32,
    /// Send only the chunks the destination lacks (false: every chunk of
    /// each round, as if the destination had nothing).
    pub dedup: bool,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        MigrationPolicy {
            warm_rounds: MAX_WARM_ROUNDS,
            dedup: true,
        }
    }
}

/// Why a request to a peer brought no answer of the kind asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The connection failed (closed, not dialled, I/O): a request that is
    /// safe to repeat may be retried on another connection.
    #[error("request to {peer} failed: {reason}")]
    Transport { peer: PeerId, reason: String },
    /// The request failed otherwise (timed out, too large, the peer speaks
    /// no version of the protocol this node speaks).
    #[error("request to {peer} failed: {reason}")]
    Failed { peer: PeerId, reason: String },
    /// The peer refused it.
    #[error("{peer} refused: {refusal}")]
    Refused { peer: PeerId, refusal: Refusal },
    /// The peer answered something the request does not call for.
    #[error("unexpected answer from {peer}: {answer}")]
    Unexpected { peer: PeerId, answer: String },
    #[error("the node is stopping")]
    Stopping,
}

impl RequestError {
    /// An answer of the wrong kind from `peer`.
    pub fn unexpected(peer: PeerId, answer: &impl std::fmt::Debug) -> RequestError {
        RequestError::Unexpected {
            peer,
            answer: format!("{answer:?}"),
        }
    }

    /// The connection failed, not the request.
    pub fn is_transport(&self) -> bool {
        matches!(self, RequestError::Transport { .. })
    }

    /// The peer's refusal code, if it refused.
    pub fn refusal_code(&self) -> Option<RefusalCode> {
        match self {
            RequestError::Refused { refusal, .. } => Some(refusal.code),
            _ => None,
        }
    }
}

/// A command forwarded to a peer that failed: the peer's own refusal keeps
/// its code; a peer that could not be reached is `Unreachable`.
impl From<RequestError> for Refusal {
    fn from(e: RequestError) -> Refusal {
        match e {
            RequestError::Refused { peer, refusal } => {
                Refusal::new(refusal.code, format!("{peer} refused: {}", refusal.detail))
            }
            RequestError::Transport { .. } | RequestError::Failed { .. } => {
                Refusal::new(RefusalCode::Unreachable, e.to_string())
            }
            RequestError::Unexpected { .. } | RequestError::Stopping => Refusal::internal(e),
        }
    }
}

/// The source side of a migration reports errors as text (its report's
/// `error`); the codes it acts on are matched before this.
impl From<RequestError> for String {
    fn from(e: RequestError) -> String {
        e.to_string()
    }
}

/// Tries of an idempotent request whose connection failed.
pub const TRANSPORT_RETRIES: u32 = 4;

impl Mesh {
    /// Sends one request to `peer` and waits for the answer, trying again
    /// (on another connection) when the connection failed. Every request
    /// but an offer is idempotent; an offer spends its nonce, so a failed
    /// offer is retried by [`offer`] with a fresh one.
    pub async fn request(
        &self,
        peer: PeerId,
        request: PeerRequest,
    ) -> Result<PeerResponse, RequestError> {
        let retry = !matches!(
            request,
            PeerRequest::Migration(MigrationRequest::Offer { .. })
        ) && !self.fail_fast;
        let mut tries = 0;
        loop {
            match self.request_once(peer, request.clone()).await {
                Err(e) if retry && e.is_transport() && tries < TRANSPORT_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                done => return done,
            }
        }
    }

    /// Sends one request through the event loop and waits for the answer;
    /// a refusal becomes an error with the peer's reason.
    pub(crate) async fn request_once(
        &self,
        peer: PeerId,
        request: PeerRequest,
    ) -> Result<PeerResponse, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(NodeCommand::PeerRequest {
                peer,
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| RequestError::Stopping)?;
        match rx.await {
            Ok(Ok(PeerResponse::Refused(refusal))) => Err(RequestError::Refused { peer, refusal }),
            Ok(r) => r,
            Err(_) => Err(RequestError::Stopping),
        }
    }
}

impl Mesh {
    /// A migration request (retried as [`Mesh::request`] does); answers the
    /// migration answer inside the envelope.
    pub async fn migration(
        &self,
        peer: PeerId,
        request: MigrationRequest,
    ) -> Result<MigrationResponse, RequestError> {
        match self.request(peer, request.into()).await? {
            PeerResponse::Migration(r) => Ok(r),
            other => Err(RequestError::unexpected(peer, &other)),
        }
    }

    /// [`Mesh::migration`], tried once (an offer spends its nonce).
    pub async fn migration_once(
        &self,
        peer: PeerId,
        request: MigrationRequest,
    ) -> Result<MigrationResponse, RequestError> {
        match self.request_once(peer, request.into()).await? {
            PeerResponse::Migration(r) => Ok(r),
            other => Err(RequestError::unexpected(peer, &other)),
        }
    }

    /// A control command forwarded to the member that acts on it.
    pub async fn forward(
        &self,
        peer: PeerId,
        request: ForwardRequest,
    ) -> Result<ForwardResponse, RequestError> {
        match self.request(peer, request.into()).await? {
            PeerResponse::Forward(r) => Ok(r),
            other => Err(RequestError::unexpected(peer, &other)),
        }
    }

    /// An ingress or egress frame, tried once (the ingress loops retry on
    /// their own schedule).
    pub async fn ingress_once(
        &self,
        peer: PeerId,
        request: IngressRequest,
    ) -> Result<IngressResponse, RequestError> {
        match self.request_once(peer, request.into()).await? {
            PeerResponse::Ingress(r) => Ok(r),
            other => Err(RequestError::unexpected(peer, &other)),
        }
    }
}

pub fn mesh_of(state: &NodeState) -> Mesh {
    Mesh {
        incoming: state.vessels_net.incoming.clone(),
        tx: state.vessels_net.tx.clone(),
        host: state.vessels_net.host.clone(),
        me: state.identity.peer_id,
        signing: state.identity.signing.clone(),
        migrations: state.vessels_net.migrations.clone(),
        trusted: state.trusted.clone(),
        policy: state.vessels_net.policy,
        inputs: state.vessels_net.inputs.clone(),
        drain: state.vessels_net.drain.clone(),
        ingress: state.vessels_net.ingress.clone(),
        fail_fast: false,
    }
}
