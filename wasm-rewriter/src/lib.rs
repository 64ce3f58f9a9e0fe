//! The migration-point transform (design §4, issue 3).
//!
//! meshnode runs unmodified WASI programs in wasmi, whose call stack is
//! private and not portable. Before a vessel runs, this crate rewrites its
//! wasm bytes so that the program can *unwind* its own call stack into typed
//! frames at a migration point and *rewind* it later, on any machine. This is
//! the Asyncify idea, done on wasm bytecode with wasmparser + wasm-encoder.
//!
//! # Main types
//! - [`rewrite`] takes wasm bytes and a [`RewriteConfig`] and returns
//!   [`Rewritten`]: the instrumented bytes plus a [`Report`].
//! - [`Report`] counts instrumented functions and migration points, gives the
//!   code-section size before and after, and lists a [`FrameLayout`] for every
//!   instrumented function: the host validates captured frames against it.
//! - [`FrameValType`] is the type of one saved frame value.
//! - [`RewriteError`] is every way a rewrite can fail. Unsupported input is
//!   refused with [`RewriteError::Unsupported`], which names the feature and
//!   the function.
//! - [`identity`] re-encodes a module through the same
//!   [`wasm_encoder::reencode::Reencode`] machinery without changing it (a
//!   byte-for-byte round trip); it exists to test that machinery.
//! - [`abi`] holds every name and number of the host ABI, documented in full in
//!   `docs/rewriter.md`.
//!
//! # How the transform works (see `docs/rewriter.md`)
//! 1. [`module`](crate::module) parses and validates the input, refuses
//!    unsupported features, and builds the call graph to decide which
//!    functions *may unwind*.
//! 2. [`func`](crate::func) instruments each may-unwind function: migration
//!    points at loop headers and after calls that may unwind, operand-stack
//!    spills, rewind guards, one shared save sequence and one load sequence.
//! 3. [`encode`](crate::encode) reassembles the module through `Reencode`,
//!    appending the ABI imports, globals and exports.

#![forbid(unsafe_code)]

pub mod abi;
mod encode;
mod features;
mod func;
mod module;

use std::fmt;

/// Version of the transform. Point indices and frame layouts only mean
/// something for the instrumented module they came from, so snapshots name
/// this version; bump it whenever the output bytes for some input may change.
pub const REWRITER_VERSION: &str = "meshnode-rewriter/1";

/// The most functions (imported + defined) a module may have. wasmparser
/// refuses more than 1,000,000; we add [`abi::IMPORT_COUNT`] imports and up to
/// one helper function, so we keep headroom below its limit.
pub const MAX_FUNCTIONS: u32 = 999_000;

/// The most locals (params included) an *instrumented* function may end up
/// with. wasmparser (and so wasmi) refuse functions with more than 50,000
/// locals; the transform adds locals for spills, so the limit applies to the
/// result, not the input.
pub const MAX_LOCALS_PER_FUNCTION: u32 = 50_000;

/// The most migration points in one function. Point indices travel as i32 in
/// frames; this bound keeps them small, positive and keeps one function's
/// instrumentation from exploding (each point costs a few dozen bytes).
pub const MAX_POINTS_PER_FUNCTION: u32 = 1 << 20;

/// The most passive data segments a module that uses `data.drop` may have.
/// Drops are tracked as one bit per passive segment in an i64 global (see
/// [`abi::DATA_DROPPED_EXPORT`]), so 64 is the hard limit of that encoding.
pub const MAX_PASSIVE_DATA_SEGMENTS: u32 = 64;

/// Which calls block, and optional extras. `Default` gives the blocking
/// imports of `wasi_snapshot_preview1` and no countdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteConfig {
    /// `(module, name)` pairs of imports that may block. A call to one of them
    /// is a migration point: the host may ask the vessel to unwind from inside
    /// the call, and on rewind the call is re-issued with the same arguments.
    pub blocking_imports: Vec<(String, String)>,
    /// Add the exported countdown global [`abi::COUNTDOWN_EXPORT`]: when the
    /// host sets it to N > 0, the N-th loop-header point reached in the
    /// running state raises an unwind request. Used for deterministic
    /// "migrate at every N-th point" runs and tests; costs one extra global
    /// read per loop iteration, so it is off by default. It changes the
    /// output bytes (and so the module hash).
    pub countdown: bool,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        let wasi = "wasi_snapshot_preview1";
        Self {
            blocking_imports: ["poll_oneoff", "fd_read", "sock_accept", "sock_recv"]
                .iter()
                .map(|name| (wasi.to_string(), name.to_string()))
                .collect(),
            countdown: false,
        }
    }
}

/// The result of [`rewrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The instrumented module.
    pub wasm: Vec<u8>,
    /// What was done, and the frame layouts the host validates against.
    pub report: Report,
}

