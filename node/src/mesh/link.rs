//! The request/await link to peers: a task sends a request through the
//! event loop ([`NodeCommand`]) and awaits its answer, with the retry rule
//! for requests whose connection failed. It knows nothing of the node's
//! vessels, and uses no other module of `mesh/`.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use protocol::control::{ControlResponse, PeerInfo};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::ingress::{IngressRequest, IngressResponse};
use protocol::migrate::{MigrationRequest, MigrationResponse};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use tokio::sync::{mpsc, oneshot};

/// What the rest of a node (dock, migration, placement) can ask the mesh's
/// event loop while it runs: the only way a task reaches the swarm.
#[derive(Debug)]
pub enum NodeCommand {
    /// The peer table, as `meshnode peers --all` shows it.
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// Send a request to a peer on the vessel protocol; the answer (or why
    /// there is none) goes to `reply`.
    PeerRequest {
        peer: PeerId,
        request: Box<PeerRequest>,
        reply: oneshot::Sender<Result<PeerResponse, RequestError>>,
    },
    /// Deliver a control answer that a task prepared.
    RespondControl {
        channel: ResponseChannel<ControlResponse>,
        response: Box<ControlResponse>,
    },
    /// Deliver a vessel-protocol answer that a task prepared.
    RespondPeer {
        channel: ResponseChannel<PeerResponse>,
        response: PeerResponse,
    },
}

/// Requests sent to peers whose answers the event loop has not delivered
/// yet, each with where its answer goes (event loop only).
pub type PendingRequests =
    HashMap<OutboundRequestId, oneshot::Sender<Result<PeerResponse, RequestError>>>;

/// A task's link to peers, through the event loop. It knows nothing of the
/// node's state.
#[derive(Clone)]
pub struct Link {
    pub tx: mpsc::Sender<NodeCommand>,
    /// Give up at the first transport error instead of retrying on a new
    /// connection: set for the requests a migration sends while its vessel
    /// is paused, where a dead destination would otherwise keep the vessel
    /// stopped through every retry's dial timeout (16–18 s in testnet's
    /// faults scenario). Giving up there is safe: before the commit point
    /// the vessel runs on at the source.
    pub fail_fast: bool,
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

/// A member whose last round-trip sample is older than this is not counted
/// as in reach (pings every few seconds; a partition stops them).
pub const MEMBER_RTT_FRESH_MS: u64 = 10_000;

/// Tries of an idempotent request whose connection failed.
pub const TRANSPORT_RETRIES: u32 = 4;

/// An ingress frame unanswered this long (plus its bytes' time at
/// [`FRAME_RESEND_BYTES_PER_S`]) is sent again beside the first
/// ([`Link::ingress_hedged`]). A frame's answer needs no work but a copy,
/// so on a LAN or a WAN of a few hundred ms a second is long past an
/// answer that is on its way; a copy sent early costs one frame's bytes.
pub const FRAME_RESEND_AFTER: Duration = Duration::from_secs(1);

/// The rate a frame's bytes are assumed to cross at, at worst, before a
/// copy is sent: a frame of up to 16 segments of 256 KiB (4 MiB, a host's
/// egress) waits 4 s more than an empty one, so a slow link is not sent
/// copies of a frame that is still on its way (each would add its bytes).
pub const FRAME_RESEND_BYTES_PER_S: u64 = 1024 * 1024;

/// How long a copy of `request` waits for the one before it.
fn resend_wait(request: &IngressRequest) -> Duration {
    let bytes: usize = match request {
        IngressRequest::Ingress(f) => f.segments.iter().map(|s| s.data.len()).sum(),
        IngressRequest::Egress(f) => f.segments.iter().map(|s| s.data.len()).sum(),
    };
    FRAME_RESEND_AFTER + Duration::from_millis(bytes as u64 * 1000 / FRAME_RESEND_BYTES_PER_S)
}

/// Most copies of one ingress frame in flight at once: four per client
/// connection (entry) or per vessel (host's pump) at most, while a copy sent on a fresh request
/// finds a working connection with probability 1 - (1/2)^3 when one of a
/// peer's two connections is stuck.
pub const MAX_FRAME_COPIES: usize = 4;

impl Link {
    pub fn new(tx: mpsc::Sender<NodeCommand>) -> Link {
        Link {
            tx,
            fail_fast: false,
        }
    }

    /// This link, giving up at the first transport error.
    pub fn failing_fast(&self) -> Link {
        Link {
            fail_fast: true,
            ..self.clone()
        }
    }

    /// Sends one request to `peer` and waits for the answer, trying again
    /// (on another connection) when the connection failed. Every request
    /// but an offer is idempotent; an offer spends its nonce, so a failed
    /// offer is retried by the source side (`migrate::offer`) with a fresh one.
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

    /// A migration request (retried as [`Link::request`] does); answers the
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

    /// [`Link::migration`], tried once (an offer spends its nonce).
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

    /// The members this node is connected to and has a fresh round-trip
    /// time for, nearest first (a lease's voters are chosen from them).
    pub async fn members_by_rtt(&self) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(NodeCommand::Peers(reply)).await.is_err() {
            return Vec::new();
        }
        let mut members: Vec<(u64, PeerId)> = rx
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.member && p.rtt_age_ms.is_some_and(|a| a < MEMBER_RTT_FRESH_MS))
            .filter_map(|p| Some((p.rtt_us?, p.peer_id.parse().ok()?)))
            .collect();
        members.sort();
        members.into_iter().map(|(_, p)| p).collect()
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

