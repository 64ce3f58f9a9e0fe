//! Services: how a vessel's sockets reach the network without the vessel
//! ever holding a host socket.
//!
//! A vessel is given listening sockets for named service ports
//! (`meshnode run --tcplisten ADDR`). Its sockets are virtual: their state is
//! plain data in [`protocol::wasi::WasiState`] (so that they travel in a
//! snapshot), and their bytes pass through a [`ServiceHub`], which the dock
//! talks to without caring where the bytes come from:
//!
//! - [`tcp::TcpServices`] backs a hub with real TCP listeners on this host
//!   (`meshnode run`);
//! - a mesh layer can back one with connections that an entry node accepted
//!   and forwards (DESIGN.md §7).
//!
//! Both sides are byte streams numbered by offset. The dock asks for inbound
//! bytes *from* the offset it has received so far ([`ServiceHub::receive`]):
//! that acknowledges everything before it, and a dock rebuilt from a
//! captured state asks again from the captured offset, so that nothing is
//! lost or repeated. Outbound bytes are handed over *at* an offset
//! ([`ServiceHub::send`]); a hub skips bytes it already has.
//!
//! [`BufferHub`] is the buffering core that both kinds of hub share: the
//! dock side is the [`ServiceHub`] trait, the network side the `net_*`
//! methods that a bridge (TCP threads, the mesh) calls.

pub mod ingress;
pub mod released;
pub mod tcp;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::control::PeerIdBytes;
use protocol::ingress::{ConnImage, HubImage};
use protocol::limits::{MAX_HUB_BUFFER_BYTES, MAX_VESSEL_CONNECTIONS};

/// A connection's id, assigned by whoever accepted the client (unique per
/// hub).
pub type ConnId = u64;

/// How a byte stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// An orderly end: the other side will send nothing more.
    Fin,
    /// The connection was reset: nothing more in either direction.
    Reset,
}

/// Inbound bytes of one connection, as the dock asked for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inbound {
    pub data: Vec<u8>,
    /// Set when the stream ends right after `data`.
    pub end: Option<StreamEnd>,
}

/// Why a hub could not do what the dock asked for one connection. The dock
/// treats each as the connection being reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("the connection was reset")]
    Reset,
    #[error("the hub does not know this connection")]
    Unknown,
    #[error("the dock asked for offset {at}, but the hub holds bytes {from}..{to} only")]
    Offset { at: u64, from: u64, to: u64 },
}

/// The dock's side of a hub, for one vessel. Every method returns at once
/// except [`wait`](Self::wait), which is how the dock blocks a blocking
/// `sock_accept`, `sock_recv`, `sock_send` or `poll_oneoff`.
pub trait ServiceHub: Send + Sync {
    /// Whether this hub serves the service port `service` for the vessel.
    fn serves(&self, service: &str) -> bool;

    /// Takes the oldest connection that arrived on `service` and that the
    /// dock has not taken yet. Each connection is taken once; from then on
    /// it lives in the vessel's state (first as pending, then accepted).
    fn take_connection(&self, service: &str) -> Option<ConnId>;

    /// At most `max` inbound bytes of `conn` from stream offset `from` on,
    /// and whether the stream ends after them. Acknowledges every byte
    /// before `from`: the hub may forget them.
    fn receive(&self, conn: ConnId, from: u64, max: usize) -> Result<Inbound, HubError>;

    /// How many bytes [`send`](Self::send) would take now (0: full, wait).
    fn send_room(&self, conn: ConnId) -> Result<usize, HubError>;

    /// Hands over bytes of `conn`'s outbound stream starting at offset
    /// `at`. Returns how many bytes of `data` the hub now holds (fewer than
    /// all when its buffer is full: backpressure). Bytes the hub already has
    /// (`at` below its own count, a resend) are skipped and counted.
    fn send(&self, conn: ConnId, at: u64, data: &[u8]) -> Result<usize, HubError>;

    /// The vessel will read nothing more: the hub may drop inbound bytes.
    fn shutdown_read(&self, conn: ConnId);

    /// The vessel will send nothing more: after the bytes it sent, the peer
    /// reads end-of-file.
    fn shutdown_write(&self, conn: ConnId);

    /// The vessel closed the connection (or never accepted it and closed
    /// its listener): send what it sent, then close; forget the connection.
    fn close(&self, conn: ConnId);

