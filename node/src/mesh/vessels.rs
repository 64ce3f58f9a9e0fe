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
//! migration in [`Incoming`] until the source's signed commit or abort.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use protocol::control::{
    Command, ControlResponse, LogChunk, MigrationPhase, MigrationReport, PeerIdBytes, VesselInfo,
};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::ingress::{IngressRequest, IngressResponse};
use protocol::limits::{
    MAX_CHUNKS_PER_BATCH, MAX_INCOMING_MIGRATIONS, MAX_PENDING_NONCES, MIGRATION_NONCE_TTL_SECS,
};
use protocol::membership::{Nonce, PublicKey};
use protocol::migrate::{
    ChunkBytes, Decision, DecisionBody, MigrationRequest, MigrationResponse, NamedChunk, Offer,
    OfferBody, OfferKind, PEER_PROTOCOL_VERSION,
};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::{ChunkedImage, Hash, Manifest};
use protocol::vessel::{Resume, VesselId, VesselImage, VesselPlacement, VESSEL_VERSION};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::behaviour::NodeBehaviour;
use super::node::{Membership, NodeCommand, NodeState};
use crate::identity::peer_public_key;
use crate::vessel::image::{self, MemoryTracker, Prebuilt, Ready};
use crate::vessel::runner::{self, Command as RunnerCmd};
use crate::vessel::{Host, Record};

/// Pre-copy rounds at most before the final stop.
pub const MAX_WARM_ROUNDS: u32 = 4;

/// Pre-copy stops early once a round changed at most this many chunks: the
/// final round will be as small as it gets.
pub const WARM_CONVERGED_CHUNKS: usize = 16;

/// How long a pre-copy round waits for the vessel to reach the end of a
/// slice (a slice is milliseconds of work; longer means it is blocked).
pub const WARM_COPY_WAIT: Duration = Duration::from_millis(200);

/// How long a destination waits for a module's chunks to prepare it early.
pub const PREWARM_WAIT: Duration = Duration::from_secs(30);

/// Batches of chunks in flight at once.
pub const CHUNK_BATCHES_IN_FLIGHT: usize = 4;

/// How often a committed source retries a commit the destination has not
/// confirmed (it may be down; it resumes the vessel when it is back).
pub const COMMIT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Tries for a migration round's first request (a nonce) before the
/// migration is given up (the vessel stays where it is).
pub const NONCE_RETRIES: u32 = 8;

/// Eviction runs after a move out once the departed LRU holds this many
/// vessels (below it, a vessel's own older images are all there is to
/// evict, and they are evicted at the next move).
pub const MAX_DEPARTED_IMAGES_BEFORE_EVICT: usize = 1;

/// An incoming migration with no word from its source for this long is
/// dropped (its `Prepared` record stays on disk, for a late commit).
pub const INCOMING_MIGRATION_TTL: Duration = Duration::from_secs(600);

/// How long a `ps` waits for each peer.
pub const PS_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The vessel side of a node's state.
pub struct VesselNet {
    pub host: Arc<Mutex<Host>>,
    pub tx: mpsc::Sender<NodeCommand>,
    nonces: HashMap<Nonce, (PeerId, Instant)>,
    nonce_order: VecDeque<Nonce>,
    pub pending: HashMap<
        libp2p::request_response::OutboundRequestId,
        oneshot::Sender<Result<PeerResponse, RequestError>>,
    >,
    pub migrations: Arc<Mutex<HashMap<VesselId, MigrationReport>>>,
    pub incoming: Arc<Mutex<HashMap<VesselId, Incoming>>>,
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

/// One migration this node is receiving.
pub struct Incoming {
    pub from: PeerId,
    pub kind: OfferKind,
    pub epoch: u64,
    pub image_hash: Hash,
    pub image: Option<VesselImage>,
    pub manifest: Option<Manifest>,
    /// Chunks asked for and not received yet (pinned: nothing evicts them).
    pub expected: HashSet<Hash>,
    pub ready: Option<Ready>,
    pub started: Instant,
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
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            pending: HashMap::new(),
            migrations: Arc::new(Mutex::new(HashMap::new())),
            incoming: Arc::new(Mutex::new(HashMap::new())),
            policy: MigrationPolicy::default(),
            inputs: Arc::new(Mutex::new(Default::default())),
            drain: Arc::new(Mutex::new(None)),
            placement: crate::placement::Placement::default(),
            auto: None,
            rtt_stale: super::place::DEFAULT_RTT_STALE,
        }
    }

    fn issue(&mut self, peer: PeerId) -> Nonce {
        while self.nonce_order.len() >= MAX_PENDING_NONCES {
            if let Some(old) = self.nonce_order.pop_front() {
                self.nonces.remove(&old);
            }
        }
        let mut n = [0u8; 32];
        getrandom::fill(&mut n).expect("the OS random source works");
        let n = Nonce(n);
        self.nonces.insert(n, (peer, Instant::now()));
        self.nonce_order.push_back(n);
        n
    }

    fn redeem(&mut self, nonce: &Nonce, peer: &PeerId) -> Result<(), Refusal> {
        let Some((owner, at)) = self.nonces.remove(nonce) else {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "replayed offer: its nonce is unknown or already used",
            ));
        };
        self.nonce_order.retain(|n| n != nonce);
        if &owner != peer {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "replayed offer: its nonce was issued to another node",
            ));
        }
        if at.elapsed() > Duration::from_secs(MIGRATION_NONCE_TTL_SECS) {
            return Err(Refusal::new(
                RefusalCode::NonceExpired,
                format!("stale offer: its nonce is older than {MIGRATION_NONCE_TTL_SECS} s"),
            ));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a task needs to talk to peers and answer requests.
#[derive(Clone)]
pub struct Mesh {
    pub incoming: Arc<Mutex<HashMap<VesselId, Incoming>>>,
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

fn respond_control(
    tx: &mpsc::Sender<NodeCommand>,
    channel: ResponseChannel<protocol::control::ControlResponse>,
    response: ControlResponse,
) {
    let _ = tx.try_send(NodeCommand::RespondControl {
        channel,
        response: Box::new(response),
    });
}

/// A refusal, with its code, as a one-line detail: `Err(refuse(code, …))`.
fn refuse(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}

/// Member peers that are connected now.
fn member_peers(state: &NodeState) -> Vec<PeerId> {
    state
        .peers
        .iter()
        .filter(|(_, e)| e.connections > 0 && matches!(e.membership, Membership::Member(_)))
        .map(|(p, _)| *p)
        .collect()
}

// ---------------------------------------------------------------------------
// Control commands (the CLI asked this node).

/// Runs a verified user command about vessels. Answers through `channel`,
/// now or from a task.
pub fn control_command(
    state: &mut NodeState,
    user: PublicKey,
    command: Command,
    channel: ResponseChannel<ControlResponse>,
) {
    let mesh = mesh_of(state);
    let peers = member_peers(state);
    let tx = state.vessels_net.tx.clone();
    tokio::spawn(async move {
        let response = match run_control(&mesh, &peers, user, command).await {
            Ok(r) => r,
            Err(refusal) => {
                warn!("control request refused: {refusal}");
                ControlResponse::Refused(refusal)
            }
        };
        respond_control(&tx, channel, response);
    });
}

async fn run_control(
    mesh: &Mesh,
    peers: &[PeerId],
    user: PublicKey,
    command: Command,
) -> Result<ControlResponse, Refusal> {
    let command_kind = if matches!(command, Command::Pin { .. }) {
        Kind::Pin
    } else {
        Kind::Other
    };
    match command {
        Command::Deploy {
            deployment,
            module,
            volume_chunks,
            on,
            pinned,
        } => {
            deployment
                .verify()
                .map_err(|e| refuse(e.code(), e.to_string()))?;
            if deployment.user_key != user {
                return Err(refuse(
                    RefusalCode::Forged,
                    "the deployment is signed by another key than the request",
                ));
            }
            if !mesh.trusted.contains(&deployment.user_key) {
                return Err(refuse(
                    RefusalCode::Untrusted,
                    format!(
                        "untrusted deployer: user key {} is not trusted by this node",
                        deployment.user_key
                    ),
                ));
            }
            let id = deployment.body.vessel;
            let target = match on.as_deref() {
                None => mesh.me,
                Some(p) => p.parse::<PeerId>().map_err(|_| {
                    refuse(RefusalCode::BadArgument, format!("--on {p}: not a PeerId"))
                })?,
            };
            if target == mesh.me {
                let host = mesh.host.clone();
                tokio::task::spawn_blocking(move || {
                    lock(&host).deploy(
                        deployment,
                        module,
                        volume_chunks,
                        "deployed here".into(),
                        pinned,
                    )
                })
                .await
                .map_err(Refusal::internal)??;
            } else {
                mesh.forward(
                    target,
                    ForwardRequest::Deploy {
                        deployment,
                        module,
                        volume_chunks,
                        pinned,
                    },
                )
                .await?;
            }
            Ok(ControlResponse::Deployed {
                vessel: id,
                node: target.to_string(),
            })
        }
        Command::Ps => Ok(ControlResponse::Vessels(ps(mesh, peers).await)),
        Command::Logs { vessel, from } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            let page = if node == mesh.me {
                log_page(&mesh.host, id, from, &mesh.me)?
            } else {
                match mesh
                    .forward(node, ForwardRequest::Logs { vessel: id, from })
                    .await?
                {
                    ForwardResponse::Logs(p) => p,
                    other => return Err(RequestError::unexpected(node, &other).into()),
                }
            };
            Ok(ControlResponse::Logs(page))
        }
        Command::Migrate { vessel, to } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            let to_peer: PeerId = to.parse().map_err(|_| {
                refuse(
                    RefusalCode::BadArgument,
                    format!("--to {to}: not a PeerId (see `meshnode peers`)"),
                )
            })?;
            if to_peer == node {
                return Err(refuse(
                    RefusalCode::BadArgument,
                    format!("vessel {id} runs on {node} already"),
                ));
            }
            if node == mesh.me {
                start_migration(mesh, id, to_peer, &by_hand(mesh))?;
                Ok(ControlResponse::Migration(status(mesh, id)?))
            } else {
                match mesh
                    .forward(
                        node,
                        ForwardRequest::Migrate {
                            vessel: id,
                            to: PeerIdBytes(to_peer.to_bytes()),
                        },
                    )
                    .await?
                {
                    ForwardResponse::Migration(r) => Ok(ControlResponse::Migration(r)),
                    other => Err(RequestError::unexpected(node, &other).into()),
                }
            }
        }
        Command::MigrationStatus { vessel, source } => {
            let src: PeerId = source
                .parse()
                .map_err(|_| refuse(RefusalCode::BadArgument, format!("{source}: not a PeerId")))?;
            if src == mesh.me {
                Ok(ControlResponse::Migration(status(mesh, vessel)?))
            } else {
                match mesh
                    .forward(src, ForwardRequest::MigrationStatus { vessel })
                    .await?
                {
                    ForwardResponse::Migration(r) => Ok(ControlResponse::Migration(r)),
                    other => Err(RequestError::unexpected(src, &other).into()),
                }
            }
        }
        Command::Stop { vessel } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            if node == mesh.me {
                stop_local(&mesh.host, id)?;
            } else {
                mesh.forward(node, ForwardRequest::Stop { vessel: id })
                    .await?;
            }
            Ok(ControlResponse::Done)
        }
        Command::Pin { vessel } | Command::Unpin { vessel } => {
            let pinned = matches!(command_kind, Kind::Pin);
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            if node == mesh.me {
                let host = mesh.host.clone();
                tokio::task::spawn_blocking(move || super::place::set_pinned(&host, id, pinned))
                    .await
                    .map_err(Refusal::internal)??;
            } else {
                mesh.forward(node, ForwardRequest::Pin { vessel: id, pinned })
                    .await?;
            }
            Ok(ControlResponse::Done)
        }
        Command::Drain {
            node,
            include_pinned,
        } => {
            let target = node_of(mesh, &node)?;
            if target == mesh.me {
                Ok(ControlResponse::Drain(super::place::start_drain(
                    mesh,
                    include_pinned,
                )))
            } else {
                match mesh
                    .forward(target, ForwardRequest::Drain { include_pinned })
                    .await?
                {
                    ForwardResponse::Drain(r) => Ok(ControlResponse::Drain(r)),
                    other => Err(RequestError::unexpected(target, &other).into()),
                }
            }
        }
        Command::DrainStatus { node } => {
            let target = node_of(mesh, &node)?;
            if target == mesh.me {
                Ok(ControlResponse::Drain(super::place::drain_report(mesh)?))
            } else {
                match mesh.forward(target, ForwardRequest::DrainStatus).await? {
                    ForwardResponse::Drain(r) => Ok(ControlResponse::Drain(r)),
                    other => Err(RequestError::unexpected(target, &other).into()),
                }
            }
        }
        other => Err(refuse(
            RefusalCode::Internal,
            format!("not a vessel command: {other:?}"),
        )),
    }
}

