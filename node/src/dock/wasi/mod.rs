//! meshnode's own `wasi_snapshot_preview1`.
//!
//! - [`WasiCtx`] holds a vessel's OS view: the serializable
//!   [`protocol::wasi::WasiState`] plus host handles that are only a cache.
//! - [`add_to_linker`] binds every preview1 function into a wasmi linker.
//! - [`abi`] has the errno values, flags and struct layouts.

pub mod abi;
mod ctx;
mod host;
mod mem;
mod sockets;

pub use ctx::{
    CaptureError, DirMapping, InputSource, OutputSink, SetupError, Stdio, WasiCtx, WasiOptions,
};
pub use host::{add_to_linker, WasiView, FUNCTIONS, MODULE};
pub use sockets::Services;