    /// The vessel closed its listening socket for `service`: connections
    /// that have not been taken are refused.
    fn close_service(&self, service: &str);

    /// A counter that goes up whenever anything changes for the vessel.
    fn generation(&self) -> u64;

    /// Blocks until the generation is no longer `seen`, or `timeout`
    /// passes (`None`: no timeout). Returns the generation then.
    fn wait(&self, seen: u64, timeout: Option<Duration>) -> u64;

    /// Ends every [`wait`](Self::wait) now by moving the generation on, as
    /// a change would: the vessel's owner wants the waiting call's
    /// attention (dock::wasi's `wait`). A waiter that finds nothing new
    /// simply looks again.
    fn wake(&self);
}

/// Why the network side could not add a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("no service port named {0}")]
    UnknownService(String),
    #[error("service port {0} was closed by the vessel")]
    ServiceClosed(String),
    #[error("connection id {0} is already in use")]
    DuplicateId(ConnId),
    #[error("{limit} connections already wait to be taken on service port {service}")]
    Full { service: String, limit: usize },
}

/// What a bridge should send to the network for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outbound {
    /// Stream offset of `data[0]`.
    pub at: u64,
    pub data: Vec<u8>,
    /// The vessel shut down its writing side after `data`: send a FIN.
    pub fin: bool,
    /// The vessel closed the connection after `data`: close it, then call
    /// [`BufferHub::net_forget`].
    pub closed: bool,
}

#[derive(Default)]
struct Service {
    waiting: VecDeque<ConnId>,
    closed: bool,
}

struct Conn {
    /// The service port it arrived on.
    service: String,
    /// Network → vessel: stream offset of `inbound[0]`.
    in_base: u64,
    inbound: VecDeque<u8>,
    in_end: Option<StreamEnd>,
    /// The vessel shut down reading: inbound bytes are dropped.
    in_discard: bool,
    /// Vessel → network: stream offset of `outbound[0]`.
    out_base: u64,
    outbound: VecDeque<u8>,
    out_fin: bool,
    vessel_closed: bool,
    /// Reset by the peer or the network: sends fail.
    reset: bool,
}

impl Conn {
    fn new(service: &str) -> Self {
        Conn {
            service: service.to_string(),
            in_base: 0,
            inbound: VecDeque::new(),
            in_end: None,
            in_discard: false,
            out_base: 0,
            outbound: VecDeque::new(),
            out_fin: false,
            vessel_closed: false,
            reset: false,
        }
    }
}

#[derive(Default)]
struct Inner {
    generation: u64,
    services: BTreeMap<String, Service>,
    conns: HashMap<ConnId, Conn>,
    stopped: bool,
}

impl Inner {
    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }
}

