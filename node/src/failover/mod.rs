//! Failover of a replicated vessel: the lease and fencing protocol of
//! issue 15 as code without I/O (docs/protocol.md, "Failover: leases and
//! fencing"). Times are milliseconds of a monotonic boot clock
//! (`CLOCK_BOOTTIME`, which counts through a suspend) passed in by the
//! caller; nothing here reads a clock, a file or a socket. A driver
//! performs what these decide, and the seeded simulation ([`sim`], tests
//! only) drives the very same code over a faulty network, drifting clocks,
//! crashes and suspends.
//!
//! Stages, each one job:
//! - [`params`]: the lease length, clock-rate bound, margin and renewal
//!   interval, and the lengths each side derives from them;
//! - [`cert`]: checking a certificate against what a node knows, and
//!   collecting votes into one;
//! - [`voter`]: a voter's state for one vessel (what must be durable, what
//!   may be forgotten) and its decisions: grant, sign a deploy, a handoff,
//!   a takeover;
//! - [`holder`]: the owner's lease: rounds sent, grants counted, how long
//!   it may run, when to renew;
//! - [`error`]: typed refusals, each with its protocol code.
//!
//! The fencing record (`Record::Fenced`) and its rule (`fenced_by`) are
//! with the other records in `migration::record`.

pub mod cert;
pub mod error;
pub mod holder;
pub mod params;
pub mod voter;

#[cfg(test)]
mod sim;

pub use error::FailoverError;
pub use params::LeaseParams;
