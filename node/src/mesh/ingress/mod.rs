//! Service ingress on the mesh (DESIGN.md §7, docs/protocol.md "Service
//! ingress"): every node accepts the clients of every service vessel in
//! the mesh and carries their bytes to wherever the vessel runs.
//!
//! Two roles, often on the same node:
//! - **Entry**: a node that holds a client's TCP connection. It listens on
//!   the service ports the mesh gossips ([`ServiceRoute`]), gives each
//!   client a random connection id, and sends the client's bytes to the
//!   vessel's host by offset ([`IngressFrame`]), keeping them until the
//!   host confirms them. The host's answer `NotHere { moved_to }` sends it
//!   after the vessel; `Moving` makes it wait out a capture. Vessel bytes
//!   arrive as [`EgressFrame`]s, are written to the client once each (by
//!   offset) and confirmed; frames from an epoch older than one the entry
//!   has seen are refused (a host the vessel left cannot speak for it).
//! - **Host**: the node that runs the vessel. Its [`IngressHub`] takes the
//!   client bytes, and a pump task per hub sends the vessel's bytes to the
//!   entries until they confirm them.
//!
//! Nothing is lost across a move because each side keeps what the other
//! has not confirmed: the entry the client's bytes, the host its vessel's
//! bytes, which travel in the vessel's image ([`protocol::ingress::HubImage`]).
//! A client that reached the host directly is held by the host as entry,
//! so it keeps its connection when the vessel leaves.
//!
//! A host that failure detection suspects (`mesh::liveness`) is not waited
//! on for long. A new client of a vessel there waits at most
//! [`NEW_CLIENT_WAIT`] for the host to be heard again or the vessel to
//! move, and is reset after that, never accepted and left hanging. An open one is held while the host is only
//! *unreachable* (its bytes kept, as always): a partition that heals, or a
//! host that restarts, is ridden out (testnet's faults.toml). It is reset
//! once the host is *down* (`liveness::DOWN_AFTER`, 30 s of silence): at
//! once if it waits on the host's answer, within [`IDLE_LOOK_EVERY`] if it
//! is idle. [`gives_up_open`] is that rule. A client of a `--durability
//! sync` vessel (its route says so) is held through its host's death
//! instead: its bytes go to the new host once the route names it at the
//! higher epoch, and it is reset only if none takes over within
//! [`SYNC_FAILOVER_HOLD`] (`Ingress::gives_up`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::PeerIdBytes;
use protocol::ingress::{
    EgressFrame, EgressReply, InSegment, InStatus, IngressFrame, IngressReply, IngressRequest,
    IngressResponse, OutSegment, OutStatus, ServiceRoute, StreamEnd,
};
use protocol::limits::{MAX_HUB_BUFFER_BYTES, MAX_INGRESS_SEGMENTS, MAX_STATUS_VESSELS};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use super::announce::{announce_arrival, local_routes};
use super::link::{Link, RequestError};
use super::liveness::{Suspects, Suspicion};
use super::route_proof::{self, ProofError, RouteProofs, MAX_PROOFS_IN_FLIGHT};
use crate::dock::services::ingress::IngressHub;
use crate::sync::lock;
use crate::vessel::{Host, Record};
pub use entry::entry_write;
use entry::listen;

mod entry;

/// Most client connections one entry node holds at once, over all
/// services: each costs two tasks and up to [`MAX_HUB_BUFFER_BYTES`] of
/// unconfirmed bytes, so this bounds an entry's memory to about 256 MiB.
pub const MAX_ENTRY_CONNECTIONS: usize = 1024;

/// Most service routes an entry remembers: a few statuses' worth of
/// vessels, so that gossip from many nodes cannot grow the table without
/// bound (a route nobody gossips again expires after `ROUTE_TTL`).
const MAX_ROUTES: usize = MAX_STATUS_VESSELS * 4;

/// Most client bytes an entry reads into one ingress frame.
const INGRESS_SEGMENT_BYTES: usize = 64 * 1024;

/// How long an entry waits before it asks again while the vessel is being
/// captured (`Moving`) or its host is unknown or unreachable. Short: the
/// pause of a migration is tens of milliseconds.
const RETRY_WAIT: Duration = Duration::from_millis(10);
const UNREACHABLE_WAIT: Duration = Duration::from_millis(100);