/// A hub that buffers each connection's bytes in memory, bounded by
/// `MAX_HUB_BUFFER_BYTES` in each direction. The dock uses it through
/// [`ServiceHub`]; a bridge to the network through the `net_*` methods.
pub struct BufferHub {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Default for BufferHub {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferHub {
    pub fn new() -> Self {
        BufferHub {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state and wakes every waiter if it says so.
    fn update<R>(&self, f: impl FnOnce(&mut Inner) -> (R, bool)) -> R {
        let mut g = self.lock();
        let (r, changed) = f(&mut g);
        if changed {
            g.changed();
            drop(g);
            self.changed.notify_all();
        }
        r
    }

    fn wait_inner(&self, seen: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.lock();
        while g.generation == seen {
            match deadline {
                None => g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    g = self
                        .changed
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        g.generation
    }

    // ---- the network side --------------------------------------------------

    /// Declares a service port that connections can arrive on.
    pub fn net_add_service(&self, service: &str) {
        self.update(|i| {
            i.services.entry(service.to_string()).or_default();
            ((), true)
        })
    }

    /// A client connected to `service`; `id` is the bridge's name for it.
    /// At most `MAX_VESSEL_CONNECTIONS` wait to be taken per service
    /// (`OpenError::Full`: try again after a [`net_wait`](Self::net_wait)).
    pub fn net_open(&self, service: &str, id: ConnId) -> Result<(), OpenError> {
        self.update(|i| {
            if i.conns.contains_key(&id) {
                return (Err(OpenError::DuplicateId(id)), false);
            }
            let Some(s) = i.services.get_mut(service) else {
                return (Err(OpenError::UnknownService(service.into())), false);
            };
            if s.closed {
                return (Err(OpenError::ServiceClosed(service.into())), false);
            }
            if s.waiting.len() >= MAX_VESSEL_CONNECTIONS {
                return (
                    Err(OpenError::Full {
                        service: service.into(),
                        limit: MAX_VESSEL_CONNECTIONS,
                    }),
                    false,
                );
            }
            s.waiting.push_back(id);
            i.conns.insert(id, Conn::new(service));
            (Ok(()), true)
        })
    }

    /// Bytes from the client. Returns how many the hub took: fewer than all
    /// when its buffer is full (wait and offer the rest again). Bytes after
    /// the vessel shut down reading are taken and dropped.
    pub fn net_deliver(&self, id: ConnId, data: &[u8]) -> Result<usize, HubError> {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&id) else {
                return (Err(HubError::Unknown), false);
            };
            if c.reset {
                return (Err(HubError::Reset), false);
            }
            // After the vessel shut down reading or closed: taken and dropped.
            if c.in_discard {
                return (Ok(data.len()), false);
            }
            let n = MAX_HUB_BUFFER_BYTES
                .saturating_sub(c.inbound.len())
                .min(data.len());
            c.inbound.extend(&data[..n]);
            (Ok(n), n > 0)
        })
    }

    /// The client's stream ended (it closed its side, or reset).
    pub fn net_end(&self, id: ConnId, end: StreamEnd) {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&id) else {
                return ((), false);
            };
            if end == StreamEnd::Reset {
                c.reset = true;
                // Whatever the vessel sent but the network did not take
                // can go nowhere now.
                c.out_base += c.outbound.len() as u64;
                c.outbound.clear();
            }
            if c.in_end.is_none() || end == StreamEnd::Reset {
                c.in_end = Some(end);
            }
            ((), true)
        })
    }

