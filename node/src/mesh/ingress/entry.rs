//! The entry role of service ingress (docs/protocol.md "Service
//! ingress"): a node that holds a client's TCP connection, reads the
//! client's bytes and sends them to the vessel's host until the host
//! confirms them ([`read_client`]), and writes the vessel's bytes to the
//! client once each ([`entry_write`], [`write_client`]). The routes it
//! follows and the host role are in the parent module.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Vessel bytes from `from` for clients held here.
pub async fn entry_write(
    ingress: &Ingress,
    from: PeerId,
    frame: EgressFrame,
) -> Result<EgressReply, Refusal> {
    {
        let mut routes = lock(&ingress.routes);
        if let Some(r) = routes.get(&frame.vessel) {
            if frame.epoch < r.epoch {
                return Err(Refusal::new(
                    RefusalCode::StaleEpoch,
                    format!(
                        "stale epoch {} for vessel {}: it runs under epoch {} now",
                        frame.epoch, frame.vessel, r.epoch
                    ),
                ));
            }
        }
        ingress.learn_one(&mut routes, from, frame.vessel, frame.epoch, None);
    }
    let mut conns = Vec::with_capacity(frame.segments.len());
    for seg in frame.segments {
        let id = seg.conn;
        let conn = lock(&ingress.conns)
            .get(&id)
            .filter(|c| c.vessel == frame.vessel)
            .cloned();
        let status = match conn {
            None => OutStatus::Unknown,
            Some(c) => {
                let (reply, rx) = oneshot::channel();
                if c.writer.send(WriteCmd { seg, reply }).await.is_err() {
                    OutStatus::Unknown
                } else {
                    rx.await.unwrap_or(OutStatus::Unknown)
                }
            }
        };
        conns.push((id, status));
    }
    Ok(EgressReply { conns })
}

fn new_conn_id() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    u64::from_le_bytes(b)
}

/// Accepts clients on one service port.
pub(super) async fn listen(ingress: Arc<Ingress>, listener: TcpListener, port: u16) {
    let waiting = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(port, "service port: accept failed: {e}");
                tokio::time::sleep(UNREACHABLE_WAIT).await;
                continue;
            }
        };
        let Some(vessel) = ingress.vessel_on_port(port) else {
            debug!(port, %addr, "no vessel serves this port now: client closed");
            continue;
        };
        if ingress.suspected_host(vessel, refuses_new).is_none() {
            admit(&ingress, stream, vessel, port);
        } else if waiting.load(Ordering::Relaxed) < MAX_WAITING_CLIENTS {
            waiting.fetch_add(1, Ordering::Relaxed);
            let (ingress, waiting) = (ingress.clone(), waiting.clone());
            tokio::spawn(async move {
                admit_when_heard(&ingress, stream, addr, vessel, port).await;
                waiting.fetch_sub(1, Ordering::Relaxed);
            });
        } else {
            warn!(port, %addr, "client reset: {MAX_WAITING_CLIENTS} clients already wait for their vessel's host");
            let _ = stream.set_zero_linger();
        }
    }
}

/// Accepts a new client whose vessel's host failure detection suspects
/// once the host is heard again or another host runs the vessel, or
/// resets it after [`NEW_CLIENT_WAIT`]: a client of a host that is gone
/// is reset, never left hanging, and one that came while a flapping link
/// was down is served.
pub(super) async fn admit_when_heard(
    ingress: &Arc<Ingress>,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    vessel: VesselId,
    port: u16,
) {
    let deadline = Instant::now() + NEW_CLIENT_WAIT;
    loop {
        let Some((host, why)) = ingress.suspected_host(vessel, refuses_new) else {
            admit(ingress, stream, vessel, port);
            return;
        };
        if Instant::now() >= deadline {
            info!(port, %addr, %vessel, %host, "client reset: the vessel's host is {why}");
            let _ = stream.set_zero_linger();
            return;
        }
        tokio::time::sleep(UNREACHABLE_WAIT).await;
    }
}

/// Holds a new client: its reader and writer tasks.
fn admit(ingress: &Arc<Ingress>, stream: tokio::net::TcpStream, vessel: VesselId, port: u16) {
    if ingress.connections() >= MAX_ENTRY_CONNECTIONS {
        warn!(
            port,
            "client refused: {MAX_ENTRY_CONNECTIONS} client connections already held here"
        );
        return;
    }
    let _ = stream.set_nodelay(true);
    let id = new_conn_id();
    let (tx, rx) = mpsc::channel(4);
    lock(&ingress.conns).insert(id, Arc::new(EntryConn { vessel, writer: tx }));
    let (read, write) = stream.into_split();
    tokio::spawn(write_client(ingress.clone(), id, write, rx));
    tokio::spawn(read_client(
        ingress.clone(),
        vessel,
        id,
        port.to_string(),
        read,
    ));
}

