//! The virtual WASI context: serializable state plus a cache of host handles.
//!
//! [`WasiCtx::state`] is the truth. Host handles live in `handles` and are
//! only a cache: [`WasiCtx::rebuild`] re-creates all of them from a
//! [`WasiState`] against whatever host directories this node maps to the
//! vessel's guest paths. File positions are kept in the state, and all file
//! I/O is positional, so a host handle carries no state of its own.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cap_fs_ext::{
    DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt, SystemTimeSpec,
};
use cap_std::fs::{Dir, File, FileExt, MetadataExt, OpenOptions};
use protocol::limits::{
    MAX_ARGS_ENV_BYTES, MAX_DETACHED_FILE_BYTES, MAX_OPEN_DESCRIPTORS, MAX_PATH_BYTES,
    MAX_PREOPENS, MAX_SERVICE_PORTS,
};
use protocol::wasi::{
    ClockState, Descriptor, DescriptorKind, ListenerState, Preopen, SocketStateError,
    StdioPositions, WasiState,
};

use super::abi::*;
use super::mem::MAX_IO_BYTES;
use super::sockets::{Services, RIGHTS_LISTENER};
use crate::dock::services::ServiceHub;

/// Takes one whole write of a vessel's stdout or stderr.
pub type RecordFn = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Where a vessel's standard output or error goes.
#[derive(Clone, Default)]
pub enum OutputSink {
    /// The node process's own stream.
    #[default]
    Inherit,
    /// An in-memory buffer (tests, fairness runs).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// A function that takes each write whole: a node's vessel log, which
    /// keeps stdout and stderr in one ordered record stream.
    Record(RecordFn),
}

/// Where a vessel's standard input comes from.
#[derive(Clone, Default)]
pub enum InputSource {
    #[default]
    Inherit,
    /// Fixed bytes; reads past the end see end-of-file.
    Bytes(Arc<Vec<u8>>),
    /// Always end-of-file.
    Empty,
}

/// The standard streams of one vessel.
#[derive(Clone, Default)]
pub struct Stdio {
    pub stdin: InputSource,
    pub stdout: OutputSink,
    pub stderr: OutputSink,
}

/// A host directory that backs a guest path.
#[derive(Debug, Clone)]
pub struct DirMapping {
    pub host: PathBuf,
    pub guest: String,
}

/// What a fresh vessel starts with.
#[derive(Clone, Default)]
pub struct WasiOptions {
    pub args: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub dirs: Vec<DirMapping>,
    pub stdio: Stdio,
}

/// Why a WASI context could not be set up or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot open directory {host} for guest path {guest}: {source}")]
    OpenPreopen {
        host: PathBuf,
        guest: String,
        source: io::Error,
    },
    #[error("no host directory is mapped to guest path {guest}")]
    UnmappedPreopen { guest: String },
    #[error("args and environment are {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    ArgsTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("{count} preopened directories, over the limit of {limit}")]
    TooManyPreopens { count: usize, limit: usize },
    #[error("{count} descriptors, over the limit of {limit}")]
    TooManyDescriptors { count: usize, limit: usize },
    #[error("descriptor {fd} names preopen {preopen}, but there are only {count}")]
    BadPreopenIndex { fd: u32, preopen: u32, count: usize },
    #[error("cannot re-open {path} for descriptor {fd} beneath {guest}: {source}")]
    Reopen {
        fd: u32,
        guest: String,
        path: String,
        source: io::Error,
    },
    #[error("descriptor {fd}: {reason}")]
    BadDescriptor { fd: u32, reason: &'static str },
    #[error("{count} service ports, over the limit of {limit} per vessel")]
    TooManyServicePorts { count: usize, limit: usize },
    #[error("no service hub serves the service port {service}")]
    UnknownService { service: String },
    #[error("descriptor {fd} is a socket, but no service hub was given to rebuild it against")]
    NoServiceHub { fd: u32 },
    #[error("sockets: {0}")]
    Sockets(#[from] SocketStateError),
}

/// Why the state could not be captured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("descriptor {fd} is an unlinked file of {size_bytes} bytes, over the limit of {limit_bytes} bytes that may travel inside the state")]
    DetachedTooLarge {
        fd: u32,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error("descriptor {fd}: cannot read its host file: {source}")]
    Io { fd: u32, source: io::Error },
}

struct PreopenRoot {
    dir: Dir,
    /// The host directory, canonical, so that `/proc/self/fd` links can be
    /// turned back into paths relative to it.
    canonical: PathBuf,
}

pub(super) struct ListingEntry {
    name: Vec<u8>,
    ino: u64,
    filetype: u8,
}

pub(super) enum Handle {
    Stdio,
    /// A virtual socket: its bytes go through the service hub.
    Socket,
    Dir {
        dir: Dir,
        listing: Option<Vec<ListingEntry>>,
    },
    File(File),
}

/// The guest's monotonic clock: it continues from the captured value on any
/// host, so it never goes backwards across a move.
struct GuestClock {
    base_ns: u64,
    started: Instant,
}

impl GuestClock {
    fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.started.elapsed().as_nanos() as u64)
    }
}

pub struct WasiCtx {
    pub(super) state: WasiState,
    roots: Vec<PreopenRoot>,
    handles: BTreeMap<u32, Handle>,
    clock: GuestClock,
    stdio: Stdio,
    /// Where the bytes of the vessel's sockets come from and go to.
    pub(super) hub: Option<Arc<dyn ServiceHub>>,
    /// Set by `proc_exit`, read by the dock.
    pub exit_code: Option<u32>,
    /// Raised from another thread when the vessel should unwind (a
    /// migration wants it) even while it waits in `poll_oneoff`.
    interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Whether the running `poll_oneoff` may be interrupted (the module is
    /// instrumented and not rewinding), set by the host function.
    pub(super) interruptible: bool,
    /// The last `poll_oneoff` gave up its wait because of `interrupt`: the
    /// host function makes the vessel unwind instead of returning events.
    pub(super) interrupted: bool,
}

/// How often a wait checks whether a migration wants the vessel to unwind.
pub const INTERRUPT_CHECK_INTERVAL: Duration = Duration::from_millis(5);

fn open_root(mapping: &DirMapping) -> Result<PreopenRoot, SetupError> {
    let err = |source| SetupError::OpenPreopen {
        host: mapping.host.clone(),
        guest: mapping.guest.clone(),
        source,
    };
    let dir = Dir::open_ambient_dir(&mapping.host, cap_std::ambient_authority()).map_err(err)?;
    let canonical = std::fs::canonicalize(&mapping.host).map_err(err)?;
    Ok(PreopenRoot { dir, canonical })
}

fn stdio_descriptor(kind: DescriptorKind) -> Descriptor {
    let rights = if kind == DescriptorKind::Stdin {
        RIGHTS_STDIN
    } else {
        RIGHTS_STDOUT
    };
    Descriptor {
        kind,
        rights_base: rights,
        rights_inheriting: 0,
        fdflags: 0,
    }
}

impl WasiCtx {
    /// A fresh context: stdio on 0–2, preopens from 3 in the given order.
    pub fn new(opts: WasiOptions) -> Result<Self, SetupError> {
        Self::new_with_services(opts, None)
    }