/// How long an entry keeps trying to reach a vessel's host for one client,
/// while failure detection does not call the host down (its requests fail
/// but it answers pings), before it resets the client. A host that is down
/// is given up at once (see the module's note).
pub const HOST_UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// A new client is not accepted for a host under any suspicion: it waits
/// (at most [`NEW_CLIENT_WAIT`]) for the host to be heard again or the
/// vessel to move.
fn refuses_new(_: &Suspicion) -> bool {
    true
}

/// How long a new client of a vessel whose host failure detection
/// suspects waits to be accepted before it is reset. A link that flaps
/// makes a host unreachable (3 s of silence) for a few seconds at a time:
/// in testnet's flapping scenario the host was heard again 13 ms after a
/// client that had come 6.3 s into the silence was reset. A failover moves
/// the vessel in about 2 s (docs/benchmarks.md), and a new client then
/// goes to the new host. A host that is gone has its new clients reset
/// after this, never left hanging.
pub const NEW_CLIENT_WAIT: Duration = Duration::from_secs(5);

/// Most new clients of one service port that wait for their host at once
/// ([`NEW_CLIENT_WAIT`]): each holds a socket and a task.
const MAX_WAITING_CLIENTS: usize = 256;

/// An open client is given up once its host is down, not while it is only
/// unreachable (see the module's note).
pub fn gives_up_open(s: &Suspicion) -> bool {
    s.down
}

/// How long an entry holds a client of a `--durability sync` vessel whose
/// host failure detection suspects, waiting for a replica to take the
/// vessel over (a takeover takes about 2 s: a lease hold, one round of
/// votes and one of grants), before it resets the client and says why.
/// Long enough for a slow takeover on a loaded board; short enough that a
/// client of a vessel that cannot fail over (no majority of its voters)
/// learns it within a client's usual patience.
pub const SYNC_FAILOVER_HOLD: Duration = Duration::from_secs(30);

/// How often an entry waiting on a suspected host of a sync vessel looks
/// whether the route names a new host, or the hold ran out.
const SYNC_LOOK_EVERY: Duration = Duration::from_millis(500);

/// How often an idle client's reader looks whether the vessel closed the
/// connection or its host became suspected: the most an idle client of a
/// dead host waits for its reset beyond the detection itself.
pub const IDLE_LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long an entry keeps asking after hosts that say the vessel is not
/// there and do not know where it went (a few status intervals: the gossip
/// names the new host by then) before it resets the client.
const NOWHERE_LIMIT: Duration = Duration::from_secs(6);

/// How long an idle egress pump sleeps between looks when nothing wakes it
/// (the hub wakes it at once when the vessel sends).
const PUMP_IDLE_WAIT: Duration = Duration::from_millis(200);

/// How long a gossiped route stays without being gossiped again (a few
/// status intervals): a vessel that ended stops being announced.
const ROUTE_TTL: Duration = Duration::from_secs(30);

/// How often the ingress task looks at routes, listeners and hubs.
const TICK: Duration = Duration::from_millis(250);

/// How long a hub of a vessel that ended keeps sending what the vessel
/// wrote before its connections are dropped.
const ENDED_HUB_LINGER: Duration = Duration::from_secs(10);

/// Where a vessel runs, as far as this node knows.
#[derive(Debug, Clone)]
struct Route {
    host: PeerId,
    epoch: u64,
    ports: Vec<u16>,
    /// A `--durability sync` vessel ([`SYNC_FAILOVER_HOLD`]).
    sync: bool,
    /// A leased vessel: a new epoch or host is followed only once its
    /// certificate is checked (`route_proof`).
    leased: bool,
    seen: Instant,
}

/// A write of vessel bytes to a client, answered once done.
struct WriteCmd {
    seg: OutSegment,
    reply: oneshot::Sender<OutStatus>,
}

/// A client connection this node holds as entry.
struct EntryConn {
    vessel: VesselId,
    writer: mpsc::Sender<WriteCmd>,
}

