//! The node's driver of the SWIM-style membership protocol (issue 19): the
//! `membership` crate's state machine ([`Membership`]) fed with the
//! messages of [`SWIM_PROTOCOL`](super::SWIM_PROTOCOL) and ticked at its
//! deadlines by the event loop; what it decides to send goes out as
//! requests of that protocol.
//!
//! First wiring step only: this runs *beside* `mesh::liveness`, which
//! still decides when a node asks for a lease (failover's timing depends
//! on its 3 s threshold); libp2p ping still runs on every connection and
//! statuses are still flooded. What this adds is the membership view in
//! `peers` (alive, suspect, dead, left, with incarnations) and the
//! protocol's traffic counters on `/metrics`.
//!
//! - Ids: a member's [`NodeId`] is its ed25519 public key (32 bytes), so
//!   the PeerId is rebuilt from it ([`peer_id`]); an id that is not a
//!   valid key is refused ([`IdError`]).
//! - Admission ([`admit`]): only a peer this node holds as a verified
//!   member (`peers::Membership::Member`) is fed to the machine, as a
//!   sender and as a join seed; any other message is dropped and counted.
//!   A member revoked later is `Refused` in the peer table, so its messages
//!   stop being fed from then on, and nothing is sent to it.
//! - The clock: milliseconds since the driver started, monotonic.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use membership::limits::{MAX_JOIN_SEEDS, MAX_MEMBERS, SYNC_INTERVAL_MS};
use membership::message::limit_of_kind;
use membership::{Action, DecodeError, MemberState, Membership, NodeId, PeerState};
use tracing::{debug, info, warn};

use super::behaviour::{NodeBehaviour, NodeBehaviourEvent};
use super::codec::SwimWireError;
use super::peers::{Membership as Standing, PeerTable};

/// How long a leaving node keeps its swarm running for its goodbye
/// messages to go out: a few local round trips; a peer that does not
/// answer by then hears of it by gossip.
pub const LEAVE_WAIT: Duration = Duration::from_millis(1_000);

/// The protocol's events, as the swarm gives them.
pub type SwimEvent = request_response::Event<Vec<u8>, ()>;

/// Why a membership id or a peer has no counterpart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("peer {0} is not an ed25519 key, so it has no membership id")]
    NotEd25519(PeerId),
    #[error("membership id {0} is not a valid ed25519 public key")]
    NotAKey(String),
}

/// A peer's membership id: its ed25519 public key's 32 bytes.
pub fn node_id(peer: &PeerId) -> Result<NodeId, IdError> {
    crate::identity::peer_public_key(peer)
        .map(|k| NodeId(k.0))
        .ok_or(IdError::NotEd25519(*peer))
}

/// The PeerId of a membership id.
pub fn peer_id(id: &NodeId) -> Result<PeerId, IdError> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&id.0)
        .map_err(|_| IdError::NotAKey(hex(id)))?;
    Ok(PeerId::from_public_key(&key.into()))
}

fn hex(id: &NodeId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a message was not fed to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its sender is not a verified member of this node's mesh.
    NotMember,
    /// It did not decode (or its sender's id did not map).
    Malformed,
    /// Over its kind's size limit.
    Oversized,
}

/// The sender's id when `peer` is a verified member here, else why not.
pub fn admit(peers: &PeerTable, peer: &PeerId) -> Result<NodeId, Dropped> {
    match peers.get(peer).map(|e| &e.membership) {
        Some(Standing::Member(_)) => node_id(peer).map_err(|_| Dropped::Malformed),
        _ => Err(Dropped::NotMember),
    }
}

/// Up to [`MAX_JOIN_SEEDS`] verified members to join through, connected
/// ones first.
pub fn join_seeds(peers: &PeerTable) -> Vec<NodeId> {
    let members = || {
        peers
            .iter()
            .filter(|(_, e)| matches!(e.membership, Standing::Member(_)))
    };
    let connected = members().filter(|(_, e)| e.connections > 0);
    let others = members().filter(|(_, e)| e.connections == 0);
    connected
        .chain(others)
        .filter_map(|(p, _)| node_id(p).ok())
        .take(MAX_JOIN_SEEDS)
        .collect()
}