    /// A fresh context with listening sockets: stdio on 0–2, one listener
    /// per service port from 3 in the given order, then the preopens (the
    /// order wasmtime's `--tcplisten` uses, so programs written for it find
    /// their socket at the same descriptor).
    pub fn new_with_services(
        opts: WasiOptions,
        services: Option<Services>,
    ) -> Result<Self, SetupError> {
        let size_bytes: usize = opts.args.iter().chain(&opts.env).map(|a| a.len() + 1).sum();
        if size_bytes > MAX_ARGS_ENV_BYTES {
            return Err(SetupError::ArgsTooLarge {
                size_bytes,
                limit_bytes: MAX_ARGS_ENV_BYTES,
            });
        }
        if opts.dirs.len() > MAX_PREOPENS {
            return Err(SetupError::TooManyPreopens {
                count: opts.dirs.len(),
                limit: MAX_PREOPENS,
            });
        }
        let mut fds = BTreeMap::new();
        fds.insert(0, stdio_descriptor(DescriptorKind::Stdin));
        fds.insert(1, stdio_descriptor(DescriptorKind::Stdout));
        fds.insert(2, stdio_descriptor(DescriptorKind::Stderr));
        let ports = services.as_ref().map_or(&[][..], |s| &s.ports[..]);
        if ports.len() > MAX_SERVICE_PORTS {
            return Err(SetupError::TooManyServicePorts {
                count: ports.len(),
                limit: MAX_SERVICE_PORTS,
            });
        }
        for (i, service) in ports.iter().enumerate() {
            fds.insert(
                3 + i as u32,
                Descriptor {
                    kind: DescriptorKind::Listener(ListenerState {
                        service: service.clone(),
                        pending: Vec::new(),
                    }),
                    rights_base: RIGHTS_LISTENER,
                    rights_inheriting: 0,
                    // Blocking, as a socket fresh from socket(2): a plain
                    // accept() loop blocks (wasmtime hands out non-blocking
                    // listeners; docs/wasi.md).
                    fdflags: 0,
                },
            );
        }
        let first_dir = 3 + ports.len() as u32;
        let mut preopens = Vec::new();
        for (i, d) in opts.dirs.iter().enumerate() {
            preopens.push(Preopen {
                guest_path: d.guest.clone(),
            });
            fds.insert(
                first_dir + i as u32,
                Descriptor {
                    kind: DescriptorKind::PreopenRoot { preopen: i as u32 },
                    rights_base: RIGHTS_DIRECTORY,
                    rights_inheriting: RIGHTS_DIRECTORY_INHERITING,
                    fdflags: 0,
                },
            );
        }
        let state = WasiState {
            args: opts.args,
            env: opts.env,
            preopens,
            fds,
            clocks: ClockState::default(),
            stdio: StdioPositions::default(),
            pending_poll_deadlines_ns: None,
        };
        Self::rebuild_with_hub(state, &opts.dirs, opts.stdio, services.map(|s| s.hub))
    }

    /// Re-creates every host handle from `state`. `dirs` maps each preopen's
    /// guest path to a directory on this host; it need not be the directory
    /// the state was captured against. A state with sockets needs
    /// [`rebuild_with_hub`](Self::rebuild_with_hub).
    pub fn rebuild(
        state: WasiState,
        dirs: &[DirMapping],
        stdio: Stdio,
    ) -> Result<Self, SetupError> {
        Self::rebuild_with_hub(state, dirs, stdio, None)
    }

    /// As [`rebuild`](Self::rebuild), with the service hub that the
    /// vessel's sockets continue against. Against the same hub (or one fed
    /// the same streams), open connections continue with no byte lost or
    /// repeated; a connection the hub no longer knows reads as reset.
    pub fn rebuild_with_hub(
        state: WasiState,
        dirs: &[DirMapping],
        stdio: Stdio,
        hub: Option<Arc<dyn ServiceHub>>,
    ) -> Result<Self, SetupError> {
        state.check_sockets()?;
        if state.preopens.len() > MAX_PREOPENS {
            return Err(SetupError::TooManyPreopens {
                count: state.preopens.len(),
                limit: MAX_PREOPENS,
            });
        }
        if state.fds.len() > MAX_OPEN_DESCRIPTORS {
            return Err(SetupError::TooManyDescriptors {
                count: state.fds.len(),
                limit: MAX_OPEN_DESCRIPTORS,
            });
        }
        let mut roots = Vec::with_capacity(state.preopens.len());
        for p in &state.preopens {
            let mapping = dirs
                .iter()
                .find(|d| d.guest == p.guest_path)
                .ok_or_else(|| SetupError::UnmappedPreopen {
                    guest: p.guest_path.clone(),
                })?;
            roots.push(open_root(mapping)?);
        }
        let mut handles = BTreeMap::new();
        for (&fd, desc) in &state.fds {
            let root_of = |preopen: u32| -> Result<(&PreopenRoot, &str), SetupError> {
                let r = roots
                    .get(preopen as usize)
                    .ok_or(SetupError::BadPreopenIndex {
                        fd,
                        preopen,
                        count: roots.len(),
                    })?;
                Ok((r, state.preopens[preopen as usize].guest_path.as_str()))
            };
            let reopen_err = |guest: &str, path: &[u8], source| SetupError::Reopen {
                fd,
                guest: guest.to_string(),
                path: String::from_utf8_lossy(path).into_owned(),
                source,
            };
            let handle = match &desc.kind {
                DescriptorKind::Stdin | DescriptorKind::Stdout | DescriptorKind::Stderr => {
                    Handle::Stdio
                }
                DescriptorKind::Listener(l) => {
                    let hub = hub.as_ref().ok_or(SetupError::NoServiceHub { fd })?;
                    if !hub.serves(&l.service) {
                        return Err(SetupError::UnknownService {
                            service: l.service.clone(),
                        });
                    }
                    Handle::Socket
                }
                DescriptorKind::Connection(_) => {
                    hub.as_ref().ok_or(SetupError::NoServiceHub { fd })?;
                    Handle::Socket
                }
                DescriptorKind::PreopenRoot { preopen } => {
                    let (root, guest) = root_of(*preopen)?;
                    let dir = root
                        .dir
                        .try_clone()
                        .map_err(|e| reopen_err(guest, b".", e))?;
                    Handle::Dir { dir, listing: None }
                }
                DescriptorKind::Directory { preopen, path } => {
                    let (root, guest) = root_of(*preopen)?;
                    let dir = root
                        .dir
                        .open_dir(state_path(path))
                        .map_err(|e| reopen_err(guest, path, e))?;
                    Handle::Dir { dir, listing: None }
                }
                DescriptorKind::File {
                    preopen,
                    path,
                    read,
                    write,
                    detached_contents,
                    ..
                } => {
                    let (root, guest) = root_of(*preopen)?;
                    match detached_contents {
                        Some(contents) => {
                            if contents.len() as u64 > MAX_DETACHED_FILE_BYTES {
                                return Err(SetupError::BadDescriptor {
                                    fd,
                                    reason: "detached file contents over the limit",
                                });
                            }
                            // The file had no name when it was captured, so it
                            // gets none here either: an anonymous temp file.
                            let f = tempfile::tempfile()
                                .map_err(|e| reopen_err(guest, b"(detached)", e))?;
                            std::os::unix::fs::FileExt::write_all_at(&f, contents, 0)
                                .map_err(|e| reopen_err(guest, b"(detached)", e))?;
                            Handle::File(File::from_std(f))
                        }
                        None => {
                            let mut o = OpenOptions::new();
                            o.read(*read || !*write).write(*write);
                            let f = root
                                .dir
                                .open_with(state_path(path), &o)
                                .map_err(|e| reopen_err(guest, path, e))?;
                            Handle::File(f)
                        }
                    }
                }
            };
            handles.insert(fd, handle);
        }
        let clock = GuestClock {
            base_ns: state.clocks.monotonic_ns,
            started: Instant::now(),
        };
        Ok(WasiCtx {
            state,
            roots,
            handles,
            clock,
            stdio,
            hub,
            exit_code: None,
            interrupt: None,
            interruptible: false,
            interrupted: false,
        })
    }

