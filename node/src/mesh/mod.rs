//! The mesh: a node's libp2p swarm and what runs on it.
//!
//! - [`behaviour`]: the swarm's protocols (identify, ping, mDNS, Kademlia,
//!   gossipsub, membership and control request-response) and how the swarm
//!   is built (TCP and QUIC, noise, yamux).
//! - [`codec`]: the ciborium request-response codec with explicit limits.
//! - [`node`]: the node's event loop (peers, RTT, dispatch) and the state
//!   it keeps; [`membership`]: the certificate exchange, judging peers
//!   (certificate, protocol version), `--join`; [`status_gossip`]:
//!   publishing and judging statuses; the control protocol's server side
//!   is [`crate::control::server`].
//! - [`place`]: placement in the running node: the periodic tick that moves
//!   vessels nearer their clients, pin/unpin, and drain.
//! - [`rtt`]: smoothed round-trip times.
//! - [`status`]: what this node gossips about itself.
//! - [`vessels`]: the vessel side of the node's state; beside it, the
//!   vessel protocol by job: [`link`] (request/await to peers), [`serve`]
//!   (the destination side), [`migrate`] (the source side), [`commands`]
//!   (control commands across the mesh), [`recover`] (start-up recovery and
//!   the clean-stop checkpoint). Their decisions are the migration layer's
//!   ([`crate::migration`]).
//!
//! Adding a protocol (migration, deployment): add a behaviour field to
//! [`behaviour::NodeBehaviour`], handle its events in `node::handle_behaviour`,
//! and serve a peer only when `NodeState::peers[peer].membership` is
//! `Member`. Requests from the rest of the node reach the event loop through
//! [`node::NodeCommand`]. Control commands are new variants at the end of
//! `protocol::control::Command`, answered in [`crate::control::server`]. Bulk
//! transfers should prefer QUIC streams: libp2p-stream over yamux 0.13 has a
//! known deadlock.

pub mod behaviour;
pub mod codec;
pub mod commands;
pub mod ingress;
pub mod link;
pub mod membership;
pub mod migrate;
pub mod node;
pub mod pack;
pub mod place;
pub mod recover;
pub mod rtt;
pub mod serve;
pub mod status;
pub mod status_gossip;
pub mod transfer;
pub mod vessels;

/// Protocol names on the wire.
pub const CONTROL_PROTOCOL: &str = "/meshnode/control/1";
pub const MEMBER_PROTOCOL: &str = "/meshnode/member/1";
/// The vessel protocol; its version is the number at the end (see
/// `protocol::peer` and docs/protocol.md, "Versions").
pub const VESSEL_PROTOCOL: &str = protocol::peer::VESSEL_PROTOCOL;
pub const KAD_PROTOCOL: &str = "/meshnode/kad/1.0.0";
pub const IDENTIFY_PROTOCOL: &str = "/meshnode/id/1";
/// The gossipsub topic of node status messages.
pub const STATUS_TOPIC: &str = "meshnode/status/1";
