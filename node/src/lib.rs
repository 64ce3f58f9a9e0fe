//! meshnode: run unmodified WASI programs across a fleet of small machines,
//! and move them while they run.
//!
//! Main modules:
//! - [`dock`]: runs vessels in wasmi in fuel slices, with meshnode's own
//!   serializable `wasi_snapshot_preview1` ([`dock::wasi`]).
//! - [`store`]: the on-disk, content-addressed chunk and manifest store.
//! - [`cli`]: the `meshnode` command line.

pub mod cli;
pub mod dock;
pub mod store;
