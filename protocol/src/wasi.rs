//! A vessel's virtual OS state, as plain data.
//!
//! The dock implements `wasi_snapshot_preview1` over this state. Host handles
//! (open files, directory handles) are a cache that the dock rebuilds from it,
//! on this host or another: OS state is re-created, never restored.
//!
//! Paths are stored relative to the root of a preopened directory, as the
//! host resolved them when they were opened (symlinks followed), so that
//! opening the same relative path beneath the destination's directory for the
//! same guest path finds the same file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the dock needs to re-create a vessel's OS view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiState {
    /// argv, each without its trailing NUL.
    pub args: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries, each without its trailing NUL.
    pub env: Vec<Vec<u8>>,
    /// Preopened directories, referenced by index from descriptors.
    pub preopens: Vec<Preopen>,
    /// The descriptor table, by guest fd number.
    pub fds: BTreeMap<u32, Descriptor>,
    pub clocks: ClockState,
    pub stdio: StdioPositions,
}

/// A preopened directory. The guest sees `guest_path`; which host directory
/// backs it is a node-local decision made when the state is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    pub guest_path: String,
}

/// One entry of the descriptor table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub kind: DescriptorKind,
    /// preview1 rights of this descriptor.
    pub rights_base: u64,
    /// preview1 rights that descriptors opened through this one may get.
    pub rights_inheriting: u64,
    /// preview1 `fdflags` (append, dsync, nonblock, rsync, sync).
    pub fdflags: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DescriptorKind {
    Stdin,
    Stdout,
    Stderr,
    /// The root of preopen number `preopen`.
    PreopenRoot {
        preopen: u32,
    },
    /// A directory opened beneath a preopen.
    Directory {
        preopen: u32,
        path: Vec<u8>,
    },
    /// A regular file (or other non-directory) opened beneath a preopen.
    File {
        preopen: u32,
        /// Path relative to the preopen's root. Empty only for detached files.
        path: Vec<u8>,
        /// The current file position.
        offset: u64,
        read: bool,
        write: bool,
        /// Set when the file had no name left at capture (it was unlinked
        /// while open): its contents travel here, because re-opening by path
        /// cannot find it. Bounded by `limits::MAX_DETACHED_FILE_BYTES`.
        detached_contents: Option<Vec<u8>>,
    },
}

/// Clock state that must survive a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockState {
    /// The guest's monotonic clock at the moment the state was captured. A
    /// rebuilt vessel's monotonic clock continues from here, whatever the new
    /// host's own monotonic clock says, so it never goes backwards.
    pub monotonic_ns: u64,
}

/// How many bytes went through the standard streams. Logs are continued from
/// these offsets after a move, so that no line is lost or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StdioPositions {
    pub stdin_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}