    /// Takes up to `max` bytes the vessel sent on `id`, to write to the
    /// network, with the FIN/close that follows them once they are all
    /// taken. An empty, unflagged result means nothing to do yet.
    pub fn net_collect(&self, id: ConnId, max: usize) -> Result<Outbound, HubError> {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&id) else {
                return (Err(HubError::Unknown), false);
            };
            if c.reset {
                return (Err(HubError::Reset), false);
            }
            let n = c.outbound.len().min(max);
            let at = c.out_base;
            let data: Vec<u8> = c.outbound.drain(..n).collect();
            c.out_base += n as u64;
            let drained = c.outbound.is_empty();
            (
                Ok(Outbound {
                    at,
                    data,
                    fin: drained && c.out_fin,
                    closed: drained && c.vessel_closed,
                }),
                n > 0,
            )
        })
    }

    /// The bridge is done with `id` (after a close or a reset).
    pub fn net_forget(&self, id: ConnId) {
        self.update(|i| {
            i.conns.remove(&id);
            ((), true)
        })
    }

    /// Whether the vessel has closed `id` (or the hub forgot it): a bridge
    /// reading from the network can stop.
    pub fn net_is_closed(&self, id: ConnId) -> bool {
        let g = self.lock();
        g.conns.get(&id).is_none_or(|c| c.vessel_closed || c.reset)
    }

    /// The vessel is gone: every connection is closed after the bytes it
    /// sent, and no service takes new ones.
    pub fn net_stop(&self) {
        self.update(|i| {
            i.stopped = true;
            for s in i.services.values_mut() {
                s.closed = true;
            }
            let mut gone = Vec::new();
            for (&id, c) in i.conns.iter_mut() {
                c.vessel_closed = true;
                if c.reset {
                    gone.push(id);
                }
            }
            for id in gone {
                i.conns.remove(&id);
            }
            ((), true)
        })
    }

    /// Whether [`net_stop`](Self::net_stop) was called.
    pub fn net_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// How many connections the hub still holds (taken or not).
    pub fn net_connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Wakes whoever waits on the hub (the egress pump) without a change of
    /// its own: more of the vessel's bytes may be released now.
    pub fn net_wake(&self) {
        self.update(|_| ((), true))
    }

    /// The current generation (see [`ServiceHub::generation`]).
    pub fn net_generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits for any change, as [`ServiceHub::wait`].
    pub fn net_wait(&self, seen: u64, timeout: Option<Duration>) -> u64 {
        self.wait_inner(seen, timeout)
    }

    // ---- the network side, by offset (a mesh that resends) -----------------

    /// Client bytes of `id` at stream offset `at`: bytes the hub already
    /// has are skipped, a gap (`at` past what the hub has) takes nothing.
    /// Returns the offset up to which the hub now holds the stream (the
    /// sender may forget everything before it).
    pub fn net_deliver_at(&self, id: ConnId, at: u64, data: &[u8]) -> Result<u64, HubError> {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&id) else {
                return (Err(HubError::Unknown), false);
            };
            if c.reset {
                return (Err(HubError::Reset), false);
            }
            let have = c.in_base + c.inbound.len() as u64;
            let end = at.saturating_add(data.len() as u64);
            if at > have || end <= have {
                return (Ok(have), false);
            }
            let fresh = &data[(have - at) as usize..];
            if c.in_discard {
                c.in_base = end;
                return (Ok(end), false);
            }
            let n = MAX_HUB_BUFFER_BYTES
                .saturating_sub(c.inbound.len())
                .min(fresh.len());
            c.inbound.extend(&fresh[..n]);
            (Ok(have + n as u64), n > 0)
        })
    }

    /// Up to `max` of the bytes the vessel sent on `id` that the network has
    /// not confirmed, from the oldest, without forgetting them: they are
    /// forgotten by [`net_confirm`](Self::net_confirm). `fin`/`closed` are
    /// set when the result reaches the end of what the vessel sent.
    pub fn net_peek(&self, id: ConnId, max: usize) -> Result<Outbound, HubError> {
        let g = self.lock();
        let c = g.conns.get(&id).ok_or(HubError::Unknown)?;
        if c.reset {
            return Err(HubError::Reset);
        }
        let n = c.outbound.len().min(max);
        let all = n == c.outbound.len();
        Ok(Outbound {
            at: c.out_base,
            data: c.outbound.iter().take(n).copied().collect(),
            fin: all && c.out_fin,
            closed: all && c.vessel_closed,
        })
    }

    /// The network confirmed the vessel's bytes of `id` up to offset `upto`.
    pub fn net_confirm(&self, id: ConnId, upto: u64) {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&id) else {
                return ((), false);
            };
            let n = upto.saturating_sub(c.out_base).min(c.outbound.len() as u64) as usize;
            c.outbound.drain(..n);
            c.out_base += n as u64;
            ((), n > 0)
        })
    }

    /// Every connection the hub holds.
    pub fn net_conn_ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.lock().conns.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether the hub holds `id`.
    pub fn net_knows(&self, id: ConnId) -> bool {
        self.lock().conns.contains_key(&id)
    }

    /// The whole hub as plain data, to travel in a vessel's image; `entry`
    /// names the node that holds each connection's client.
    pub fn export(&self, entry: impl Fn(ConnId) -> Vec<u8>) -> HubImage {
        let g = self.lock();
        let waiting: std::collections::HashSet<ConnId> = g
            .services
            .values()
            .flat_map(|s| s.waiting.iter().copied())
            .collect();
        let mut conns: Vec<ConnImage> = g
            .conns
            .iter()
            .map(|(&id, c)| ConnImage {
                id,
                service: c.service.clone(),
                entry: PeerIdBytes(entry(id)),
                waiting: waiting.contains(&id),
                in_base: c.in_base,
                inbound: c.inbound.iter().copied().collect(),
                in_end: c.in_end.map(StreamEnd::to_wire),
                in_discard: c.in_discard,
                out_base: c.out_base,
                outbound: c.outbound.iter().copied().collect(),
                out_fin: c.out_fin,
                vessel_closed: c.vessel_closed,
                reset: c.reset,
            })
            .collect();
        conns.sort_by_key(|c| c.id);
        HubImage {
            services: g
                .services
                .iter()
                .map(|(n, s)| (n.clone(), s.closed))
                .collect(),
            conns,
        }
    }

    /// A hub as [`export`](Self::export) left it (the image was checked
    /// against the limits). Waiting connections queue again in id order,
    /// which is the order the entry nodes opened them in only roughly: the
    /// vessel had not seen any of them yet.
    pub fn import(image: &HubImage) -> BufferHub {
        let hub = BufferHub::new();
        {
            let mut g = hub.lock();
            for (name, closed) in &image.services {
                g.services.entry(name.clone()).or_default().closed = *closed;
            }
            for c in &image.conns {
                if c.waiting {
                    if let Some(s) = g.services.get_mut(&c.service) {
                        s.waiting.push_back(c.id);
                    }
                }
                g.conns.insert(
                    c.id,
                    Conn {
                        service: c.service.clone(),
                        in_base: c.in_base,
                        inbound: c.inbound.iter().copied().collect(),
                        in_end: c.in_end.map(StreamEnd::from_wire),
                        in_discard: c.in_discard,
                        out_base: c.out_base,
                        outbound: c.outbound.iter().copied().collect(),
                        out_fin: c.out_fin,
                        vessel_closed: c.vessel_closed,
                        reset: c.reset,
                    },
                );
            }
        }
        hub
    }
}

