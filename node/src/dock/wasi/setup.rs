//! Setting a context up: fresh from options ([`WasiCtx::new`]), rebuilt
//! from a travelled [`WasiState`] against this host's directories
//! ([`WasiCtx::rebuild`]), and captured back into a state ready to travel
//! ([`WasiCtx::capture_state`]).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cap_std::fs::{Dir, File, FileExt, MetadataExt, OpenOptions, OpenOptionsExt};
use protocol::limits::{
    MAX_ARGS_ENV_BYTES, MAX_DETACHED_FILE_BYTES, MAX_OPEN_DESCRIPTORS, MAX_PREOPENS,
    MAX_SERVICE_PORTS,
};
use protocol::wasi::{
    ClockState, Descriptor, DescriptorKind, ListenerState, Preopen, SocketStateError,
    StdioPositions, WasiState,
};

use super::abi::*;
use super::changes::ChangeTracker;
use super::ctx::{GuestClock, Handle, PreopenRoot, WasiCtx};
use super::path::{host_relative_path, state_path};
use super::sockets::{Services, RIGHTS_CONNECTION, RIGHTS_LISTENER};
use super::stdio::Stdio;
use crate::dock::services::ServiceHub;

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

fn listener_descriptor(service: &str) -> Descriptor {
    Descriptor {
        kind: DescriptorKind::Listener(ListenerState {
            service: service.to_string(),
            pending: Vec::new(),
        }),
        rights_base: RIGHTS_LISTENER,
        // What an accepted connection gets (sock_accept passes on no more).
        rights_inheriting: RIGHTS_CONNECTION,
        // Blocking, as a socket fresh from socket(2): a plain accept() loop
        // blocks (wasmtime hands out non-blocking listeners; docs/wasi.md).
        fdflags: 0,
    }
}

fn preopen_descriptor(preopen: u32) -> Descriptor {
    Descriptor {
        kind: DescriptorKind::PreopenRoot { preopen },
        rights_base: RIGHTS_DIRECTORY,
        rights_inheriting: RIGHTS_DIRECTORY_INHERITING,
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
            fds.insert(3 + i as u32, listener_descriptor(service));
        }
        let first_dir = 3 + ports.len() as u32;
        let mut preopens = Vec::new();
        for (i, d) in opts.dirs.iter().enumerate() {
            preopens.push(Preopen {
                guest_path: d.guest.clone(),
            });
            fds.insert(first_dir + i as u32, preopen_descriptor(i as u32));
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
        check_table_limits(&state)?;
        let roots = open_roots(&state.preopens, dirs)?;
        let mut handles = BTreeMap::new();
        for (&fd, desc) in &state.fds {
            let reopen = Reopen {
                fd,
                preopens: &state.preopens,
                roots: &roots,
            };
            handles.insert(fd, reopen.handle(&desc.kind, hub.as_ref())?);
        }
        let clock = GuestClock {
            base_ns: state.clocks.monotonic_ns,
            started: Instant::now(),
        };
        let changes = ChangeTracker::new(state.preopens.len());
        Ok(WasiCtx {
            state,
            roots,
            handles,
            clock,
            stdio,
            hub,
            exit_code: None,
            owner: None,
            interruptible: false,
            interrupted: false,
            ended: false,
            changes,
            listing_tick: 0,
            listings_budget: super::listing::MAX_LISTINGS_BYTES,
        })
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
}

/// A travelled state's tables within this node's limits.
fn check_table_limits(state: &WasiState) -> Result<(), SetupError> {
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
    Ok(())
}

/// Opens the host directory `dirs` maps to each preopen's guest path.
fn open_roots(preopens: &[Preopen], dirs: &[DirMapping]) -> Result<Vec<PreopenRoot>, SetupError> {
    let mut roots = Vec::with_capacity(preopens.len());
    for p in preopens {
        let mapping = dirs
            .iter()
            .find(|d| d.guest == p.guest_path)
            .ok_or_else(|| SetupError::UnmappedPreopen {
                guest: p.guest_path.clone(),
            })?;
        roots.push(open_root(mapping)?);
    }
    Ok(roots)
}

/// Re-creates the host handle of one descriptor, `fd`, against this host's
/// preopen roots.
struct Reopen<'a> {
    fd: u32,
    preopens: &'a [Preopen],
    roots: &'a [PreopenRoot],
}