    /// An ingress frame (client or vessel bytes, which the receiver takes
    /// by offset, so a copy is harmless) sent to `peer`, and sent again as
    /// a new request beside the first while none is answered: every
    /// [`FRAME_RESEND_AFTER`] (more for a large frame), at most
    /// [`MAX_FRAME_COPIES`] in flight. The
    /// first answer wins; an error is returned only once every copy failed.
    ///
    /// Why: a request rides one of the peer's connections, and a QUIC
    /// connection can stay open for seconds after its peer dropped it. A
    /// link that flaps inflates QUIC's RTT estimate, and an endpoint waits
    /// at least three probe timeouts of silence before it closes the
    /// connection (RFC 9000 §10.1): in testnet's flapping scenario a frame
    /// sent on such a connection waited 11.8 s, 8.8 s after the peer had
    /// closed its end, and the client's request timed out. A new request is
    /// given a connection afresh, so a copy can take the peer's other,
    /// working connection.
    pub async fn ingress_hedged(
        &self,
        peer: PeerId,
        request: IngressRequest,
    ) -> Result<IngressResponse, RequestError> {
        let wait = resend_wait(&request);
        let mut asks = FuturesUnordered::new();
        asks.push(self.ingress_once(peer, request.clone()));
        let mut resend = Box::pin(tokio::time::sleep(wait));
        loop {
            tokio::select! {
                Some(answer) = asks.next() => match answer {
                    Ok(r) => return Ok(r),
                    Err(e) if asks.is_empty() => return Err(e),
                    // Another copy may still arrive.
                    Err(_) => {}
                },
                () = &mut resend => {
                    if asks.len() < MAX_FRAME_COPIES {
                        asks.push(self.ingress_once(peer, request.clone()));
                    }
                    resend.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }

    /// Every peer this node knows, as `peers` lists them (membership,
    /// round-trip time and its age, liveness): a leased vessel's keeper
    /// changes its voter set by it (`mesh::lease::reconfigure`).
    pub async fn peer_infos(&self) -> Vec<PeerInfo> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(NodeCommand::Peers(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ingress::{EgressFrame, EgressReply};
    use protocol::vessel::VesselId;

    /// The next ingress request the link sent, with its answer's sender.
    async fn next_ask(
        rx: &mut mpsc::Receiver<NodeCommand>,
    ) -> oneshot::Sender<Result<PeerResponse, RequestError>> {
        match rx.recv().await.expect("the link is open") {
            NodeCommand::PeerRequest { request, reply, .. } => {
                assert!(matches!(*request, PeerRequest::Ingress(_)));
                reply
            }
            other => panic!("not a peer request: {other:?}"),
        }
    }

    fn egress() -> IngressRequest {
        IngressRequest::Egress(EgressFrame {
            vessel: VesselId([7; 8]),
            epoch: 1,
            segments: Vec::new(),
        })
    }

    fn answer() -> PeerResponse {
        PeerResponse::Ingress(IngressResponse::Egress(EgressReply { conns: Vec::new() }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_stuck_on_a_dead_connection_is_answered_through_a_copy() {
        let (tx, mut rx) = mpsc::channel(16);
        let link = Link::new(tx);
        let peer = PeerId::random();
        let asked = tokio::spawn(async move { link.ingress_hedged(peer, egress()).await });
        let stuck = next_ask(&mut rx).await;
        let start = tokio::time::Instant::now();
        let copy = next_ask(&mut rx).await;
        assert_eq!(
            start.elapsed(),
            FRAME_RESEND_AFTER,
            "the copy goes after the wait"
        );
        copy.send(Ok(answer())).unwrap();
        let got = asked.await.unwrap();
        assert!(matches!(got, Ok(IngressResponse::Egress(_))), "{got:?}");
        drop(stuck);
    }

    #[test]
    fn a_large_frame_waits_longer_before_its_copy() {
        let seg = |n| protocol::ingress::OutSegment {
            conn: 1,
            at: 0,
            data: vec![0; n],
            fin: false,
            closed: false,
        };
        let frame = |segments| {
            IngressRequest::Egress(EgressFrame {
                vessel: VesselId([7; 8]),
                epoch: 1,
                segments,
            })
        };
        assert_eq!(resend_wait(&egress()), FRAME_RESEND_AFTER);
        let big = frame(vec![seg(1 << 20), seg(1 << 20)]);
        assert_eq!(
            resend_wait(&big),
            FRAME_RESEND_AFTER + Duration::from_secs(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn copies_of_an_unanswered_frame_are_bounded() {
        let (tx, mut rx) = mpsc::channel(16);
        let link = Link::new(tx);
        let peer = PeerId::random();
        let asked = tokio::spawn(async move { link.ingress_hedged(peer, egress()).await });
        let mut held = Vec::new();
        for _ in 0..MAX_FRAME_COPIES {
            held.push(next_ask(&mut rx).await);
        }
        tokio::time::sleep(FRAME_RESEND_AFTER * 10).await;
        assert!(rx.try_recv().is_err(), "no copy beyond {MAX_FRAME_COPIES}");
        // One copy's connection fails: another goes in its place, and the
        // error is not the answer while copies are out.
        let failed = held.pop().unwrap();
        failed
            .send(Err(RequestError::Transport {
                peer,
                reason: "connection lost".into(),
            }))
            .unwrap();
        held.push(next_ask(&mut rx).await);
        assert!(!asked.is_finished());
        for (i, reply) in held.into_iter().enumerate() {
            reply
                .send(Err(RequestError::Transport {
                    peer,
                    reason: format!("copy {i} lost"),
                }))
                .unwrap();
        }
        let got = asked.await.unwrap();
        assert!(
            matches!(got, Err(RequestError::Transport { .. })),
            "{got:?}"
        );
    }
}
