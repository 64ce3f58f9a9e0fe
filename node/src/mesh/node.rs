//! A running node: the swarm's event loop and the state it keeps.
//!
//! One task owns the swarm and all state (peer table, trust list, invites,
//! nonces), so nothing here needs a lock. What happens:
//! - every new connection asks the peer for its member certificate
//!   (`/meshnode/member/1`); a peer whose certificate does not verify back to
//!   a trusted user key is *refused*: it stays known for discovery
//!   (Kademlia, mDNS, identify) but is blacklisted in gossipsub and is never
//!   listed, trusted or answered beyond the unauthenticated control requests;
//! - ping measures RTT to each connected peer, smoothed per peer;
//! - every `status_interval` a member node samples its status and gossips
//!   it, with its certificate, on [`super::STATUS_TOPIC`] when it changed
//!   enough, a new member came, or its refresh is due
//!   ([`super::status_change`]); statuses from non-members are rejected;
//! - bootstrap peers are re-dialled while not connected;
//! - control requests are answered by [`crate::control::server`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, kad, mdns, ping, request_response, Multiaddr, PeerId, Swarm};
use protocol::control::{ControlRequest, JoinRequest};
use protocol::membership::{
    JoinToken, MemberCertificate, MemberRequest, MemberResponse, PublicKey,
};
use tracing::{debug, info, warn};

use super::behaviour::{node_swarm, NodeBehaviour, NodeBehaviourEvent, SwarmError, SwarmOptions};
use super::conn_health::ConnHealth;
use super::ingress::Ingress;
use super::lease::Leases;
use super::ledger::Ledger;
use super::link::{Link, NodeCommand, PendingRequests, RequestError};
use super::liveness::{Event as Heard, Suspects, Thresholds, LIVENESS_STALL, LIVENESS_TICK};
use super::membership::{
    check_vessel_version, exchange_certificates, finish_join, learn_certificate, remember_members,
    Joining,
};
use super::peers::{
    note_liveness, peer_of, strip_p2p, tick_liveness, Membership, MAX_ADDRS_PER_PEER,
};
use super::place::{tick, Placer, STALE_RTT_INTERVALS};
use super::recover::{checkpoint_all, recover};
use super::rtt::SmoothedRtt;
use super::serve::serve_peer;
use super::state::{NodeError, NodeState};
use super::status_gossip::{judge_status, publish_status};
use super::trust::{
    cut_off_if_revoked, learn_notice, publish_notice, trust_topic, TRUST_REPUBLISH_EVERY_TICKS,
};
use super::vessels::{MigrationPolicy, MigrationState};
use super::{IDENTIFY_PROTOCOL, STATUS_TOPIC, VESSEL_PROTOCOL};
use crate::control::server::{ControlServer, InviteBook};
use crate::daemon::config::Config;
use crate::daemon::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::placement::Placement;

/// Longest wait at start for the listeners' addresses before the bootstrap
/// peers are dialled anyway ([`wait_for_listeners`]): a listener comes up in
/// milliseconds; one that cannot is reported by its own error.
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Kademlia bootstrap runs on every this-many redial ticks.
const KAD_BOOTSTRAP_EVERY_TICKS: u64 = 6;

/// How long `--join` keeps trying to reach the inviting node.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Test pacing: `MESHNODE_TEST_DOWN_AFTER_MS=N` makes a silent peer down
/// after N ms instead of [`super::liveness::DOWN_AFTER`] (30 s), so that
/// the dead-node tests see it within their time. Never set in production.
fn thresholds(ping_interval: Duration) -> Thresholds {
    let th = Thresholds::for_ping_interval(ping_interval);
    match std::env::var("MESHNODE_TEST_DOWN_AFTER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(ms) => th.with_down_after(Duration::from_millis(ms)),
        None => th,
    }
}