    /// Lets another thread make a blocked `poll_oneoff` give up its wait so
    /// that the vessel can unwind (see docs/rewriter.md, blocking imports).
    pub fn set_interrupt(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupt_raised(&self) -> bool {
        self.interruptible
            && self
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sleeps for `t`, or less when an interrupt is raised (returns true).
    fn sleep_interruptible(&self, t: Duration) -> bool {
        if !self.interruptible || self.interrupt.is_none() {
            std::thread::sleep(t);
            return false;
        }
        let end = Instant::now() + t;
        loop {
            if self.interrupt_raised() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(INTERRUPT_CHECK_INTERVAL));
        }
    }

    /// The state as it stands now, ready to travel. Refreshes what the host
    /// knows better than the state: where open files are now (they may have
    /// been renamed), and the contents of files that lost their last name.
    pub fn capture_state(&mut self) -> Result<WasiState, CaptureError> {
        let mut state = self.state.clone();
        state.clocks.monotonic_ns = self.clock.now_ns();
        for (&fd, desc) in state.fds.iter_mut() {
            let DescriptorKind::File {
                preopen,
                path,
                detached_contents,
                ..
            } = &mut desc.kind
            else {
                continue;
            };
            let Some(Handle::File(file)) = self.handles.get(&fd) else {
                continue;
            };
            let meta = file
                .metadata()
                .map_err(|source| CaptureError::Io { fd, source })?;
            if meta.nlink() == 0 {
                if meta.len() > MAX_DETACHED_FILE_BYTES {
                    return Err(CaptureError::DetachedTooLarge {
                        fd,
                        size_bytes: meta.len(),
                        limit_bytes: MAX_DETACHED_FILE_BYTES,
                    });
                }
                let mut buf = vec![0u8; meta.len() as usize];
                file.read_exact_at(&mut buf, 0)
                    .map_err(|source| CaptureError::Io { fd, source })?;
                *detached_contents = Some(buf);
                path.clear();
            } else if let Some(root) = self.roots.get(*preopen as usize) {
                if let Some(p) = host_relative_path(file, &root.canonical) {
                    *path = p;
                }
            }
        }
        Ok(state)
    }

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

    fn file(&self, fd: u32) -> Result<&File, Errno> {
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => Ok(f),
            Some(Handle::Dir { .. }) => Err(Errno::ISDIR),
            Some(Handle::Stdio | Handle::Socket) => Err(Errno::SPIPE),
            None => Err(Errno::BADF),
        }
    }

    fn dir(&self, fd: u32) -> Result<&Dir, Errno> {
        match self.handles.get(&fd) {
            Some(Handle::Dir { dir, .. }) => Ok(dir),
            Some(_) => Err(Errno::NOTDIR),
            None => Err(Errno::BADF),
        }
    }

    /// The preopen a directory descriptor lives under, and its path relative
    /// to that preopen's root.
    fn dir_location(&self, fd: u32) -> Result<(u32, Vec<u8>), Errno> {
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

    // ---- stdio helpers -------------------------------------------------------

    fn write_stdio(&mut self, which: &DescriptorKind, data: &[u8]) -> Result<usize, Errno> {
        let (sink, counter) = match which {
            DescriptorKind::Stdout => (&self.stdio.stdout, &mut self.state.stdio.stdout_bytes),
            DescriptorKind::Stderr => (&self.stdio.stderr, &mut self.state.stdio.stderr_bytes),
            _ => return Err(Errno::BADF),
        };
        match sink {
            OutputSink::Inherit => {
                let res = if *which == DescriptorKind::Stdout {
                    let mut out = io::stdout().lock();
                    out.write_all(data).and_then(|_| out.flush())
                } else {
                    io::stderr().lock().write_all(data)
                };
                res.map_err(Errno::from)?;
            }
            OutputSink::Buffer(buf) => buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(data),
            OutputSink::Record(f) => f(data),
        }
        *counter += data.len() as u64;
        Ok(data.len())
    }

    fn read_stdin(&mut self, len: usize) -> Result<Vec<u8>, Errno> {
        let len = len.min(MAX_IO_BYTES);
        let mut buf = vec![0u8; len];
        let n = match &self.stdio.stdin {
            InputSource::Inherit => io::stdin().lock().read(&mut buf).map_err(Errno::from)?,
            InputSource::Bytes(bytes) => {
                let pos = (self.state.stdio.stdin_bytes as usize).min(bytes.len());
                let n = (bytes.len() - pos).min(len);
                buf[..n].copy_from_slice(&bytes[pos..pos + n]);
                n
            }
            InputSource::Empty => 0,
        };
        buf.truncate(n);
        self.state.stdio.stdin_bytes += n as u64;
        Ok(buf)
    }

    // ---- fd_* ----------------------------------------------------------------

    pub fn fd_read(&mut self, fd: u32, len: usize) -> Result<Vec<u8>, Errno> {
        // A socket's descriptor holds its unread bytes: not cloned.
        match &self.desc(fd)?.kind {
            DescriptorKind::Connection(_) => return self.sock_recv(fd, len, 0),
            // Reading a listener: EBADF, as wasmtime (Linux: ENOTCONN).
            DescriptorKind::Listener(_) => return Err(Errno::BADF),
            _ => {}
        }
        let desc = self.desc(fd)?.clone();
        match desc.kind {
            DescriptorKind::Stdin => self.read_stdin(len),
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => Err(Errno::BADF),
            // A directory is not readable as a stream: EBADF, as in
            // wasmtime (Linux says EISDIR, Node ENOTCAPABLE; docs/wasi.md).
            DescriptorKind::Stdout
            | DescriptorKind::Stderr
            | DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. } => Err(Errno::BADF),
            DescriptorKind::File { offset, read, .. } => {
                if !read {
                    return Err(Errno::BADF);
                }
                let data = pread_up_to(self.file(fd)?, offset, len)?;
                if let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind {
                    *offset += data.len() as u64;
                }
                Ok(data)
            }
        }
    }

