//! Control: how a user drives a node.
//!
//! - [`cli`]: the `peers`, `keygen`, `invite` and `trust` subcommands
//!   (argument structs and handlers; `crate::cli` wires them in).
//! - [`client`]: the CLI as a short-lived libp2p peer that signs each
//!   command with the user key, for a nonce the node issued.
//! - [`server`]: the node's side: nonces, trust, invites, joins.
//! - [`resolve`]: node names, and how a name, PeerId (prefix) or
//!   `HOST:PORT` the user gives becomes one node.
//! - [`tables`]: the `ps` and `peers` tables (within 100 columns, or
//!   `-o wide`) and their JSON.
//!
//! Messages are `protocol::control`; docs/protocol.md describes them and
//! docs/security.md the trust model.

pub mod cli;
pub mod client;
pub mod deploy_names;
pub mod drain_cli;
pub mod logs_cli;
pub mod logs_tail;
pub mod migrate_progress;
pub mod recover_cli;
pub mod resolve;
pub mod rm_cli;
pub mod server;
pub mod status_cli;
pub mod tables;
pub mod upgrade_cli;
pub mod upgrade_roll;
pub mod vessel_cli;
pub mod volume_cli;
