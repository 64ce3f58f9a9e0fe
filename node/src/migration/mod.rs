//! The migration protocol, as a layer of its own below `mesh/`: what a
//! source and a destination decide at each step of a move, and the
//! ownership rules that keep a vessel on exactly one node. Nothing here
//! does I/O or imports `mesh/`; the node's drivers (`mesh::migrate` for
//! the source, `mesh::serve` for the destination, `mesh::recover` at
//! start-up) perform what these decide, and the seeded simulation (`sim`,
//! tests only) drives the very same code over a simulated network and
//! disks with faults.
//!
//! Stages, each one job:
//! - [`record`]: the durable record and the ownership rules (epochs, the
//!   commit rule, recovery at start-up);
//! - [`nonce`]: the nonces a destination issues for offers;
//! - [`source`]: the source's state machine (pre-copy, pause, offer,
//!   prepare, commit point, commit or abort);
//! - [`destination`]: the destination's sessions and its decisions on
//!   offers, chunks, prepare, commit and abort;
//! - [`error`]: typed failures with the step they happened at;
//! - [`bugs`]: deliberate protocol bugs that the simulation must catch
//!   (test builds only).

pub mod bugs;
pub mod destination;
pub mod error;
pub mod nonce;
pub mod record;
pub mod source;

#[cfg(test)]
mod sim;

pub use error::{ErrorKind, MigrationError, Step};
pub use record::Record;