/// The seed of the node's coordinate's random directions: from its PeerId,
/// so that two nodes that start on the same point part different ways.
fn coordinate_seed(me: &PeerId) -> u64 {
    me.to_bytes()
        .iter()
        .rev()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// What a node starts with.
pub struct NodeParams {
    pub identity: NodeIdentity,
    pub data_dir: DataDir,
    pub config: Config,
    pub certificate: Option<MemberCertificate>,
    pub trusted: Vec<PublicKey>,
    /// Enrol through this token before anything else.
    pub join: Option<JoinToken>,
    /// Requests from the rest of the node (dock, migration, placement).
    pub commands: Option<tokio::sync::mpsc::Receiver<NodeCommand>>,
    /// The vessels this node hosts.
    pub host: Arc<std::sync::Mutex<crate::vessel::Host>>,
}

/// Why listening failed, in words: libp2p's transport error says nothing
/// itself (its cause is in its sources), and an address in use is the
/// usual reason, so it is named with what to do.
pub fn listen_failure(e: &(dyn std::error::Error + 'static)) -> String {
    // An io::Error that wraps another hides it from `source()`: its
    // `get_ref()` is looked at too.
    let mut todo: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    let mut words = Vec::new();
    while let Some(err) = todo.pop() {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(why) = listen_io_failure(io) {
                return why.to_string();
            }
            if let Some(inner) = io.get_ref() {
                todo.push(inner);
            }
        }
        let text = err.to_string();
        // The boxed transports wrap the OS error in types that show it but
        // do not give it as a source: known by its words then.
        if text.contains(&std::io::Error::from(std::io::ErrorKind::AddrInUse).to_string())
            || text.contains(&format!(
                "(os error {})",
                rustix::io::Errno::ADDRINUSE.raw_os_error()
            ))
        {
            return listen_io_failure(&std::io::ErrorKind::AddrInUse.into())
                .unwrap_or_default()
                .to_string();
        }
        if !text.is_empty() && !words.contains(&text) {
            words.push(text);
        }
        if let Some(next) = err.source() {
            todo.push(next);
        }
    }
    if words.is_empty() {
        "the transport refused it (is the address one this machine has?)".to_string()
    } else {
        words.join(": ")
    }
}

fn listen_io_failure(io: &std::io::Error) -> Option<&'static str> {
    let in_use = io.kind() == std::io::ErrorKind::AddrInUse
        || io.raw_os_error() == Some(rustix::io::Errno::ADDRINUSE.raw_os_error());
    if in_use {
        return Some(
            "address in use: another program (or another meshnode) listens on it; \
             pick another port with --listen, or stop the other one",
        );
    }
    match io.kind() {
        std::io::ErrorKind::AddrNotAvailable => {
            Some("address not available: no interface of this machine has that IP")
        }
        std::io::ErrorKind::PermissionDenied => {
            Some("permission denied: ports below 1024 need privileges")
        }
        _ => None,
    }
}

/// Parses a multiaddr given by the user.
pub fn parse_addr(s: &str) -> Result<Multiaddr, NodeError> {
    s.trim()
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| NodeError::BadAddr {
            addr: s.to_string(),
            reason: e.to_string(),
        })
}

