//! meshnode's own `wasi_snapshot_preview1`.
//!
//! - [`WasiCtx`] holds a vessel's OS view: the serializable
//!   [`protocol::wasi::WasiState`] plus host handles that are only a cache.
//!   Its calls are split by job: `ctx` (the context, descriptor table,
//!   args, env, clocks), `setup` (new, rebuild, capture), `stdio`, `fd`,
//!   `path`, `poll`, `sockets`, `rights` (which call needs which right),
//!   `wait` (how a blocked call hears from the
//!   vessel's owner), `changes` (which volume paths changed since the
//!   last checkpoint), and `stat` (host metadata in preview1's
//!   layouts).
//! - [`add_to_linker`] binds every preview1 function into a wasmi linker.
//! - [`abi`] has the errno values, flags and struct layouts.

pub mod abi;
mod changes;
mod ctx;
mod fd;
mod host;
mod listing;
mod mem;
mod path;
mod poll;
mod rights;
mod setup;
mod sockets;
mod stat;
mod stdio;
mod wait;

pub use changes::{ChangedPaths, ChangedSet, MAX_TRACKED_PATHS};
pub use ctx::WasiCtx;
pub use host::{add_to_linker, WasiView, FUNCTIONS, MODULE};
pub use setup::{CaptureError, DirMapping, SetupError, WasiOptions};
pub use sockets::Services;
pub use stdio::{InputSource, OutputSink, Stdio};
pub use wait::{Attend, Doorbell, Owner, ENDED_BY_OWNER};