    pub fn fd_pread(&mut self, fd: u32, len: usize, offset: u64) -> Result<Vec<u8>, Errno> {
        match self.desc(fd)?.kind {
            DescriptorKind::File { read, .. } => {
                if !read {
                    return Err(Errno::BADF);
                }
                pread_up_to(self.file(fd)?, offset, len)
            }
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_write(&mut self, fd: u32, data: &[u8]) -> Result<usize, Errno> {
        match &self.desc(fd)?.kind {
            DescriptorKind::Connection(_) => return self.sock_send(fd, data),
            DescriptorKind::Listener(_) => return Err(Errno::BADF),
            _ => {}
        }
        let desc = self.desc(fd)?.clone();
        match &desc.kind {
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => Err(Errno::BADF),
            DescriptorKind::Stdout | DescriptorKind::Stderr => self.write_stdio(&desc.kind, data),
            DescriptorKind::Stdin
            | DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. } => Err(Errno::BADF),
            DescriptorKind::File { offset, write, .. } => {
                if !write {
                    return Err(Errno::BADF);
                }
                let file = self.file(fd)?;
                let at = if desc.fdflags & FDFLAGS_APPEND != 0 {
                    file.metadata().map_err(Errno::from)?.len()
                } else {
                    *offset
                };
                file.write_all_at(data, at).map_err(Errno::from)?;
                if let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind {
                    *offset = at + data.len() as u64;
                }
                Ok(data.len())
            }
        }
    }

    pub fn fd_pwrite(&mut self, fd: u32, data: &[u8], offset: u64) -> Result<usize, Errno> {
        match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => {
                if !write {
                    return Err(Errno::BADF);
                }
                self.file(fd)?
                    .write_all_at(data, offset)
                    .map_err(Errno::from)?;
                Ok(data.len())
            }
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_seek(&mut self, fd: u32, delta: i64, whence: u8) -> Result<u64, Errno> {
        let size = match &self.desc(fd)?.kind {
            DescriptorKind::File { .. } => self.file(fd)?.metadata().map_err(Errno::from)?.len(),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        };
        let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind else {
            unreachable!()
        };
        let base = match whence {
            WHENCE_SET => 0i128,
            WHENCE_CUR => *offset as i128,
            WHENCE_END => size as i128,
            _ => return Err(Errno::INVAL),
        };
        let target = base + delta as i128;
        if target < 0 || target > i64::MAX as i128 {
            return Err(Errno::INVAL);
        }
        *offset = target as u64;
        Ok(*offset)
    }

    pub fn fd_tell(&mut self, fd: u32) -> Result<u64, Errno> {
        match &self.desc(fd)?.kind {
            DescriptorKind::File { offset, .. } => Ok(*offset),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_close(&mut self, fd: u32) -> Result<(), Errno> {
        let desc = self.state.fds.remove(&fd).ok_or(Errno::BADF)?;
        self.handles.remove(&fd);
        self.release_socket(&desc);
        Ok(())
    }

    pub fn fd_renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        if !self.state.fds.contains_key(&from) || !self.state.fds.contains_key(&to) {
            return Err(Errno::BADF);
        }
        if from == to {
            return Ok(());
        }
        let desc = self.state.fds.remove(&from).unwrap();
        let handle = self.handles.remove(&from).unwrap();
        if let Some(replaced) = self.state.fds.remove(&to) {
            self.release_socket(&replaced);
        }
        self.insert(to, desc, handle);
        Ok(())
    }

    pub fn fd_sync(&mut self, fd: u32, data_only: bool) -> Result<(), Errno> {
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => if data_only {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(Errno::from),
            // Directories are synced through a handle of their own.
            Some(Handle::Dir { .. }) => Ok(()),
            // Nothing to sync; wasmtime says 0 too (Linux: EINVAL).
            Some(Handle::Socket) => Ok(()),
            // As wasmtime; Linux says EINVAL for a terminal or pipe.
            Some(Handle::Stdio) => Err(Errno::BADF),
            None => Err(Errno::BADF),
        }
    }

    pub fn fd_advise(&mut self, fd: u32, _offset: u64, _len: u64, advice: u8) -> Result<(), Errno> {
        if advice > 5 {
            return Err(Errno::INVAL);
        }
        match self.desc(fd)?.kind {
            DescriptorKind::File { .. } => Ok(()),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> Result<(), Errno> {
        let write = match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => write,
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        };
        if !write {
            return Err(Errno::BADF);
        }
        let end = offset.checked_add(len).ok_or(Errno::FBIG)?;
        if end > i64::MAX as u64 {
            return Err(Errno::FBIG);
        }
        let f = self.file(fd)?;
        if f.metadata().map_err(Errno::from)?.len() < end {
            f.set_len(end).map_err(Errno::from)?;
        }
        Ok(())
    }

    pub fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> Result<(), Errno> {
        let write = match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => write,
            // Directories and stdio: EBADF, as wasmtime.
            _ => return Err(Errno::BADF),
        };
        // Not open for writing: EINVAL, as ftruncate(2) on Linux and wasmtime.
        if !write {
            return Err(Errno::INVAL);
        }
        if size > i64::MAX as u64 {
            return Err(Errno::INVAL);
        }
        self.file(fd)?.set_len(size).map_err(Errno::from)
    }

    /// `(filetype, fdflags, rights_base, rights_inheriting)`.
    pub fn fd_fdstat(&self, fd: u32) -> Result<(u8, u16, u64, u64), Errno> {
        let desc = self.desc(fd)?;
        let filetype = match &desc.kind {
            DescriptorKind::Stdin | DescriptorKind::Stdout | DescriptorKind::Stderr => {
                FILETYPE_CHARACTER_DEVICE
            }
            DescriptorKind::PreopenRoot { .. } | DescriptorKind::Directory { .. } => {
                FILETYPE_DIRECTORY
            }
            DescriptorKind::File { .. } => {
                filetype_of(&self.file(fd)?.metadata().map_err(Errno::from)?)
            }
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => FILETYPE_SOCKET_STREAM,
        };
        Ok((
            filetype,
            desc.fdflags,
            desc.rights_base,
            desc.rights_inheriting,
        ))
    }

    pub fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> Result<(), Errno> {
        if flags & !FDFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        let desc = self.desc_mut(fd)?;
        // Only append and nonblock can change on an open descriptor; the sync
        // flags are chosen at open time, as on Linux.
        let changeable = FDFLAGS_APPEND | FDFLAGS_NONBLOCK;
        // EINVAL, as wasmtime.
        if (flags ^ desc.fdflags) & !changeable != 0 {
            return Err(Errno::INVAL);
        }
        desc.fdflags = flags;
        Ok(())
    }

    pub fn fd_fdstat_set_rights(
        &mut self,
        fd: u32,
        base: u64,
        inheriting: u64,
    ) -> Result<(), Errno> {
        let desc = self.desc_mut(fd)?;
        // Rights can only be dropped, never gained.
        if base & !desc.rights_base != 0 || inheriting & !desc.rights_inheriting != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        desc.rights_base = base;
        desc.rights_inheriting = inheriting;
        Ok(())
    }

    pub fn fd_filestat(&self, fd: u32) -> Result<[u8; FILESTAT_SIZE], Errno> {
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => Ok(encode_filestat(&f.metadata().map_err(Errno::from)?)),
            Some(Handle::Dir { dir, .. }) => {
                Ok(encode_filestat(&dir.dir_metadata().map_err(Errno::from)?))
            }
            Some(Handle::Stdio) => {
                let mut out = [0u8; FILESTAT_SIZE];
                out[16] = FILETYPE_CHARACTER_DEVICE;
                out[24..32].copy_from_slice(&1u64.to_le_bytes());
                Ok(out)
            }
            Some(Handle::Socket) => {
                let mut out = [0u8; FILESTAT_SIZE];
                out[16] = FILETYPE_SOCKET_STREAM;
                out[24..32].copy_from_slice(&1u64.to_le_bytes());
                Ok(out)
            }
            None => Err(Errno::BADF),
        }
    }

    pub fn fd_filestat_set_times(
        &mut self,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> Result<(), Errno> {
        let (a, m) = time_specs(atim, mtim, fst)?;
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => {
                let plain = |t: Option<SystemTimeSpec>| {
                    t.map(|t| match t {
                        SystemTimeSpec::SymbolicNow => fs_set_times::SystemTimeSpec::SymbolicNow,
                        SystemTimeSpec::Absolute(at) => {
                            fs_set_times::SystemTimeSpec::Absolute(at.into_std())
                        }
                    })
                };
                fs_set_times::SetTimes::set_times(f, plain(a), plain(m)).map_err(Errno::from)
            }
            Some(Handle::Dir { dir, .. }) => dir.set_times(".", a, m).map_err(Errno::from),
            Some(Handle::Stdio | Handle::Socket) => Err(Errno::BADF),
            None => Err(Errno::BADF),
        }
    }

    pub fn prestat_name(&self, fd: u32) -> Result<&str, Errno> {
        match self.desc(fd)?.kind {
            DescriptorKind::PreopenRoot { preopen } => {
                Ok(&self.state.preopens[preopen as usize].guest_path)
            }
            _ => Err(Errno::BADF),
        }
    }

    /// Fills `buf_len` bytes of preview1 dirents starting at `cookie`.
    pub fn fd_readdir(&mut self, fd: u32, cookie: u64, buf_len: usize) -> Result<Vec<u8>, Errno> {
        // Listing something that is not a directory: EBADF, as in wasmtime
        // (Linux's getdents says ENOTDIR, Node ENOTCAPABLE; docs/wasi.md).
        self.desc(fd)?;
        let Some(Handle::Dir { dir, listing }) = self.handles.get_mut(&fd) else {
            return Err(Errno::BADF);
        };
        // A new listing starts at cookie 0; later calls continue the cached
        // one. The listing is sorted by name, so that a listing continued
        // after a move, from a rebuilt handle, resumes at the same entry.
        if cookie == 0 || listing.is_none() {
            *listing = Some(list_dir(dir)?);
        }
        let entries = listing.as_ref().unwrap();
        let mut out = Vec::with_capacity(buf_len.min(64 * 1024));
        for (i, e) in entries
            .iter()
            .enumerate()
            .skip(cookie.min(usize::MAX as u64) as usize)
        {
            if out.len() >= buf_len {
                break;
            }
            let mut rec = Vec::with_capacity(DIRENT_SIZE + e.name.len());
            rec.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            rec.extend_from_slice(&e.ino.to_le_bytes());
            rec.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
            rec.push(e.filetype);
            rec.extend_from_slice(&[0, 0, 0]);
            rec.extend_from_slice(&e.name);
            // A record that does not fit is cut; the guest sees a full buffer
            // and asks again from this entry's cookie with a bigger one.
            let room = buf_len - out.len();
            out.extend_from_slice(&rec[..rec.len().min(room)]);
        }
        Ok(out)
    }

    // ---- path_* --------------------------------------------------------------

    /// Checks a guest path and turns it into a host path relative to `fd`.
    fn guest_path<'p>(&self, fd: u32, path: &'p [u8]) -> Result<(&Dir, &'p Path), Errno> {
        let dir = self.dir(fd)?;
        if path.contains(&0) {
            return Err(Errno::INVAL);
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(Errno::NAMETOOLONG);
        }
        if path.is_empty() {
            return Err(Errno::NOENT);
        }
        Ok((dir, rel_path(path)))
    }

    /// The arguments of preview1's `path_open`, decoded.
    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        dirfd: u32,
        lookup: u32,
        path: &[u8],
        oflags: u16,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u16,
    ) -> Result<u32, Errno> {
        let (preopen, dir_rel) = self.dir_location(dirfd)?;
        if oflags & !(OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC) != 0
            || fdflags & !FDFLAGS_ALL != 0
        {
            return Err(Errno::INVAL);
        }
        let parent_inheriting = self.desc(dirfd)?.rights_inheriting;
        let (dir, p) = self.guest_path(dirfd, path)?;
        let follow = lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0;
        let read = rights_base & (RIGHT_FD_READ | RIGHT_FD_READDIR) != 0;
        let write = rights_base
            & (RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_FD_DATASYNC)
            != 0;
        let fd = self.alloc_fd()?;
        let lexical = join_lexical(&dir_rel, path);
        let root_canon = self.roots[preopen as usize].canonical.clone();
        // A directory, however it was opened: where the host says it is,
        // with directory rights the parent lets it inherit.
        let dir_descriptor = |d: &Dir, lexical: Vec<u8>| Descriptor {
            kind: DescriptorKind::Directory {
                preopen,
                path: host_relative_path(d, &root_canon).unwrap_or(lexical),
            },
            rights_base: rights_base & RIGHTS_DIRECTORY & parent_inheriting,
            rights_inheriting: rights_inheriting & parent_inheriting,
            fdflags,
        };

        if oflags & OFLAGS_DIRECTORY != 0 {
            if oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 {
                return Err(Errno::INVAL);
            }
            let d = if follow {
                dir.open_dir(p).map_err(Errno::from)?
            } else {
                dir.open_dir_nofollow(p).map_err(|e| {
                    // A symlink where no symlink may be followed is ELOOP, as
                    // for files (O_NOFOLLOW); cap-std reports ENOTDIR here.
                    match dir.symlink_metadata(p) {
                        Ok(m) if m.file_type().is_symlink() => Errno::LOOP,
                        _ => Errno::from(e),
                    }
                })?
            };
            let desc = dir_descriptor(&d, lexical);
            self.insert(
                fd,
                desc,
                Handle::Dir {
                    dir: d,
                    listing: None,
                },
            );
            return Ok(fd);
        }

        let mut o = OpenOptions::new();
        o.read(read || !write)
            .write(write)
            .create(oflags & OFLAGS_CREAT != 0 && oflags & OFLAGS_EXCL == 0)
            .create_new(oflags & OFLAGS_CREAT != 0 && oflags & OFLAGS_EXCL != 0)
            .truncate(oflags & OFLAGS_TRUNC != 0)
            .follow(if follow {
                FollowSymlinks::Yes
            } else {
                FollowSymlinks::No
            })
            .maybe_dir(!write);
        if (oflags & (OFLAGS_CREAT | OFLAGS_TRUNC)) != 0 && !write {
            // Creating or truncating needs a writable open on Linux.
            o.write(true);
        }
        let f = dir.open_with(p, &o).map_err(Errno::from)?;
        let meta = f.metadata().map_err(Errno::from)?;
        if meta.is_dir() {
            if write {
                return Err(Errno::ISDIR);
            }
            let d = Dir::from_std_file(f.into_std());
            let desc = dir_descriptor(&d, lexical);
            self.insert(
                fd,
                desc,
                Handle::Dir {
                    dir: d,
                    listing: None,
                },
            );
            return Ok(fd);
        }
        let rel = host_relative_path(&f, &root_canon).unwrap_or(lexical);
        let mut allowed = 0;
        if read || !write {
            allowed |= RIGHTS_FILE_READ;
        }
        if write {
            allowed |= RIGHTS_FILE_READ | RIGHTS_FILE_WRITE;
        }
        let desc = Descriptor {
            kind: DescriptorKind::File {
                preopen,
                path: rel,
                offset: 0,
                read: read || !write,
                write,
                detached_contents: None,
            },
            rights_base: rights_base & allowed & parent_inheriting,
            rights_inheriting: rights_inheriting & parent_inheriting,
            fdflags,
        };
        self.insert(fd, desc, Handle::File(f));
        Ok(fd)
    }