/// Runs a node until `shutdown` resolves. Listening addresses are written to
/// the data directory's `node.addrs` as soon as they are known.
pub async fn run(
    params: NodeParams,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let config = params.config;
    let mut swarm = node_swarm(
        &params.identity,
        &SwarmOptions {
            mdns: config.mdns,
            kademlia: config.kademlia,
            ping_interval: Duration::from_millis(config.ping_interval_ms),
            idle_connection_timeout: Duration::from_secs(config.idle_connection_timeout_secs),
        },
    )?;
    let topic = gossipsub::IdentTopic::new(STATUS_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| {
            NodeError::Swarm(SwarmError::Setup {
                what: "gossipsub",
                reason: e.to_string(),
            })
        })?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&trust_topic())
        .map_err(|e| {
            NodeError::Swarm(SwarmError::Setup {
                what: "gossipsub",
                reason: e.to_string(),
            })
        })?;

    let mut listeners = std::collections::HashSet::new();
    for l in &config.listen {
        let addr = parse_addr(l)?;
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Listen {
                addr: l.clone(),
                reason: listen_failure(&e),
            })?;
        listeners.insert(id);
    }

    let (internal_tx, mut internal_rx) = tokio::sync::mpsc::channel::<NodeCommand>(1024);
    let service_ip = match config.service_address.trim() {
        "" | "none" => None,
        a => Some(
            a.parse::<std::net::IpAddr>()
                .map_err(|_| NodeError::Listen {
                    addr: a.to_string(),
                    reason: "service_address must be an IP address (or \"none\")".into(),
                })?,
        ),
    };
    let link = Link::new(internal_tx);
    let suspects = Suspects::default();
    let ingress = Arc::new(Ingress::new(
        service_ip,
        link.clone(),
        params.host.clone(),
        params.identity.peer_id,
        suspects.clone(),
    ));
    let (hub_tx, hub_rx) = tokio::sync::mpsc::unbounded_channel();
    params
        .host
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .hub_started = Some(hub_tx);
    // Before the ingress starts: it records into this book.
    params
        .host
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .traffic = Arc::new(crate::placement::TrafficBook::new(Duration::from_millis(
        config.traffic_half_life_ms,
    )));
    let rtt_stale = Duration::from_millis(config.ping_interval_ms.max(config.status_interval_ms))
        * STALE_RTT_INTERVALS;
    let mut state = NodeState {
        identity: params.identity.clone(),
        data_dir: params.data_dir.clone(),
        certificate: params.certificate,
        trusted: params.trusted,
        peers: BTreeMap::new(),
        listen_addrs: Vec::new(),
        control: ControlServer::default(),
        invites: InviteBook::default(),
        ledger: Ledger::load(&params.data_dir.root)?,
        host: params.host.clone(),
        link,
        pending: PendingRequests::new(),
        migration: MigrationState::new(
            MigrationPolicy {
                warm_rounds: config.migration_warm_rounds,
                dedup: config.migration_dedup,
            },
            Leases::open(
                &params.data_dir.root,
                &params.identity.peer_id,
                crate::failover::LeaseParams::default(),
            ),
        ),
        placer: Placer::new(
            Placement::new(config.placement_params()),
            rtt_stale,
            coordinate_seed(&params.identity.peer_id),
        ),
        ingress: ingress.clone(),
        gate: swarm.behaviour().gate(),
        liveness: thresholds(Duration::from_millis(config.ping_interval_ms)),
        conn_health: ConnHealth::new(
            thresholds(Duration::from_millis(config.ping_interval_ms)).unreachable_after,
        ),
        suspects,
        swim: super::swim::Swim::new(&params.identity.peer_id)?,
        status_sent: Default::default(),
        name: crate::control::resolve::own_name(config.name.as_deref()),
        releases: Arc::new(crate::upgrade::releases::Releases::open(
            &params.data_dir.root,
            params
                .host
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .store
                .clone(),
        )),
    };
    tracing::info!(name = %state.name, "this node's name");
    state.sync_gate();

    if let Some(own) = state.certificate.clone() {
        state.note_certificate(&state.identity.public_key(), &own);
    }

    let mut bootstrap: Vec<Multiaddr> = Vec::new();
    for p in &config.peers {
        bootstrap.push(parse_addr(p)?);
    }

    let mut joining = Joining::No;
    let mut join_addrs: Vec<Multiaddr> = Vec::new();
    if let Some(token) = params.join {
        let inviter = PeerId::from_bytes(&token.inviter).map_err(|_| {
            NodeError::JoinFailed("the token's inviter is not a PeerId (damaged token?)".into())
        })?;
        let addrs: Vec<Multiaddr> = token
            .addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .map(strip_p2p)
            .collect();
        info!(%inviter, "joining the mesh through the inviting node");
        // The inviting node stays a bootstrap peer for as long as this runs
        // (added after the first round of dials below).
        join_addrs = addrs
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(inviter)))
            .collect();
        swarm
            .dial(DialOpts::peer_id(inviter).addresses(addrs).build())
            .map_err(|e| {
                NodeError::JoinFailed(format!("cannot dial the inviting node {inviter}: {e}"))
            })?;
        joining = Joining::Dialled {
            inviter,
            token,
            since: Instant::now(),
        };
    }

    wait_for_listeners(&mut swarm, &mut state, &mut joining, listeners).await?;
    for addr in &bootstrap {
        dial_bootstrap(&mut swarm, addr);
    }
    bootstrap.extend(join_addrs);

    // With placement off the tick still refreshes what a drain chooses by.
    let placement_on = config.placement_interval_ms > 0;
    let mut placement_tick = tokio::time::interval(Duration::from_millis(if placement_on {
        config.placement_interval_ms
    } else {
        config.status_interval_ms
    }));
    let status_interval = Duration::from_millis(config.status_interval_ms);
    tokio::spawn(super::ingress::run(ingress, hub_rx));
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
    crate::sync::lock(&state.host).vessel_started = Some(started_tx);
    tokio::spawn(super::lease::keep::keep_every_start(
        state.migrator().lease_driver(),
        state.host.clone(),
        started_rx,
    ));
    tokio::spawn(super::lease::takeover::watch(
        state.migrator().lease_driver(),
        state.host.clone(),
        state.suspects.clone(),
    ));
    recover(&state);
    super::force::resume_fences(&state.host, &state.migrator().link, &state.suspects);
    let every =
        (config.checkpoint_every_ms > 0).then(|| Duration::from_millis(config.checkpoint_every_ms));
    tokio::spawn(super::checkpoint::periodic(state.migrator(), every));
    let mut commands = params.commands;
    let mut status_tick = tokio::time::interval(Duration::from_millis(config.status_interval_ms));
    let mut redial_tick = tokio::time::interval(Duration::from_millis(config.redial_interval_ms));
    redial_tick.tick().await; // the first tick is immediate; the dials above cover it
    let mut liveness_tick = tokio::time::interval(LIVENESS_TICK);
    // After a stall, one late tick rather than a burst (see LIVENESS_STALL).
    liveness_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_liveness_tick = Instant::now();
    let mut ticks: u64 = 0;
    let mut status_ticks: u64 = 0;
    // Status, /metrics and the dashboard: the loop's lag and snapshots.
    let mut ops_tick = tokio::time::interval(crate::ops::OPS_TICK);
    ops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_ops_tick, mut ops_ticks) = (Instant::now(), 0u64);
    tokio::pin!(shutdown);

    info!(peer_id = %state.identity.peer_id, member = state.certificate.is_some(), "node started");
    let mut service = crate::daemon::systemd::Service::from_env();
    service.ready();
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("stopping");
                service.stopping();
                // Every running vessel is written down where it is, so
                // the next start continues it instead of starting over.
                checkpoint_all(&state.host).await;
                super::swim::leave(&mut swarm, &mut state.swim, &state.peers).await;
                break;
            }
            _ = status_tick.tick() => {
                publish_status(&mut swarm, &mut state, &topic);
                status_ticks += 1;
                if status_ticks.is_multiple_of(TRUST_REPUBLISH_EVERY_TICKS) {
                    publish_notice(&mut swarm, &state);
                }
            }
            _ = liveness_tick.tick() => {
                let now = Instant::now();
                state.conn_health.tick(now);
                if now.duration_since(last_liveness_tick) < LIVENESS_STALL {
                    tick_liveness(&mut state.peers, &state.liveness, &state.suspects);
                    dial_afresh(&mut swarm, &mut state, now);
                }
                last_liveness_tick = now;
                service.tick(now);
            }
            _ = tokio::time::sleep_until(state.swim.deadline()) => {
                super::swim::on_timer(&mut swarm, &mut state.swim, &state.peers);
            }
            _ = ops_tick.tick() => {
                crate::ops::tick(&state, &mut last_ops_tick, &mut ops_ticks);
                crate::upgrade::probation::tick(&state);
            }
            _ = placement_tick.tick() => {
                let migrator = state.migrator();
                tick(&mut state.placer, &migrator, &state.peers, status_interval, placement_on);
            }
            cmd = next_command(&mut commands) => match cmd {
                Some(c) => handle_command(&mut swarm, &mut state, c),
                None => commands = None,
            },
            Some(cmd) = internal_rx.recv() => handle_command(&mut swarm, &mut state, cmd),
            _ = redial_tick.tick() => {
                ticks += 1;
                for addr in &bootstrap {
                    match peer_of(addr) {
                        Some(p) if swarm.is_connected(&p) => {}
                        _ => dial_bootstrap(&mut swarm, addr),
                    }
                }
                // Members we lost (a partition, a reboot) are dialled again
                // at the addresses we know, not only the bootstrap peers.
                let lost: Vec<(PeerId, Vec<Multiaddr>)> = state
                    .peers
                    .iter()
                    .filter(|(p, e)| {
                        e.connections == 0
                            && !e.addrs.is_empty()
                            && matches!(e.membership, Membership::Member(_))
                            && !swarm.is_connected(p)
                    })
                    .map(|(p, e)| (*p, e.addrs.clone()))
                    .collect();
                for (peer, addrs) in lost {
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(addrs).build());
                }
                if ticks % KAD_BOOTSTRAP_EVERY_TICKS == 1 {
                    if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                        let _ = k.bootstrap();
                    }
                }
                match &joining {
                    Joining::Dialled { since, .. } | Joining::Sent { since, .. } if since.elapsed() > JOIN_TIMEOUT => {
                        return Err(NodeError::JoinFailed(format!(
                            "no answer from the inviting node within {} s (is it running, and reachable at the token's addresses?)",
                            JOIN_TIMEOUT.as_secs()
                        )));
                    }
                    _ => {}
                }
            }
            event = swarm.select_next_some() => {
                handle_event(&mut swarm, &mut state, &mut joining, event)?;
            }
        }
        // Whatever changed who is a member or trusted, the codecs judge
        // the next request by it (cheap when nothing did).
        state.sync_gate();
    }
    let _ = std::fs::remove_file(state.data_dir.addrs());
    remember_members(&state);
    Ok(())
}

