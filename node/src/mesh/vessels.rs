//! Vessels on the mesh: the node ↔ node protocol (`/meshnode/vessel/2`,
//! [`protocol::peer`]) and the control commands that use it (deploy, ps,
//! logs, migrate, stop).
//!
//! The event loop owns the swarm; everything that takes time runs in tasks
//! that talk to the loop through [`NodeCommand`]s: a task sends a peer
//! request and awaits its answer ([`Mesh::request`]), and answers a request
//! it was handed by sending the response back for the loop to deliver.
//!
//! Source side of a migration: [`migrate`]. Destination side:
//! [`serve_peer`], which checks who asks before anything else (a member,
//! with a nonce this node issued to that very peer) and keeps each incoming
//! migration as a session of the migration layer's destination
//! ([`Incoming`]) until the source's signed commit or abort.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::MigrationReport;
use protocol::membership::Nonce;
use protocol::peer::PeerResponse;
use protocol::refusal::Refusal;
use protocol::snapshot::{Hash, Manifest};
use protocol::vessel::{VesselId, VesselImage};
use tokio::sync::{mpsc, oneshot};

pub use super::commands::*;
pub use super::link::*;
pub use super::migrate::*;
use super::node::NodeCommand;
pub use super::recover::*;
pub use super::serve::*;
use crate::migration::destination::Destination;
pub use crate::migration::destination::INCOMING_MIGRATION_TTL;
use crate::migration::nonce::NonceBook;
pub use crate::migration::source::{
    COMMIT_RETRY_INTERVAL, MAX_WARM_ROUNDS, NONCE_RETRIES, WARM_CONVERGED_CHUNKS,
};
use crate::vessel::image::{Prebuilt, Ready};
use crate::vessel::Host;

/// How long a pre-copy round waits for the vessel to reach the end of a
/// slice (a slice is milliseconds of work; longer means it is blocked).
pub const WARM_COPY_WAIT: Duration = Duration::from_millis(200);

/// How long a destination waits for a module's chunks to prepare it early.
pub const PREWARM_WAIT: Duration = Duration::from_secs(30);

/// Batches of chunks in flight at once.
pub const CHUNK_BATCHES_IN_FLIGHT: usize = 4;

/// Eviction runs after a move out once the departed LRU holds this many
/// vessels (below it, a vessel's own older images are all there is to
/// evict, and they are evicted at the next move).
pub const MAX_DEPARTED_IMAGES_BEFORE_EVICT: usize = 1;

/// How long a `ps` waits for each peer.
pub const PS_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The vessel side of a node's state.
pub struct VesselNet {
    pub host: Arc<Mutex<Host>>,
    pub tx: mpsc::Sender<NodeCommand>,
    /// Nonces issued to sources for their next offer.
    nonces: NonceBook<PeerId>,
    pub pending: HashMap<
        libp2p::request_response::OutboundRequestId,
        oneshot::Sender<Result<PeerResponse, RequestError>>,
    >,
    pub migrations: Arc<Mutex<HashMap<VesselId, MigrationReport>>>,
    pub incoming: Arc<Mutex<Incoming>>,
    pub policy: MigrationPolicy,
    /// What the event loop last saw of the mesh, for placement decisions
    /// made in tasks (drain).
    pub inputs: Arc<Mutex<super::place::Inputs>>,
    /// This node's drain, once one was asked for (it then takes no vessels
    /// from placement until it restarts).
    pub drain: Arc<Mutex<Option<protocol::control::DrainReport>>>,
    /// The placement policy and its memory (event loop only).
    pub placement: crate::placement::Placement,
    /// The automatic migration in flight, if any: (vessel, destination).
    pub auto: Option<(VesselId, PeerId)>,
    /// An RTT with no new sample for this long is stale (its pings fail:
    /// a partition): placement neither uses nor gossips it.
    pub rtt_stale: Duration,
    pub ingress: Arc<super::ingress::Ingress>,
}

/// Every migration this node is receiving: the migration layer's
/// destination sessions, each with what this node keeps beside it.
pub type Incoming = Destination<PeerId, IncomingData>;

/// What the node keeps of one migration it is receiving, beside the
/// protocol's own fields (`migration::destination::Session`).
#[derive(Default)]
pub struct IncomingData {
    /// The final image, decoded and checked (final offers only).
    pub image: Option<VesselImage>,
    pub manifest: Option<Manifest>,
    /// The vessel re-created from the prepared image, not running: the
    /// commit starts it.
    pub ready: Option<Ready>,
    /// Chunks known to be in the store for this migration: everything an
    /// earlier offer of it named, once all that offer lacked had arrived.
    /// Nothing evicts them while the migration is open, so the final offer
    /// (in the pause) asks the store only about the rest.
    pub known: Arc<HashSet<Hash>>,
    /// Every chunk this offer names (known once `expected` is empty).
    pub named: Arc<HashSet<Hash>>,
    /// The vessel's memory as the last pre-copy round left it, written
    /// (from verified chunks) into a blank instance while the vessel still
    /// ran at the source, so the pause patches only what changed instead of
    /// re-reading it all and copying it into a new instance. Locked while a
    /// round's chunks are written into it, so `prepare` waits for that
    /// rather than starting over.
    pub memory: Arc<Mutex<Option<Prebuilt>>>,
}

impl VesselNet {
    pub fn new(
        host: Arc<Mutex<Host>>,
        tx: mpsc::Sender<NodeCommand>,
        ingress: Arc<super::ingress::Ingress>,
    ) -> VesselNet {
        VesselNet {
            ingress,
            host,
            tx,
            nonces: NonceBook::default(),
            pending: HashMap::new(),
            migrations: Arc::new(Mutex::new(HashMap::new())),
            incoming: Arc::new(Mutex::new(Incoming::default())),
            policy: MigrationPolicy::default(),
            inputs: Arc::new(Mutex::new(Default::default())),
            drain: Arc::new(Mutex::new(None)),
            placement: crate::placement::Placement::default(),
            auto: None,
            rtt_stale: super::place::DEFAULT_RTT_STALE,
        }
    }

    /// A fresh nonce for `peer`'s next offer.
    pub(super) fn issue(&mut self, peer: PeerId) -> Nonce {
        let mut n = [0u8; 32];
        getrandom::fill(&mut n).expect("the OS random source works");
        self.nonces.issue(peer, Nonce(n), Instant::now())
    }

    /// Spends `nonce` for an offer from `peer`.
    pub(super) fn redeem(&mut self, nonce: &Nonce, peer: &PeerId) -> Result<(), Refusal> {
        self.nonces.redeem(nonce, peer, Instant::now())
    }
}
