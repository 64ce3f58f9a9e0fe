//! The node's libp2p behaviours, and swarm construction for nodes and for
//! the CLI's short-lived peer.

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    gossipsub, identify, kad, mdns, noise, ping, request_response, tcp, yamux, StreamProtocol,
    Swarm,
};
use std::sync::Arc;

use protocol::limits::{MAX_MEMBER_MESSAGE_BYTES, MAX_STATUS_MESSAGE_BYTES};
use protocol::limits::{MAX_PEER_REQUEST_BYTES, MAX_PEER_RESPONSE_BYTES};
use protocol::membership::{MemberRequest, MemberResponse};
use protocol::peer::{PeerRequest, PeerResponse};

use super::codec::{CborCodec, SwimCodec};
use super::gate::{Gated, PeerGate};
use super::{
    CONTROL_PROTOCOL, IDENTIFY_PROTOCOL, KAD_PROTOCOL, MEMBER_PROTOCOL, SWIM_PROTOCOL,
    VESSEL_PROTOCOL,
};
use crate::identity::NodeIdentity;

pub use super::codec::ControlCodec;
pub type MemberCodec = CborCodec<MemberRequest, MemberResponse>;
pub type PeerCodec = CborCodec<PeerRequest, PeerResponse>;

/// How long one vessel-protocol request may take: a batch of chunks on a
/// slow link, or a prepare that re-instruments a large module on a board.
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one control or membership request may take before it fails.
/// Requests are small and answered from memory; 30 s covers a board under
/// load and a slow link.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one membership-protocol message (`mesh::swim`) may take to be
/// delivered. It only frees the stream: the protocol judges a member by
/// its own timeouts (an ack within 0.5 s, a relayed one within 1 s), and
/// a message is at most one sync page (~39 KiB).
pub const SWIM_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A QUIC connection whose peer went silent this long is closed. A peer
/// that restarts (a board that rebooted) leaves its old QUIC connection
/// behind with no packet to say so; until it is closed, half of the
/// requests to that peer would go down the dead one. libp2p's default is
/// 10 s; 3 s with a keep-alive every second still rides out a lossy link.
pub const QUIC_MAX_IDLE_TIMEOUT_MS: u32 = 3_000;
pub const QUIC_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a ping may take before it counts as failed.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections a node accepts (inbound, all peers together): a board
/// serves a mesh of tens of nodes and a few CLIs; a flood of connections
/// from one LAN host stops here.
pub const MAX_INCOMING_CONNECTIONS: u32 = 256;

/// Most connections to one peer (TCP and QUIC, both directions).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;

#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    pub limits: libp2p::connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub gossipsub: gossipsub::Behaviour,
    /// The request-response protocols read requests under the
    /// node's [`PeerGate`] (see `gate`).
    pub member: Gated<MemberCodec>,
    pub control: Gated<ControlCodec>,
    pub vessel: Gated<PeerCodec>,
    /// SWIM-style membership and failure detection (`mesh::swim`), read
    /// from members only.
    pub swim: Gated<SwimCodec>,
}

impl NodeBehaviour {
    /// What peers may make this node read; the event loop keeps it told.
    pub fn gate(&self) -> Arc<PeerGate> {
        self.vessel
            .gate()
            .expect("a node's behaviours are gated")
            .clone()
    }
}

/// What the swarm needs from the configuration.
pub struct SwarmOptions {
    pub mdns: bool,
    pub kademlia: bool,
    pub ping_interval: Duration,
    pub idle_connection_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("cannot set up the {what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

fn setup(what: &'static str) -> impl FnOnce(String) -> SwarmError {
    move |reason| SwarmError::Setup { what, reason }
}

pub fn control_behaviour(
    support: request_response::ProtocolSupport,
    codec: ControlCodec,
) -> request_response::Behaviour<ControlCodec> {
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(CONTROL_PROTOCOL), support)],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    )
}