/// The protocol's traffic and drops since the node started (`/metrics`).
/// Bytes are the messages' own (the crate's encoding), without libp2p's
/// framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub sent_messages: u64,
    pub sent_bytes: u64,
    pub received_messages: u64,
    pub received_bytes: u64,
    pub dropped_not_member: u64,
    pub dropped_malformed: u64,
    pub dropped_oversized: u64,
    /// Sends that failed (no connection, a timeout, an older peer): the
    /// machine sees a missing ack, which is what it judges by.
    pub send_failures: u64,
    /// Sends not made: to a peer refused here (revoked), or to an id that
    /// is not a key.
    pub not_sent: u64,
}

impl Traffic {
    fn dropped(&mut self, why: Dropped) {
        match why {
            Dropped::NotMember => self.dropped_not_member += 1,
            Dropped::Malformed => self.dropped_malformed += 1,
            Dropped::Oversized => self.dropped_oversized += 1,
        }
    }
}

/// The driver: the machine, its clock and what it reported.
pub struct Swim {
    machine: Membership,
    started: Instant,
    /// When this node last joined through seeds (`None`: not yet).
    joined_at_ms: Option<u64>,
    /// Round trips the machine measured (direct acks), its distance for
    /// the nearest members; not fed to placement yet.
    rtt_ms: BTreeMap<NodeId, u64>,
    /// Requests sent and not yet answered (a leaving node waits for them).
    in_flight: HashSet<OutboundRequestId>,
    pub traffic: Traffic,
}