/// Dials members again whose every connection has stopped answering
/// pings, though they count as connected (`mesh::conn_health`).
fn dial_afresh(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState, now: Instant) {
    for peer in state.conn_health.due_fresh_dial(now) {
        let Some(e) = state.peers.get(&peer) else {
            continue;
        };
        if !matches!(e.membership, Membership::Member(_)) || e.addrs.is_empty() {
            continue;
        }
        debug!(%peer, "no connection to it answers: dialling it afresh");
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::NotDialing)
            .addresses(e.addrs.clone())
            .build();
        let _ = swarm.dial(opts);
    }
}

fn handle_command(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState, cmd: NodeCommand) {
    match cmd {
        NodeCommand::Peers(reply) => {
            let _ = reply.send(crate::control::server::list_peers(state, true));
        }
        NodeCommand::PeerRequest {
            peer,
            request,
            reply,
        } => {
            if !swarm.is_connected(&peer) {
                // Dial it with what we know; request-response also dials,
                // but only with addresses it was given.
                let addrs = state
                    .peers
                    .get(&peer)
                    .map(|e| e.addrs.clone())
                    .unwrap_or_default();
                for a in addrs {
                    swarm.add_peer_address(peer, a);
                }
            }
            let id = swarm.behaviour_mut().vessel.send_request(&peer, *request);
            state.pending.insert(id, reply);
        }
        NodeCommand::RespondControl { channel, response } => {
            let _ = swarm
                .behaviour_mut()
                .control
                .send_response(channel, *response);
        }
        NodeCommand::RespondPeer { channel, response } => {
            let _ = swarm
                .behaviour_mut()
                .vessel
                .send_response(channel, response);
        }
    }
}

