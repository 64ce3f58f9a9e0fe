//! A service hub backed by real TCP listeners on this host, for
//! `meshnode run --tcplisten ADDR`.
//!
//! Background threads bridge the network to a [`BufferHub`]: one acceptor
//! per listener, which gives every client a connection id; per connection a
//! reader (TCP → hub) and a writer (hub → TCP). The vessel never holds a
//! host socket: the dock only sees the hub, so the same vessel state can be
//! served by a hub whose bytes come from elsewhere (the mesh).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::limits::{MAX_SERVICE_NAME_BYTES, MAX_SERVICE_PORTS};

use super::{BufferHub, HubError, OpenError, StreamEnd};

/// How much one read from or write to a TCP stream moves.
const IO_CHUNK_BYTES: usize = 64 * 1024;

/// How often idle bridge threads look up from a blocking call to see
/// whether they should stop.
const TICK: Duration = Duration::from_millis(200);

/// How long a connection the vessel closed is still read from (and what
/// arrives dropped) after its FIN went out, so that the kernel does not
/// answer late client bytes with a reset that could destroy the response
/// before the client read it.
const LINGER: Duration = Duration::from_secs(2);

/// Why `--tcplisten` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TcpServicesError {
    #[error("--tcplisten {addr}: cannot listen: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("--tcplisten {addr} is given twice")]
    Duplicate { addr: String },
    #[error("{count} --tcplisten ports, over the limit of {limit} service ports per vessel")]
    TooMany { count: usize, limit: usize },
    #[error("--tcplisten {addr}: longer than {limit} bytes")]
    NameTooLong { addr: String, limit: usize },
}

/// Real TCP listeners bridged to a [`BufferHub`]. Dropping it stops the
/// acceptors and abandons open connections; [`finish`](Self::finish) closes
/// them cleanly first.
pub struct TcpServices {
    hub: Arc<BufferHub>,
    ports: Vec<(String, SocketAddr)>,
    stop: Arc<AtomicBool>,
}

impl TcpServices {
    /// Listens on each address (`HOST:PORT`, as `TcpListener::bind` takes
    /// it). The service port's name is the address as given.
    pub fn bind(addrs: &[String]) -> Result<Self, TcpServicesError> {
        if addrs.len() > MAX_SERVICE_PORTS {
            return Err(TcpServicesError::TooMany {
                count: addrs.len(),
                limit: MAX_SERVICE_PORTS,
            });
        }
        let hub = Arc::new(BufferHub::new());
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(1));
        let mut listeners = Vec::new();
        for addr in addrs {
            if addr.len() > MAX_SERVICE_NAME_BYTES {
                return Err(TcpServicesError::NameTooLong {
                    addr: addr.clone(),
                    limit: MAX_SERVICE_NAME_BYTES,
                });
            }
            if listeners.iter().any(|(a, _, _): &(String, _, _)| a == addr) {
                return Err(TcpServicesError::Duplicate { addr: addr.clone() });
            }
            let bind_err = |source| TcpServicesError::Bind {
                addr: addr.clone(),
                source,
            };
            let l = TcpListener::bind(addr.as_str()).map_err(bind_err)?;
            l.set_nonblocking(true).map_err(bind_err)?;
            let local = l.local_addr().map_err(bind_err)?;
            listeners.push((addr.clone(), local, l));
        }
        let mut ports = Vec::new();
        for (name, local, listener) in listeners {
            hub.net_add_service(&name);
            ports.push((name.clone(), local));
            let (hub, stop, next_id) = (hub.clone(), stop.clone(), next_id.clone());
            std::thread::Builder::new()
                .name(format!("tcplisten-{local}"))
                .spawn(move || accept_loop(listener, name, hub, stop, next_id))
                .map_err(|source| TcpServicesError::Bind {
                    addr: local.to_string(),
                    source,
                })?;
        }
        Ok(TcpServices { hub, ports, stop })
    }

    /// The hub the vessel's WASI context talks to.
    pub fn hub(&self) -> Arc<BufferHub> {
        self.hub.clone()
    }

    /// The service port names, in the order given (the guest's descriptors
    /// 3, 4, ... in that order).
    pub fn services(&self) -> Vec<String> {
        self.ports.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Each service port's name and the address it actually listens on
    /// (port 0 becomes the port the OS chose).
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.ports
    }

    /// The vessel is gone: stop listening, send every open connection what
    /// the vessel sent and then a FIN; wait up to `timeout` for that.
    pub fn finish(self, timeout: Duration) {
        self.hub.net_stop();
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.hub.net_generation();
            if self.hub.net_connections() == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.hub.net_wait(seen, Some((deadline - now).min(TICK)));
        }
    }
}