/// Statistics and frame layouts of one rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Defined functions in the input (imports not counted).
    pub functions_total: u32,
    /// Defined functions that may unwind and were instrumented.
    pub functions_instrumented: u32,
    /// Migration points over all functions (loop headers + call sites).
    pub migration_points: u32,
    /// Size of the input's code section payload in bytes.
    pub code_section_bytes_before: u64,
    /// Size of the output's code section payload in bytes.
    pub code_section_bytes_after: u64,
    /// How much larger wasmi's value stack must be for the instrumented module
    /// to reach the recursion depth of the input, in percent (>= 100): the
    /// largest ratio, over instrumented functions, of estimated frame slots
    /// (locals + maximum operand-stack height) after and before. A dock
    /// multiplies its `max_stack_height` by this / 100. wasmi's
    /// recursion-depth limit (counted in frames) needs no change: the
    /// transform adds no calls on the normal path.
    pub value_stack_factor_percent: u32,
    /// One entry per instrumented function, sorted by function index.
    pub frames: Vec<FrameLayout>,
}

/// What a frame of one instrumented function holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLayout {
    /// Index of the function in the *instrumented* module (the index passed to
    /// `save_point`/`load_point`).
    pub func_index: u32,
    /// Index of the same function in the input module.
    pub original_func_index: u32,
    /// Number of migration points; a frame's point index is below this.
    pub points: u32,
    /// Types of the saved values, in save (= load) order: every local of the
    /// instrumented function, params first, except the internal resume-point
    /// local (which travels as the frame's point index).
    pub locals: Vec<FrameValType>,
}

/// Type of one saved frame value. Reference and vector types are never saved:
/// the rewriter refuses functions that would need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameValType {
    I32,
    I64,
    F32,
    F64,
}

impl fmt::Display for FrameValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameValType::I32 => "i32",
            FrameValType::I64 => "i64",
            FrameValType::F32 => "f32",
            FrameValType::F64 => "f64",
        })
    }
}

/// A function named in an error: its index in the input module and, when
/// the name section gives one, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncRef {
    pub index: u32,
    pub name: Option<String>,
}

impl fmt::Display for FuncRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "function {} ({name})", self.index),
            None => write!(f, "function {}", self.index),
        }
    }
}

/// Everything that can go wrong in a rewrite.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The input is not a valid module for the supported feature set, and the
    /// failure is not one of the features we name explicitly.
    #[error("invalid input module{}: {message}", .func.as_ref().map(|f| format!(" in {f}")).unwrap_or_default())]
    Invalid {
        message: String,
        func: Option<FuncRef>,
    },
    /// The input uses a feature the transform does not support. `func` is
    /// `None` for module-level features (e.g. a second memory).
    #[error("unsupported feature `{feature}`{}{}", .func.as_ref().map(|f| format!(" in {f}")).unwrap_or_default(), .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unsupported {
        feature: &'static str,
        func: Option<FuncRef>,
        detail: Option<String>,
    },
    /// A named limit was exceeded.
    #[error("limit exceeded: {limit} is {max}, got {actual}{}", .func.as_ref().map(|f| format!(" in {f}")).unwrap_or_default())]
    Limit {
        limit: &'static str,
        max: u64,
        actual: u64,
        func: Option<FuncRef>,
    },
    /// The input already uses a name the ABI reserves.
    #[error("input already exports or imports the reserved name `{0}`")]
    ReservedName(String),
    /// Re-encoding failed (a malformed section the validator let through).
    #[error("re-encoding failed: {0}")]
    Encode(String),
    /// The transform produced a module that does not validate. This is a bug
    /// in the rewriter, never the input's fault; it is reported rather than
    /// handing out a broken module.
    #[error("internal error: the instrumented module does not validate: {0}")]
    Internal(String),
}

/// Instruments `wasm` for unwind/rewind. Deterministic: the same input and
/// config always give the same bytes.
pub fn rewrite(wasm: &[u8], config: &RewriteConfig) -> Result<Rewritten, RewriteError> {
    let info = module::analyze(wasm, config)?;
    let rewritten = encode::rewrite_module(wasm, &info, config)?;
    // Check our own output: a rewriter bug must not reach a dock.
    let mut validator = wasmparser::Validator::new_with_features(features::output_features());
    validator
        .validate_all(&rewritten.wasm)
        .map_err(|e| RewriteError::Internal(e.to_string()))?;
    Ok(rewritten)
}

/// Re-encodes `wasm` through `Reencode` without changing anything. Function
/// bodies are copied as raw bytes, so the output is byte-for-byte the input
/// for any module whose other sections use canonical LEB128 encodings (what
/// LLVM, wat and wasm-smith emit).
pub fn identity(wasm: &[u8]) -> Result<Vec<u8>, RewriteError> {
    encode::identity(wasm)
}
