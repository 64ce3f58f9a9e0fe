//! Named limits on everything that comes from outside. A breach is a typed
//! error that carries the limit, never a panic or an unbounded allocation.

/// Largest CBOR document the decoder accepts. A WASI state holds paths, args
/// and env, all of which are small; 16 MiB leaves room for detached file
/// contents (see [`MAX_DETACHED_FILE_BYTES`]) while bounding what a hostile peer
/// can make us buffer.
pub const MAX_CBOR_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Most descriptors one vessel may hold open. Linux's default soft
/// `RLIMIT_NOFILE` is 1024; a vessel gets the same budget, so a migrated
/// vessel never needs more host handles than the destination can give it.
pub const MAX_OPEN_DESCRIPTORS: usize = 1024;

/// Longest guest path, in bytes, after joining with its directory. Linux's
/// `PATH_MAX` is 4096; a longer path gets `ENAMETOOLONG`, as it would natively.
pub const MAX_PATH_BYTES: usize = 4096;

/// Most bytes of args plus environment. Linux's `ARG_MAX` is 2 MiB.
pub const MAX_ARGS_ENV_BYTES: usize = 2 * 1024 * 1024;

/// Most preopened directories per vessel. Real programs use a handful.
pub const MAX_PREOPENS: usize = 64;

/// Largest file that was unlinked while the vessel held it open and whose
/// contents therefore travel inside the WASI state (it has no path to be
/// re-opened by). Temp files bigger than this make a capture fail cleanly
/// (the vessel keeps running where it is) rather than lose data.
pub const MAX_DETACHED_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Largest linear memory a snapshot may describe: all of wasm32's 4 GiB.
/// The resuming dock also applies the vessel's own, usually lower, cap.
pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Largest module. Real WASI programs are a few MiB; this keeps a mistaken
/// path (a disk image, a log) from being read whole.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// Most globals a snapshot may carry. wasmparser's own limit on globals in a
/// module is 1,000,000.
pub const MAX_GLOBALS: u64 = 1_000_000;

/// Most captured frames: the dock's default call-depth cap, with headroom
/// for a vessel that ran under a raised cap.
pub const MAX_FRAMES: u64 = 1_000_000;

/// Most locals in one frame. wasmparser refuses functions with more than
/// 50,000 locals.
pub const MAX_LOCALS_PER_FRAME: u64 = 50_000;

/// Most values in all frames together, so that a hostile manifest cannot
/// make a resume allocate far more than any real stack holds.
pub const MAX_TOTAL_FRAME_VALUES: u64 = 16 * 1024 * 1024;
