//! What a peer may make this node read before it is known to be allowed
//! to (issue 14, item 4). A request is read by the codec inside libp2p's
//! connection task, before the event loop sees who sent it; without a
//! gate, strangers could make a node buffer 48 MiB control requests on
//! 100 streams each, or 64 MiB vessel messages on 64, and be refused only
//! afterwards.
//!
//! The [`PeerGate`] is shared by the event loop (which tells it who is a
//! member and which user keys are trusted) and every codec (which asks it
//! before reading):
//! - the vessel and membership protocols read nothing of a peer's request
//!   beyond [`MAX_STRANGER_REQUEST_BYTES`] unless the peer (the noise-
//!   authenticated PeerId of the connection) is a member;
//! - the control protocol reads a small header first; a body over
//!   [`MAX_STRANGER_REQUEST_BYTES`] is read only when the header carries a
//!   trusted user's signature addressed to this node
//!   (`protocol::control::HeaderAuth`);
//! - every peer has at most [`MAX_INBOUND_STREAMS_PER_PEER`] requests
//!   being read at once and [`MAX_BUFFERED_BYTES_PER_PEER`] bytes
//!   buffered, and all peers together [`MAX_BUFFERED_BYTES_PER_NODE`].
//!
//! libp2p's request-response codec is not told the peer; [`Gated`] wraps
//! the behaviour and hands the peer of each new connection to the codec
//! copy that serves it (see [`Gated::with_peer`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{request_response, Multiaddr, PeerId};
use protocol::membership::PublicKey;

use crate::sync::lock;

/// Most bytes of one request read from a peer that is not (yet) known to
/// be allowed: a control `Challenge` or `Join`, a membership exchange (one
/// certificate, under 1 KiB), an unsigned control command. Larger bodies
/// need a member or a trusted user's signed header first.
pub const MAX_STRANGER_REQUEST_BYTES: usize = 64 * 1024;

/// Most requests one peer may have being read at once, over all its
/// connections and protocols. A migration keeps
/// `CHUNK_BATCHES_IN_FLIGHT` (4) batches and a few requests besides in
/// flight; a CLI sends one at a time.
pub const MAX_INBOUND_STREAMS_PER_PEER: usize = 16;

/// Most request bytes buffered for one peer at once: one largest vessel
/// message (64 MiB, an offer of a 4 GiB memory) and a pipeline of chunk
/// batches beside it.
pub const MAX_BUFFERED_BYTES_PER_PEER: usize = 96 * 1024 * 1024;

/// Most request bytes buffered for all peers together: two peers at their
/// limit. A board has a few hundred MiB to spare; past this a request is
/// refused (its sender retries) rather than risk the node's memory.
pub const MAX_BUFFERED_BYTES_PER_NODE: usize = 2 * MAX_BUFFERED_BYTES_PER_PEER;

/// How much a read grows its buffer at a time, each step reserved first.
pub const READ_STEP_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Usage {
    per_peer: HashMap<PeerId, PeerUsage>,
    total_bytes: usize,
}

#[derive(Default)]
struct PeerUsage {
    streams: usize,
    bytes: usize,
}

/// Who may make this node read how much (see the module's doc).
pub struct PeerGate {
    /// This node's key: a control header's signature must be addressed to
    /// it.
    pub node_key: PublicKey,
    members: RwLock<HashSet<PeerId>>,
    trusted: RwLock<Vec<PublicKey>>,
    usage: Mutex<Usage>,
    /// The peer of the connection being set up ([`Gated`]), taken by the
    /// codec copy made for it.
    connecting: Mutex<Option<PeerId>>,
}

impl PeerGate {
    pub fn new(node_key: PublicKey) -> Arc<PeerGate> {
        Arc::new(PeerGate {
            node_key,
            members: RwLock::default(),
            trusted: RwLock::default(),
            usage: Mutex::default(),
            connecting: Mutex::default(),
        })
    }

    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(peer)
    }

    pub fn is_trusted(&self, user: &PublicKey) -> bool {
        self.trusted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(user)
    }

    /// Brings the gate up to the event loop's view (cheap when nothing
    /// changed: no lock is written then).
    pub fn sync<'a>(
        &self,
        members: impl Iterator<Item = &'a PeerId> + Clone,
        trusted: &[PublicKey],
    ) {
        let same = {
            let m = self.members.read().unwrap_or_else(|p| p.into_inner());
            members.clone().count() == m.len() && members.clone().all(|p| m.contains(p))
        };
        if !same {
            *self.members.write().unwrap_or_else(|p| p.into_inner()) = members.copied().collect();
        }
        let mut t = self.trusted.write().unwrap_or_else(|p| p.into_inner());
        if t.as_slice() != trusted {
            *t = trusted.to_vec();
        }
    }

    /// Starts reading one request of `peer` (none: a codec that was not
    /// told its peer, which gets the node-wide bounds only).
    pub fn open(self: &Arc<Self>, peer: Option<PeerId>) -> io::Result<Reading> {
        if let Some(p) = peer {
            let mut usage = lock(&self.usage);
            let u = usage.per_peer.entry(p).or_default();
            if u.streams >= MAX_INBOUND_STREAMS_PER_PEER {
                return Err(limit(format!(
                    "peer {p} has {MAX_INBOUND_STREAMS_PER_PEER} requests being read already \
                     (MAX_INBOUND_STREAMS_PER_PEER)"
                )));
            }
            u.streams += 1;
        }
        Ok(Reading {
            gate: self.clone(),
            peer,
            bytes: 0,
        })
    }

    fn take_connecting(&self) -> Option<PeerId> {
        lock(&self.connecting).take()
    }
}