    pub fn path_create_directory(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        let (dir, p) = self.guest_path(fd, path)?;
        dir.create_dir(p).map_err(Errno::from)
    }

    pub fn path_remove_directory(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        let (dir, p) = self.guest_path(fd, path)?;
        dir.remove_dir(p).map_err(Errno::from)
    }

    pub fn path_unlink_file(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        let (dir, p) = self.guest_path(fd, path)?;
        // A trailing slash names a directory, which unlink refuses.
        if path.ends_with(b"/") {
            let m = dir.symlink_metadata(p).map_err(Errno::from)?;
            return Err(if m.is_dir() {
                Errno::ISDIR
            } else {
                Errno::NOTDIR
            });
        }
        dir.remove_file_or_symlink(p).map_err(Errno::from)
    }

    pub fn path_rename(
        &mut self,
        fd: u32,
        old: &[u8],
        new_fd: u32,
        new: &[u8],
    ) -> Result<(), Errno> {
        let (old_dir, op) = self.guest_path(fd, old)?;
        let (new_dir, np) = self.guest_path(new_fd, new)?;
        old_dir.rename(op, new_dir, np).map_err(Errno::from)?;
        self.refresh_paths();
        Ok(())
    }

    /// After a rename, open descriptors may live under new names; ask the
    /// host where each one is now.
    fn refresh_paths(&mut self) {
        for (fd, desc) in self.state.fds.iter_mut() {
            let (preopen, path) = match &mut desc.kind {
                DescriptorKind::File {
                    preopen,
                    path,
                    detached_contents: None,
                    ..
                } => (*preopen, path),
                DescriptorKind::Directory { preopen, path } => (*preopen, path),
                _ => continue,
            };
            let root = &self.roots[preopen as usize].canonical;
            let fresh = match self.handles.get(fd) {
                Some(Handle::File(f)) => host_relative_path(f, root),
                Some(Handle::Dir { dir, .. }) => host_relative_path(dir, root),
                _ => None,
            };
            if let Some(p) = fresh {
                *path = p;
            }
        }
    }

