//! The peer table's entries: what this node knows about each peer and
//! whether it belongs to the mesh. A leaf: it uses nothing else of `mesh/`,
//! so the event loop, membership, placement and the control server can all
//! read the table without using each other.

use std::collections::BTreeMap;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use protocol::control::NodeStatus;
use protocol::membership::{MemberCertificate, PublicKey};

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