impl Drop for TcpServices {
    fn drop(&mut self) {
        self.hub.net_stop();
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    service: String,
    hub: Arc<BufferHub>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: TICK.as_nanos() as i64,
    };
    while !stop.load(Ordering::SeqCst) && !hub.net_stopped() {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(&listener, PollFlags::IN)];
                let _ = poll(&mut fds, Some(&tick));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of host descriptors, say: the client waits in the
                // backlog until we can take it.
                std::thread::sleep(TICK);
                continue;
            }
        };
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        // Already queued clients past the limit wait here (and later ones
        // in the kernel's backlog) until the vessel takes some.
        let opened = loop {
            let seen = hub.net_generation();
            match hub.net_open(&service, id) {
                Ok(()) => break true,
                Err(OpenError::Full { .. }) => {
                    if stop.load(Ordering::SeqCst) {
                        break false;
                    }
                    hub.net_wait(seen, Some(TICK));
                }
                Err(_) => break false,
            }
        };
        if !opened {
            // The vessel closed this service port: refuse from now on.
            return;
        }
        bridge(stream, id, &hub, &stop);
    }
}

/// Starts the reader and writer threads of one connection.
fn bridge(stream: TcpStream, id: u64, hub: &Arc<BufferHub>, stop: &Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let reader = match stream.try_clone() {
        Ok(r) => r,
        Err(_) => {
            hub.net_end(id, StreamEnd::Reset);
            return;
        }
    };
    let (h, s) = (hub.clone(), stop.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("tcp-read-{id}"))
        .spawn(move || read_loop(reader, id, &h, &s));
    if spawned.is_err() {
        hub.net_end(id, StreamEnd::Reset);
        return;
    }
    let (h, s) = (hub.clone(), stop.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("tcp-write-{id}"))
        .spawn(move || write_loop(stream, id, &h, &s));
    if spawned.is_err() {
        hub.net_end(id, StreamEnd::Reset);
    }
}

/// TCP → hub, with backpressure: when the hub's buffer is full, this
/// thread stops reading and the client's sends block.
fn read_loop(mut stream: TcpStream, id: u64, hub: &BufferHub, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; IO_CHUNK_BYTES];
    let mut closed_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if hub.net_is_closed(id) {
            let since = *closed_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LINGER {
                return;
            }
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                hub.net_end(id, StreamEnd::Fin);
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                hub.net_end(id, StreamEnd::Reset);
                return;
            }
        };
        let mut off = 0;
        while off < n {
            let seen = hub.net_generation();
            match hub.net_deliver(id, &buf[off..n]) {
                Ok(0) => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    hub.net_wait(seen, Some(TICK));
                }
                Ok(k) => off += k,
                // The vessel closed it and the writer is done: drop what
                // still arrives until the linger ends.
                Err(HubError::Unknown) => off = n,
                Err(_) => return,
            }
        }
    }
}

/// Hub → TCP: writes what the vessel sent, then the FIN or close it asked
/// for.
fn write_loop(mut stream: TcpStream, id: u64, hub: &BufferHub, stop: &AtomicBool) {
    let mut fin_sent = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let seen = hub.net_generation();
        let out = match hub.net_collect(id, IO_CHUNK_BYTES) {
            Ok(out) => out,
            Err(_) => return,
        };
        if !out.data.is_empty() {
            if stream.write_all(&out.data).is_err() {
                hub.net_end(id, StreamEnd::Reset);
                return;
            }
            continue;
        }
        if out.closed {
            // FIN, not a full close: the reader drains what the client
            // still sends for a while (see LINGER), then the last handle
            // closes the socket.
            let _ = stream.shutdown(Shutdown::Write);
            hub.net_forget(id);
            return;
        }
        if out.fin && !fin_sent {
            let _ = stream.shutdown(Shutdown::Write);
            fin_sent = true;
        }
        hub.net_wait(seen, Some(TICK));
    }
}