    pub fn path_symlink(&mut self, target: &[u8], fd: u32, link: &[u8]) -> Result<(), Errno> {
        if target.contains(&0) {
            return Err(Errno::INVAL);
        }
        let (dir, p) = self.guest_path(fd, link)?;
        // Symlinks with absolute targets are refused, as wasmtime does: they
        // can never be followed inside the sandbox.
        if target.starts_with(b"/") {
            return Err(Errno::PERM);
        }
        dir.symlink(rel_path(target), p).map_err(Errno::from)
    }

    pub fn path_readlink(&mut self, fd: u32, path: &[u8]) -> Result<Vec<u8>, Errno> {
        let (dir, p) = self.guest_path(fd, path)?;
        let target = dir.read_link_contents(p).map_err(Errno::from)?;
        Ok(target.as_os_str().as_bytes().to_vec())
    }

    pub fn path_link(
        &mut self,
        fd: u32,
        lookup: u32,
        old: &[u8],
        new_fd: u32,
        new: &[u8],
    ) -> Result<(), Errno> {
        if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            // cap-std links the symlink itself; following is not offered.
            return Err(Errno::INVAL);
        }
        let (old_dir, op) = self.guest_path(fd, old)?;
        let (new_dir, np) = self.guest_path(new_fd, new)?;
        old_dir.hard_link(op, new_dir, np).map_err(Errno::from)
    }