impl Swim {
    /// The driver of node `me`, seeded from its key.
    pub fn new(me: &PeerId) -> Result<Swim, IdError> {
        let id = node_id(me)?;
        let seed = u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"));
        Ok(Swim {
            machine: Membership::new(id, seed, 0),
            started: Instant::now(),
            joined_at_ms: None,
            rtt_ms: BTreeMap::new(),
            in_flight: HashSet::new(),
            traffic: Traffic::default(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// When the event loop should call [`on_timer`] next.
    pub fn deadline(&self) -> tokio::time::Instant {
        let at = self.started + Duration::from_millis(self.machine.next_deadline_ms());
        tokio::time::Instant::from_std(at)
    }

    /// What this node believes of `peer`: its state and incarnation.
    pub fn view(&self, peer: &PeerId) -> Option<(MemberState, u32)> {
        let m = self.machine.member(&node_id(peer).ok()?)?;
        Some((m.state, m.incarnation))
    }

    /// This node's own state and incarnation.
    pub fn own_view(&self) -> (MemberState, u32) {
        let me = self.machine.id();
        let state = self
            .machine
            .member(&me)
            .map_or(MemberState::Alive, |m| m.state);
        (state, self.machine.incarnation())
    }

    /// The last round trip the protocol measured to `peer`, in ms.
    pub fn rtt_ms(&self, peer: &PeerId) -> Option<u64> {
        self.rtt_ms.get(&node_id(peer).ok()?).copied()
    }

    /// Joins through the verified members when it has not yet, or when it
    /// knows no other live member a sync interval after its last join
    /// (its seeds may all have gone).
    fn maybe_join(&mut self, peers: &PeerTable, now_ms: u64, out: &mut Vec<Action>) {
        let due = match self.joined_at_ms {
            None => true,
            Some(at) => {
                self.machine.live_members() <= 1 && now_ms >= at.saturating_add(SYNC_INTERVAL_MS)
            }
        };
        if !due {
            return;
        }
        let seeds = join_seeds(peers);
        if seeds.is_empty() {
            return;
        }
        debug!(seeds = seeds.len(), "membership: joining");
        self.machine.join(&seeds, out);
        self.joined_at_ms = Some(now_ms);
    }

    /// Feeds one message from `peer` to the machine, if admitted.
    fn feed(&mut self, peers: &PeerTable, peer: &PeerId, bytes: &[u8], out: &mut Vec<Action>) {
        self.traffic.received_messages += 1;
        self.traffic.received_bytes += bytes.len() as u64;
        let from = match admit(peers, peer) {
            Ok(id) => id,
            Err(why) => {
                debug!(%peer, ?why, "membership message dropped");
                return self.traffic.dropped(why);
            }
        };
        let now_ms = self.now_ms();
        if let Err(e) = self.machine.handle(from, bytes, now_ms, out) {
            debug!(%peer, "membership message refused: {e}");
            self.traffic.dropped(match e {
                DecodeError::TooLarge { .. } => Dropped::Oversized,
                _ => Dropped::Malformed,
            });
        }
    }

    /// Keeps what the machine reported; returns the sends to make.
    fn absorb(&mut self, actions: Vec<Action>) -> Vec<(NodeId, Vec<u8>)> {
        let mut sends = Vec::new();
        for a in actions {
            match a {
                Action::Send { to, bytes, .. } => sends.push((to, bytes)),
                Action::StateChanged { id, state } => log_change(&id, state),
                Action::Rtt { id, rtt_ms } => {
                    if self.rtt_ms.len() < MAX_MEMBERS || self.rtt_ms.contains_key(&id) {
                        self.rtt_ms.insert(id, rtt_ms);
                    }
                }
            }
        }
        sends
    }
}

/// How `peers` shows a member's state and incarnation.
pub fn shown((state, incarnation): (MemberState, u32)) -> protocol::control::SwimView {
    use protocol::control::SwimState;
    let state = match state {
        MemberState::Alive => SwimState::Alive,
        MemberState::Suspect => SwimState::Suspect,
        MemberState::Dead => SwimState::Dead,
        MemberState::Left => SwimState::Left,
    };
    protocol::control::SwimView { state, incarnation }
}

fn log_change(id: &NodeId, state: PeerState) {
    let peer = peer_id(id).map_or_else(|_| format!("{id:?}"), |p| p.to_string());
    match state {
        PeerState::Up => info!(%peer, "membership: member alive"),
        PeerState::Unreachable => warn!(%peer, "membership: member suspected"),
        PeerState::Down => warn!(%peer, "membership: member confirmed dead"),
        PeerState::Left => info!(%peer, "membership: member left"),
    }
}

/// Sends the machine's messages as requests of the membership protocol,
/// dialling a peer that is not connected at the addresses this node knows
/// (the swarm adds those discovery learned).
fn send_all(
    swarm: &mut Swarm<NodeBehaviour>,
    swim: &mut Swim,
    peers: &PeerTable,
    sends: Vec<(NodeId, Vec<u8>)>,
) {
    for (to, bytes) in sends {
        let Ok(peer) = peer_id(&to) else {
            swim.traffic.not_sent += 1;
            continue;
        };
        let entry = peers.get(&peer);
        let refused = entry.is_some_and(|e| matches!(e.membership, Standing::Refused(_)));
        let over = bytes.len() > limit_of_kind(bytes.get(1).copied().unwrap_or(0));
        if refused || over {
            swim.traffic.not_sent += 1;
            continue;
        }
        let addrs = match (swarm.is_connected(&peer), entry) {
            (false, Some(e)) => e.addrs.clone(),
            _ => Vec::new(),
        };
        swim.traffic.sent_messages += 1;
        swim.traffic.sent_bytes += bytes.len() as u64;
        let id = swarm
            .behaviour_mut()
            .swim
            .send_request_with_addresses(&peer, bytes, addrs);
        swim.in_flight.insert(id);
    }
}

/// The event loop's timer: joins when due, ticks the machine, sends.
pub fn on_timer(swarm: &mut Swarm<NodeBehaviour>, swim: &mut Swim, peers: &PeerTable) {
    let now_ms = swim.now_ms();
    let mut out = Vec::new();
    swim.maybe_join(peers, now_ms, &mut out);
    let rtts = &swim.rtt_ms;
    let mut distance = |id: &NodeId| rtts.get(id).copied();
    swim.machine.tick(now_ms, &mut distance, &mut out);
    let sends = swim.absorb(out);
    send_all(swarm, swim, peers, sends);
}

/// One event of the membership protocol.
pub fn on_event(
    swarm: &mut Swarm<NodeBehaviour>,
    swim: &mut Swim,
    peers: &PeerTable,
    event: SwimEvent,
) {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let _ = swarm.behaviour_mut().swim.send_response(channel, ());
                let mut out = Vec::new();
                swim.feed(peers, &peer, &request, &mut out);
                let sends = swim.absorb(out);
                send_all(swarm, swim, peers, sends);
            }
            request_response::Message::Response { request_id, .. } => {
                swim.in_flight.remove(&request_id);
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            debug!(%peer, "membership message not delivered: {error}");
            swim.in_flight.remove(&request_id);
            swim.traffic.send_failures += 1;
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            let why = match &error {
                request_response::InboundFailure::Io(e) => match SwimWireError::of(e) {
                    Some(SwimWireError::NotMember { .. }) => Some(Dropped::NotMember),
                    Some(SwimWireError::TooLarge { .. }) => Some(Dropped::Oversized),
                    _ => Some(Dropped::Malformed),
                },
                _ => None,
            };
            debug!(%peer, "membership message not read: {error}");
            if let Some(why) = why {
                swim.traffic.received_messages += 1;
                swim.traffic.dropped(why);
            }
        }
        request_response::Event::ResponseSent { .. } => {}
    }
}

/// Leaves the fleet on a graceful stop: the machine's goodbye goes to a
/// few members, and the swarm runs until they are delivered or
/// [`LEAVE_WAIT`] has passed. Other events are not handled any more.
pub async fn leave(swarm: &mut Swarm<NodeBehaviour>, swim: &mut Swim, peers: &PeerTable) {
    let mut out = Vec::new();
    swim.machine.leave(&mut out);
    let sends = swim.absorb(out);
    let told = sends.len();
    send_all(swarm, swim, peers, sends);
    let deadline = tokio::time::Instant::now() + LEAVE_WAIT;
    while !swim.in_flight.is_empty() {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
            break;
        };
        let SwarmEvent::Behaviour(NodeBehaviourEvent::Swim(e)) = event else {
            continue;
        };
        match e {
            // Acks to the goodbye are not fed: this node has left.
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }
            | request_response::Event::OutboundFailure { request_id, .. } => {
                swim.in_flight.remove(&request_id);
            }
            _ => {}
        }
    }
    info!(
        told,
        undelivered = swim.in_flight.len(),
        "membership: left the fleet"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::peers::PeerEntry;
    use membership::limits::MAX_DATAGRAM_BYTES;
    use membership::Message;
    use protocol::membership::PublicKey;

    fn peer(seed: u8) -> PeerId {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        crate::identity::NodeIdentity::from_signing_key(key).peer_id
    }

    fn table(rows: &[(PeerId, Standing, usize)]) -> PeerTable {
        rows.iter()
            .map(|(p, standing, connections)| {
                let mut e = PeerEntry::new();
                e.membership = standing.clone();
                e.connections = *connections;
                (*p, e)
            })
            .collect()
    }

    fn member() -> Standing {
        Standing::Member(PublicKey([7; 32]))
    }

    #[test]
    fn a_node_id_is_its_key_and_maps_back_to_its_peer_id() {
        for seed in 1..20 {
            let p = peer(seed);
            let id = node_id(&p).unwrap();
            let key = crate::identity::peer_public_key(&p).unwrap();
            assert_eq!(id.0, key.0);
            assert_eq!(peer_id(&id), Ok(p));
        }
        // A PeerId that is a hash, not an inlined ed25519 key.
        let hashed = PeerId::random();
        assert_eq!(node_id(&hashed), Err(IdError::NotEd25519(hashed)));
        // About half of all 32-byte strings are not points of the curve:
        // each is refused by name, and every valid one maps back.
        let mut refused = 0;
        for b in 0..=255u8 {
            let id = NodeId([b; 32]);
            match peer_id(&id) {
                Ok(p) => assert_eq!(node_id(&p), Ok(id)),
                Err(e) => {
                    refused += 1;
                    assert_eq!(e, IdError::NotAKey(hex(&id)));
                    assert!(e.to_string().contains("not a valid ed25519"), "{e}");
                }
            }
        }
        assert!(refused > 0, "no invalid key among 256 candidates");
    }

    #[test]
    fn only_verified_members_are_admitted_and_a_revoked_one_stops_being() {
        let (m, stranger, refused, unknown) = (peer(1), peer(2), peer(3), peer(4));
        let mut peers = table(&[
            (m, member(), 1),
            (refused, Standing::Refused("revoked".into()), 1),
            (unknown, Standing::Unknown, 1),
        ]);
        assert_eq!(admit(&peers, &m), Ok(node_id(&m).unwrap()));
        for p in [stranger, refused, unknown] {
            assert_eq!(admit(&peers, &p), Err(Dropped::NotMember), "{p}");
        }
        // Revoked later: judged again, refused, and no longer admitted.
        peers.get_mut(&m).unwrap().membership = Standing::Refused("revoked".into());
        assert_eq!(admit(&peers, &m), Err(Dropped::NotMember));
    }

    #[test]
    fn seeds_are_verified_members_connected_first_and_bounded() {
        let ids: Vec<PeerId> = (1..=6).map(peer).collect();
        let peers = table(&[
            (ids[0], member(), 0),
            (ids[1], Standing::Unknown, 1),
            (ids[2], member(), 2),
            (ids[3], Standing::Refused("no".into()), 1),
            (ids[4], member(), 1),
            (ids[5], member(), 0),
        ]);
        let seeds = join_seeds(&peers);
        assert_eq!(seeds.len(), MAX_JOIN_SEEDS);
        let seeds: Vec<PeerId> = seeds.iter().map(|s| peer_id(s).unwrap()).collect();
        let connected: HashSet<PeerId> = [ids[2], ids[4]].into();
        assert_eq!(
            seeds[..2].iter().copied().collect::<HashSet<_>>(),
            connected
        );
        assert!([ids[0], ids[5]].contains(&seeds[2]));
    }

    /// What the driver does with one inbound message: a stranger's is
    /// dropped unread by the machine; malformed and oversized ones are
    /// counted by kind; a member's ping is answered with an ack to it.
    #[test]
    fn inbound_messages_are_admitted_decoded_and_counted() {
        let (me, m, stranger) = (peer(1), peer(2), peer(3));
        let peers = table(&[(m, member(), 1)]);
        let mut swim = Swim::new(&me).unwrap();
        let alive = membership::Change {
            id: node_id(&m).unwrap(),
            incarnation: 0,
            state: MemberState::Alive,
        };
        let ping = Message::Ping {
            seq: 9,
            gossip: vec![alive],
        }
        .encode();
        let mut out = Vec::new();
        swim.feed(&peers, &stranger, &ping, &mut out);
        assert!(out.is_empty());
        assert_eq!(swim.traffic.dropped_not_member, 1);
        swim.feed(&peers, &m, &[1, 99], &mut out);
        assert_eq!(swim.traffic.dropped_malformed, 1);
        let mut big = ping.clone();
        big.resize(MAX_DATAGRAM_BYTES + 1, 0);
        swim.feed(&peers, &m, &big, &mut out);
        assert_eq!(swim.traffic.dropped_oversized, 1);
        assert!(out.is_empty());

        swim.feed(&peers, &m, &ping, &mut out);
        let sends = swim.absorb(out);
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].0, node_id(&m).unwrap());
        assert!(matches!(
            Message::decode(&sends[0].1),
            Ok(Message::Ack { seq: 9, .. })
        ));
        assert_eq!(swim.traffic.received_messages, 4);
        let sizes = 2 * ping.len() + 2 + big.len();
        assert_eq!(swim.traffic.received_bytes, sizes as u64);
        // The member's own notice, on its ping, made it known, alive.
        assert_eq!(swim.view(&m).map(|v| v.0), Some(MemberState::Alive));
        assert_eq!(swim.view(&stranger), None);
    }

    /// Two drivers that carry each other's sends (no network): joining
    /// through the other makes each see the other alive, incarnation 0.
    #[test]
    fn two_drivers_join_and_see_each_other_alive() {
        let (a, b) = (peer(1), peer(2));
        let mut nodes = [
            (a, Swim::new(&a).unwrap(), table(&[(b, member(), 1)])),
            (b, Swim::new(&b).unwrap(), table(&[(a, member(), 1)])),
        ];
        let mut wire: Vec<(PeerId, PeerId, Vec<u8>)> = Vec::new();
        for step in 0..50 {
            for (me, swim, peers) in nodes.iter_mut() {
                let mut out = Vec::new();
                if step == 0 {
                    swim.maybe_join(peers, 0, &mut out);
                }
                let now = swim.now_ms();
                swim.machine.tick(now, &mut |_| None, &mut out);
                for (to, bytes) in swim.absorb(out) {
                    wire.push((*me, peer_id(&to).unwrap(), bytes));
                }
            }
            for (from, to, bytes) in std::mem::take(&mut wire) {
                let (_, swim, peers) = nodes.iter_mut().find(|n| n.0 == to).unwrap();
                let mut out = Vec::new();
                swim.feed(peers, &from, &bytes, &mut out);
                for (next, bytes) in swim.absorb(out) {
                    wire.push((to, peer_id(&next).unwrap(), bytes));
                }
            }
        }
        assert_eq!(nodes[0].1.view(&b), Some((MemberState::Alive, 0)));
        assert_eq!(nodes[1].1.view(&a), Some((MemberState::Alive, 0)));
        assert_eq!(nodes[0].1.own_view(), (MemberState::Alive, 0));
        assert_eq!(nodes[0].1.traffic.dropped_not_member, 0);
    }
}
