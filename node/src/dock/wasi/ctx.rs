//! The virtual WASI context: serializable state plus a cache of host handles.
//!
//! [`WasiCtx::state`] is the truth. Host handles live in `handles` and are
//! only a cache: [`WasiCtx::rebuild`] re-creates all of them from a
//! [`WasiState`] against whatever host directories this node maps to the
//! vessel's guest paths. File positions are kept in the state, and all file
//! I/O is positional, so a host handle carries no state of its own.
//!
//! This file holds the context itself and what every part uses: the
//! descriptor table, the handle cache, args, env and clocks. The preview1
//! calls live beside it, one file per job: `setup.rs` (new, rebuild,
//! capture), `stdio.rs`, `fd.rs`, `path.rs`, `poll.rs` and `sockets.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cap_std::fs::{Dir, File};
use protocol::limits::MAX_OPEN_DESCRIPTORS;
use protocol::wasi::{Descriptor, DescriptorKind, WasiState};

use super::abi::*;
use super::stdio::Stdio;
use crate::dock::services::ServiceHub;

pub(super) struct PreopenRoot {
    pub(super) dir: Dir,
    /// The host directory, canonical, so that `/proc/self/fd` links can be
    /// turned back into paths relative to it.
    pub(super) canonical: PathBuf,
}

pub(super) enum Handle {
    Stdio,
    /// A virtual socket: its bytes go through the service hub.
    Socket,
    Dir {
        dir: Dir,
        /// What `fd_readdir` is reading (`listing`), if kept.
        listing: Option<super::listing::HeldListing>,
    },
    File(File),
}

/// The guest's monotonic clock: it continues from the captured value on any
/// host, so it never goes backwards across a move.
pub(super) struct GuestClock {
    pub(super) base_ns: u64,
    pub(super) started: Instant,
}

impl GuestClock {
    pub(super) fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.started.elapsed().as_nanos() as u64)
    }
}

pub struct WasiCtx {
    pub(super) state: WasiState,
    pub(super) roots: Vec<PreopenRoot>,
    pub(super) handles: BTreeMap<u32, Handle>,
    pub(super) clock: GuestClock,
    pub(super) stdio: Stdio,
    /// Where the bytes of the vessel's sockets come from and go to.
    pub(super) hub: Option<Arc<dyn ServiceHub>>,
    /// Set by `proc_exit`, read by the dock.
    pub exit_code: Option<u32>,
    /// The vessel's owner (the runner), whom a waiting call listens to
    /// (see `wait`).
    pub(super) owner: Option<super::wait::OwnerLink>,
    /// Whether the running call may give up its wait so that the vessel
    /// unwinds (a blocking import of an instrumented module), set by its
    /// host function.
    pub(super) interruptible: bool,
    /// The running call gave up its wait for the owner: its host function
    /// makes the vessel unwind instead of returning results.
    pub(super) interrupted: bool,
    /// The running call gave up its wait because the owner wants the
    /// vessel gone: its host function ends the run (`wait`).
    pub(super) ended: bool,
    /// Which paths beneath each preopen changed since the last checkpoint
    /// took them (`changes`). Not part of the state: it is about this
    /// host's directories, and starts over with every context.
    pub(super) changes: super::changes::ChangeTracker,
    /// Counts `fd_readdir` calls: which listing was read least recently.
    pub(super) listing_tick: u64,
    /// The most the listings may hold together: [`MAX_LISTINGS_BYTES`]
    /// (smaller in tests).
    ///
    /// [`MAX_LISTINGS_BYTES`]: super::listing::MAX_LISTINGS_BYTES
    pub(super) listings_budget: usize,
}

impl WasiCtx {
    /// The serializable state, without refreshing anything from the host.
    pub fn state(&self) -> &WasiState {
        &self.state
    }

    pub(super) fn desc(&self, fd: u32) -> Result<&Descriptor, Errno> {
        self.state.fds.get(&fd).ok_or(Errno::BADF)
    }

    pub(super) fn desc_mut(&mut self, fd: u32) -> Result<&mut Descriptor, Errno> {
        self.state.fds.get_mut(&fd).ok_or(Errno::BADF)
    }

    pub(super) fn file(&self, fd: u32) -> Result<&File, Errno> {
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => Ok(f),
            Some(Handle::Dir { .. }) => Err(Errno::ISDIR),
            Some(Handle::Stdio | Handle::Socket) => Err(Errno::SPIPE),
            None => Err(Errno::BADF),
        }
    }

    pub(super) fn dir(&self, fd: u32) -> Result<&Dir, Errno> {
        match self.handles.get(&fd) {
            Some(Handle::Dir { dir, .. }) => Ok(dir),
            Some(_) => Err(Errno::NOTDIR),
            None => Err(Errno::BADF),
        }
    }

    /// The preopen a directory descriptor lives under, and its path relative
    /// to that preopen's root.
    pub(super) fn dir_location(&self, fd: u32) -> Result<(u32, Vec<u8>), Errno> {
        match &self.desc(fd)?.kind {
            DescriptorKind::PreopenRoot { preopen } => Ok((*preopen, Vec::new())),
            DescriptorKind::Directory { preopen, path } => Ok((*preopen, path.clone())),
            _ => Err(Errno::NOTDIR),
        }
    }

    pub(super) fn alloc_fd(&self) -> Result<u32, Errno> {
        if self.state.fds.len() >= MAX_OPEN_DESCRIPTORS {
            return Err(Errno::MFILE);
        }
        // The lowest free number, as POSIX does.
        let mut fd = 0u32;
        for &used in self.state.fds.keys() {
            if used != fd {
                break;
            }
            fd += 1;
        }
        Ok(fd)
    }

    pub(super) fn insert(&mut self, fd: u32, desc: Descriptor, handle: Handle) {
        self.state.fds.insert(fd, desc);
        self.handles.insert(fd, handle);
    }

    // ---- args, env -------------------------------------------------------

    pub fn args(&self) -> &[Vec<u8>] {
        &self.state.args
    }

    pub fn env(&self) -> &[Vec<u8>] {
        &self.state.env
    }

    // ---- clocks, random ------------------------------------------------------

    pub fn clock_res(&self, id: u32) -> Result<u64, Errno> {
        match id {
            CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => {
                Ok(1)
            }
            _ => Err(Errno::INVAL),
        }
    }

    pub fn clock_time(&self, id: u32) -> Result<u64, Errno> {
        match id {
            // The realtime clock is the host's own: after a move it may step
            // back or forward by the hosts' clock skew (docs/wasi.md).
            CLOCK_REALTIME => Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)),
            // A vessel's CPU time is approximated by its monotonic run clock,
            // which also travels with it.
            CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME | CLOCK_THREAD_CPUTIME => {
                Ok(self.clock.now_ns())
            }
            _ => Err(Errno::INVAL),
        }
    }
}
