//! meshnode: run unmodified WASI programs across a fleet of small machines,
//! and move them while they run.
//!
//! Main modules:
//! - [`dock`]: runs vessels in wasmi in fuel slices, with meshnode's own
//!   serializable `wasi_snapshot_preview1` ([`dock::wasi`]).
//! - [`store`]: the on-disk, content-addressed chunk and manifest store.
//! - [`cli`]: the `meshnode` command line.
//! - [`demo`]: `meshnode demo`, a local mesh moving a vessel around.
//! - [`daemon`]: `meshnode start`: data directory, lock, config, enrolment.
//! - [`mesh`]: the libp2p swarm: discovery, RTT, membership, status gossip.
//! - [`control`]: the CLI ↔ node control protocol (client and server).
//! - [`identity`]: node and user keys on disk.
//! - [`placement`]: where each vessel should run (latency-driven moves).
//! - [`vivaldi`]: the network coordinate each node learns from its pings,
//!   which estimates RTTs nobody measured (issue 19).
//! - [`ops`]: watching a node: `meshnode status`, `/metrics`, the
//!   dashboard, the node's log file.
//! - [`vessel`]: the vessels a node hosts: runner threads, images,
//!   durable records, logs.

pub mod boot_clock;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod dock;
pub mod failover;
pub mod identity;
pub mod mesh;
pub mod migration;
pub mod ops;
pub mod placement;
pub mod store;
mod sync;
pub mod upgrade;
pub mod vessel;
pub mod vivaldi;
