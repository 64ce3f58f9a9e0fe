//! Virtual sockets: `sock_accept`, `sock_recv`, `sock_send`,
//! `sock_shutdown`, and the socket cases of `fd_read`, `fd_write`,
//! `fd_close` and `poll_oneoff`.
//!
//! A socket's state is plain data in the descriptor table
//! ([`ListenerState`], [`ConnectionState`]); its bytes come from and go to a
//! [`ServiceHub`]. The vessel never holds a host socket, so a captured state
//! continues against the same hub (or one that a mesh feeds with the same
//! streams) with no byte lost or repeated: the state says how many bytes
//! were taken from the hub and handed to it, and holds the bytes taken but
//! not yet read.
//!
//! Blocking calls (`sock_accept` and `sock_recv` on an empty queue, a
//! `sock_send` into a full hub, `poll_oneoff` with nothing ready) block the
//! dock's thread in [`ServiceHub::wait`], listening to the vessel's owner
//! meanwhile (`wait`): the owner may copy the memory during the wait, and
//! `sock_accept` and `sock_recv` (blocking imports of the rewriter) give up
//! their wait when it wants the vessel to unwind. They have then changed
//! nothing the guest can see: what they took from the hub is in the state,
//! and the call re-issued after the rewind finds it there.

use std::sync::Arc;
use std::time::Duration;

use protocol::limits::{MAX_SOCKET_UNREAD_BYTES, MAX_VESSEL_CONNECTIONS};
use protocol::wasi::{ConnectionState, Descriptor, DescriptorKind};

use super::abi::*;
use super::ctx::{Handle, WasiCtx};
use super::mem::MAX_IO_BYTES;
use super::rights::Op;
use crate::dock::services::{HubError, ServiceHub, StreamEnd};

/// The listening sockets a fresh vessel gets, and the hub behind them.
#[derive(Clone)]
pub struct Services {
    pub hub: Arc<dyn ServiceHub>,
    /// Service port names, one listening socket each, as descriptors 3, 4,
    /// ... in this order (before the preopened directories, as wasmtime's
    /// `--tcplisten` puts them).
    pub ports: Vec<String>,
}

/// Readiness of one socket for `poll_oneoff`: `(errno, nbytes, flags)`.
pub(super) type Ready = (Errno, u64, u16);

/// `riflags`.
pub const RIFLAGS_RECV_PEEK: u16 = 1 << 0;
pub const RIFLAGS_RECV_WAITALL: u16 = 1 << 1;
/// `sdflags`.
pub const SDFLAGS_RD: u8 = 1 << 0;
pub const SDFLAGS_WR: u8 = 1 << 1;
/// `eventrwflags`.
pub const EVENTRWFLAGS_FD_READWRITE_HANGUP: u16 = 1 << 0;

/// Rights of a listening socket.
pub const RIGHTS_LISTENER: u64 =
    RIGHT_SOCK_ACCEPT | RIGHT_POLL_FD_READWRITE | RIGHT_FD_FDSTAT_SET_FLAGS | RIGHT_FD_FILESTAT_GET;
/// Rights of an accepted connection.
pub const RIGHTS_CONNECTION: u64 = RIGHT_FD_READ
    | RIGHT_FD_WRITE
    | RIGHT_SOCK_SHUTDOWN
    | RIGHT_POLL_FD_READWRITE
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_FILESTAT_GET;

impl WasiCtx {
    fn hub(&self) -> Result<Arc<dyn ServiceHub>, Errno> {
        // A state with sockets is never rebuilt without a hub (SetupError).
        self.hub.clone().ok_or(Errno::NOTSOCK)
    }

    fn conn(&self, fd: u32) -> Result<&ConnectionState, Errno> {
        match &self.desc(fd)?.kind {
            DescriptorKind::Connection(c) => Ok(c),
            // A listener is a socket but not a connected one: EBADF, as in
            // wasmtime (Linux says ENOTCONN).
            DescriptorKind::Listener(_) => Err(Errno::BADF),
            _ => Err(Errno::NOTSOCK),
        }
    }

    fn conn_mut(&mut self, fd: u32) -> Result<&mut ConnectionState, Errno> {
        match &mut self.desc_mut(fd)?.kind {
            DescriptorKind::Connection(c) => Ok(c),
            DescriptorKind::Listener(_) => Err(Errno::BADF),
            _ => Err(Errno::NOTSOCK),
        }
    }