impl StreamEnd {
    pub fn to_wire(self) -> protocol::ingress::StreamEnd {
        match self {
            StreamEnd::Fin => protocol::ingress::StreamEnd::Fin,
            StreamEnd::Reset => protocol::ingress::StreamEnd::Reset,
        }
    }

    pub fn from_wire(end: protocol::ingress::StreamEnd) -> StreamEnd {
        match end {
            protocol::ingress::StreamEnd::Fin => StreamEnd::Fin,
            protocol::ingress::StreamEnd::Reset => StreamEnd::Reset,
        }
    }
}

impl ServiceHub for BufferHub {
    fn serves(&self, service: &str) -> bool {
        self.lock().services.contains_key(service)
    }

    fn take_connection(&self, service: &str) -> Option<ConnId> {
        self.update(|i| {
            let id = i
                .services
                .get_mut(service)
                .and_then(|s| s.waiting.pop_front());
            (id, id.is_some())
        })
    }

    fn receive(&self, conn: ConnId, from: u64, max: usize) -> Result<Inbound, HubError> {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&conn) else {
                return (Err(HubError::Unknown), false);
            };
            let to = c.in_base + c.inbound.len() as u64;
            if from < c.in_base || from > to {
                return (
                    Err(HubError::Offset {
                        at: from,
                        from: c.in_base,
                        to,
                    }),
                    false,
                );
            }
            // Everything before `from` is the dock's now.
            let acked = (from - c.in_base) as usize;
            c.inbound.drain(..acked);
            c.in_base = from;
            let n = c.inbound.len().min(max);
            let data: Vec<u8> = c.inbound.iter().take(n).copied().collect();
            let end = if n == c.inbound.len() { c.in_end } else { None };
            // Freed room is news for the bridge that fills the buffer.
            (Ok(Inbound { data, end }), acked > 0)
        })
    }

    fn send_room(&self, conn: ConnId) -> Result<usize, HubError> {
        let g = self.lock();
        let c = g.conns.get(&conn).ok_or(HubError::Unknown)?;
        if c.reset {
            return Err(HubError::Reset);
        }
        Ok(MAX_HUB_BUFFER_BYTES.saturating_sub(c.outbound.len()))
    }

    fn send(&self, conn: ConnId, at: u64, data: &[u8]) -> Result<usize, HubError> {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&conn) else {
                return (Err(HubError::Unknown), false);
            };
            if c.reset {
                return (Err(HubError::Reset), false);
            }
            let have = c.out_base + c.outbound.len() as u64;
            if at > have {
                return (
                    Err(HubError::Offset {
                        at,
                        from: c.out_base,
                        to: have,
                    }),
                    false,
                );
            }
            let dup = ((have - at) as usize).min(data.len());
            let room = MAX_HUB_BUFFER_BYTES.saturating_sub(c.outbound.len());
            let n = room.min(data.len() - dup);
            c.outbound.extend(&data[dup..dup + n]);
            (Ok(dup + n), n > 0)
        })
    }

    fn shutdown_read(&self, conn: ConnId) {
        self.update(|i| match i.conns.get_mut(&conn) {
            Some(c) => {
                c.in_discard = true;
                c.in_base += c.inbound.len() as u64;
                c.inbound.clear();
                ((), true)
            }
            None => ((), false),
        })
    }

    fn shutdown_write(&self, conn: ConnId) {
        self.update(|i| match i.conns.get_mut(&conn) {
            Some(c) => {
                c.out_fin = true;
                ((), true)
            }
            None => ((), false),
        })
    }

    fn close(&self, conn: ConnId) {
        self.update(|i| {
            let Some(c) = i.conns.get_mut(&conn) else {
                return ((), false);
            };
            c.vessel_closed = true;
            c.in_discard = true;
            c.inbound.clear();
            if c.reset {
                // Nothing left to send: no bridge needs it any more.
                i.conns.remove(&conn);
            }
            // A connection never taken may still wait in its service queue.
            for s in i.services.values_mut() {
                s.waiting.retain(|&w| w != conn);
            }
            ((), true)
        })
    }

    fn close_service(&self, service: &str) {
        self.update(|i| {
            let Some(s) = i.services.get_mut(service) else {
                return ((), false);
            };
            s.closed = true;
            let waiting: Vec<ConnId> = s.waiting.drain(..).collect();
            for id in waiting {
                if let Some(c) = i.conns.get_mut(&id) {
                    c.vessel_closed = true;
                }
            }
            ((), true)
        })
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn wait(&self, seen: u64, timeout: Option<Duration>) -> u64 {
        self.wait_inner(seen, timeout)
    }

    fn wake(&self) {
        self.update(|_| ((), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_flow_by_offset_and_resends_are_skipped() {
        let hub = BufferHub::new();
        hub.net_add_service("s");
        hub.net_open("s", 7).unwrap();
        assert_eq!(hub.take_connection("s"), Some(7));
        assert_eq!(hub.take_connection("s"), None);
        assert_eq!(hub.net_deliver(7, b"hello").unwrap(), 5);
        let a = hub.receive(7, 0, 3).unwrap();
        assert_eq!(a.data, b"hel");
        // Asked again from the same offset (a rebuilt dock): the same bytes.
        assert_eq!(hub.receive(7, 0, 3).unwrap().data, b"hel");
        hub.net_end(7, StreamEnd::Fin);
        let b = hub.receive(7, 3, 100).unwrap();
        assert_eq!(
            (b.data.as_slice(), b.end),
            (&b"lo"[..], Some(StreamEnd::Fin))
        );
        // Bytes before offset 3 were acknowledged and forgotten.
        assert!(matches!(hub.receive(7, 0, 1), Err(HubError::Offset { .. })));

        assert_eq!(hub.send(7, 0, b"abc").unwrap(), 3);
        // A resend of "bc" plus one new byte.
        assert_eq!(hub.send(7, 1, b"bcd").unwrap(), 3);
        let out = hub.net_collect(7, 100).unwrap();
        assert_eq!((out.at, out.data.as_slice()), (0, &b"abcd"[..]));
        hub.shutdown_write(7);
        assert!(hub.net_collect(7, 100).unwrap().fin);
    }

    #[test]
    fn buffers_are_bounded_and_resets_fail_sends() {
        let hub = BufferHub::new();
        hub.net_add_service("s");
        hub.net_open("s", 1).unwrap();
        let big = vec![1u8; MAX_HUB_BUFFER_BYTES + 10];
        assert_eq!(hub.net_deliver(1, &big).unwrap(), MAX_HUB_BUFFER_BYTES);
        assert_eq!(hub.net_deliver(1, b"x").unwrap(), 0);
        assert_eq!(hub.send(1, 0, &big).unwrap(), MAX_HUB_BUFFER_BYTES);
        assert_eq!(hub.send_room(1).unwrap(), 0);
        hub.net_end(1, StreamEnd::Reset);
        assert_eq!(hub.send(1, 0, b"x"), Err(HubError::Reset));
        // Connection 1 still waits: 127 more fill the queue.
        for id in 2..1 + MAX_VESSEL_CONNECTIONS as u64 {
            hub.net_open("s", id).unwrap();
        }
        assert!(matches!(
            hub.net_open("s", 99_999),
            Err(OpenError::Full { .. })
        ));
        assert!(matches!(
            hub.net_open("s", 2),
            Err(OpenError::DuplicateId(2))
        ));
    }
}