/// The ingress state of one node: routes, listeners and client
/// connections (entry role).
pub struct Ingress {
    /// Where service ports are listened on (config `service_address`).
    service_ip: Option<IpAddr>,
    /// Frames to the other entries and hosts.
    link: Link,
    /// The vessels this node hosts.
    host: Arc<Mutex<Host>>,
    me: PeerId,
    routes: Mutex<HashMap<VesselId, Route>>,
    /// Bumped whenever a route names a new host, so that a client's reader
    /// waiting on the old host's answer goes to the new one at once.
    moved: tokio::sync::watch::Sender<u64>,
    /// Ports listened on, and the one that failed to bind (logged once).
    listening: Mutex<HashMap<u16, bool>>,
    conns: Mutex<HashMap<u64, Arc<EntryConn>>>,
    /// The hosts failure detection suspects: not waited on.
    suspects: Suspects,
    /// The certificates checked of leased vessels' epochs, and the asks.
    proofs: Mutex<RouteProofs>,
    proof_asks: mpsc::Sender<ProofAsk>,
    /// Taken by [`run`], which answers the asks.
    proof_asked: Mutex<Option<mpsc::Receiver<ProofAsk>>>,
}

/// An ask for the proof that a host owns a vessel at an epoch.
type ProofAsk = (PeerId, VesselId, u64);

impl Ingress {
    /// `service_ip` None: this node accepts no clients itself (it still
    /// hosts service vessels for other entries).
    pub fn new(
        service_ip: Option<IpAddr>,
        link: Link,
        host: Arc<Mutex<Host>>,
        me: PeerId,
        suspects: Suspects,
    ) -> Ingress {
        let (proof_asks, proof_asked) = mpsc::channel(MAX_PROOFS_IN_FLIGHT);
        Ingress {
            service_ip,
            link,
            host,
            me,
            routes: Mutex::new(HashMap::new()),
            moved: tokio::sync::watch::Sender::new(0),
            listening: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            suspects,
            proofs: Mutex::new(RouteProofs::default()),
            proof_asks,
            proof_asked: Mutex::new(Some(proof_asked)),
        }
    }

    /// The host of `vessel`'s route when failure detection suspects it
    /// and `enough` holds of the suspicion, with why, for the log.
    fn suspected_host(
        &self,
        vessel: VesselId,
        enough: fn(&Suspicion) -> bool,
    ) -> Option<(PeerId, String)> {
        let (host, _) = self.route(vessel)?;
        let s = self.suspects.of(&host).filter(enough)?;
        Some((host, s.describe()))
    }

    /// Routes gossiped by `host` (a member's status).
    pub fn learn(&self, host: PeerId, services: &[ServiceRoute]) {
        let mut routes = lock(&self.routes);
        for s in services.iter().take(MAX_STATUS_VESSELS) {
            self.learn_one(&mut routes, host, s.vessel, s.epoch, Some(s));
        }
    }

    /// Takes `host` at `epoch` as `vessel`'s route, unless the route knows
    /// a higher epoch, or the vessel is leased, `epoch` is higher than the
    /// route's and no certificate checked here says `host` owns it (then
    /// the proof is asked for, and the route stays until it comes).
    fn learn_one(
        &self,
        routes: &mut HashMap<VesselId, Route>,
        host: PeerId,
        vessel: VesselId,
        epoch: u64,
        service: Option<&ServiceRoute>,
    ) {
        let claims_lease = service.is_some_and(|s| s.leased);
        match routes.get_mut(&vessel) {
            Some(r) if r.epoch > epoch => {}
            Some(r) => {
                r.leased |= claims_lease;
                // Only a higher epoch needs its certificate: the same epoch
                // from another node is the relay of the host's frames
                // (`relay.rs`) while its direct link is down.
                let newer = epoch > r.epoch;
                if r.leased && newer && !self.proven(vessel, epoch, host) {
                    self.ask_proof(host, vessel, epoch);
                    return;
                }
                if r.host != host || r.epoch != epoch {
                    debug!(%vessel, %host, epoch, "service route");
                }
                if r.host != host {
                    self.moved.send_modify(|n| *n = n.wrapping_add(1));
                }
                r.host = host;
                r.epoch = epoch;
                if let Some(s) = service {
                    r.ports = s.ports.clone();
                    r.sync = s.sync;
                }
                r.seen = Instant::now();
            }
            None => {
                if routes.len() >= MAX_ROUTES {
                    return;
                }
                routes.insert(
                    vessel,
                    Route {
                        host,
                        epoch,
                        ports: service.map(|s| s.ports.clone()).unwrap_or_default(),
                        sync: service.is_some_and(|s| s.sync),
                        leased: claims_lease,
                        seen: Instant::now(),
                    },
                );
                // Taken as it comes (there is nothing yet to check it
                // against); its proof gives the next epoch's signers.
                if claims_lease {
                    self.ask_proof(host, vessel, epoch);
                }
            }
        }
    }