/// The next command, or never when there is no command channel.
async fn next_command(
    commands: &mut Option<tokio::sync::mpsc::Receiver<NodeCommand>>,
) -> Option<NodeCommand> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn dial_bootstrap(swarm: &mut Swarm<NodeBehaviour>, addr: &Multiaddr) {
    if let (Some(p), Some(k)) = (peer_of(addr), swarm.behaviour_mut().kad.as_mut()) {
        k.add_address(&p, strip_p2p(addr.clone()));
    }
    if let Err(e) = swarm.dial(addr.clone()) {
        debug!(%addr, "cannot dial bootstrap peer: {e}");
    }
}

/// Handles the swarm's events until every listener has its first address,
/// or [`LISTEN_WAIT`] has passed: the bootstrap peers are dialled after
/// this, so the identify they get first carries this node's addresses. A
/// push of addresses learned later can race that first identify and be
/// dropped, and the peer would then list this node with no address to dial
/// back until the next identify, minutes later (seen as
/// `three_nodes_see_each_other_and_a_second_start_is_refused` failing
/// under load).
async fn wait_for_listeners(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    joining: &mut Joining,
    mut listeners: std::collections::HashSet<libp2p::core::transport::ListenerId>,
) -> Result<(), NodeError> {
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    while !listeners.is_empty() {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
            debug!(
                left = listeners.len(),
                "dialling before every listener has an address"
            );
            return Ok(());
        };
        if let SwarmEvent::NewListenAddr { listener_id, .. } = &event {
            listeners.remove(listener_id);
        }
        handle_event(swarm, state, joining, event)?;
    }
    Ok(())
}