/// A node's swarm: TCP and QUIC, noise, yamux, and [`NodeBehaviour`].
pub fn node_swarm(
    id: &NodeIdentity,
    opts: &SwarmOptions,
) -> Result<Swarm<NodeBehaviour>, SwarmError> {
    let peer_id = id.peer_id;
    let builder = libp2p::SwarmBuilder::with_existing_identity(id.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup("TCP transport")(e.to_string()))?
        .with_quic_config(|mut c| {
            c.max_idle_timeout = QUIC_MAX_IDLE_TIMEOUT_MS;
            c.keep_alive_interval = QUIC_KEEP_ALIVE_INTERVAL;
            c
        });
    let mdns = if opts.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| setup("mDNS")(e.to_string()))?,
        )
    } else {
        None
    };
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_STATUS_MESSAGE_BYTES)
        .build()
        .map_err(|e| setup("gossipsub")(e.to_string()))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(id.keypair.clone()),
        gossip_config,
    )
    .map_err(|e| setup("gossipsub")(e.to_string()))?;
    let kad = opts.kademlia.then(|| {
        let mut k = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
        );
        k.set_mode(Some(kad::Mode::Server));
        k
    });
    let gate = PeerGate::new(id.public_key());
    let behaviour = NodeBehaviour {
        limits: libp2p::connection_limits::Behaviour::new(
            libp2p::connection_limits::ConnectionLimits::default()
                .with_max_established_incoming(Some(MAX_INCOMING_CONNECTIONS))
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
        ),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), id.keypair.public())
                .with_agent_version(format!("meshnode/{}", crate::upgrade::running_version()))
                // A node may connect to its bootstrap peers before it knows
                // its own listen addresses: tell them once it does.
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(opts.ping_interval)
                .with_timeout(PING_TIMEOUT),
        ),
        mdns: mdns.into(),
        kad: kad.into(),
        gossipsub,
        // Membership is how a stranger becomes a member: its messages are
        // read from anyone, all far under the strangers' bound.
        member: Gated::new(
            request_response::Behaviour::with_codec(
                CborCodec::new(MAX_MEMBER_MESSAGE_BYTES, MAX_MEMBER_MESSAGE_BYTES)
                    .gated(gate.clone(), false),
                [(
                    StreamProtocol::new(MEMBER_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            ),
            Some(gate.clone()),
        ),
        control: Gated::new(
            control_behaviour(
                request_response::ProtocolSupport::Full,
                ControlCodec::gated(gate.clone()),
            ),
            Some(gate.clone()),
        ),
        vessel: Gated::new(
            request_response::Behaviour::with_codec(
                CborCodec::new(MAX_PEER_REQUEST_BYTES, MAX_PEER_RESPONSE_BYTES)
                    .gated(gate.clone(), true),
                [(
                    StreamProtocol::new(VESSEL_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(PEER_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(64),
            ),
            Some(gate.clone()),
        ),
        swim: Gated::new(
            request_response::Behaviour::with_codec(
                SwimCodec::gated(gate.clone()),
                [(
                    StreamProtocol::new(SWIM_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(SWIM_REQUEST_TIMEOUT),
            ),
            Some(gate),
        ),
    };
    let swarm = builder
        .with_behaviour(|_| behaviour)
        .map_err(|e| setup("behaviours")(e.to_string()))?
        .with_swarm_config(|c| {
            // Each request opens a substream; with multistream-select's V1
            // its protocol negotiation costs a round trip before the
            // request goes out. V1Lazy sends the request right behind the
            // proposal (every member speaks the same protocols), which
            // halves the latency of a client request carried over the WAN
            // (ingress + egress: 3 RTTs → 1).
            c.with_idle_connection_timeout(opts.idle_connection_timeout)
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

/// The CLI's swarm: only the control protocol, outbound.
pub fn client_swarm(
    id: &NodeIdentity,
) -> Result<Swarm<request_response::Behaviour<ControlCodec>>, SwarmError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(id.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup("TCP transport")(e.to_string()))?
        .with_quic()
        .with_behaviour(|_| {
            control_behaviour(
                request_response::ProtocolSupport::Outbound,
                ControlCodec::new(),
            )
        })
        .map_err(|e| setup("control protocol")(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(5))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}