/// Writes the vessel's bytes to the client, each once, and closes the
/// client after the vessel's close.
async fn write_client(
    ingress: Arc<Ingress>,
    id: u64,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<WriteCmd>,
) {
    let mut written: u64 = 0;
    let mut shut = false;
    let mut broken = false;
    while let Some(WriteCmd { seg, reply }) = rx.recv().await {
        let end = seg.at + seg.data.len() as u64;
        if !broken && seg.at <= written && end > written {
            let fresh = &seg.data[(written - seg.at) as usize..];
            match write.write_all(fresh).await {
                Ok(()) => written = end,
                Err(_) => broken = true,
            }
        }
        let complete = end <= written;
        if complete && (seg.fin || seg.closed) && !shut && !broken {
            let _ = write.shutdown().await;
            shut = true;
        }
        let done = broken || (complete && seg.closed);
        let _ = reply.send(OutStatus::Written { written, done });
        if done {
            break;
        }
    }
    lock(&ingress.conns).remove(&id);
    // Ended without the vessel's FIN or close: the entry is resetting the
    // client (`read_client` set a zero linger). Dropping the half would
    // shut down the write side first, and the client would read a clean
    // end of stream before the reset: a request cut short would look
    // answered. The reset comes with the close, once both halves are gone.
    if !shut {
        write.forget();
    }
}