    /// Connections the vessel holds: accepted ones and those taken from the
    /// hub that wait in a listener's queue.
    fn connections_held(&self) -> usize {
        self.state
            .fds
            .values()
            .map(|d| match &d.kind {
                DescriptorKind::Connection(_) => 1,
                DescriptorKind::Listener(l) => l.pending.len(),
                _ => 0,
            })
            .sum()
    }

    /// Takes connections that arrived on a listener's service port into its
    /// pending queue, as far as `MAX_VESSEL_CONNECTIONS` allows.
    fn pull_pending(&mut self, fd: u32) -> Result<(), Errno> {
        let hub = self.hub()?;
        let mut room = MAX_VESSEL_CONNECTIONS.saturating_sub(self.connections_held());
        let DescriptorKind::Listener(l) = &mut self.desc_mut(fd)?.kind else {
            return Err(Errno::INVAL);
        };
        while room > 0 {
            match hub.take_connection(&l.service) {
                Some(id) => {
                    l.pending.push(id);
                    room -= 1;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Takes inbound bytes of a connection from the hub into its unread
    /// buffer, as far as `MAX_SOCKET_UNREAD_BYTES` allows. This
    /// acknowledges what the dock took before.
    fn pull_bytes(&mut self, fd: u32) -> Result<(), Errno> {
        let hub = self.hub()?;
        let c = self.conn_mut(fd)?;
        if c.peer_closed || c.peer_reset || c.shut_read {
            return Ok(());
        }
        let room = MAX_SOCKET_UNREAD_BYTES.saturating_sub(c.unread.len());
        match hub.receive(c.id, c.received_bytes, room) {
            Ok(inbound) => {
                c.received_bytes += inbound.data.len() as u64;
                c.unread.extend_from_slice(&inbound.data);
                match inbound.end {
                    Some(StreamEnd::Fin) => c.peer_closed = true,
                    Some(StreamEnd::Reset) => c.peer_reset = true,
                    None => {}
                }
            }
            // The hub lost or reset the connection: to the vessel it was
            // reset.
            Err(_) => c.peer_reset = true,
        }
        Ok(())
    }

    /// `sock_accept`: the next connection on a listening socket, as a new
    /// descriptor with `flags` (only `NONBLOCK` is kept).
    /// `memory`: the guest's memory, for the owner while the call waits.
    pub fn sock_accept(&mut self, fd: u32, flags: u16, memory: &[u8]) -> Result<u32, Errno> {
        match &self.desc(fd)?.kind {
            DescriptorKind::Listener(_) => {}
            // A socket in the wrong role: EBADF, as wasmtime (Linux accept(2)
            // says EINVAL).
            DescriptorKind::Connection(_) => return Err(Errno::BADF),
            _ => return Err(Errno::NOTSOCK),
        }
        if flags & !FDFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::SockAccept)?;
        let hub = self.hub()?;
        loop {
            let seen = hub.generation();
            self.pull_pending(fd)?;
            let (nonblock, has_pending, service) = match &self.desc(fd)?.kind {
                DescriptorKind::Listener(l) => (
                    self.desc(fd)?.fdflags & FDFLAGS_NONBLOCK != 0,
                    !l.pending.is_empty(),
                    l.service.clone(),
                ),
                _ => return Err(Errno::BADF),
            };
            if has_pending {
                let new_fd = self.alloc_fd()?;
                let DescriptorKind::Listener(l) = &mut self.desc_mut(fd)?.kind else {
                    return Err(Errno::BADF);
                };
                let id = l.pending.remove(0);
                // What the listener passes on (its inheriting rights).
                let rights_base = RIGHTS_CONNECTION & self.desc(fd)?.rights_inheriting;
                self.insert(
                    new_fd,
                    Descriptor {
                        kind: DescriptorKind::Connection(ConnectionState::new(id, service)),
                        rights_base,
                        rights_inheriting: 0,
                        fdflags: flags & FDFLAGS_NONBLOCK,
                    },
                    Handle::Socket,
                );
                return Ok(new_fd);
            }
            // Every connection the vessel may hold is open: as a process out
            // of descriptors (accept(2) says EMFILE).
            if self.connections_held() >= MAX_VESSEL_CONNECTIONS {
                return Err(Errno::MFILE);
            }
            if nonblock {
                return Err(Errno::AGAIN);
            }
            self.wait_blocked(memory, Some(seen), None)?;
        }
    }

    /// `sock_recv` (and `fd_read` on a connection): up to `len` bytes.
    /// Returns the bytes and `roflags` (always 0: streams are never
    /// truncated).
    pub fn sock_recv(
        &mut self,
        fd: u32,
        len: usize,
        riflags: u16,
        memory: &[u8],
    ) -> Result<Vec<u8>, Errno> {
        if riflags & !(RIFLAGS_RECV_PEEK | RIFLAGS_RECV_WAITALL) != 0 {
            return Err(Errno::INVAL);
        }
        self.conn(fd)?;
        self.require(fd, Op::SockRecv)?;
        let hub = self.hub()?;
        let len = len.min(MAX_IO_BYTES);
        let peek = riflags & RIFLAGS_RECV_PEEK != 0;
        loop {
            let seen = hub.generation();
            self.pull_bytes(fd)?;
            let nonblock = self.desc(fd)?.fdflags & FDFLAGS_NONBLOCK != 0;
            let c = self.conn_mut(fd)?;
            if c.shut_read || len == 0 {
                return Ok(Vec::new());
            }
            let ended = c.peer_closed || c.peer_reset;
            if !c.unread.is_empty() {
                // WAITALL waits for the whole request, unless the stream
                // ends first or the unread buffer is full (then it is a
                // short read, as Linux's is when its buffer is full).
                let short = c.unread.len() < len;
                let can_wait = !ended && c.unread.len() < MAX_SOCKET_UNREAD_BYTES && !nonblock;
                if riflags & RIFLAGS_RECV_WAITALL != 0 && short && can_wait && !peek {
                    self.wait_blocked(memory, Some(seen), None)?;
                    continue;
                }
                let n = c.unread.len().min(len);
                let data = if peek {
                    c.unread[..n].to_vec()
                } else {
                    c.unread.drain(..n).collect()
                };
                return Ok(data);
            }
            if c.peer_reset && !c.reset_reported {
                // Reported once, then end-of-file, as Linux does.
                c.reset_reported = true;
                return Err(Errno::CONNRESET);
            }
            if ended {
                return Ok(Vec::new());
            }
            if nonblock {
                return Err(Errno::AGAIN);
            }
            self.wait_blocked(memory, Some(seen), None)?;
        }
    }

    /// `sock_send` (and `fd_write` on a connection). A blocking socket
    /// hands over everything (waiting while the hub is full); a
    /// non-blocking one what fits, or `EAGAIN`.
    pub fn sock_send(&mut self, fd: u32, data: &[u8], memory: &[u8]) -> Result<usize, Errno> {
        self.conn(fd)?;
        self.require(fd, Op::SockSend)?;
        let hub = self.hub()?;
        let data = &data[..data.len().min(MAX_IO_BYTES)];
        let mut done = 0;
        loop {
            let seen = hub.generation();
            let nonblock = self.desc(fd)?.fdflags & FDFLAGS_NONBLOCK != 0;
            let c = self.conn_mut(fd)?;
            if c.shut_write {
                return if done > 0 { Ok(done) } else { Err(Errno::PIPE) };
            }
            if c.peer_reset {
                if done > 0 {
                    return Ok(done);
                }
                if !c.reset_reported {
                    c.reset_reported = true;
                    return Err(Errno::CONNRESET);
                }
                return Err(Errno::PIPE);
            }
            if done == data.len() {
                return Ok(done);
            }
            match hub.send(c.id, c.sent_bytes, &data[done..]) {
                Ok(n) => {
                    done += n;
                    c.sent_bytes += n as u64;
                    if done == data.len() || (nonblock && done > 0) {
                        return Ok(done);
                    }
                    if n > 0 {
                        continue;
                    }
                }
                Err(HubError::Reset | HubError::Unknown | HubError::Offset { .. }) => {
                    c.peer_reset = true;
                    continue;
                }
            }
            if nonblock {
                return Err(Errno::AGAIN);
            }
            self.wait_blocked(memory, Some(seen), None)?;
        }
    }

    /// `sock_shutdown`: `how` is `SDFLAGS_RD`, `SDFLAGS_WR` or both.
    pub fn sock_shutdown(&mut self, fd: u32, how: u8) -> Result<(), Errno> {
        self.conn(fd)?;
        // No flag, or unknown ones: EINVAL (wasmtime: EINVAL for 0, a trap
        // for unknown bits).
        if how == 0 || how & !(SDFLAGS_RD | SDFLAGS_WR) != 0 {
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::SockShutdown)?;
        let hub = self.hub()?;
        self.pull_bytes(fd)?;
        let c = self.conn_mut(fd)?;
        // Once both directions are over (or the peer reset), the connection
        // is gone: ENOTCONN, as Linux and wasmtime.
        if c.peer_reset || (c.peer_closed && c.shut_write) {
            return Err(Errno::NOTCONN);
        }
        if how & SDFLAGS_RD != 0 && !c.shut_read {
            c.shut_read = true;
            c.unread.clear();
            hub.shutdown_read(c.id);
        }
        if how & SDFLAGS_WR != 0 && !c.shut_write {
            c.shut_write = true;
            hub.shutdown_write(c.id);
        }
        Ok(())
    }

    /// Tells the hub that a socket descriptor is gone (closed, or replaced
    /// by `fd_renumber`).
    pub(super) fn release_socket(&self, desc: &Descriptor) {
        let Some(hub) = &self.hub else { return };
        match &desc.kind {
            DescriptorKind::Connection(c) => hub.close(c.id),
            DescriptorKind::Listener(l) => {
                for &id in &l.pending {
                    hub.close(id);
                }
                hub.close_service(&l.service);
            }
            _ => {}
        }
    }

    /// Whether `fd` is a socket (for `poll_oneoff`).
    pub(super) fn is_socket(&self, fd: u32) -> bool {
        matches!(
            self.state.fds.get(&fd).map(|d| &d.kind),
            Some(DescriptorKind::Listener(_) | DescriptorKind::Connection(_))
        )
    }

    /// Readiness of a socket for reading (`write` false) or writing, or
    /// `None` when it is not ready. Takes what the hub has first.
    pub(super) fn socket_ready(&mut self, fd: u32, write: bool) -> Result<Option<Ready>, Errno> {
        let hub = self.hub()?;
        match (&self.desc(fd)?.kind, write) {
            (DescriptorKind::Listener(_), false) => {
                self.pull_pending(fd)?;
                let DescriptorKind::Listener(l) = &self.desc(fd)?.kind else {
                    return Err(Errno::BADF);
                };
                Ok((!l.pending.is_empty()).then_some((Errno::SUCCESS, l.pending.len() as u64, 0)))
            }
            // A listener never becomes writable, as on Linux.
            (DescriptorKind::Listener(_), true) => Ok(None),
            (DescriptorKind::Connection(_), false) => {
                self.pull_bytes(fd)?;
                let c = self.conn(fd)?;
                // HANGUP only once the connection is over in both
                // directions (or reset): a peer's half-close alone is a
                // readable end-of-file, as Linux reports POLLIN without
                // POLLHUP, so that servers that close on POLLHUP still
                // read what is left.
                let hangup = c.peer_reset || (c.peer_closed && c.shut_write);
                let flags = if hangup {
                    EVENTRWFLAGS_FD_READWRITE_HANGUP
                } else {
                    0
                };
                let ready = !c.unread.is_empty() || c.peer_closed || c.peer_reset || c.shut_read;
                Ok(ready.then_some((Errno::SUCCESS, c.unread.len() as u64, flags)))
            }
            (DescriptorKind::Connection(c), true) => {
                if c.shut_write || c.peer_reset {
                    // A send fails at once: ready, with HANGUP.
                    return Ok(Some((Errno::SUCCESS, 0, EVENTRWFLAGS_FD_READWRITE_HANGUP)));
                }
                match hub.send_room(c.id) {
                    Ok(0) => Ok(None),
                    Ok(room) => Ok(Some((Errno::SUCCESS, room as u64, 0))),
                    Err(_) => {
                        self.conn_mut(fd)?.peer_reset = true;
                        Ok(Some((Errno::SUCCESS, 0, EVENTRWFLAGS_FD_READWRITE_HANGUP)))
                    }
                }
            }
            _ => Err(Errno::NOTSOCK),
        }
    }

    /// Waits for any change in the hub for at most `timeout`, starting from
    /// generation `seen`.
    pub(super) fn wait_hub(&self, seen: u64, timeout: Option<Duration>) {
        if let Some(hub) = &self.hub {
            hub.wait(seen, timeout);
        } else if let Some(t) = timeout {
            std::thread::sleep(t);
        }
    }

    /// The hub's generation now (0 without a hub).
    pub(super) fn hub_generation(&self) -> u64 {
        self.hub.as_ref().map_or(0, |h| h.generation())
    }
}