fn handle_event(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    joining: &mut Joining,
    event: SwarmEvent<NodeBehaviourEvent>,
) -> Result<(), NodeError> {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            info!(%address, "listening");
            if !state.listen_addrs.contains(&address) {
                state.listen_addrs.push(address);
            }
            state.data_dir.write_addrs(&state.own_addrs())?;
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            state.listen_addrs.retain(|a| a != &address);
            state.data_dir.write_addrs(&state.own_addrs())?;
        }
        SwarmEvent::ListenerError { error, .. } => warn!("listener error: {error}"),
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            num_established,
            ..
        } => {
            state
                .conn_health
                .opened(connection_id, peer_id, Instant::now());
            let entry = state.peer(peer_id);
            entry.connections = num_established.get() as usize;
            note_liveness(&mut state.peers, &peer_id, Heard::Heard, &state.liveness);
            let entry = state.peer(peer_id);
            if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                entry.add_addr(address.clone());
            }
            if cut_off_if_revoked(swarm, state, peer_id) {
                return Ok(());
            }
            if num_established.get() == 1 {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                exchange_certificates(swarm, state, peer_id);
            }
            if let Joining::Dialled { inviter, token, .. } = joining {
                if *inviter == peer_id {
                    let req = ControlRequest::Join(JoinRequest {
                        invite_id: token.invite_id,
                        secret: token.secret,
                    });
                    swarm.behaviour_mut().control.send_request(&peer_id, req);
                    *joining = Joining::Sent {
                        inviter: peer_id,
                        since: Instant::now(),
                    };
                }
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            num_established,
            ..
        } => {
            state.conn_health.closed(connection_id);
            let revoked = crate::identity::peer_public_key(&peer_id)
                .is_some_and(|k| state.revoked_reason(&k).is_some());
            if num_established == 0 {
                // Its last connection went: a dead process closes them. A
                // revoked member has left the mesh.
                let event = if revoked { Heard::Left } else { Heard::Failed };
                note_liveness(&mut state.peers, &peer_id, event, &state.liveness);
                state.placer.forget_peer(&peer_id);
            }
            if let Some(e) = state.peers.get_mut(&peer_id) {
                e.connections = num_established as usize;
                if num_established == 0 {
                    e.rtt = SmoothedRtt::default();
                    // Peers that never showed a certificate (CLI peers,
                    // foreign peers) are forgotten when they leave; a
                    // revoked one stays listed (`peers --all` says why).
                    if e.certificate.is_none() && e.status.is_none() && !revoked {
                        state.peers.remove(&peer_id);
                    }
                }
            }
        }
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            debug!(peer = ?peer_id, "dial failed: {error}");
            if let Some(p) = peer_id {
                note_liveness(&mut state.peers, &p, Heard::Failed, &state.liveness);
            }
            if let (Joining::Dialled { inviter, .. }, Some(p)) = (&*joining, peer_id) {
                if *inviter == p {
                    warn!("cannot reach the inviting node yet: {error}");
                }
            }
        }
        SwarmEvent::Behaviour(ev) => handle_behaviour(swarm, state, joining, ev)?,
        _ => {}
    }
    Ok(())
}

