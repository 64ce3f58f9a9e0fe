//! The mesh: a node's libp2p swarm and what runs on it.
//!
//! - [`behaviour`]: the swarm's protocols (identify, ping, mDNS, Kademlia,
//!   gossipsub, membership and control request-response) and how the swarm
//!   is built (TCP and QUIC, noise, yamux).
//! - [`codec`]: the ciborium request-response codec with explicit limits.
//! - [`node`]: the node's event loop: peers, membership, RTT, status gossip,
//!   and the control protocol's server side ([`crate::control::server`]).
//! - [`rtt`]: smoothed round-trip times.
//! - [`status`]: what this node gossips about itself.

pub mod behaviour;
pub mod codec;
pub mod node;
pub mod rtt;
pub mod status;

/// Protocol names on the wire.
pub const CONTROL_PROTOCOL: &str = "/meshnode/control/1";
pub const MEMBER_PROTOCOL: &str = "/meshnode/member/1";
pub const KAD_PROTOCOL: &str = "/meshnode/kad/1.0.0";
pub const IDENTIFY_PROTOCOL: &str = "/meshnode/id/1";
/// The gossipsub topic of node status messages.
pub const STATUS_TOPIC: &str = "meshnode/status/1";