    pub fn path_filestat(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &[u8],
    ) -> Result<[u8; FILESTAT_SIZE], Errno> {
        let (dir, p) = self.guest_path(fd, path)?;
        let m = if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.metadata(p)
        } else {
            dir.symlink_metadata(p)
        }
        .map_err(Errno::from)?;
        Ok(encode_filestat(&m))
    }

    pub fn path_filestat_set_times(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &[u8],
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> Result<(), Errno> {
        let (a, m) = time_specs(atim, mtim, fst)?;
        let (dir, p) = self.guest_path(fd, path)?;
        if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.set_times(p, a, m)
        } else {
            dir.set_symlink_times(p, a, m)
        }
        .map_err(Errno::from)
    }

    // ---- poll ----------------------------------------------------------------

    /// Waits for subscriptions. Each subscription is `(userdata, kind)`;
    /// returns events as `(userdata, errno, type, nbytes, flags)`.
    ///
    /// Every clock subscription becomes a deadline on the guest's monotonic
    /// clock. Files and stdio other than an inherited stdin are always
    /// ready; sockets when their hub says so. If something is ready now, the
    /// call returns at once with it (and with any clock already due);
    /// otherwise it waits for the earliest deadline, stdin or a socket, and
    /// reports exactly what is ready then.
    pub fn poll(&mut self, subs: &[(u64, Subscription)]) -> Result<Vec<Event>, Errno> {
        if subs.is_empty() {
            return Err(Errno::INVAL);
        }
        let started_ns = self.clock.now_ns();
        let mut errors = Vec::new();
        // A call re-issued after a move waits for what was left of it.
        let mut resumed = self
            .state
            .pending_poll_deadlines_ns
            .take()
            .map(|d| d.into_iter());
        // (userdata, deadline on the guest monotonic clock)
        let mut clocks: Vec<(u64, u64)> = Vec::new();
        for &(userdata, ref sub) in subs {
            if let Subscription::Clock {
                id,
                timeout_ns,
                absolute,
            } = *sub
            {
                let now = match self.clock_time(id) {
                    Ok(now) => now,
                    Err(e) => {
                        errors.push((userdata, e, EVENTTYPE_CLOCK, 0, 0));
                        continue;
                    }
                };
                let wait = if absolute {
                    timeout_ns.saturating_sub(now)
                } else {
                    timeout_ns
                };
                let deadline = match resumed.as_mut().and_then(|d| d.next()) {
                    Some(d) => d,
                    None => started_ns.saturating_add(wait),
                };
                clocks.push((userdata, deadline));
            }
        }
        let due = |now: u64, events: &mut Vec<Event>| {
            for &(userdata, deadline) in &clocks {
                if deadline <= now {
                    events.push((userdata, Errno::SUCCESS, EVENTTYPE_CLOCK, 0, 0));
                }
            }
        };
        let earliest = clocks.iter().map(|&(_, d)| d).min();
        let sockets = subs.iter().any(|(_, s)| match *s {
            Subscription::FdRead(fd) | Subscription::FdWrite(fd) => self.is_socket(fd),
            Subscription::Clock { .. } => false,
        });
        if !sockets {
            let deadlines = clocks.clone();
            let r = self.poll_without_sockets(subs, errors, earliest, due);
            if self.interrupted {
                self.interrupt_poll(&deadlines);
                return Ok(Vec::new());
            }
            return r;
        }
        loop {
            // Taken before looking, so that a change while we look ends the
            // wait at once.
            let seen = self.hub_generation();
            let mut events = errors.clone();
            let mut wants_stdin = Vec::new();
            self.poll_fds(subs, &mut events, &mut wants_stdin)?;
            if !wants_stdin.is_empty() && stdin_ready(Some(Duration::ZERO))? {
                for u in wants_stdin.drain(..) {
                    events.push((u, Errno::SUCCESS, EVENTTYPE_FD_READ, 0, 0));
                }
            }
            let now = self.clock.now_ns();
            due(now, &mut events);
            if !events.is_empty() {
                return Ok(events);
            }
            if self.interrupt_raised() {
                self.interrupt_poll(&clocks);
                return Ok(Vec::new());
            }
            let mut timeout = earliest.map(|d| Duration::from_nanos(d.saturating_sub(now)));
            if !wants_stdin.is_empty() {
                // The hub cannot wake us for stdin: look at it now and then.
                const STDIN_TICK: Duration = Duration::from_millis(10);
                timeout = Some(timeout.map_or(STDIN_TICK, |t| t.min(STDIN_TICK)));
            }
            if self.interruptible && self.interrupt.is_some() {
                timeout = Some(timeout.map_or(INTERRUPT_CHECK_INTERVAL, |t| {
                    t.min(INTERRUPT_CHECK_INTERVAL)
                }));
            }
            self.wait_hub(seen, timeout);
        }
    }

    /// Gives up a wait for a migration: the deadlines stay in the state, so
    /// the re-issued call (after the rewind) waits only for what is left.
    fn interrupt_poll(&mut self, clocks: &[(u64, u64)]) {
        self.interrupted = true;
        self.state.pending_poll_deadlines_ns = Some(clocks.iter().map(|&(_, d)| d).collect());
    }

    /// Readiness of every fd subscription now. An inherited stdin cannot be
    /// judged without waiting: its userdata goes to `wants_stdin`.
    fn poll_fds(
        &mut self,
        subs: &[(u64, Subscription)],
        events: &mut Vec<Event>,
        wants_stdin: &mut Vec<u64>,
    ) -> Result<(), Errno> {
        for &(userdata, ref sub) in subs {
            let (fd, ty) = match *sub {
                Subscription::FdRead(fd) => (fd, EVENTTYPE_FD_READ),
                Subscription::FdWrite(fd) => (fd, EVENTTYPE_FD_WRITE),
                Subscription::Clock { .. } => continue,
            };
            let desc = match self.desc(fd) {
                Ok(d) => d,
                Err(e) => {
                    events.push((userdata, e, ty, 0, 0));
                    continue;
                }
            };
            match (&desc.kind, ty) {
                (DescriptorKind::Listener(_) | DescriptorKind::Connection(_), _) => {
                    match self.socket_ready(fd, ty == EVENTTYPE_FD_WRITE) {
                        Ok(Some((e, nbytes, flags))) => {
                            events.push((userdata, e, ty, nbytes, flags))
                        }
                        Ok(None) => {}
                        Err(e) => events.push((userdata, e, ty, 0, 0)),
                    }
                }
                (DescriptorKind::Stdin, EVENTTYPE_FD_READ) => match self.stdio.stdin {
                    InputSource::Inherit => wants_stdin.push(userdata),
                    _ => events.push((userdata, Errno::SUCCESS, ty, 0, 0)),
                },
                (DescriptorKind::File { offset, .. }, EVENTTYPE_FD_READ) => {
                    let offset = *offset;
                    let size = self
                        .file(fd)
                        .and_then(|f| f.metadata().map_err(Errno::from))
                        .map(|m| m.len());
                    match size {
                        Ok(size) => events.push((
                            userdata,
                            Errno::SUCCESS,
                            ty,
                            size.saturating_sub(offset),
                            0,
                        )),
                        Err(e) => events.push((userdata, e, ty, 0, 0)),
                    }
                }
                (DescriptorKind::File { .. }, _)
                | (DescriptorKind::Stdout, EVENTTYPE_FD_WRITE)
                | (DescriptorKind::Stderr, EVENTTYPE_FD_WRITE) => {
                    events.push((userdata, Errno::SUCCESS, ty, 0, 0))
                }
                _ => events.push((userdata, Errno::BADF, ty, 0, 0)),
            }
        }
        Ok(())
    }

    /// `poll_oneoff` without sockets: files and stdio are answered at once;
    /// otherwise it sleeps until the earliest deadline, or waits for stdin.
    fn poll_without_sockets(
        &mut self,
        subs: &[(u64, Subscription)],
        mut events: Vec<Event>,
        earliest: Option<u64>,
        due: impl Fn(u64, &mut Vec<Event>),
    ) -> Result<Vec<Event>, Errno> {
        let mut wants_stdin = Vec::new();
        self.poll_fds(subs, &mut events, &mut wants_stdin)?;
        if !events.is_empty() {
            due(self.clock.now_ns(), &mut events);
            return Ok(events);
        }
        let timeout = earliest.map(|d| Duration::from_nanos(d.saturating_sub(self.clock.now_ns())));
        if !wants_stdin.is_empty() {
            if stdin_ready(timeout)? {
                for u in wants_stdin {
                    events.push((u, Errno::SUCCESS, EVENTTYPE_FD_READ, 0, 0));
                }
            }
        } else if let Some(t) = timeout {
            if self.sleep_interruptible(t) {
                self.interrupted = true;
                return Ok(Vec::new());
            }
        } else {
            // Only unanswerable subscriptions and no clock: nothing can wake us.
            return Err(Errno::NOTSUP);
        }
        // The earliest deadline has passed unless stdin woke us first; the
        // sleep never ends early, so at least one clock is due then.
        let now = self.clock.now_ns();
        due(now, &mut events);
        if events.is_empty() {
            // stdin's poll ended at the timeout, a hair before our clock.
            due(earliest.unwrap_or(now).max(now), &mut events);
        }
        Ok(events)
    }
}