/// Reads the client's bytes and sends them to the vessel's host until the
/// host has them all (and the client's end).
pub(super) async fn read_client(
    ingress: Arc<Ingress>,
    vessel: VesselId,
    id: u64,
    service: String,
    mut read: tokio::net::tcp::OwnedReadHalf,
) {
    // Client bytes from offset `base` that no host has confirmed.
    let mut base: u64 = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut end: Option<StreamEnd> = None;
    let mut opened = false;
    let mut unreachable_since: Option<Instant> = None;
    let mut nowhere_since: Option<Instant> = None;
    // When this client first saw its sync vessel's host suspected.
    let mut lost_since: Option<Instant> = None;
    let mut buf = vec![0u8; INGRESS_SEGMENT_BYTES];
    loop {
        let gone = !lock(&ingress.conns).contains_key(&id);
        if gone {
            // The vessel closed the connection: nothing more to carry.
            return;
        }
        // Read when there is nothing to send (wait) or room for more (now).
        // A new host to tell where this client stands (below).
        let mut probe = false;
        if end.is_none() && pending.len() < MAX_HUB_BUFFER_BYTES {
            let idle = opened && pending.is_empty();
            let r = if idle {
                let host_now = ingress.route(vessel).map(|(h, _)| h);
                tokio::select! {
                    r = read.read(&mut buf) => Some(r),
                    // Look up now and then: the vessel may have closed, or
                    // its host gone.
                    _ = tokio::time::sleep(IDLE_LOOK_EVERY) => None,
                    // Another host runs the vessel now (a takeover): it is
                    // sent an empty segment at once, which it answers with
                    // how much of this client it holds. A host that resumed
                    // an older image holds less, and the client is reset
                    // then, not when the dead host is declared down (30 s:
                    // a client waiting for its answer hung that long,
                    // scripts/bench_failover.py).
                    () = moved_off(&ingress, vessel, host_now) => {
                        probe = true;
                        None
                    }
                }
            } else {
                match read.try_read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    r => Some(r),
                }
            };
            match r {
                None if idle && !probe => {
                    if let Some(why) = ingress.gives_up(vessel, &mut lost_since) {
                        info!(%vessel, conn = id, "idle client reset: {why}");
                        break;
                    }
                    continue;
                }
                None => {}
                Some(Ok(0)) => end = Some(StreamEnd::Fin),
                Some(Ok(n)) => pending.extend_from_slice(&buf[..n]),
                Some(Err(_)) => end = Some(StreamEnd::Reset),
            }
        }
        let n = pending.len().min(INGRESS_SEGMENT_BYTES);
        let seg = InSegment {
            conn: id,
            service: service.clone(),
            at: base,
            data: pending[..n].to_vec(),
            end: if n == pending.len() { end } else { None },
        };
        let frame = IngressFrame {
            vessel,
            segments: vec![seg],
        };
        let sync = ingress.is_sync(vessel);
        let reply = match ingress.route(vessel) {
            None => Err("no route".to_string()),
            Some((host, _)) if host == ingress.me => Ok(host_take(&ingress.host, host, &frame)),
            Some((host, _)) => {
                let ask = ingress
                    .link
                    .ingress_hedged(host, IngressRequest::Ingress(frame.clone()));
                tokio::select! {
                    answer = ask => match answer {
                        Ok(IngressResponse::Ingress(r)) => Ok(r),
                        Ok(other) => Err(RequestError::unexpected(host, &other).to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    // The vessel moved while the old host had the frame (it
                    // answers `Moving` in the pause, `NotHere` a round trip
                    // after the commit): send it to the new host now. Its
                    // answer is not needed: the bytes stay here until a host
                    // confirms them, and a host skips bytes it has.
                    () = ingress.moved_from(vessel, host) => continue,
                    // The host died with the frame: not waited on.
                    s = ingress.suspects.until_down(host), if !sync => {
                        info!(%vessel, conn = id, %host, "client reset: the vessel's host is {}", s.describe());
                        break;
                    }
                    // A sync vessel's client is held while a replica takes
                    // over (the route then names it, and the bytes go there).
                    () = tokio::time::sleep(SYNC_LOOK_EVERY), if sync => {
                        if let Some(why) = ingress.gives_up(vessel, &mut lost_since) {
                            info!(%vessel, conn = id, "client reset: {why}");
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        match reply {
            Ok(IngressReply::Took { epoch, conns }) => {
                unreachable_since = None;
                if let Some((host, _)) = ingress.route(vessel) {
                    ingress.learn_one(&mut lock(&ingress.routes), host, vessel, epoch, None);
                }
                match conns.first().map(|c| c.1) {
                    Some(InStatus::Taken { taken }) => {
                        if taken < base {
                            // The host is behind what another host confirmed:
                            // it restarted from an older image, bytes are gone.
                            warn!(%vessel, conn = id, "client reset: its host lost bytes it had confirmed");
                            break;
                        }
                        let k = ((taken - base) as usize).min(pending.len());
                        pending.drain(..k);
                        base += k as u64;
                        opened = true;
                        if end.is_some() && pending.is_empty() && taken == base {
                            // Everything and the end are with the host.
                            if end == Some(StreamEnd::Reset) {
                                lock(&ingress.conns).remove(&id);
                            }
                            return;
                        }
                        if k == 0 && !pending.is_empty() {
                            // The host's buffer is full: the vessel reads slowly.
                            tokio::time::sleep(RETRY_WAIT).await;
                        }
                    }
                    Some(InStatus::Moving) => tokio::time::sleep(RETRY_WAIT).await,
                    Some(InStatus::Reset) | None => {
                        debug!(%vessel, conn = id, "client reset by the vessel's host");
                        break;
                    }
                }
            }
            Ok(IngressReply::NotHere { moved_to, epoch }) => {
                let to = moved_to.and_then(|b| PeerId::from_bytes(&b.0).ok());
                match to {
                    Some(to) => {
                        nowhere_since = None;
                        let before = ingress.route(vessel);
                        ingress.learn_one(&mut lock(&ingress.routes), to, vessel, epoch, None);
                        if ingress.route(vessel) == before {
                            // Not taken yet: a leased vessel's new host is
                            // taken once its proof is checked (learn_one
                            // asked for it). Wait for the route to move, or
                            // a while; asking the old host again at once
                            // would spin on its answer without ever
                            // yielding, and starve the node's other tasks.
                            let old = before.map(|(h, _)| h);
                            let moved = moved_off(&ingress, vessel, old);
                            let _ = tokio::time::timeout(UNREACHABLE_WAIT, moved).await;
                        }
                    }
                    None => {
                        // Not there and no word of where it went: it ended,
                        // or the route is older than the gossip.
                        let since = *nowhere_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > NOWHERE_LIMIT {
                            debug!(%vessel, conn = id, "client reset: the vessel runs nowhere this node knows");
                            break;
                        }
                        tokio::time::sleep(UNREACHABLE_WAIT).await
                    }
                }
            }
            Err(e) => {
                if let Some(why) = ingress.gives_up(vessel, &mut lost_since) {
                    info!(%vessel, conn = id, "client reset: {why} ({e})");
                    break;
                }
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > HOST_UNREACHABLE_LIMIT {
                    warn!(%vessel, conn = id, "client reset: the vessel's host is unreachable ({e})");
                    break;
                }
                tokio::time::sleep(UNREACHABLE_WAIT).await;
            }
        }
    }
    // Reset the client: a zero linger makes the close a reset, and the
    // close comes once the writer (whose sender goes with the entry) and
    // this half are both dropped.
    let _ = read.as_ref().set_zero_linger();
    lock(&ingress.conns).remove(&id);
}

/// Returns once the route of `vessel` names another host than `host` (never
/// without one).
async fn moved_off(ingress: &Ingress, vessel: VesselId, host: Option<PeerId>) {
    match host {
        Some(host) => ingress.moved_from(vessel, host).await,
        None => std::future::pending().await,
    }
}