    /// Whether `host` owns `vessel` at `epoch` as far as this entry
    /// checked: its own routes, or a certificate checked here.
    fn proven(&self, vessel: VesselId, epoch: u64, host: PeerId) -> bool {
        host == self.me || lock(&self.proofs).proves(vessel, epoch, &host)
    }

    /// Asks `host` for its certificate of `vessel` at `epoch`, once
    /// (answered by [`prove_routes`]); a full queue leaves it to the next
    /// route that names it.
    fn ask_proof(&self, host: PeerId, vessel: VesselId, epoch: u64) {
        if host == self.me || !lock(&self.proofs).should_ask(vessel, epoch, host) {
            return;
        }
        if self.proof_asks.try_send((host, vessel, epoch)).is_err() {
            lock(&self.proofs).answered((host, vessel, epoch), None);
        }
    }

    /// The vessel is a `--durability sync` one (its entries hold clients
    /// through its host's death).
    fn is_sync(&self, vessel: VesselId) -> bool {
        lock(&self.routes).get(&vessel).is_some_and(|r| r.sync)
    }

    /// Why an open client of `vessel` is given up now, if it is: an async
    /// vessel's once its host is down; a sync vessel's once its host has
    /// been suspected for [`SYNC_FAILOVER_HOLD`] with no new host in the
    /// route (`lost_since`: when this client first saw it suspected).
    fn gives_up(&self, vessel: VesselId, lost_since: &mut Option<Instant>) -> Option<String> {
        if !self.is_sync(vessel) {
            return self
                .suspected_host(vessel, gives_up_open)
                .map(|(host, why)| format!("the vessel's host {host} is {why}"));
        }
        let Some((host, why)) = self.suspected_host(vessel, refuses_new) else {
            *lost_since = None;
            return None;
        };
        let since = *lost_since.get_or_insert_with(Instant::now);
        (since.elapsed() > SYNC_FAILOVER_HOLD).then(|| {
            format!(
                "the sync vessel's host {host} is {why}, and no other node took it over within {} s",
                SYNC_FAILOVER_HOLD.as_secs()
            )
        })
    }

    fn route(&self, vessel: VesselId) -> Option<(PeerId, u64)> {
        lock(&self.routes).get(&vessel).map(|r| (r.host, r.epoch))
    }

    /// Returns once the route of `vessel` names another host than `host`
    /// (gossip, a frame or an announcement from the new host).
    async fn moved_from(&self, vessel: VesselId, host: PeerId) {
        let mut changes = self.moved.subscribe();
        loop {
            if self.route(vessel).is_some_and(|(h, _)| h != host) {
                return;
            }
            if changes.changed().await.is_err() {
                // The sender lives as long as `self`: never, but wait on.
                std::future::pending::<()>().await;
            }
        }
    }

    fn vessel_on_port(&self, port: u16) -> Option<VesselId> {
        let routes = lock(&self.routes);
        // The newest route wins if two vessels claim a port.
        routes
            .iter()
            .filter(|(_, r)| r.ports.contains(&port))
            .max_by_key(|(_, r)| r.seen)
            .map(|(v, _)| *v)
    }

    /// Client connections held here now.
    pub fn connections(&self) -> usize {
        lock(&self.conns).len()
    }
}

// ---------------------------------------------------------------------------
// Host role.