/// Which kind of pin command (the variants share their body).
enum Kind {
    Pin,
    Other,
}

/// The node a user named: a PeerId, or `self` for the node the CLI talks to.
fn node_of(mesh: &Mesh, node: &str) -> Result<PeerId, Refusal> {
    match node.trim() {
        "self" | "" => Ok(mesh.me),
        n => n.parse().map_err(|_| {
            refuse(
                RefusalCode::BadArgument,
                format!("`{n}` is not a PeerId (see `meshnode peers`), nor `self`"),
            )
        }),
    }
}

fn status(mesh: &Mesh, id: VesselId) -> Result<MigrationReport, Refusal> {
    lock(&mesh.migrations).get(&id).cloned().ok_or_else(|| {
        refuse(
            RefusalCode::NoMigration,
            format!("no migration of vessel {id} was started on this node"),
        )
    })
}

fn stop_local(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<(), Refusal> {
    let mut h = lock(host);
    let l = h.vessels.get_mut(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    if l.migrating {
        return Err(refuse(
            RefusalCode::Busy,
            format!("vessel {id} is migrating; stop it when it has arrived"),
        ));
    }
    let Record::Owned { epoch, image } = l.record.clone() else {
        return Err(refuse(
            RefusalCode::NotOwner,
            format!("vessel {id} does not run on this node"),
        ));
    };
    if let Some(r) = &l.runner {
        let _ = r.send(RunnerCmd::Stop);
    }
    l.stopped = true;
    let record = Record::Ended {
        epoch,
        image,
        exit: "stopped".into(),
        code: None,
    };
    l.record = record.clone();
    h.write_record(id, &record)?;
    info!(vessel = %id, "stopped by a user");
    Ok(())
}

fn log_page(
    host: &Arc<Mutex<Host>>,
    id: VesselId,
    from: u64,
    me: &PeerId,
) -> Result<LogChunk, Refusal> {
    let h = lock(host);
    let l = h.vessels.get(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    let page = lock(&l.log).page(from);
    let end = lock(&l.log).end();
    let ended = match (&l.record, l.ended()) {
        (Record::Left { .. }, _) => None,
        (_, Some((exit, _))) if page.next >= end => Some(exit),
        _ => None,
    };
    Ok(LogChunk {
        start: page.start,
        from: page.from,
        next: page.next,
        records: page.records,
        ended,
        node: me.to_string(),
    })
}

/// Every vessel in the mesh: this node's and each member peer's, one row
/// per vessel (the highest epoch wins; a node it left says `left`).
pub async fn ps(mesh: &Mesh, peers: &[PeerId]) -> Vec<VesselInfo> {
    let mut rows = {
        let mut h = lock(&mesh.host);
        h.reap();
        h.list()
    };
    let asks = peers.iter().map(|p| {
        let mesh = mesh.clone();
        let p = *p;
        async move {
            tokio::time::timeout(PS_PEER_TIMEOUT, mesh.forward(p, ForwardRequest::Vessels)).await
        }
    });
    for r in futures::future::join_all(asks).await {
        if let Ok(Ok(ForwardResponse::Vessels(v))) = r {
            rows.extend(v);
        }
    }
    merge_rows(rows)
}

/// One row per vessel: the highest epoch; at equal epochs, the node that
/// does not say `left`.
pub fn merge_rows(rows: Vec<VesselInfo>) -> Vec<VesselInfo> {
    let mut best: BTreeMap<VesselId, VesselInfo> = BTreeMap::new();
    for r in rows {
        let better = match best.get(&r.id) {
            None => true,
            Some(b) => {
                (r.epoch, r.state != "left" && r.state != "waiting")
                    > (b.epoch, b.state != "left" && b.state != "waiting")
            }
        };
        if better {
            best.insert(r.id, r);
        }
    }
    best.into_values().collect()
}

/// Finds a vessel by reference across the mesh: its id and the node that
/// has it now.
async fn resolve(
    mesh: &Mesh,
    peers: &[PeerId],
    reference: &str,
) -> Result<(VesselId, PeerId), Refusal> {
    let rows = ps(mesh, peers).await;
    let id = crate::vessel::find_in(rows.iter().map(|r| (r.id, r.name.as_str())), reference)
        .ok_or_else(|| {
            refuse(RefusalCode::UnknownVessel, format!("no vessel `{reference}` in the mesh (or the name is ambiguous; use the id from `meshnode ps`)"))
        })?;
    let row = rows.iter().find(|r| r.id == id).expect("found");
    let node: PeerId = row.node.parse().map_err(|_| {
        refuse(
            RefusalCode::Internal,
            format!("vessel {id}: bad node id {}", row.node),
        )
    })?;
    Ok((id, node))
}

// ---------------------------------------------------------------------------
// The destination side: requests from peers.

/// Answers one request from a peer. Only members are served.
pub fn serve_peer(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: PeerRequest,
    channel: ResponseChannel<PeerResponse>,
) {
    let member = state
        .peers
        .get(&peer)
        .is_some_and(|e| matches!(e.membership, Membership::Member(_)));
    if !member {
        let refusal = refuse(
            RefusalCode::NotMember,
            "not a member of this mesh: this node serves vessels to members only",
        );
        warn!(%peer, "vessel request refused: {refusal}");
        let _ = swarm
            .behaviour_mut()
            .vessel
            .send_response(channel, PeerResponse::Refused(refusal));
        return;
    }
    let send_now = |swarm: &mut Swarm<NodeBehaviour>, channel, response: PeerResponse| {
        if let PeerResponse::Refused(refusal) = &response {
            warn!(%peer, "vessel request refused: {refusal}");
        }
        let _ = swarm
            .behaviour_mut()
            .vessel
            .send_response(channel, response);
    };
    match request {
        PeerRequest::Migration(MigrationRequest::Nonce) => {
            let n = state.vessels_net.issue(peer);
            send_now(swarm, channel, MigrationResponse::Nonce(n).into());
        }
        PeerRequest::Migration(MigrationRequest::Offer { offer, image }) => {
            // Checked here, in order, before any work: the signature (made
            // by the connection's own key), the addressee, the nonce.
            if let Err(refusal) = check_offer(state, peer, &offer, &image) {
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let mesh = mesh_of(state);
            let incoming = state.vessels_net.incoming.clone();
            let tx = state.vessels_net.tx.clone();
            let next_nonce = state.vessels_net.issue(peer);
            tokio::task::spawn_blocking(move || {
                let warm = (offer.body.kind == OfferKind::Warm)
                    .then(|| protocol::cbor::decode::<Vec<ChunkedImage>>(&image).ok())
                    .flatten();
                let (vessel, epoch) = (offer.body.vessel, offer.body.epoch);
                let (kind, t0) = (offer.body.kind, Instant::now());
                let response = match accept_offer(&mesh, &incoming, peer, offer, image, next_nonce)
                {
                    Ok(r) => PeerResponse::Migration(r),
                    Err(refusal) => {
                        warn!(%peer, "offer refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let accepted = matches!(
                    response,
                    PeerResponse::Migration(MigrationResponse::Lacking { .. })
                );
                tracing::debug!(
                    vessel = %vessel,
                    ?kind,
                    accept_us = t0.elapsed().as_micros() as u64,
                    "offer checked"
                );
                let _ = tx.blocking_send(NodeCommand::RespondPeer { channel, response });
                // While the chunks arrive, get the module ready, so the
                // pause does not pay for instrumenting and compiling it.
                if let (true, Some(images)) = (accepted, warm) {
                    let module = images.get(1).and_then(|m| prewarm(&mesh.host, m));
                    if let (Some(mem), Some(module)) = (images.first(), module) {
                        prebuild_memory(&mesh.host, &incoming, peer, vessel, epoch, mem, module);
                    }
                }
            });
        }
        PeerRequest::Ingress(IngressRequest::Ingress(frame)) => {
            if let Err(e) = frame.check() {
                let refusal = refuse(e.code(), format!("ingress frame: {e}"));
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let host = state.vessels_net.host.clone();
            let tx = state.vessels_net.tx.clone();
            tokio::task::spawn_blocking(move || {
                let reply = super::ingress::host_take(&host, peer, &frame);
                let _ = tx.blocking_send(NodeCommand::RespondPeer {
                    channel,
                    response: IngressResponse::Ingress(reply).into(),
                });
            });
        }
        PeerRequest::Ingress(IngressRequest::Egress(frame)) => {
            if let Err(e) = frame.check() {
                let refusal = refuse(e.code(), format!("egress frame: {e}"));
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let ingress = state.vessels_net.ingress.clone();
            let tx = state.vessels_net.tx.clone();
            tokio::spawn(async move {
                let response = match super::ingress::entry_write(&ingress, peer, frame).await {
                    Ok(r) => IngressResponse::Egress(r).into(),
                    Err(refusal) => {
                        warn!(%peer, "egress refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let _ = tx
                    .send(NodeCommand::RespondPeer { channel, response })
                    .await;
            });
        }
        other => {
            let mesh = mesh_of(state);
            let incoming = state.vessels_net.incoming.clone();
            let tx = state.vessels_net.tx.clone();
            tokio::spawn(async move {
                let response = match serve_async(&mesh, &incoming, peer, other).await {
                    Ok(r) => r,
                    Err(refusal) => {
                        warn!(%peer, "vessel request refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let _ = tx
                    .send(NodeCommand::RespondPeer { channel, response })
                    .await;
            });
        }
    }
}

/// Waits (bounded) for a module's chunks to arrive, then prepares it.
fn prewarm(
    host: &Arc<Mutex<Host>>,
    module: &ChunkedImage,
) -> Option<Arc<crate::vessel::PreparedModule>> {
    let store = lock(host).store.clone();
    let deadline = Instant::now() + PREWARM_WAIT;
    while module.chunks.iter().flatten().any(|h| !store.has_chunk(h)) {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let bytes = crate::store::get_image(&store, module, protocol::limits::MAX_MODULE_BYTES).ok()?;
    Host::prewarm_module(host, bytes)
}

/// Writes a pre-copy round's memory image into the migration's blank
/// instance (made on the first round) once its chunks are here, off the
/// pause: only the chunks whose names changed since the last round.
fn prebuild_memory(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    vessel: VesselId,
    epoch: u64,
    image: &ChunkedImage,
    module: Arc<crate::vessel::PreparedModule>,
) {
    let store = lock(host).store.clone();
    let deadline = Instant::now() + PREWARM_WAIT;
    while image.chunks.iter().flatten().any(|h| !store.has_chunk(h)) {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(slot) = lock(incoming)
        .get(&vessel)
        .filter(|s| s.from == peer && s.epoch == epoch)
        .map(|s| s.memory.clone())
    else {
        return;
    };
    let mut prebuilt = lock(&slot);
    if prebuilt
        .as_ref()
        .is_none_or(|p| !Arc::ptr_eq(&p.module, &module))
    {
        *prebuilt = Prebuilt::new(module).ok();
    }
    if let Some(p) = prebuilt.as_mut() {
        if let Err(e) = p.patch(&store, image) {
            warn!(vessel = %vessel, "cannot build the incoming memory ahead: {e}");
            *prebuilt = None;
        }
    }
    drop(prebuilt);
    // This round's chunks made durable now, while the vessel still runs at
    // the source, so that `prepare`, in the pause, syncs only what came
    // after.
    if let Err(e) = store.sync_written() {
        warn!(vessel = %vessel, "cannot sync the store: {e}");
    }
}

fn check_offer(
    state: &mut NodeState,
    peer: PeerId,
    offer: &Offer,
    image: &[u8],
) -> Result<(), Refusal> {
    let b = &offer.body;
    if b.version != PEER_PROTOCOL_VERSION {
        return Err(refuse(
            RefusalCode::Version,
            format!(
                "offer version {}, this node speaks {PEER_PROTOCOL_VERSION}",
                b.version
            ),
        ));
    }
    let key = peer_public_key(&peer).ok_or_else(|| {
        refuse(
            RefusalCode::Forged,
            "the source's PeerId is not an ed25519 key",
        )
    })?;
    offer
        .verify(&key)
        .map_err(|e| refuse(RefusalCode::Forged, format!("forged offer: {e}")))?;
    if b.source.0 != peer.to_bytes() {
        return Err(refuse(
            RefusalCode::Forged,
            "forged offer: it names another node as its source",
        ));
    }
    if b.destination.0 != state.identity.peer_id.to_bytes() {
        return Err(refuse(
            RefusalCode::Misdirected,
            "misdirected offer: it names another node as its destination",
        ));
    }
    state.vessels_net.redeem(&b.nonce, &peer)?;
    if Hash::of(image) != b.image {
        return Err(refuse(
            RefusalCode::Tampered,
            "the image does not hash to what the offer names",
        ));
    }
    Ok(())
}

/// Decodes and checks an offered image and answers the chunks this node
/// lacks. Runs off the event loop (hashing, store lookups).
fn accept_offer(
    mesh: &Mesh,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    offer: Offer,
    image_bytes: Vec<u8>,
    next_nonce: Nonce,
) -> Result<MigrationResponse, Refusal> {
    let b = offer.body;
    let id = b.vessel;
    let known_chunks: Arc<HashSet<Hash>> = {
        let mut inc = lock(incoming);
        // A migration whose source went quiet (it aborted and the abort
        // was lost, or it died before its commit) is forgotten in time.
        inc.retain(|_, s| s.started.elapsed() < INCOMING_MIGRATION_TTL);
        if inc.len() >= MAX_INCOMING_MIGRATIONS && !inc.contains_key(&id) {
            return Err(refuse(
                RefusalCode::Busy,
                format!(
                    "this node receives {MAX_INCOMING_MIGRATIONS} migrations already; retry later"
                ),
            ));
        }
        match inc
            .get(&id)
            .filter(|s| s.from == peer && s.epoch == b.epoch)
        {
            Some(s) if s.expected.is_empty() => {
                let mut k = (*s.known).clone();
                k.extend(s.named.iter().copied());
                Arc::new(k)
            }
            Some(s) => s.known.clone(),
            None => Default::default(),
        }
    };
    let host = lock(&mesh.host);
    let known = host.vessels.get(&id).map(|l| l.record.clone());
    if let Some(r) = &known {
        if b.epoch <= r.epoch() {
            return Err(refuse(
                RefusalCode::StaleEpoch,
                format!(
                    "stale epoch: offer for epoch {}, this node knows vessel {id} at epoch {}",
                    b.epoch,
                    r.epoch()
                ),
            ));
        }
    }
    let (lacking, image, manifest, named) = match b.kind {
        OfferKind::Warm => {
            let images: Vec<ChunkedImage> = protocol::cbor::decode(&image_bytes)
                .map_err(|e| refuse(RefusalCode::Invalid, format!("warm image: {e}")))?;
            let mut all: Vec<Hash> = images
                .iter()
                .flat_map(|i| i.chunks.iter().flatten().copied())
                .collect();
            all.sort();
            all.dedup();
            let named: HashSet<Hash> = all.iter().copied().collect();
            all.retain(|h| !known_chunks.contains(h) && !host.store.has_chunk(h));
            (all, None, None, named)
        }
        OfferKind::Final => {
            let image: VesselImage = protocol::cbor::decode(&image_bytes)
                .map_err(|e| refuse(RefusalCode::Invalid, format!("image: {e}")))?;
            image
                .check()
                .map_err(|e| refuse(e.code(), format!("image: {e}")))?;
            if image.vessel() != id || image.epoch != b.epoch {
                return Err(refuse(
                    RefusalCode::Invalid,
                    "the image names another vessel or epoch than the offer",
                ));
            }
            image
                .deployment
                .verify()
                .map_err(|e| refuse(e.code(), format!("vessel {id}: {e}")))?;
            if !mesh.trusted.contains(&image.deployment.user_key) {
                return Err(refuse(RefusalCode::Untrusted, format!(
                    "untrusted deployer: vessel {id} was deployed by user key {}, which this node does not trust",
                    image.deployment.user_key
                )));
            }
            host.check_capacity(id)?;
            let manifest = match &image.resume {
                Resume::Snapshot(h) => {
                    if Hash::of(&image.manifest) != *h {
                        return Err(refuse(
                            RefusalCode::Tampered,
                            "the image's manifest does not hash to its name",
                        ));
                    }
                    let m: Manifest = protocol::cbor::decode(&image.manifest)
                        .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
                    m.check()
                        .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
                    Some(m)
                }
                Resume::Fresh => None,
            };
            let lacking = image::lacking(&host.store, &image, manifest.as_ref(), &known_chunks);
            (lacking, Some(image), manifest, HashSet::new())
        }
    };
    drop(host);
    let mut inc = lock(incoming);
    // A later round of the same migration keeps what earlier rounds built.
    let memory = inc
        .get(&id)
        .filter(|s| s.from == peer && s.epoch == b.epoch)
        .map_or_else(Default::default, |s| s.memory.clone());
    inc.insert(
        id,
        Incoming {
            memory,
            from: peer,
            kind: b.kind,
            epoch: b.epoch,
            image_hash: b.image,
            image,
            manifest,
            expected: lacking.iter().copied().collect(),
            ready: None,
            started: Instant::now(),
            known: known_chunks,
            named: Arc::new(named),
        },
    );
    Ok(MigrationResponse::Lacking {
        chunks: lacking,
        next_nonce,
    })
}

/// Answers a request that is not the event loop's to answer, off the loop.
async fn serve_async(
    mesh: &Mesh,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    request: PeerRequest,
) -> Result<PeerResponse, Refusal> {
    match request {
        PeerRequest::Migration(m) => Ok(serve_migration(mesh, incoming, peer, m).await?.into()),
        PeerRequest::Forward(f) => Ok(serve_forward(mesh, peer, f).await?.into()),
        PeerRequest::Ingress(_) => Err(refuse(RefusalCode::Internal, "handled by the event loop")),
    }
}

/// The destination side of a migration: chunks, prepare, commit, abort.
async fn serve_migration(
    mesh: &Mesh,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    request: MigrationRequest,
) -> Result<MigrationResponse, Refusal> {
    let key = peer_public_key(&peer).ok_or_else(|| {
        refuse(
            RefusalCode::Forged,
            "the peer's PeerId is not an ed25519 key",
        )
    })?;
    match request {
        MigrationRequest::Chunks {
            vessel,
            epoch,
            chunks,
        } => {
            let incoming = incoming.clone();
            let store = lock(&mesh.host).store.clone();
            tokio::task::spawn_blocking(move || {
                let expected: HashSet<Hash> = {
                    let inc = lock(&incoming);
                    let s = inc
                        .get(&vessel)
                        .filter(|s| s.from == peer && s.epoch == epoch)
                        .ok_or_else(|| refuse(RefusalCode::NoMigration, format!("no migration of vessel {vessel} at epoch {epoch} from this node is in progress")))?;
                    chunks
                        .iter()
                        .filter(|c| s.expected.contains(&c.hash))
                        .map(|c| c.hash)
                        .collect()
                };
                for c in &chunks {
                    // A batch sent again (its answer was lost) finds its
                    // chunks stored already: nothing to do for those.
                    if !expected.contains(&c.hash) && store.has_chunk(&c.hash) {
                        continue;
                    }
                    if !expected.contains(&c.hash) {
                        return Err(refuse(
                            RefusalCode::UnexpectedChunk,
                            format!("chunk {} was not asked for by this migration", c.hash),
                        ));
                    }
                    store
                        .put_chunk_expecting(&c.hash, &c.bytes.0)
                        .map_err(|_| {
                            refuse(
                                RefusalCode::Tampered,
                                format!(
                                    "tampered chunk: its content does not hash to its name {}",
                                    c.hash
                                ),
                            )
                        })?;
                }
                let mut inc = lock(&incoming);
                if let Some(s) = inc.get_mut(&vessel) {
                    for c in &chunks {
                        s.expected.remove(&c.hash);
                    }
                }
                Ok(MigrationResponse::Stored {
                    count: chunks.len() as u32,
                })
            })
            .await
            .map_err(Refusal::internal)?
        }
        MigrationRequest::Prepare { vessel, epoch } => {
            let incoming = incoming.clone();
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || prepare(&host, &incoming, peer, vessel, epoch))
                .await
                .map_err(Refusal::internal)?
        }
        MigrationRequest::Commit(decision) => {
            decision
                .verify(&key)
                .map_err(|e| refuse(RefusalCode::Forged, format!("forged commit: {e}")))?;
            let d = &decision.body;
            if d.source.0 != peer.to_bytes() || d.destination.0 != mesh.me.to_bytes() || !d.commit {
                return Err(refuse(
                    RefusalCode::Forged,
                    "forged commit: wrong source, destination or decision",
                ));
            }
            let incoming = incoming.clone();
            let host = mesh.host.clone();
            let body = decision.body.clone();
            tokio::task::spawn_blocking(move || commit(&host, &incoming, peer, &body))
                .await
                .map_err(Refusal::internal)?
        }
        MigrationRequest::Abort(decision) => {
            decision
                .verify(&key)
                .map_err(|e| refuse(RefusalCode::Forged, format!("forged abort: {e}")))?;
            let d = &decision.body;
            if d.source.0 != peer.to_bytes() || d.commit {
                return Err(refuse(
                    RefusalCode::Forged,
                    "forged abort: wrong source or decision",
                ));
            }
            let mut inc = lock(incoming);
            if inc
                .get(&d.vessel)
                .is_some_and(|s| s.from == peer && s.epoch == d.epoch)
            {
                inc.remove(&d.vessel);
            }
            drop(inc);
            let mut h = lock(&mesh.host);
            if let Some(Record::Prepared { epoch, .. }) =
                h.vessels.get(&d.vessel).map(|l| l.record.clone())
            {
                if epoch == d.epoch {
                    h.vessels.remove(&d.vessel);
                }
            }
            let dir = h.vessel_dir(d.vessel).join("record.cbor");
            if let Ok(bytes) = std::fs::read(&dir) {
                if let Ok(Record::Prepared { epoch, .. }) = protocol::cbor::decode::<Record>(&bytes)
                {
                    if epoch == d.epoch {
                        let _ = std::fs::remove_file(&dir);
                    }
                }
            }
            info!(vessel = %d.vessel, epoch = d.epoch, "migration aborted by its source");
            Ok(MigrationResponse::Aborted)
        }
        MigrationRequest::Nonce | MigrationRequest::Offer { .. } => {
            Err(refuse(RefusalCode::Internal, "handled by the event loop"))
        }
    }
}

/// A control command another member forwarded here (it checked the user).
async fn serve_forward(
    mesh: &Mesh,
    peer: PeerId,
    request: ForwardRequest,
) -> Result<ForwardResponse, Refusal> {
    match request {
        ForwardRequest::Deploy {
            deployment,
            module,
            volume_chunks,
            pinned,
        } => {
            deployment
                .verify()
                .map_err(|e| refuse(e.code(), e.to_string()))?;
            if !mesh.trusted.contains(&deployment.user_key) {
                return Err(refuse(
                    RefusalCode::Untrusted,
                    format!(
                        "untrusted deployer: user key {} is not trusted by this node",
                        deployment.user_key
                    ),
                ));
            }
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || {
                lock(&host).deploy(
                    deployment,
                    module,
                    volume_chunks,
                    format!("deployed here through {peer}"),
                    pinned,
                )
            })
            .await
            .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Deployed)
        }
        ForwardRequest::Vessels => {
            let mut h = lock(&mesh.host);
            h.reap();
            Ok(ForwardResponse::Vessels(h.list()))
        }
        ForwardRequest::Logs { vessel, from } => Ok(ForwardResponse::Logs(log_page(
            &mesh.host, vessel, from, &mesh.me,
        )?)),
        ForwardRequest::Stop { vessel } => {
            stop_local(&mesh.host, vessel)?;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Migrate { vessel, to } => {
            let to = PeerId::from_bytes(&to.0)
                .map_err(|_| refuse(RefusalCode::BadArgument, "--to: not a PeerId"))?;
            start_migration(mesh, vessel, to, &by_hand(mesh))?;
            Ok(ForwardResponse::Migration(status(mesh, vessel)?))
        }
        ForwardRequest::MigrationStatus { vessel } => {
            Ok(ForwardResponse::Migration(status(mesh, vessel)?))
        }
        ForwardRequest::Pin { vessel, pinned } => {
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || super::place::set_pinned(&host, vessel, pinned))
                .await
                .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Drain { include_pinned } => Ok(ForwardResponse::Drain(
            super::place::start_drain(mesh, include_pinned),
        )),
        ForwardRequest::DrainStatus => {
            Ok(ForwardResponse::Drain(super::place::drain_report(mesh)?))
        }
    }
}

/// Everything is here: write the image durably, re-create the vessel (not
/// running), and record `Prepared`.
fn prepare(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    vessel: VesselId,
    epoch: u64,
) -> Result<MigrationResponse, Refusal> {
    fault_point("dest-prepare");
    let t0 = Instant::now();
    let (image, manifest, image_hash, warm_memory) = {
        let inc = lock(incoming);
        let s = inc
            .get(&vessel)
            .filter(|s| s.from == peer && s.epoch == epoch && s.kind == OfferKind::Final)
            .ok_or_else(|| {
                refuse(
                    RefusalCode::NoMigration,
                    format!("no final offer of vessel {vessel} at epoch {epoch} from this node"),
                )
            })?;
        if !s.expected.is_empty() {
            return Err(refuse(
                RefusalCode::MissingChunks,
                format!("{} chunks are still missing", s.expected.len()),
            ));
        }
        (
            s.image.clone().expect("final offers carry an image"),
            s.manifest.is_some(),
            s.image_hash,
            s.memory.clone(),
        )
    };
    // Waits for a pre-copy round still being written into it.
    let prebuilt = lock(&warm_memory).take();
    let mut h = lock(host);
    // Pair assertion with the offer: every chunk the image names is here
    // (those known to be here since the pre-copy rounds are not asked
    // again).
    let still = {
        let inc = lock(incoming);
        let s = inc.get(&vessel);
        image::lacking(
            &h.store,
            &image,
            s.and_then(|s| s.manifest.as_ref()),
            s.map_or(&HashSet::new(), |s| &*s.known),
        )
    };
    if !still.is_empty() {
        return Err(refuse(
            RefusalCode::MissingChunks,
            format!("{} chunks are missing from the store", still.len()),
        ));
    }
    let t_checked = t0.elapsed();
    // Manifest and image written, then made durable with every chunk this
    // migration stored and no sync covered yet (the pre-copy rounds' chunks
    // were synced during those rounds, off the pause): one fsync per such
    // file and per directory they were renamed into, not a `syncfs`, which
    // would wait for every dirty page of the disk (docs/protocol.md, "What
    // is durable before `Prepared`").
    if manifest {
        h.store
            .put_manifest_bytes_unsynced(&image.manifest)
            .map_err(Refusal::internal)?;
    }
    let (bytes, found) = image.encode_and_hash();
    debug_assert_eq!(found, image_hash);
    h.store
        .put_image_doc(&bytes, false)
        .map_err(Refusal::internal)?;
    let t_written = t0.elapsed();
    let unsynced = h.store.unsynced_count();
    // The fsyncs run beside the rest of `prepare` (memory, vessel, the
    // `Prepared` record), so that the disk's waits overlap. A `Prepared`
    // record that reaches the disk before the chunks do is harmless: this
    // node answers `Prepared` only once both are durable, and the source
    // never commits without that answer (a lone `Prepared` record is never
    // run, and is dropped on `Abort` or a newer offer).
    let sync_store = h.store.clone();
    let (synced, rest) = std::thread::scope(|scope| {
        let sync = scope.spawn(move || (sync_store.sync_written(), t0.elapsed()));
        let rest = (|| -> Result<(Ready, bool, Duration, Duration), Refusal> {
            // The memory the pre-copy rounds built, patched to the final
            // image: only the chunks that changed since are read and
            // written.
            let final_memory = lock(incoming)
                .get(&vessel)
                .and_then(|s| s.manifest.as_ref().map(|m| m.memory.clone()));
            let memory = match (prebuilt, &final_memory) {
                (Some(mut p), Some(m)) => match p.patch(&h.store, m) {
                    Ok(_) => Some(p),
                    Err(e) => {
                        warn!(vessel = %vessel, "the memory built ahead does not patch: {e}");
                        None
                    }
                },
                _ => None,
            };
            let t_patched = t0.elapsed();
            // Pair assertion (debug builds): the patched memory is exactly
            // what the manifest names, chunk by chunk.
            #[cfg(debug_assertions)]
            if let (Some(p), Some(m)) = (&memory, &final_memory) {
                let mem = p.memory();
                assert_eq!(mem.len() as u64, m.size_bytes, "patched memory size");
                let cs = protocol::snapshot::CHUNK_SIZE_BYTES as usize;
                for (i, c) in m.chunks.iter().enumerate() {
                    let chunk = &mem[i * cs..((i + 1) * cs).min(mem.len())];
                    let want = c.unwrap_or_else(|| Hash::of(chunk));
                    let found = if c.is_none() && chunk.iter().all(|&b| b == 0) {
                        want
                    } else {
                        Hash::of(chunk)
                    };
                    assert_eq!(found, want, "patched memory differs at chunk {i}");
                }
            }
            let prebuilt = memory.is_some();
            let ready = image::ready_with_memory(&mut h, &image, memory)?;
            let t_ready = t0.elapsed();
            h.write_record(
                vessel,
                &Record::Prepared {
                    epoch,
                    image: image_hash,
                    from: peer.to_bytes(),
                },
            )?;
            Ok((ready, prebuilt, t_patched, t_ready))
        })();
        (sync.join(), rest)
    });
    let (synced, t_synced) = synced.map_err(|_| Refusal::internal("the sync thread panicked"))?;
    synced.map_err(Refusal::internal)?;
    let (ready, prebuilt, t_patched, t_ready) = rest?;
    tracing::debug!(
        vessel = %vessel,
        checked_us = t_checked.as_micros() as u64,
        written_us = t_written.as_micros() as u64,
        synced_us = t_synced.as_micros() as u64,
        patched_us = t_patched.as_micros() as u64,
        ready_us = t_ready.as_micros() as u64,
        recorded_us = t0.elapsed().as_micros() as u64,
        prebuilt,
        unsynced_files = unsynced,
        "prepare phases"
    );
    if let Some(s) = lock(incoming).get_mut(&vessel) {
        s.ready = Some(ready);
    }
    Ok(MigrationResponse::Prepared)
}

/// The source committed: run the prepared vessel under the new epoch.
/// Idempotent: a repeated commit of what already runs answers `Committed`.
fn commit(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<HashMap<VesselId, Incoming>>>,
    peer: PeerId,
    d: &DecisionBody,
) -> Result<MigrationResponse, Refusal> {
    fault_point("dest-commit");
    let mut h = lock(host);
    if let Some(l) = h.vessels.get(&d.vessel) {
        match &l.record {
            Record::Owned { epoch, image } | Record::Ended { epoch, image, .. }
                if *epoch == d.epoch && *image == d.image =>
            {
                return Ok(MigrationResponse::Committed);
            }
            r if r.epoch() >= d.epoch && !matches!(r, Record::Prepared { .. }) => {
                return Err(refuse(
                    RefusalCode::StaleEpoch,
                    format!(
                        "stale epoch: commit for epoch {}, this node knows vessel {} at epoch {}",
                        d.epoch,
                        d.vessel,
                        r.epoch()
                    ),
                ));
            }
            _ => {}
        }
    }
    let session = lock(incoming).remove(&d.vessel);
    let (image, ready) = match session {
        Some(s) if s.from == peer && s.epoch == d.epoch && s.image_hash == d.image => {
            (s.image.expect("final"), s.ready)
        }
        other => {
            // This node restarted after it prepared: the image is on disk.
            if let Some(s) = other {
                lock(incoming).insert(d.vessel, s);
            }
            let record = std::fs::read(h.vessel_dir(d.vessel).join("record.cbor"))
                .ok()
                .and_then(|b| protocol::cbor::decode::<Record>(&b).ok());
            match record {
                Some(Record::Prepared { epoch, image, .. })
                    if epoch == d.epoch && image == d.image =>
                {
                    let bytes = h.store.get_image_doc(&image).map_err(Refusal::internal)?;
                    let img: VesselImage =
                        protocol::cbor::decode(&bytes).map_err(Refusal::internal)?;
                    (img, None)
                }
                _ => {
                    return Err(refuse(
                        RefusalCode::NoMigration,
                        format!(
                            "nothing prepared for vessel {} at epoch {}",
                            d.vessel, d.epoch
                        ),
                    ))
                }
            }
        }
    };
    let record = Record::Owned {
        epoch: d.epoch,
        image: d.image,
    };
    h.write_record(d.vessel, &record)?;
    let reason = if image.placement.last_move.is_empty() {
        format!("migrated here from {peer}")
    } else {
        image.placement.last_move.clone()
    };
    h.start_from_image(image, record, reason, ready)?;
    if let Some(l) = h.vessels.get_mut(&d.vessel) {
        l.last_move = Some(Instant::now());
    }
    info!(vessel = %d.vessel, epoch = d.epoch, "migration committed: running here");
    Ok(MigrationResponse::Committed)
}

// ---------------------------------------------------------------------------
// The source side.

fn set_report(mesh: &Mesh, id: VesselId, f: impl FnOnce(&mut MigrationReport)) {
    if let Some(r) = lock(&mesh.migrations).get_mut(&id) {
        f(r);
    }
}

/// A placement note as it travels: one line, bounded.
fn note(why: &str) -> String {
    let mut n: String = why.lines().next().unwrap_or("").to_string();
    if n.len() > protocol::limits::MAX_PLACEMENT_NOTE_BYTES {
        let mut cut = protocol::limits::MAX_PLACEMENT_NOTE_BYTES;
        while !n.is_char_boundary(cut) {
            cut -= 1;
        }
        n.truncate(cut);
    }
    n
}

/// The note of a move a user asked for.
fn by_hand(mesh: &Mesh) -> String {
    format!("migrated here by hand from {}", mesh.me)
}

/// Starts moving a vessel that runs here to `to`, in a task. `why` travels
/// with it: the destination's `ps` shows it as how the vessel got there.
pub fn start_migration(mesh: &Mesh, id: VesselId, to: PeerId, why: &str) -> Result<(), Refusal> {
    {
        let mut h = lock(&mesh.host);
        let l = h.vessels.get_mut(&id).ok_or_else(|| {
            refuse(
                RefusalCode::UnknownVessel,
                format!("vessel {id} is not on this node"),
            )
        })?;
        if l.migrating {
            return Err(refuse(
                RefusalCode::Busy,
                format!("vessel {id} is migrating already"),
            ));
        }
        if !matches!(l.record, Record::Owned { .. }) || l.ended().is_some() || l.runner.is_none() {
            return Err(refuse(
                RefusalCode::NotOwner,
                format!("vessel {id} is not running on this node"),
            ));
        }
        l.migrating = true;
    }
    lock(&mesh.migrations).insert(
        id,
        MigrationReport {
            vessel: id,
            from: mesh.me.to_string(),
            to: to.to_string(),
            phase: MigrationPhase::Warming,
            rounds: 0,
            bytes_sent: 0,
            chunks_sent: 0,
            chunks_skipped: 0,
            downtime_us: None,
            total_ms: 0,
            error: None,
        },
    );
    let mesh = mesh.clone();
    let why = why.to_string();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = migrate(&mesh, id, to, &why).await;
        let total_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                set_report(&mesh, id, |r| {
                    r.phase = MigrationPhase::Done;
                    r.total_ms = total_ms;
                });
                info!(vessel = %id, %to, total_ms, "migration done");
            }
            Err(e) => {
                warn!(vessel = %id, %to, "migration aborted: {e}");
                set_report(&mesh, id, |r| {
                    r.phase = MigrationPhase::Aborted;
                    r.error = Some(e);
                    r.total_ms = total_ms;
                });
            }
        }
        if let Some(l) = lock(&mesh.host).vessels.get_mut(&id) {
            l.migrating = false;
        }
    });
    Ok(())
}

/// Offers an image and returns the chunks the destination lacks. `nonce`
/// holds the nonce the destination gave with its last answer (used once,
/// then replaced by the one this answer brings); without one, it asks.
/// What an offer is for.
#[derive(Debug, Clone, Copy)]
struct OfferSpec {
    to: PeerId,
    kind: OfferKind,
    id: VesselId,
    epoch: u64,
}

async fn offer(
    mesh: &Mesh,
    to: PeerId,
    kind: OfferKind,
    id: VesselId,
    epoch: u64,
    image: Vec<u8>,
    nonce: &mut Option<Nonce>,
) -> Result<Vec<Hash>, RequestError> {
    let cached = nonce.take();
    let had_cached = cached.is_some();
    let spec = OfferSpec {
        to,
        kind,
        id,
        epoch,
    };
    match offer_attempt(mesh, spec, image.clone(), 0, cached).await {
        Ok((chunks, next)) => {
            *nonce = Some(next);
            Ok(chunks)
        }
        // A kept nonce may have expired (a long round): ask for a new one.
        Err(e)
            if had_cached
                && matches!(
                    e.refusal_code(),
                    Some(RefusalCode::NonceExpired | RefusalCode::Replayed)
                ) =>
        {
            let (chunks, next) = offer_attempt(mesh, spec, image, 0, None).await?;
            *nonce = Some(next);
            Ok(chunks)
        }
        Err(e) => Err(e),
    }
}

async fn offer_attempt(
    mesh: &Mesh,
    spec: OfferSpec,
    image: Vec<u8>,
    attempt: u32,
    cached: Option<Nonce>,
) -> Result<(Vec<Hash>, Nonce), RequestError> {
    let OfferSpec {
        to,
        kind,
        id,
        epoch,
    } = spec;
    // The first request of a round may hit a connection that died with a
    // restarted peer (closed within the QUIC idle timeout): try again on
    // another before giving up. Nothing has happened yet, so a retry is
    // safe.
    let mut tries = 0;
    let nonce = loop {
        if let Some(n) = cached {
            break n;
        }
        match mesh.migration(to, MigrationRequest::Nonce).await {
            Ok(MigrationResponse::Nonce(n)) => break n,
            Ok(other) => return Err(RequestError::unexpected(to, &other)),
            // A refusal is final; anything else (a connection that died
            // with a restarted peer) is worth another try.
            Err(e) if tries < NONCE_RETRIES && e.refusal_code().is_none() => {
                tries += 1;
                warn!(vessel = %id, %to, "no nonce yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let body = OfferBody {
        version: PEER_PROTOCOL_VERSION,
        kind,
        vessel: id,
        epoch,
        image: Hash::of(&image),
        source: PeerIdBytes(mesh.me.to_bytes()),
        destination: PeerIdBytes(to.to_bytes()),
        nonce,
    };
    let offer = Offer::sign(&mesh.signing, body);
    match mesh
        .migration_once(
            to,
            MigrationRequest::Offer {
                offer,
                image: image.clone(),
            },
        )
        .await
    {
        Ok(MigrationResponse::Lacking { chunks, next_nonce }) => Ok((chunks, next_nonce)),
        Ok(other) => Err(RequestError::unexpected(to, &other)),
        // The offer may or may not have arrived; a new nonce makes a new
        // offer, which replaces the old one at the destination.
        Err(e) if e.is_transport() && attempt < TRANSPORT_RETRIES && !mesh.fail_fast => {
            warn!(vessel = %id, %to, "offer lost ({e}); offering again");
            tokio::time::sleep(Duration::from_millis(300)).await;
            Box::pin(offer_attempt(mesh, spec, image, attempt + 1, None)).await
        }
        Err(e) => Err(e),
    }
}

/// Sends the chunks `lacking` names (read from the store), a few batches in
/// flight. Returns bytes sent.
async fn send_chunks(
    mesh: &Mesh,
    to: PeerId,
    id: VesselId,
    epoch: u64,
    lacking: Vec<Hash>,
    fresh: Option<&Fresh>,
) -> Result<u64, String> {
    let store = lock(&mesh.host).store.clone();
    let fresh = fresh.cloned();
    let batches: Vec<Vec<Hash>> = lacking
        .chunks(MAX_CHUNKS_PER_BATCH)
        .map(|c| c.to_vec())
        .collect();
    let mut sends = futures::stream::iter(batches.into_iter().map(|batch| {
        let store = store.clone();
        let mesh = mesh.clone();
        let fresh = fresh.clone();
        async move {
            let chunks = tokio::task::spawn_blocking(move || {
                batch
                    .iter()
                    .map(|h| {
                        // Hashed from these very bytes in the pause.
                        if let Some(bytes) = fresh.as_ref().and_then(|f| f.get(h)) {
                            return Ok(NamedChunk {
                                hash: *h,
                                bytes: ChunkBytes(bytes.clone()),
                            });
                        }
                        store.get_chunk(h).map(|bytes| NamedChunk {
                            hash: *h,
                            bytes: ChunkBytes(bytes),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let bytes: u64 = chunks.iter().map(|c| c.bytes.0.len() as u64).sum();
            let n = chunks.len() as u64;
            mesh.migration(
                to,
                MigrationRequest::Chunks {
                    vessel: id,
                    epoch,
                    chunks,
                },
            )
            .await?;
            set_report(&mesh, id, |r| {
                r.bytes_sent += bytes;
                r.chunks_sent += n;
            });
            Ok::<u64, String>(bytes)
        }
    }))
    .buffer_unordered(CHUNK_BATCHES_IN_FLIGHT);
    let mut total = 0;
    while let Some(r) = sends.next().await {
        total += r?;
    }
    Ok(total)
}

/// The chunks of a final round that are sent from memory (and stored
/// beside the sending).
type Fresh = Arc<HashMap<Hash, Vec<u8>>>;

fn store_fresh(store: &crate::store::ChunkStore, fresh: &Fresh) -> Result<(), String> {
    for bytes in fresh.values() {
        store.put_chunk(bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits for the final round's chunks to be stored; if that failed, tries
/// once more (an abort resumes the vessel from them).
async fn finish_storing(
    store: &crate::store::ChunkStore,
    stored: tokio::task::JoinHandle<Result<(), String>>,
    fresh: &Fresh,
) {
    if matches!(stored.await, Ok(Ok(()))) {
        return;
    }
    let (s, fresh) = (store.clone(), fresh.clone());
    let again = tokio::task::spawn_blocking(move || store_fresh(&s, &fresh)).await;
    if !matches!(again, Ok(Ok(()))) {
        warn!("cannot store the final round's chunks: {again:?}");
    }
}

/// Every chunk the images name, but those sent already in this migration
/// (the no-deduplication baseline).
fn all_chunks(images: &[&ChunkedImage], more: &[Hash], sent: &HashSet<Hash>) -> Vec<Hash> {
    let mut all: Vec<Hash> = images
        .iter()
        .flat_map(|i| i.chunks.iter().flatten().copied())
        .chain(more.iter().copied())
        .filter(|h| !sent.contains(h))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Moves vessel `id` to `to`: pre-copy rounds while it runs, then the final
/// round while it is paused, then the commit. Any failure before the commit
/// resumes the vessel here.
async fn migrate(mesh: &Mesh, id: VesselId, to: PeerId, why: &str) -> Result<(), String> {
    let (epoch, module, module_image, guests, log, vdir, runner_ok) = {
        let mut h = lock(&mesh.host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        let epoch = l.record.epoch();
        let image_hash = l.record.image();
        let guests: Vec<String> = l
            .deployment
            .body
            .volumes
            .iter()
            .map(|v| v.guest.clone())
            .collect();
        let log = l.log.clone();
        let runner_ok = l.runner.is_some();
        let bytes = h
            .store
            .get_image_doc(&image_hash)
            .map_err(|e| e.to_string())?;
        let img: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
        let module_bytes =
            crate::store::get_image(&h.store, &img.module, protocol::limits::MAX_MODULE_BYTES)
                .map_err(|e| e.to_string())?;
        let module = h.module(module_bytes, &img.deployment.body.name)?;
        (
            epoch,
            module,
            img.module,
            guests,
            log,
            h.vessel_dir(id),
            runner_ok,
        )
    };
    if !runner_ok {
        return Err("the vessel is not running".into());
    }
    let store = lock(&mesh.host).store.clone();
    let send_cmd = |cmd: RunnerCmd| -> Result<(), String> {
        let h = lock(&mesh.host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        l.runner.as_ref().ok_or("not running")?.send(cmd)
    };
    let new_epoch = epoch + 1;
    let tracker = Arc::new(Mutex::new(MemoryTracker::default()));
    // Every chunk sent during this migration.
    let mut sent: HashSet<Hash> = HashSet::new();
    // The destination's nonce for our next offer.
    let mut nonce: Option<Nonce> = None;

    // Pre-copy: the vessel keeps running.
    for round in 0..mesh.policy.warm_rounds.min(MAX_WARM_ROUNDS) {
        let (tx, rx) = oneshot::channel();
        send_cmd(RunnerCmd::CopyMemory(tx))?;
        // A vessel that waits in a blocking call (a sleep, a socket) does
        // not reach the end of its slice: its memory does not change while
        // it waits, so go straight to the final round, which interrupts the
        // wait.
        let memory = match tokio::time::timeout(WARM_COPY_WAIT, rx).await {
            Ok(m) => m.map_err(|_| "the vessel ended before it could move")?,
            Err(_) => break,
        };
        let (t, s) = (tracker.clone(), store.clone());
        let changed = tokio::task::spawn_blocking(move || lock(&t).update(&s, &memory))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mem_image = lock(&tracker).image.clone();
        let warm = protocol::cbor::encode(&vec![mem_image.clone(), module_image.clone()]);
        let mut lacking = offer(mesh, to, OfferKind::Warm, id, new_epoch, warm, &mut nonce).await?;
        if !mesh.policy.dedup {
            lacking = all_chunks(&[&mem_image, &module_image], &[], &sent);
        }
        sent.extend(lacking.iter().copied());
        send_chunks(mesh, to, id, new_epoch, lacking, None).await?;
        set_report(mesh, id, |r| r.rounds = round + 1);
        if round > 0 && changed <= WARM_CONVERGED_CHUNKS {
            break;
        }
    }

    // Final round: pause at the next migration point.
    set_report(mesh, id, |r| r.phase = MigrationPhase::Final);
    let (tx, rx) = oneshot::channel();
    send_cmd(RunnerCmd::Pause(tx))?;
    let paused = rx
        .await
        .map_err(|_| "the vessel ended before it could move".to_string())??;
    let paused_at = paused.at;
    let final_image = {
        let (t, s) = (tracker.clone(), store.clone());
        let module = module.clone();
        let module_image = module_image.clone();
        let guests = guests.clone();
        let log = log.clone();
        let vdir = vdir.clone();
        let deployment = lock(&mesh.host).vessels.get(&id).map(|l| {
            (
                l.deployment.clone(),
                l.migrations,
                l.run_ms(),
                VesselPlacement {
                    pinned: l.pinned,
                    last_move: note(why),
                },
            )
        });
        let (deployment, migrations, run_ms, placement) = deployment.ok_or("vessel gone")?;
        // The vessel is paused: its hub takes no more client bytes (entries
        // keep them and send them to wherever the vessel runs next).
        let hub = lock(&mesh.host)
            .hubs
            .get(&id)
            .map(|h| h.freeze_and_export())
            .unwrap_or_default();
        type Packed = (VesselImage, runner::Paused, Fresh);
        tokio::task::spawn_blocking(move || -> Result<Packed, String> {
            if fault_active("pack-fails") {
                return Err("fault injection: packing the paused vessel failed".into());
            }
            let mut t = lock(&t);
            // The paused instance's own memory, compared in place with
            // what was last sent: no copy of the whole memory here. The
            // changed chunks are sent from memory and stored meanwhile.
            let fresh = Arc::new(t.update_final_unstored(paused.vessel.memory()));
            let manifest =
                image::manifest_of(&module, &module_image, &paused.capture, t.image.clone())?;
            let (mbytes, mh) = manifest.encode_and_hash();
            let dirs = image::volume_dirs(&vdir, guests.len());
            let volumes = guests
                .iter()
                .zip(&dirs)
                .map(|(g, d)| image::pack_volume(&s, d, g))
                .collect::<Result<Vec<_>, _>>()?;
            let log = image::pack_log(&s, &lock(&log))?;
            Ok((
                VesselImage {
                    version: VESSEL_VERSION,
                    deployment,
                    epoch: new_epoch,
                    resume: Resume::Snapshot(mh),
                    module: module_image,
                    manifest: mbytes,
                    volumes,
                    log,
                    migrations: migrations + 1,
                    run_ms,
                    placement,
                    hub,
                },
                paused,
                fresh,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let (final_image, paused, fresh) = match final_image {
        Ok(v) => v,
        Err(e) => {
            // Before the commit point, so the vessel must run on here. Its
            // paused instance went with the failed packing (a disk error):
            // it continues from its last durable image, as after a crash.
            warn!(vessel = %id, "cannot pack the paused vessel ({e}); it continues from its last image here");
            restart_from_record(mesh, id)?;
            return Err(e);
        }
    };
    // The final round's changed chunks go to this node's store while the
    // offer is on its way (an abort resumes the vessel from the store, and
    // a return trip deduplicates against it).
    let stored = {
        let (s, fresh) = (store.clone(), fresh.clone());
        tokio::task::spawn_blocking(move || store_fresh(&s, &fresh))
    };
    let (image_bytes, image_hash) = final_image.encode_and_hash();
    // Pair assertion with the destination's check of the same hash.
    debug_assert_eq!(Hash::of(&image_bytes), image_hash);
    // Kept (not synced) so `ps` and `logs` still know the vessel after a
    // restart; the commit needs only the record.
    if let Err(e) = store.put_image_doc(&image_bytes, false) {
        warn!(vessel = %id, "cannot keep its image: {e}");
    }

    let t_packed = paused_at.elapsed();
    let mut t_offered = Duration::ZERO;
    let mut t_sent = Duration::ZERO;
    // From here to the commit point the vessel is stopped: a request that
    // fails aborts the move rather than retrying a peer that may be dead.
    let paused_mesh = Mesh {
        fail_fast: true,
        ..mesh.clone()
    };
    let sent: Result<(), String> = async {
        let mesh = &paused_mesh;
        let lacking = offer(
            mesh,
            to,
            OfferKind::Final,
            id,
            new_epoch,
            image_bytes.clone(),
            &mut nonce,
        )
        .await?;
        t_offered = paused_at.elapsed();
        let manifest: Manifest =
            protocol::cbor::decode(&final_image.manifest).map_err(|e| e.to_string())?;
        let lacking = if mesh.policy.dedup {
            lacking
        } else {
            all_chunks(
                &[&manifest.memory, &module_image],
                &final_image.own_chunks(),
                &sent,
            )
        };
        sent.extend(lacking.iter().copied());
        send_chunks(mesh, to, id, new_epoch, lacking, Some(&fresh)).await?;
        t_sent = paused_at.elapsed();
        // Skipped: chunks of the image that the destination had before this
        // migration began (earlier visits, other vessels, the same module).
        let mut needed: HashSet<Hash> = final_image.own_chunks().into_iter().collect();
        needed.extend(manifest.memory.chunks.iter().flatten().copied());
        let skipped = needed.iter().filter(|h| !sent.contains(h)).count() as u64;
        set_report(mesh, id, |r| r.chunks_skipped = skipped);
        match mesh
            .migration(
                to,
                MigrationRequest::Prepare {
                    vessel: id,
                    epoch: new_epoch,
                },
            )
            .await?
        {
            MigrationResponse::Prepared => Ok(()),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
    .await;
    let decision = |commit: bool| {
        Decision::sign(
            &mesh.signing,
            DecisionBody {
                version: PEER_PROTOCOL_VERSION,
                vessel: id,
                epoch: new_epoch,
                image: image_hash,
                source: PeerIdBytes(mesh.me.to_bytes()),
                destination: PeerIdBytes(to.to_bytes()),
                commit,
            },
        )
    };
    if let Err(e) = sent {
        // Before the commit point: the vessel stays here, and runs again
        // before the destination hears of the abort (it never runs a
        // prepared vessel without the commit, which will not come now).
        finish_storing(&store, stored, &fresh).await;
        resume_here(mesh, id, final_image)?;
        let (m, abort) = (mesh.clone(), MigrationRequest::Abort(decision(false)));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), m.migration(to, abort)).await;
        });
        return Err(e);
    }

    // The commit point.
    let t_prepared = paused_at.elapsed();
    fault_point("before-commit");
    let committed: Result<(), String> = {
        let mut h = lock(&mesh.host);
        let record = Record::Left {
            epoch: new_epoch,
            image: image_hash,
            to: to.to_bytes(),
            acked: false,
        };
        match h.write_record(id, &record) {
            Err(e) => Err(format!("cannot write the commit record: {e}")),
            Ok(()) => {
                // Its clients' bytes go to the destination from now on.
                if let Some(hub) = h.hubs.remove(&id) {
                    hub.stop();
                }
                if let Some(l) = h.vessels.get_mut(&id) {
                    l.record = record;
                    l.runner = None;
                    l.run_ms_before = final_image.run_ms;
                    l.migrations = final_image.migrations;
                }
                h.remember_departed(id, image_hash);
                Ok(())
            }
        }
    };
    if let Err(e) = committed {
        let _ = mesh
            .migration(to, MigrationRequest::Abort(decision(false)))
            .await;
        finish_storing(&store, stored, &fresh).await;
        resume_here(mesh, id, final_image)?;
        return Err(e);
    }
    set_report(mesh, id, |r| r.phase = MigrationPhase::Committed);
    fault_point("after-commit-record");
    // Its traffic now enters towards the new host, which keeps its own book.
    lock(&mesh.host).traffic.forget(id);
    let t_recorded = paused_at.elapsed();
    // Downtime ends when the destination says the vessel runs there (its
    // thread has started); the source's own bookkeeping after that is not
    // downtime.
    let acked_at = send_commit(mesh, id, to, decision(true)).await;
    let downtime = acked_at.duration_since(paused_at);
    // Freeing the spent instance's memory takes milliseconds: after the
    // pause, off the async runtime. The chunks this migration stored here
    // are made durable now too, so that if the vessel comes back, the
    // pause of that migration does not have to sync them.
    finish_storing(&store, stored, &fresh).await;
    let memory_bytes = paused.vessel.memory().len() as u64;
    tokio::task::spawn_blocking(move || {
        drop(paused);
        if let Err(e) = store.sync_written() {
            warn!(vessel = %id, "cannot sync the store: {e}");
        }
    });
    tracing::debug!(
        vessel = %id,
        memory_bytes = memory_bytes,
        packed_us = t_packed.as_micros() as u64,
        offered_us = t_offered.as_micros() as u64,
        sent_us = t_sent.as_micros() as u64,
        prepared_us = t_prepared.as_micros() as u64,
        recorded_us = t_recorded.as_micros() as u64,
        committed_us = downtime.as_micros() as u64,
        "pause phases (from the pause)"
    );
    set_report(mesh, id, |r| {
        r.downtime_us = Some(downtime.as_micros() as u64)
    });
    Ok(())
}

/// Sends the commit until the destination confirms, then records that.
/// Returns when the confirmation arrived.
pub async fn send_commit(mesh: &Mesh, id: VesselId, to: PeerId, decision: Decision) -> Instant {
    let acked_at;
    loop {
        match mesh
            .migration(to, MigrationRequest::Commit(decision.clone()))
            .await
        {
            Ok(MigrationResponse::Committed) => {
                acked_at = Instant::now();
                break;
            }
            Ok(other) => warn!(vessel = %id, %to, "commit answered {other:?}; retrying"),
            Err(e) => warn!(vessel = %id, %to, "commit not confirmed yet ({e}); retrying"),
        }
        tokio::time::sleep(COMMIT_RETRY_INTERVAL).await;
    }
    let mut h = lock(&mesh.host);
    if h.departed.len() >= MAX_DEPARTED_IMAGES_BEFORE_EVICT {
        // Bounded: evict what the LRU no longer keeps (never while a
        // migration is arriving: its chunks are not in an image yet).
        let busy = h.vessels.iter().any(|(v, l)| *v != id && l.migrating);
        if !busy && lock(&mesh.incoming).is_empty() {
            let n = h.evict();
            if n > 0 {
                info!("evicted {n} chunks that no kept image names");
            }
        }
    }
    let Some(l) = h.vessels.get_mut(&id) else {
        return acked_at;
    };
    if let Record::Left {
        epoch, image, to, ..
    } = l.record.clone()
    {
        if epoch == decision.body.epoch {
            let record = Record::Left {
                epoch,
                image,
                to,
                acked: true,
            };
            l.record = record.clone();
            let _ = h.write_record(id, &record);
        }
    }
    acked_at
}

/// An aborted migration: the vessel runs on here, from the image of the
/// capture taken for it (its memory chunks are in the store already; no
/// step of the program is lost or repeated).
fn resume_here(mesh: &Mesh, id: VesselId, image: VesselImage) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let record = l.record.clone();
    let reason = l.reason.clone();
    // The image's manifest must be in the local store to resume from it.
    h.store
        .put_manifest_bytes(&image.manifest)
        .map_err(|e| e.to_string())?;
    let mut image = image;
    // Still the old epoch: nothing was committed.
    image.epoch = record.epoch();
    image.migrations = image.migrations.saturating_sub(1);
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())?;
    info!(vessel = %id, "migration aborted: the vessel runs on here");
    Ok(())
}

/// Runs a vessel again from the image its record names (as a restart of
/// the node would), when the instance it ran in is gone.
fn restart_from_record(mesh: &Mesh, id: VesselId) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let (record, reason) = (l.record.clone(), l.reason.clone());
    let bytes = h
        .store
        .get_image_doc(&record.image())
        .map_err(|e| e.to_string())?;
    let image: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())
}

/// Test-only fault injection: whether `MESHNODE_FAULT` names `point` (a
/// step that then fails instead of exiting the node).
fn fault_active(point: &str) -> bool {
    std::env::var("MESHNODE_FAULT").is_ok_and(|f| f == point)
}

/// Test-only fault injection: `MESHNODE_FAULT=<point>` makes the node exit
/// at that point of the migration protocol, as if it crashed there. The
/// fault tests use it to kill a node at an exact step.
pub fn fault_point(point: &str) {
    if std::env::var("MESHNODE_FAULT").is_ok_and(|f| f == point) {
        eprintln!("meshnode: fault injection: exiting at {point}");
        std::process::exit(86);
    }
}

/// At start-up: resume every vessel this node owns from its last durable
/// image, list the ones that ended here, and finish commits that were
/// decided but not confirmed (the destination resumes the vessel when it
/// hears the commit, however late).
pub fn recover(state: &NodeState) {
    let mesh = mesh_of(state);
    let records = lock(&mesh.host).read_records();
    for (id, record) in records {
        // A committed move is finished first, image or not: the
        // destination holds everything it needs.
        if let Record::Left {
            epoch,
            image: ih,
            to,
            acked: false,
        } = &record
        {
            if let Ok(to) = PeerId::from_bytes(to) {
                let decision = Decision::sign(
                    &mesh.signing,
                    DecisionBody {
                        version: PEER_PROTOCOL_VERSION,
                        vessel: id,
                        epoch: *epoch,
                        image: *ih,
                        source: PeerIdBytes(mesh.me.to_bytes()),
                        destination: PeerIdBytes(to.to_bytes()),
                        commit: true,
                    },
                );
                info!(vessel = %id, %to, "finishing a commit decided before the restart");
                let m = mesh.clone();
                tokio::spawn(async move {
                    send_commit(&m, id, to, decision).await;
                });
            }
        }
        let mut h = lock(&mesh.host);
        let image = match h.store.get_image_doc(&record.image()) {
            Ok(bytes) => match protocol::cbor::decode::<VesselImage>(&bytes) {
                Ok(i) => i,
                Err(e) => {
                    warn!(vessel = %id, "its image does not decode: {e}");
                    continue;
                }
            },
            Err(e) => {
                if !matches!(record, Record::Left { .. }) {
                    warn!(vessel = %id, "its image is missing: {e}");
                }
                continue;
            }
        };
        match &record {
            Record::Owned { .. } => {
                match h.start_from_image(
                    image,
                    record.clone(),
                    "resumed after a restart".into(),
                    None,
                ) {
                    Ok(()) => {
                        info!(vessel = %id, epoch = record.epoch(), "resumed after a restart")
                    }
                    Err(e) => warn!(vessel = %id, "cannot resume: {e}"),
                }
            }
            Record::Ended { .. } | Record::Left { .. } => {
                let log = match crate::store::get_image(
                    &h.store,
                    &image.log.content,
                    protocol::limits::MAX_LOG_BYTES,
                ) {
                    Ok(bytes) => crate::vessel::log::VesselLog {
                        start: image.log.start_offset,
                        bytes,
                    },
                    Err(_) => Default::default(),
                };
                h.vessels.insert(
                    id,
                    crate::vessel::Local {
                        deployment: image.deployment.clone(),
                        record: record.clone(),
                        log: Arc::new(Mutex::new(log)),
                        runner: None,
                        migrations: image.migrations,
                        run_ms_before: image.run_ms,
                        started: Instant::now(),
                        reason: "known from before a restart".into(),
                        migrating: false,
                        stopped: matches!(&record, Record::Ended { exit, .. } if exit == "stopped"),
                        pinned: image.placement.pinned,
                        last_move: None,
                        why: String::new(),
                    },
                );
                if matches!(&record, Record::Left { .. }) {
                    h.remember_departed(id, record.image());
                }
            }
            // Waits for its source's commit (see `commit`), never runs alone.
            Record::Prepared { .. } => {}
        }
    }
}

/// How long a clean stop waits for one vessel to reach a migration point.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// At a clean stop (Ctrl-C, SIGTERM): every vessel running here is paused
/// at its next migration point and written down as a durable image, so the
/// next start resumes it exactly there. One that cannot be paused in time
/// resumes from its last durable image instead, as after a crash.
pub async fn checkpoint_all(host: &Arc<Mutex<Host>>) {
    let ids: Vec<VesselId> = lock(host)
        .vessels
        .iter()
        .filter(|(_, l)| {
            matches!(l.record, Record::Owned { .. })
                && !l.migrating
                && l.runner.as_ref().is_some_and(|r| r.exit().is_none())
        })
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        match tokio::time::timeout(CHECKPOINT_TIMEOUT, checkpoint(host, id)).await {
            Ok(Ok(())) => info!(vessel = %id, "checkpointed: the next start continues it here"),
            Ok(Err(e)) => {
                warn!(vessel = %id, "cannot checkpoint it ({e}); the next start resumes it from its last image")
            }
            Err(_) => warn!(
                vessel = %id,
                "it did not reach a migration point within {} s; the next start resumes it from its last image",
                CHECKPOINT_TIMEOUT.as_secs()
            ),
        }
    }
}

async fn checkpoint(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    {
        let h = lock(host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        l.runner
            .as_ref()
            .ok_or("not running")?
            .send(RunnerCmd::Pause(tx))?;
    }
    let paused = rx
        .await
        .map_err(|_| "the vessel ended first".to_string())??;
    let host = host.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut h = lock(&host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        let epoch = l.record.epoch();
        let deployment = l.deployment.clone();
        let (migrations, run_ms) = (l.migrations, l.run_ms());
        let pinned = l.pinned;
        let log = l.log.clone();
        let old = h
            .store
            .get_image_doc(&l.record.image())
            .map_err(|e| e.to_string())?;
        let old: VesselImage = protocol::cbor::decode(&old).map_err(|e| e.to_string())?;
        let module_bytes =
            crate::store::get_image(&h.store, &old.module, protocol::limits::MAX_MODULE_BYTES)
                .map_err(|e| e.to_string())?;
        let module = h.module(module_bytes, &deployment.body.name)?;
        let store = h.store.clone();
        let mut tracker = MemoryTracker::default();
        tracker
            .update_final(&store, paused.vessel.memory())
            .map_err(|e| e.to_string())?;
        let manifest = image::manifest_of(&module, &old.module, &paused.capture, tracker.image)?;
        let (mbytes, mh) = manifest.encode_and_hash();
        let dirs = image::volume_dirs(&h.vessel_dir(id), deployment.body.volumes.len());
        let volumes = deployment
            .body
            .volumes
            .iter()
            .zip(&dirs)
            .map(|(v, d)| image::pack_volume(&store, d, &v.guest))
            .collect::<Result<Vec<_>, _>>()?;
        let log = image::pack_log(&store, &lock(&log))?;
        let hub = h
            .hubs
            .get(&id)
            .map(|h| h.freeze_and_export())
            .unwrap_or_default();
        let img = VesselImage {
            version: VESSEL_VERSION,
            deployment,
            epoch,
            resume: Resume::Snapshot(mh),
            module: old.module,
            manifest: mbytes.clone(),
            volumes,
            log,
            migrations,
            run_ms,
            placement: VesselPlacement {
                pinned,
                last_move: old.placement.last_move.clone(),
            },
            hub,
        };
        let (bytes, ih) = img.encode_and_hash();
        store
            .put_manifest_bytes_unsynced(&mbytes)
            .map_err(|e| e.to_string())?;
        store
            .put_image_doc(&bytes, false)
            .map_err(|e| e.to_string())?;
        store.sync().map_err(|e| e.to_string())?;
        h.write_record(id, &Record::Owned { epoch, image: ih })
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}
