//! Control: how a user drives a node.
//!
//! - [`cli`]: the `peers`, `keygen`, `invite` and `trust` subcommands
//!   (argument structs and handlers; `crate::cli` wires them in).
//! - [`client`]: the CLI as a short-lived libp2p peer that signs each
//!   command with the user key, for a nonce the node issued.
//! - [`server`]: the node's side: nonces, trust, invites, joins.
//!
//! Messages are `protocol::control`; docs/protocol.md describes them and
//! docs/security.md the trust model.

pub mod cli;
pub mod client;
pub mod logs_cli;
pub mod recover_cli;
pub mod server;
pub mod status_cli;
pub mod vessel_cli;
