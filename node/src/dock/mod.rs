//! The dock: runs vessels (WASI command modules) in wasmi, in fuel slices.
//!
//! - [`DockConfig`]: the engine's limits (memory, call depth, value stack)
//!   and the fuel slice length, each with a named default.
//! - [`limits`]: what one vessel may make the node allocate (all its
//!   memories together, table elements, how many tables and memories).
//! - [`load_module`] (`load.rs`): reads and checks a module, with an error
//!   that names the file and the reason.
//! - [`Vessel`] (`vessel.rs`): one instantiated program.
//!   [`Vessel::run_slice`] runs it for one fuel slice; between slices the
//!   dock may inspect it, swap its WASI context, or stop it.
//! - [`Vessel::capture`] and [`Vessel::resume`] (`capture.rs`): an unwound
//!   vessel's state, and a vessel re-created from it.
//! - [`spawn`]: runs a vessel to completion on a worker thread of its own, so
//!   that CPU-bound vessels never stall the node's async work.

pub mod address_space;
mod capture;
pub mod dirty;
pub mod frames;
pub mod fuzzing;
pub mod limits;
mod load;
pub mod services;
pub mod snapshot;
mod trap;
mod vessel;
pub mod wasi;

use std::path::PathBuf;

use wasmi::{Config, Engine};

pub use self::address_space::MemoryLimit;
pub use self::capture::{validate_frames, Capture};
pub use self::load::{
    load_module, module_from_bytes, read_module_file, Instrumented, Mode, VesselModule,
};
pub use self::vessel::{spawn, Exit, Slice, Vessel, VesselCtx};

/// Default cap on a vessel's linear memory, all its memories together
/// ([`limits::VesselLimiter`]). Small boards have 1–8 GiB; one
/// vessel should not be able to take most of a 1 GiB Pi.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// Default cap on wasm call depth, in frames. wasmi's own default (1,000)
/// stops C programs that wasmtime and Node run: they recurse a few thousand
/// frames deep. 100,000 frames cover deep-recursion programs and the larger
/// frames of rewritten vessels, while a runaway recursion still ends in a
/// clean "call stack exhausted" trap rather than exhausting host memory.
pub const DEFAULT_MAX_CALL_DEPTH: usize = 100_000;

/// Default cap on wasmi's value stack, in bytes. Sized with the call depth:
/// 100,000 frames of a few dozen 8-byte slots each. It is allocated as it is
/// used, so an idle vessel does not pay for it.
pub const DEFAULT_MAX_VALUE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Default fuel per slice. wasmi charges about one unit per instruction, so a
/// slice is a few milliseconds on a Pi-class CPU: short enough that a
/// capture request waits little, long enough that slicing costs almost
/// nothing (docs/benchmarks.md).
pub const DEFAULT_FUEL_SLICE: u64 = 4_000_000;

/// Largest module file the dock reads (see the limit's own comment).
pub const MAX_MODULE_BYTES: u64 = protocol::limits::MAX_MODULE_BYTES;

/// The engine's limits and slicing.
#[derive(Debug, Clone)]
pub struct DockConfig {
    pub max_memory_bytes: usize,
    /// The host's bound on one vessel's memory, below the configured limit
    /// on a 32-bit host ([`address_space::HOST_ADDRESS_SPACE_BOUND`];
    /// tests set a 32-bit one). Vessels run under [`Self::memory_limit`].
    pub address_space_bytes: Option<u64>,
    pub max_call_depth: usize,
    pub max_value_stack_bytes: usize,
    /// Fuel per slice; `None` runs without fuel metering (not preemptible:
    /// only for measuring what slicing costs).
    pub fuel_slice: Option<u64>,
}

impl Default for DockConfig {
    fn default() -> Self {
        DockConfig {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            address_space_bytes: address_space::HOST_ADDRESS_SPACE_BOUND,
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
            max_value_stack_bytes: DEFAULT_MAX_VALUE_STACK_BYTES,
            fuel_slice: Some(DEFAULT_FUEL_SLICE),
        }
    }
}

impl DockConfig {
    /// A wasmi engine with these limits and the features vessels may use.
    pub fn engine(&self) -> Engine {
        let mut c = Config::default();
        // Lazy translation charges a function's translation to the fuel of
        // the slice that first calls it, and running out of fuel there is a
        // trap rather than a resumable stop. Vessels must be preemptible
        // anywhere, so every function is translated before the first slice.
        c.compilation_mode(wasmi::CompilationMode::Eager);
        c.set_max_recursion_depth(self.max_call_depth)
            .set_max_stack_height(self.max_value_stack_bytes)
            .consume_fuel(self.fuel_slice.is_some())
            .wasm_mutable_global(true)
            .wasm_sign_extension(true)
            .wasm_saturating_float_to_int(true)
            .wasm_multi_value(true)
            .wasm_bulk_memory(true)
            .wasm_reference_types(true)
            .wasm_tail_call(false)
            .wasm_extended_const(true)
            .wasm_multi_memory(true);
        Engine::new(&c)
    }
}

/// Why a vessel could not be loaded, started or run.
#[derive(Debug, thiserror::Error)]
pub enum DockError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: is {size_bytes} bytes, over the limit of {limit_bytes} bytes for a module")]
    TooLarge {
        path: PathBuf,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error("{path}: not a WebAssembly module (it does not start with \\0asm)")]
    NotWasm { path: PathBuf },
    #[error("{path}: invalid WebAssembly module: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: imports {module}.{name} ({kind}), which meshnode does not provide")]
    UnknownImport {
        path: PathBuf,
        module: String,
        name: String,
        kind: &'static str,
    },
    #[error("{path}: declares {over}")]
    OverLimit {
        path: PathBuf,
        over: limits::OverLimit,
    },
    #[error("cannot instantiate: needs {0}")]
    InstantiateOverLimit(limits::OverLimit),
    #[error("{path}: has no `_start` function to run (it is not a WASI command module)")]
    NoStart { path: PathBuf },
    #[error("cannot set up WASI: {0}")]
    Wasi(#[from] wasi::SetupError),
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    #[error("wasm trap: {0}")]
    Trap(String),
    #[error("{path}: cannot make it migratable: {reason}")]
    Rewrite { path: PathBuf, reason: String },
    #[error("cannot capture: {0}")]
    Capture(String),
    #[error("refusing to resume: {0}")]
    Resume(String),
}