/// Client bytes from the entry `from` for a vessel that may run here.
pub fn host_take(host: &Mutex<Host>, from: PeerId, frame: &IngressFrame) -> IngressReply {
    let (hub, epoch) = {
        let h = lock(host);
        let id = frame.vessel;
        let running = h.vessels.get(&id).filter(|l| {
            matches!(l.record, Record::Owned { .. }) && l.runner.is_some() && !l.stopped
        });
        match (h.hubs.get(&id), running) {
            (Some(hub), Some(l)) => {
                // Placement weighs where this vessel's clients enter.
                let bytes: u64 = frame.segments.iter().map(|s| s.data.len() as u64).sum();
                if bytes > 0 {
                    h.traffic.record(id, from, bytes, Instant::now());
                    h.ops.metrics.service_bytes(id, bytes);
                }
                (hub.clone(), l.record.epoch())
            }
            _ => {
                let moved_to = match h.vessels.get(&id).map(|l| &l.record) {
                    Some(Record::Left { to, .. }) => Some(PeerIdBytes(to.clone())),
                    _ => None,
                };
                return IngressReply::NotHere {
                    moved_to,
                    epoch: h.known_epoch(id),
                };
            }
        }
    };
    IngressReply::Took {
        epoch,
        conns: hub.take(&from.to_bytes(), &frame.segments),
    }
}