impl Reopen<'_> {
    fn handle(
        &self,
        kind: &DescriptorKind,
        hub: Option<&Arc<dyn ServiceHub>>,
    ) -> Result<Handle, SetupError> {
        let fd = self.fd;
        match kind {
            DescriptorKind::Stdin | DescriptorKind::Stdout | DescriptorKind::Stderr => {
                Ok(Handle::Stdio)
            }
            DescriptorKind::Listener(l) => {
                let hub = hub.ok_or(SetupError::NoServiceHub { fd })?;
                if !hub.serves(&l.service) {
                    return Err(SetupError::UnknownService {
                        service: l.service.clone(),
                    });
                }
                Ok(Handle::Socket)
            }
            DescriptorKind::Connection(_) => {
                hub.ok_or(SetupError::NoServiceHub { fd })?;
                Ok(Handle::Socket)
            }
            DescriptorKind::PreopenRoot { preopen } => self.root_dir(*preopen),
            DescriptorKind::Directory { preopen, path } => self.dir(*preopen, path),
            DescriptorKind::File {
                preopen,
                path,
                read,
                write,
                detached_contents,
                ..
            } => match detached_contents {
                Some(contents) => self.detached_file(*preopen, contents),
                None => self.file(*preopen, path, *read, *write),
            },
        }
    }

    /// The preopen's root and its guest path.
    fn root_of(&self, preopen: u32) -> Result<(&PreopenRoot, &str), SetupError> {
        let root = self
            .roots
            .get(preopen as usize)
            .ok_or(SetupError::BadPreopenIndex {
                fd: self.fd,
                preopen,
                count: self.roots.len(),
            })?;
        Ok((root, self.preopens[preopen as usize].guest_path.as_str()))
    }

    fn err(&self, guest: &str, path: &[u8], source: io::Error) -> SetupError {
        SetupError::Reopen {
            fd: self.fd,
            guest: guest.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            source,
        }
    }

    /// The preopen's root directory itself.
    fn root_dir(&self, preopen: u32) -> Result<Handle, SetupError> {
        let (root, guest) = self.root_of(preopen)?;
        let dir = root.dir.try_clone().map_err(|e| self.err(guest, b".", e))?;
        Ok(Handle::Dir { dir, listing: None })
    }

    /// A directory beneath the preopen's root.
    fn dir(&self, preopen: u32, path: &[u8]) -> Result<Handle, SetupError> {
        let (root, guest) = self.root_of(preopen)?;
        let dir = root
            .dir
            .open_dir(state_path(path))
            .map_err(|e| self.err(guest, path, e))?;
        Ok(Handle::Dir { dir, listing: None })
    }

    fn file(
        &self,
        preopen: u32,
        path: &[u8],
        read: bool,
        write: bool,
    ) -> Result<Handle, SetupError> {
        let (root, guest) = self.root_of(preopen)?;
        let mut o = OpenOptions::new();
        o.read(read || !write)
            .write(write)
            .custom_flags(super::path::OPEN_NONBLOCK);
        let f = root
            .dir
            .open_with(state_path(path), &o)
            .map_err(|e| self.err(guest, path, e))?;
        Ok(Handle::File(f))
    }

    /// The file had no name when it was captured, so it gets none here
    /// either: an anonymous temp file with the contents it travelled with.
    fn detached_file(&self, preopen: u32, contents: &[u8]) -> Result<Handle, SetupError> {
        let (_, guest) = self.root_of(preopen)?;
        if contents.len() as u64 > MAX_DETACHED_FILE_BYTES {
            return Err(SetupError::BadDescriptor {
                fd: self.fd,
                reason: "detached file contents over the limit",
            });
        }
        let f = tempfile::tempfile().map_err(|e| self.err(guest, b"(detached)", e))?;
        std::os::unix::fs::FileExt::write_all_at(&f, contents, 0)
            .map_err(|e| self.err(guest, b"(detached)", e))?;
        Ok(Handle::File(File::from_std(f)))
    }
}