fn handle_behaviour(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    joining: &mut Joining,
    event: NodeBehaviourEvent,
) -> Result<(), NodeError> {
    match event {
        NodeBehaviourEvent::Ping(ping::Event {
            peer,
            connection,
            result,
        }) => match result {
            Ok(rtt) => {
                for stale in state.conn_health.answered(connection, Instant::now()) {
                    debug!(%peer, "closing a connection no ping came back on while another did");
                    swarm.close_connection(stale);
                }
                state.peer(peer).rtt.observe(rtt);
                let theirs = state.peers.get(&peer).and_then(|e| e.status.as_ref());
                let theirs = theirs.and_then(|(s, _)| s.coordinate.clone());
                state.placer.observe_rtt(peer, theirs.as_ref(), rtt);
                note_liveness(&mut state.peers, &peer, Heard::Heard, &state.liveness);
            }
            Err(e) => {
                debug!(%peer, "ping failed: {e}");
                note_liveness(&mut state.peers, &peer, Heard::Failed, &state.liveness);
            }
        },
        NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
            let kad_ok = swarm.behaviour().kad.is_enabled();
            for addr in info.listen_addrs.iter().take(MAX_ADDRS_PER_PEER) {
                if kad_ok {
                    if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                        k.add_address(&peer_id, addr.clone());
                    }
                }
            }
            if info.protocol_version == IDENTIFY_PROTOCOL {
                check_vessel_version(swarm, state, peer_id, &info);
                let entry = state.peer(peer_id);
                for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                    entry.add_addr(addr);
                }
            }
        }
        NodeBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
            for (peer, addr) in found {
                if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                    k.add_address(&peer, addr.clone());
                }
                if !swarm.is_connected(&peer) {
                    debug!(%peer, %addr, "found by mDNS");
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                }
            }
        }
        NodeBehaviourEvent::Gossipsub(gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        }) => {
            let acceptance = if message.topic == trust_topic().hash() {
                learn_notice(swarm, state, &message)
            } else {
                judge_status(swarm, state, &message, propagation_source)
            };
            swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &propagation_source, acceptance);
        }
        NodeBehaviourEvent::Member(request_response::Event::Message { peer, message, .. }) => {
            match message {
                request_response::Message::Request {
                    request: MemberRequest::Certificate(theirs),
                    channel,
                    ..
                } => {
                    let ours = state.certificate.clone();
                    let _ = swarm
                        .behaviour_mut()
                        .member
                        .send_response(channel, MemberResponse::Certificate(ours));
                    learn_certificate(swarm, state, peer, theirs);
                }
                request_response::Message::Response {
                    response: MemberResponse::Certificate(theirs),
                    ..
                } => {
                    learn_certificate(swarm, state, peer, theirs);
                }
            }
        }
        NodeBehaviourEvent::Member(request_response::Event::OutboundFailure {
            peer,
            error,
            ..
        }) => {
            if matches!(
                error,
                request_response::OutboundFailure::UnsupportedProtocols
            ) {
                // A CLI or a foreign libp2p peer: nothing to judge.
                debug!(%peer, "peer does not speak the membership protocol");
            } else {
                debug!(%peer, "membership request failed: {error}");
            }
        }
        NodeBehaviourEvent::Control(request_response::Event::Message { peer, message, .. }) => {
            match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if let Some((channel, response)) =
                        crate::control::server::handle(swarm, state, peer, request, channel)
                    {
                        let _ = swarm
                            .behaviour_mut()
                            .control
                            .send_response(channel, response);
                    }
                }
                request_response::Message::Response { response, .. } => {
                    finish_join(swarm, state, joining, peer, response)?
                }
            }
        }
        NodeBehaviourEvent::Control(request_response::Event::OutboundFailure {
            peer,
            error,
            ..
        }) => {
            if let Joining::Sent { inviter, .. } = joining {
                if *inviter == peer {
                    return Err(NodeError::JoinFailed(format!(
                        "the join request to {peer} failed: {error}"
                    )));
                }
            }
        }
        NodeBehaviourEvent::Control(request_response::Event::InboundFailure {
            peer,
            error,
            ..
        }) => {
            debug!(%peer, "control request failed: {error}");
        }
        NodeBehaviourEvent::Vessel(request_response::Event::Message { peer, message, .. }) => {
            note_liveness(&mut state.peers, &peer, Heard::Heard, &state.liveness);
            match message {
                request_response::Message::Request {
                    request, channel, ..
                } => serve_peer(swarm, state, peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = state.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            }
        }
        NodeBehaviourEvent::Vessel(request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        }) => {
            if let Some(reply) = state.pending.remove(&request_id) {
                // A lost or refused connection may be one that died with a
                // restarted peer: the caller may retry it on another.
                let transport = matches!(
                    error,
                    request_response::OutboundFailure::ConnectionClosed
                        | request_response::OutboundFailure::DialFailure
                        | request_response::OutboundFailure::Io(_)
                );
                let reason = match error {
                    request_response::OutboundFailure::UnsupportedProtocols => format!(
                        "it does not speak {} (another meshnode version?)",
                        VESSEL_PROTOCOL
                    ),
                    other => other.to_string(),
                };
                if transport {
                    note_liveness(&mut state.peers, &peer, Heard::Failed, &state.liveness);
                }
                let _ = reply.send(Err(if transport {
                    RequestError::Transport { peer, reason }
                } else {
                    RequestError::Failed { peer, reason }
                }));
            }
        }
        NodeBehaviourEvent::Vessel(request_response::Event::InboundFailure {
            peer, error, ..
        }) => {
            debug!(%peer, "vessel request failed: {error}");
        }
        NodeBehaviourEvent::Swim(e) => {
            super::swim::on_event(swarm, &mut state.swim, &state.peers, e)
        }
        NodeBehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
            debug!(%peer, "kademlia routing updated")
        }
        _ => {}
    }
    Ok(())
}