/// One `poll_oneoff` event: `(userdata, errno, type, nbytes, flags)`.
pub type Event = (u64, Errno, u8, u64, u16);

/// One `poll_oneoff` subscription.
pub enum Subscription {
    Clock {
        id: u32,
        timeout_ns: u64,
        absolute: bool,
    },
    FdRead(u32),
    FdWrite(u32),
}

fn stdin_ready(timeout: Option<Duration>) -> Result<bool, Errno> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos() as i64,
    });
    let n = poll(&mut fds, ts.as_ref()).map_err(|e| from_host_errno(e.raw_os_error()))?;
    Ok(n > 0)
}

/// Reads up to `len` bytes at `offset`, stopping early only at end of file.
fn pread_up_to(f: &File, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
    // One read never buffers more than this; the guest asks again for more.
    let mut buf = vec![0u8; len.min(MAX_IO_BYTES)];
    let mut filled = 0;
    while filled < buf.len() {
        match f.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

fn rel_path(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// A path from the state, relative to a preopen's root. Empty is the root
/// itself (a directory opened as "."). It is resolved with cap-std like any
/// guest path, so a state that names `..` or an absolute path cannot reach
/// outside either.
fn state_path(bytes: &[u8]) -> &Path {
    if bytes.is_empty() {
        Path::new(".")
    } else {
        rel_path(bytes)
    }
}

/// `dir/path`, with empty and `.` components dropped. Used only when the
/// host cannot say where a handle really is.
fn join_lexical(dir: &[u8], path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in dir.split(|&b| b == b'/').chain(path.split(|&b| b == b'/')) {
        if !c.is_empty() && c != b"." {
            parts.push(c);
        }
    }
    parts.join(&b'/')
}

/// Where an open handle lives now, relative to a preopen's canonical root,
/// as the kernel reports it. `None` when the host cannot say (not Linux) or
/// the handle is no longer beneath the root.
fn host_relative_path(handle: &impl AsFd, root: &Path) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd())).ok()?;
    let rel = link.strip_prefix(root).ok()?;
    Some(rel.as_os_str().as_bytes().to_vec())
}

fn filetype_of(m: &cap_std::fs::Metadata) -> u8 {
    use cap_std::fs::FileTypeExt;
    let ft = m.file_type();
    if ft.is_dir() {
        FILETYPE_DIRECTORY
    } else if ft.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ft.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ft.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ft.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ft.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

fn encode_filestat(m: &cap_std::fs::Metadata) -> [u8; FILESTAT_SIZE] {
    let mut out = [0u8; FILESTAT_SIZE];
    let ns = |s: i64, n: i64| {
        (s.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(n.max(0) as u64)
    };
    out[0..8].copy_from_slice(&m.dev().to_le_bytes());
    out[8..16].copy_from_slice(&m.ino().to_le_bytes());
    out[16] = filetype_of(m);
    out[24..32].copy_from_slice(&m.nlink().to_le_bytes());
    out[32..40].copy_from_slice(&m.len().to_le_bytes());
    out[40..48].copy_from_slice(&ns(m.atime(), m.atime_nsec()).to_le_bytes());
    out[48..56].copy_from_slice(&ns(m.mtime(), m.mtime_nsec()).to_le_bytes());
    out[56..64].copy_from_slice(&ns(m.ctime(), m.ctime_nsec()).to_le_bytes());
    out
}

fn time_specs(
    atim: u64,
    mtim: u64,
    fst: u16,
) -> Result<(Option<SystemTimeSpec>, Option<SystemTimeSpec>), Errno> {
    if fst & !(FSTFLAGS_ATIM | FSTFLAGS_ATIM_NOW | FSTFLAGS_MTIM | FSTFLAGS_MTIM_NOW) != 0 {
        return Err(Errno::INVAL);
    }
    let one = |set: u16, now: u16, t: u64| -> Result<Option<SystemTimeSpec>, Errno> {
        match (fst & set != 0, fst & now != 0) {
            (true, true) => Err(Errno::INVAL),
            (true, false) => Ok(Some(SystemTimeSpec::Absolute(
                cap_std::time::SystemTime::from_std(UNIX_EPOCH + Duration::from_nanos(t)),
            ))),
            (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
            (false, false) => Ok(None),
        }
    };
    Ok((
        one(FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW, atim)?,
        one(FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW, mtim)?,
    ))
}

fn list_dir(dir: &Dir) -> Result<Vec<ListingEntry>, Errno> {
    let own = dir.dir_metadata().map_err(Errno::from)?;
    let mut entries = vec![
        ListingEntry {
            name: b".".to_vec(),
            ino: own.ino(),
            filetype: FILETYPE_DIRECTORY,
        },
        ListingEntry {
            name: b"..".to_vec(),
            ino: 0,
            filetype: FILETYPE_DIRECTORY,
        },
    ];
    let mut rest = Vec::new();
    for entry in dir.entries().map_err(Errno::from)? {
        let entry = entry.map_err(Errno::from)?;
        let name = entry.file_name().as_bytes().to_vec();
        let (ino, filetype) = match entry.metadata() {
            Ok(m) => (m.ino(), filetype_of(&m)),
            // The entry vanished between listing and stat: still list it.
            Err(_) => (0, FILETYPE_UNKNOWN),
        };
        rest.push(ListingEntry {
            name,
            ino,
            filetype,
        });
    }
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    entries.extend(rest);
    Ok(entries)
}