fn limit(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, msg)
}

/// One request being read: its stream and buffered bytes count against
/// its peer and the node until it is dropped.
pub struct Reading {
    gate: Arc<PeerGate>,
    peer: Option<PeerId>,
    bytes: usize,
}

impl Reading {
    /// Reserves `more` bytes of buffer before they are read.
    pub fn reserve(&mut self, more: usize) -> io::Result<()> {
        let mut usage = lock(&self.gate.usage);
        if usage.total_bytes + more > MAX_BUFFERED_BYTES_PER_NODE {
            return Err(limit(format!(
                "this node buffers {MAX_BUFFERED_BYTES_PER_NODE} bytes of requests already \
                 (MAX_BUFFERED_BYTES_PER_NODE)"
            )));
        }
        if let Some(p) = self.peer {
            let u = usage.per_peer.entry(p).or_default();
            if u.bytes + more > MAX_BUFFERED_BYTES_PER_PEER {
                return Err(limit(format!(
                    "peer {p} has {MAX_BUFFERED_BYTES_PER_PEER} bytes of requests buffered \
                     already (MAX_BUFFERED_BYTES_PER_PEER)"
                )));
            }
            u.bytes += more;
        }
        usage.total_bytes += more;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut usage = lock(&self.gate.usage);
        usage.total_bytes -= self.bytes;
        if let Some(p) = self.peer {
            if let Some(u) = usage.per_peer.get_mut(&p) {
                u.streams -= 1;
                u.bytes -= self.bytes;
                if u.streams == 0 {
                    usage.per_peer.remove(&p);
                }
            }
        }
    }
}

/// Takes the peer a connection's codec copy serves, when its clone is
/// made for a new connection (see [`Gated`]); `None` on every other clone.
pub fn connecting_peer(gate: Option<&Arc<PeerGate>>) -> Option<PeerId> {
    gate.and_then(|g| g.take_connecting())
}

/// A request-response behaviour whose codec copies know their peer:
/// libp2p clones the behaviour's codec for each new connection inside
/// `handle_established_*_connection`, so the peer is put in the gate's
/// slot just before and taken by that clone (and cleared after, whatever
/// happened).
pub struct Gated<C: request_response::Codec + Clone + Send + 'static> {
    pub inner: request_response::Behaviour<C>,
    gate: Option<Arc<PeerGate>>,
}

impl<C: request_response::Codec + Clone + Send + 'static> Gated<C> {
    pub fn new(inner: request_response::Behaviour<C>, gate: Option<Arc<PeerGate>>) -> Self {
        Gated { inner, gate }
    }

    pub fn gate(&self) -> Option<&Arc<PeerGate>> {
        self.gate.as_ref()
    }

    fn with_peer<T>(&mut self, peer: PeerId, f: impl FnOnce(&mut Self) -> T) -> T {
        if let Some(g) = &self.gate {
            *lock(&g.connecting) = Some(peer);
        }
        let out = f(self);
        if let Some(g) = &self.gate {
            lock(&g.connecting).take();
        }
        out
    }
}

impl<C: request_response::Codec + Clone + Send + 'static> std::ops::Deref for Gated<C> {
    type Target = request_response::Behaviour<C>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<C: request_response::Codec + Clone + Send + 'static> std::ops::DerefMut for Gated<C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<C: request_response::Codec + Clone + Send + 'static> NetworkBehaviour for Gated<C> {
    type ConnectionHandler = THandler<request_response::Behaviour<C>>;
    type ToSwarm = <request_response::Behaviour<C> as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.with_peer(peer, |s| {
            s.inner
                .handle_established_inbound_connection(id, peer, local, remote)
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addrs, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.with_peer(peer, |s| {
            s.inner
                .handle_established_outbound_connection(id, peer, addr, role, port_use)
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-peer and per-node bounds hold, and a finished read gives
    /// back what it held.
    #[test]
    fn streams_and_bytes_are_bounded_per_peer_and_per_node() {
        let gate = PeerGate::new(PublicKey([0; 32]));
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut open: Vec<Reading> = (0..MAX_INBOUND_STREAMS_PER_PEER)
            .map(|_| gate.open(Some(a)).unwrap())
            .collect();
        assert!(gate.open(Some(a)).is_err());
        open.pop();
        let mut r = gate.open(Some(a)).unwrap();
        r.reserve(MAX_BUFFERED_BYTES_PER_PEER).unwrap();
        open.pop();
        let err = gate
            .open(Some(a))
            .and_then(|mut r| r.reserve(1))
            .unwrap_err();
        assert!(
            err.to_string().contains("MAX_BUFFERED_BYTES_PER_PEER"),
            "{err}"
        );
        let mut rb = gate.open(Some(b)).unwrap();
        rb.reserve(MAX_BUFFERED_BYTES_PER_NODE - MAX_BUFFERED_BYTES_PER_PEER)
            .unwrap();
        let err = gate
            .open(Some(c))
            .and_then(|mut r| r.reserve(1))
            .unwrap_err();
        assert!(
            err.to_string().contains("MAX_BUFFERED_BYTES_PER_NODE"),
            "{err}"
        );
        drop((r, rb, open));
        let usage = lock(&gate.usage);
        assert_eq!(usage.total_bytes, 0);
        assert!(usage.per_peer.is_empty());
    }
}