/// Sends one hub's vessel bytes to the entries until the hub stops.
async fn pump(ingress: Arc<Ingress>, id: VesselId, hub: Arc<IngressHub>) {
    let net = hub.hub();
    let mut seen = net.net_generation();
    loop {
        if hub.stopped() {
            return;
        }
        let batches = hub.egress(MAX_INGRESS_SEGMENTS);
        if batches.is_empty() {
            let (n, s) = (net.clone(), seen);
            seen = tokio::task::spawn_blocking(move || n.net_wait(s, Some(PUMP_IDLE_WAIT)))
                .await
                .unwrap_or(seen);
            continue;
        }
        seen = net.net_generation();
        let epoch = lock(&ingress.host).known_epoch(id);
        let mut progress = false;
        for (entry, segments) in batches {
            let Ok(peer) = PeerId::from_bytes(&entry) else {
                continue;
            };
            let frame = EgressFrame {
                vessel: id,
                epoch,
                segments,
            };
            let reply = if peer == ingress.me {
                entry_write(&ingress, peer, frame.clone())
                    .await
                    .map_err(|e| e.to_string())
            } else {
                match ingress
                    .link
                    .ingress_hedged(peer, IngressRequest::Egress(frame.clone()))
                    .await
                {
                    Ok(IngressResponse::Egress(r)) => Ok(r),
                    Ok(other) => Err(RequestError::unexpected(peer, &other).to_string()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match reply {
                Ok(r) => {
                    for (seg, (conn, status)) in frame.segments.iter().zip(r.conns) {
                        if conn == seg.conn {
                            hub.confirm(seg, status);
                            progress = true;
                        }
                    }
                }
                Err(e) => debug!(vessel = %id, entry = %peer, "egress not delivered: {e}"),
            }
        }
        if !progress {
            tokio::time::sleep(UNREACHABLE_WAIT).await;
        }
    }
}

/// Starts a listener for every port the routes name that has none yet.
fn listen_on_new_ports(ingress: &Arc<Ingress>) {
    let Some(ip) = ingress.service_ip else {
        return;
    };
    let ports: Vec<u16> = {
        let routes = lock(&ingress.routes);
        let listening = lock(&ingress.listening);
        let mut p: Vec<u16> = routes
            .values()
            .flat_map(|r| r.ports.iter().copied())
            .filter(|p| !listening.contains_key(p))
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    for port in ports {
        let addr = SocketAddr::new(ip, port);
        let bound = std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        });
        match bound {
            Ok(l) => {
                info!(%addr, "accepting clients of the mesh's services");
                lock(&ingress.listening).insert(port, true);
                tokio::spawn(listen(ingress.clone(), l, port));
            }
            Err(e) => {
                warn!(%addr, "cannot accept clients on this service port: {e}");
                lock(&ingress.listening).insert(port, false);
            }
        }
    }
}

/// Answers the entry's asks for proofs, each in a task of its own (at most
/// [`MAX_PROOFS_IN_FLIGHT`]), and follows a route whose proof holds.
async fn prove_routes(ingress: Arc<Ingress>, mut asked: mpsc::Receiver<ProofAsk>) {
    while let Some((host, vessel, epoch)) = asked.recv().await {
        let ingress = ingress.clone();
        tokio::spawn(async move {
            let known = lock(&ingress.proofs).known(vessel);
            let checked = route_proof::ask(&ingress.link, host, vessel, epoch, known).await;
            match &checked {
                Ok(_) => debug!(%vessel, %host, epoch, "route proven"),
                Err(e @ (ProofError::Unanswered(..) | ProofError::Refused(..))) => {
                    debug!(%vessel, %host, epoch, "route not proven: {e}")
                }
                Err(e) => warn!(%vessel, %host, epoch, "route refused: {e}"),
            }
            let proven = checked.is_ok();
            lock(&ingress.proofs).answered((host, vessel, epoch), checked.ok());
            if proven {
                ingress.learn_one(&mut lock(&ingress.routes), host, vessel, epoch, None);
            }
        });
    }
}

/// The ingress task of a node: keeps the routes of its own vessels, opens
/// listeners for new service ports, starts a pump for every hub that
/// starts, and closes the hubs of vessels that ended or left.
pub async fn run(
    ingress: Arc<Ingress>,
    mut hubs: mpsc::UnboundedReceiver<(VesselId, Arc<IngressHub>)>,
) {
    let mut tick = tokio::time::interval(TICK);
    let mut ended: HashMap<VesselId, Instant> = HashMap::new();
    if let Some(asked) = lock(&ingress.proof_asked).take() {
        tokio::spawn(prove_routes(ingress.clone(), asked));
    }
    loop {
        tokio::select! {
            started = hubs.recv() => {
                let Some((id, hub)) = started else { return };
                // Its own route at once: clients that reach this node go
                // straight to the hub.
                let epoch = lock(&ingress.host).known_epoch(id);
                let service = lock(&ingress.host).vessels.get(&id).map(|l| ServiceRoute {
                    vessel: id,
                    epoch,
                    ports: l.deployment.body.ports.clone(),
                    sync: l.deployment.body.sync_interval_ms().is_some(),
                    leased: l.gate.is_leased(),
                });
                ingress.learn_one(&mut lock(&ingress.routes), ingress.me, id, epoch, service.as_ref());
                ended.remove(&id);
                tokio::spawn(pump(ingress.clone(), id, hub));
                listen_on_new_ports(&ingress);
            }
            _ = tick.tick() => {
                let own = local_routes(&lock(&ingress.host));
                ingress.learn(ingress.me, &own);
                let mut routes = lock(&ingress.routes);
                routes.retain(|_, r| r.seen.elapsed() < ROUTE_TTL);
                lock(&ingress.proofs).retain(|v| routes.contains_key(v));
                drop(routes);
                listen_on_new_ports(&ingress);
                close_ended_hubs(&ingress.host, &mut ended);
            }
        }
    }
}

/// A hub whose vessel ended (or was stopped) closes its connections after
/// the bytes the vessel sent, and goes once they are delivered.
fn close_ended_hubs(host: &Mutex<Host>, ended: &mut HashMap<VesselId, Instant>) {
    let mut h = lock(host);
    // A sync vessel that ended lets out what no checkpoint will hold.
    super::output_commit::release_ended(&h);
    // A vessel that left: its hub travelled in the image; only the pump
    // stops (the migration removes it at the commit, this is the backstop).
    let left: Vec<VesselId> = h
        .hubs
        .keys()
        .copied()
        .filter(|id| {
            h.vessels
                .get(id)
                .is_some_and(|l| matches!(l.record, Record::Left { .. }))
        })
        .collect();
    for id in left {
        if let Some(hub) = h.hubs.remove(&id) {
            hub.stop();
        }
    }
    let gone: Vec<VesselId> = h
        .hubs
        .keys()
        .copied()
        .filter(|id| {
            h.vessels
                .get(id)
                .is_none_or(|l| l.stopped || l.ended().is_some())
        })
        .collect();
    for id in gone {
        let since = *ended.entry(id).or_insert_with(Instant::now);
        let hub = h.hubs[&id].clone();
        hub.hub().net_stop();
        if hub.connections() == 0 || since.elapsed() > ENDED_HUB_LINGER {
            hub.stop();
            h.hubs.remove(&id);
            ended.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
