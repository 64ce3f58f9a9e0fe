//! The peer table's entries: what this node knows about each peer and
//! whether it belongs to the mesh. A leaf: it uses nothing else of `mesh/`,
//! so the event loop, membership, placement and the control server can all
//! read the table without using each other. It feeds each entry's failure
//! detector ([`super::liveness`]) and publishes the suspects.

use std::collections::BTreeMap;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use protocol::control::NodeStatus;
use protocol::membership::{MemberCertificate, PublicKey};

use tracing::{info, warn};

use super::liveness::{Detector, Event, State, Suspects, Thresholds};
use super::rtt::SmoothedRtt;

/// Most addresses kept per peer; extra ones replace the oldest.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// Every peer this node knows, by id.
pub type PeerTable = BTreeMap<PeerId, PeerEntry>;

/// Whether a peer belongs to this node's mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Not asked yet, or no answer yet.
    Unknown,
    /// Its certificate verifies back to this trusted user key.
    Member(PublicKey),
    /// Why it is not a member.
    Refused(String),
}

/// What this node knows about one peer.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    pub addrs: Vec<Multiaddr>,
    pub connections: usize,
    pub rtt: SmoothedRtt,
    pub membership: Membership,
    pub status: Option<(NodeStatus, Instant)>,
    pub certificate: Option<MemberCertificate>,
    /// Why this node cannot speak with the peer (another vessel protocol
    /// version): it is then never a member, whatever its certificate.
    pub incompatible: Option<String>,
    /// Whether this node hears from it (up, unreachable, down).
    pub liveness: Detector,
}

impl PeerEntry {
    pub fn new() -> PeerEntry {
        PeerEntry {
            addrs: Vec::new(),
            connections: 0,
            rtt: SmoothedRtt::default(),
            membership: Membership::Unknown,
            status: None,
            certificate: None,
            incompatible: None,
            liveness: Detector::new(Instant::now()),
        }
    }

    pub fn add_addr(&mut self, addr: Multiaddr) {
        let addr = strip_p2p(addr);
        if self.addrs.contains(&addr) {
            return;
        }
        if self.addrs.len() >= MAX_ADDRS_PER_PEER {
            self.addrs.remove(0);
        }
        self.addrs.push(addr);
    }

    /// Connected now, and a member of the mesh.
    pub fn connected_member(&self) -> bool {
        self.connections > 0 && matches!(self.membership, Membership::Member(_))
    }
}

impl Default for PeerEntry {
    fn default() -> Self {
        PeerEntry::new()
    }
}

/// Tells `peer`'s failure detector of `event`; a peer not in the table is
/// not tracked (it is added when it connects).
pub fn note_liveness(table: &mut PeerTable, peer: &PeerId, event: Event, th: &Thresholds) {
    if let Some(e) = table.get_mut(peer) {
        if let Some(next) = e.liveness.on(event, Instant::now(), th) {
            log_transition(peer, e, next);
        }
    }
}

/// Ticks every detector and publishes the members it suspects.
pub fn tick_liveness(table: &mut PeerTable, th: &Thresholds, suspects: &Suspects) {
    let now = Instant::now();
    for (peer, e) in table.iter_mut() {
        if let Some(next) = e.liveness.on(Event::Tick, now, th) {
            log_transition(peer, e, next);
        }
    }
    suspects.publish(
        table
            .iter()
            .filter(|(_, e)| matches!(e.membership, Membership::Member(_)))
            .map(|(p, e)| (*p, e.liveness.state())),
    );
}

/// A member that goes silent or comes back is worth a line in the log.
fn log_transition(peer: &PeerId, e: &PeerEntry, next: State) {
    if !matches!(e.membership, Membership::Member(_)) {
        return;
    }
    let silent = e.liveness.last_heard().elapsed().as_secs_f64();
    match next {
        State::Up => info!(%peer, "member answers again"),
        State::Unreachable { .. } => {
            warn!(%peer, "member unreachable: nothing heard from it for {silent:.1} s")
        }
        State::Down { .. } => warn!(%peer, "member down: nothing heard from it for {silent:.1} s"),
    }
}

/// `addr` without the `/p2p/ID` at its end, if any.
pub fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// The peer id at the end of a multiaddr, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Some(p),
        _ => None,
    }
}

pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
