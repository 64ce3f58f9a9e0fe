//! Placement in the running node: the periodic tick that moves vessels
//! nearer their clients ([`crate::placement`] decides; this gathers its
//! inputs and starts the migration `meshnode migrate` would), pins, and
//! drains.
//!
//! The tick runs in the event loop, which owns the peer table and lends it
//! to the tick; placement keeps its own state ([`Placer`]) and publishes
//! what it saw ([`Inputs`]) for the drain task ([`Drains`]), which runs
//! apart because a drain waits for one migration after another. Both start
//! a move through the migration side's [`start_migration`], as `meshnode
//! migrate` does, and read how it went from [`Migrator::report`].
//!
//! At most one automatic migration runs at a time per node, and none while
//! any vessel here is moving (by hand or by a drain): a migration's pause is
//! short only when it has the link to itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::{DrainItem, DrainReport, PeerRtt};
use protocol::coordinate::NetCoordinate;
use protocol::limits::MAX_STATUS_RTTS;
use protocol::vessel::VesselId;
use tracing::{debug, info, warn};

use super::migrate::start_migration;
use protocol::control::stale_after_intervals;

use super::peers::{Membership, PeerTable};
use super::replica_book::MeshView;
use super::rtt::SmoothedRtt;
use super::vessels::Migrator;
use crate::placement::{
    drain_target, short, NodeRoom, Placement, PlacementParams, Rtts, TrafficBook, Verdict,
    VesselView,
};
use crate::sync::lock;
use crate::vessel::{Host, Record};
use crate::vivaldi::{Vivaldi, VivaldiConfig};

// A status is stale after `protocol::control::stale_after_intervals` of
// its sender's refresh: its node may be gone, and its RTTs and free memory
// are not trusted for a move.

/// An RTT is stale after this many probe (or status) intervals without a
/// sample: one lost ping is noise, three in a row is a partition.
pub const STALE_RTT_INTERVALS: u32 = 3;

/// How often a drain looks at the migration it is waiting for.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How long a drain waits for another node with room (its status may not
/// have arrived yet: statuses come every couple of seconds) before it
/// reports a vessel as failed.
const DRAIN_ROOM_WAIT: Duration = Duration::from_secs(10);

/// Destinations a drain tries for one vessel before it reports it failed:
/// one that refuses (full, a missing mount) or fails mid-move is passed
/// over for the next best.
const DRAIN_DESTINATIONS: usize = 3;

/// How long a drain waits for one vessel's move before it reports it failed
/// and goes on with the next: a large vessel over a slow link takes minutes,
/// a hung one must not hang the whole drain.
const DRAIN_MOVE_TIMEOUT: Duration = Duration::from_secs(600);

/// What the event loop last saw of the mesh.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub rtts: Option<Rtts>,
    /// Connected members with a fresh status.
    pub rooms: Vec<NodeRoom>,
    pub here_load_per_cpu: Option<f64>,
    pub params: PlacementParams,
    /// When the event loop gathered them (`None`: not yet).
    pub gathered_at: Option<Instant>,
}

/// Placement as the event loop keeps it.
pub struct Placer {
    /// The placement policy and its memory.
    pub placement: Placement,
    /// The automatic migration in flight, if any: (vessel, destination).
    pub auto: Option<(VesselId, PeerId)>,
    /// An RTT with no new sample for this long is stale (its pings fail:
    /// a partition): placement neither uses nor gossips it.
    pub rtt_stale: Duration,
    /// This node's network coordinate (issue 19), learnt from every ping
    /// ([`Placer::observe_rtt`]) and gossiped in its status.
    pub vivaldi: Vivaldi<PeerId>,
    /// What the event loop last saw of the mesh, for placement decisions
    /// made in tasks (drain).
    inputs: Arc<Mutex<Inputs>>,
    /// This node's drain, once one was asked for (it then takes no vessels
    /// from placement until it restarts or is undrained).
    drain: Arc<Mutex<Option<DrainReport>>>,
    /// Bumped by each drain that starts and each undrain: a drain task
    /// whose generation is no longer current stops before its next vessel.
    drain_generation: Arc<AtomicU64>,
}

/// Placement as a task holds it: to start, run and report a drain.
#[derive(Clone)]
pub struct Drains {
    host: Arc<Mutex<Host>>,
    me: PeerId,
    /// Starts the drain's moves and says how they went.
    migrator: Migrator,
    inputs: Arc<Mutex<Inputs>>,
    report: Arc<Mutex<Option<DrainReport>>>,
    generation: Arc<AtomicU64>,
}

impl Placer {
    /// `coordinate_seed` picks the random directions of the coordinate
    /// (the node's own, so that nodes that start on one point part).
    pub fn new(placement: Placement, rtt_stale: Duration, coordinate_seed: u64) -> Placer {
        Placer {
            placement,
            auto: None,
            rtt_stale,
            vivaldi: Vivaldi::new(VivaldiConfig::default(), coordinate_seed)
                .expect("the default configuration has dimensions"),
            inputs: Arc::new(Mutex::new(Inputs::default())),
            drain: Arc::new(Mutex::new(None)),
            drain_generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The handle a drain task (or a control command about drains) holds.
    pub fn drains(&self, migrator: Migrator) -> Drains {
        Drains {
            host: migrator.host.clone(),
            me: migrator.me,
            migrator,
            inputs: self.inputs.clone(),
            report: self.drain.clone(),
            generation: self.drain_generation.clone(),
        }
    }

    /// Learns from one ping's RTT to `peer`, when its status carried a
    /// coordinate (nodes older than coordinates send none). A coordinate
    /// the update refuses (it passed the status check, so only an
    /// incompatible one) changes nothing.
    pub fn observe_rtt(&mut self, peer: PeerId, theirs: Option<&NetCoordinate>, rtt: Duration) {
        let Some(theirs) = theirs else {
            return;
        };
        if let Err(e) = self.vivaldi.update(peer, theirs, rtt) {
            debug!(%peer, "RTT sample not used for the coordinate: {e}");
        }
    }

    /// Forgets a peer's latency samples (it disconnected or left).
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.vivaldi.forget(peer);
    }

    /// This node's coordinate, as its status gossips it.
    pub fn coordinate(&self) -> NetCoordinate {
        self.vivaldi.coordinate().clone()
    }

    /// Whether a drain was asked for (gossiped until the node restarts).
    pub fn draining(&self) -> bool {
        lock(&self.drain).is_some()
    }

    /// Collects the RTT table and the candidates' room from the peer table
    /// (statuses every `status_interval`, each stale after its sender's
    /// refresh: `protocol::control::stale_after_intervals`).
    pub fn gather(&self, me: PeerId, peers: &PeerTable, status_interval: Duration) -> Inputs {
        let mut rtts = Rtts::new(me);
        rtts.coordinates.insert(me, self.coordinate());
        let mut rooms = Vec::new();
        for (p, e) in peers {
            if !e.connected_member() {
                continue;
            }
            if let (Some(us), true) = (e.rtt.srtt_us(), self.fresh(&e.rtt)) {
                rtts.own_ms.insert(*p, us as f64 / 1000.0);
            }
            let Some((st, at)) = &e.status else {
                continue;
            };
            let stale = status_interval * stale_after_intervals(st.refresh_intervals);
            if at.elapsed() > stale {
                continue;
            }
            let table = st
                .rtts
                .iter()
                .filter_map(|r| {
                    r.peer
                        .parse::<PeerId>()
                        .ok()
                        .map(|q| (q, r.rtt_us as f64 / 1000.0))
                })
                .collect();
            rtts.gossiped_ms.insert(*p, table);
            if let Some(c) = &st.coordinate {
                rtts.coordinates.insert(*p, c.clone());
            }
            rooms.push(NodeRoom {
                peer: *p,
                free_memory_bytes: st.free_memory_bytes,
                load_per_cpu: st
                    .load_milli
                    .map(|l| l as f64 / 1000.0 / st.cpus.max(1) as f64),
                vessels: st.vessels.len(),
                draining: st.draining,
            });
        }
        Inputs {
            rtts: Some(rtts),
            rooms,
            here_load_per_cpu: super::status::load_per_cpu(),
            params: self.placement.params,
            gathered_at: Some(Instant::now()),
        }
    }

    /// Whether an RTT was sampled recently enough to be believed.
    fn fresh(&self, rtt: &SmoothedRtt) -> bool {
        rtt.age().is_some_and(|a| a <= self.rtt_stale)
    }

    /// This node's smoothed RTTs to its nearest connected members, for its
    /// status.
    pub fn own_rtts(&self, peers: &PeerTable) -> Vec<PeerRtt> {
        let mut out: Vec<PeerRtt> = peers
            .iter()
            .filter(|(_, e)| e.connected_member())
            .filter(|(_, e)| self.fresh(&e.rtt))
            .filter_map(|(p, e)| {
                e.rtt.srtt_us().map(|us| PeerRtt {
                    peer: p.to_string(),
                    rtt_us: us,
                })
            })
            .collect();
        out.sort_by_key(|r| r.rtt_us);
        out.truncate(MAX_STATUS_RTTS);
        out
    }
}

/// A vessel that runs here and could move now.
fn movable(l: &crate::vessel::Local) -> bool {
    matches!(l.record, Record::Owned { .. })
        && !l.migrating
        && !l.stopped
        && l.runner.as_ref().is_some_and(|r| r.exit().is_none())
}

fn view_of(
    id: VesselId,
    l: &crate::vessel::Local,
    traffic: &TrafficBook,
    now: Instant,
) -> VesselView {
    VesselView {
        id,
        pinned: l.pinned,
        memory_bytes: l.runner.as_ref().map_or(0, |r| r.memory_bytes()),
        last_move: l.last_move,
        reason: l.reason.clone(),
        entries: traffic.entries(id, now),
    }
}

/// One placement round: refresh the inputs, and unless placement is off or
/// a drain is under way, judge every vessel that runs here and start at
/// most one move (through `migrator`, as `meshnode migrate` would).
pub fn tick(
    placer: &mut Placer,
    migrator: &Migrator,
    peers: &PeerTable,
    status_interval: Duration,
    enabled: bool,
) {
    let inputs = placer.gather(migrator.me, peers, status_interval);
    *lock(&placer.inputs) = inputs.clone();
    // Replicas are chosen from the same view (`mesh::replicate`).
    if let Some(rtts) = &inputs.rtts {
        migrator.replication.set_view(MeshView {
            members: peers
                .iter()
                .filter(|(_, e)| matches!(e.membership, Membership::Member(_)))
                .map(|(p, _)| *p)
                .collect(),
            rtts: rtts.clone(),
            rooms: inputs.rooms.clone(),
            here_load_per_cpu: inputs.here_load_per_cpu,
            params: inputs.params,
        });
    }
    if !enabled || lock(&placer.drain).as_ref().is_some_and(|d| !d.done) {
        return;
    }
    let now = Instant::now();
    if let Some((id, to)) = placer.auto {
        let failed = match lock(&migrator.host).vessels.get(&id) {
            Some(l) if l.migrating => return,
            // Still here and not moving: the move was aborted.
            Some(l) => matches!(l.record, Record::Owned { .. }),
            None => false,
        };
        if failed {
            placer.placement.note_failed(id, to, now);
        }
        placer.auto = None;
    }
    let rtts = inputs.rtts.expect("gathered");
    let (mut views, busy) = {
        let h = lock(&migrator.host);
        let views: Vec<VesselView> = h
            .vessels
            .iter()
            .filter(|(_, l)| movable(l))
            .map(|(id, l)| view_of(*id, l, &h.traffic, now))
            .collect();
        (views, h.vessels.values().any(|l| l.migrating))
    };
    // Traffic from an entry this node has neither a fresh RTT to nor a
    // fresh status from (it left, or a partition cut it off) can reach the
    // vessel neither here nor, for now, anywhere: it is left out rather
    // than keeping every cost unknown until it fades. An entry this node
    // never pinged but hears from keeps its traffic: its coordinate
    // estimates the RTT (issue 19).
    for v in &mut views {
        v.entries.retain(|(e, _)| {
            *e == rtts.me || rtts.own_ms.contains_key(e) || rtts.coordinates.contains_key(e)
        });
    }
    placer
        .placement
        .retain(|v| views.iter().any(|w| w.id == *v));
    let mut whys: Vec<(VesselId, String)> = Vec::new();
    let mut chosen = None;
    let ops = lock(&migrator.host).ops.clone();
    for v in &views {
        let verdict =
            placer
                .placement
                .evaluate(v, &rtts, &inputs.rooms, inputs.here_load_per_cpu, now);
        crate::ops::note_verdict(&ops, &migrator.host, v.id, &verdict);
        match verdict {
            Verdict::Stay(w) => whys.push((v.id, w.to_string())),
            Verdict::Move {
                to,
                here_ms,
                there_ms,
                why,
            } if chosen.is_none() && !busy => chosen = Some((v.id, to, here_ms, there_ms, why)),
            Verdict::Move {
                to,
                here_ms,
                there_ms,
                ..
            } => whys.push((
                v.id,
                format!(
                    "{} is nearer its clients ({there_ms:.0} ms vs {here_ms:.0} ms here): waiting for another move to finish",
                    short(&to)
                ),
            )),
        }
    }
    {
        let mut h = lock(&migrator.host);
        for (id, w) in whys {
            if let Some(l) = h.vessels.get_mut(&id) {
                l.why = w;
            }
        }
    }
    let Some((id, to, here_ms, there_ms, why)) = chosen else {
        return;
    };
    // `why` speaks from the destination, where `ps` shows it; the log
    // speaks from here.
    info!(
        vessel = %id,
        %to,
        here_ms,
        there_ms,
        "placement moves it nearer its clients: {there_ms:.1} ms from {} vs {here_ms:.1} ms from here",
        short(&to)
    );
    match start_migration(migrator, id, to, &why) {
        Ok(()) => placer.auto = Some((id, to)),
        Err(e) => {
            warn!(vessel = %id, %to, "placement cannot move it: {e}");
            placer.placement.note_failed(id, to, now);
        }
    }
}

/// Pins or unpins a vessel that runs here (blocking: it writes durably).
pub fn set_pinned(
    host: &Arc<Mutex<Host>>,
    id: VesselId,
    pinned: bool,
) -> Result<(), protocol::refusal::Refusal> {
    Ok(lock(host).set_pinned(id, pinned)?)
}

/// Starts draining this node, or answers how the drain under way goes.
/// Lists every vessel running here; pinned ones stay unless
/// `include_pinned` (then they move and keep their pin).
pub fn start_drain(drains: &Drains, include_pinned: bool) -> DrainReport {
    let mut d = lock(&drains.report);
    if let Some(r) = d.as_ref().filter(|r| !r.done) {
        return r.clone();
    }
    let vessels: Vec<DrainItem> = {
        let h = lock(&drains.host);
        h.vessels
            .iter()
            .filter(|(_, l)| {
                movable(l) || (l.migrating && matches!(l.record, Record::Owned { .. }))
            })
            .map(|(id, l)| DrainItem {
                id: *id,
                name: l.deployment.body.name.clone(),
                to: None,
                state: if l.pinned && !include_pinned {
                    "pinned".into()
                } else {
                    "waiting".into()
                },
            })
            .collect()
    };
    let report = DrainReport {
        node: drains.me.to_string(),
        done: false,
        vessels,
    };
    info!(
        vessels = report.vessels.len(),
        include_pinned, "draining this node"
    );
    *d = Some(report.clone());
    let generation = drains.generation.fetch_add(1, Ordering::SeqCst) + 1;
    drop(d);
    let drains = drains.clone();
    tokio::spawn(async move { run_drain(&drains, generation).await });
    report
}

/// Ends this node's drain (`meshnode undrain`): the vessels it did not
/// move yet stay (their state says so), a move under way finishes, and
/// the node takes vessels from placement again. Answers the drain's last
/// report; refused when no drain was asked for.
pub fn undrain(drains: &Drains) -> Result<DrainReport, protocol::refusal::Refusal> {
    let mut d = lock(&drains.report);
    let mut report = d.take().ok_or_else(|| {
        protocol::refusal::Refusal::new(
            protocol::refusal::RefusalCode::NotDraining,
            format!("node {} is not being drained", drains.me),
        )
    })?;
    drains.generation.fetch_add(1, Ordering::SeqCst);
    for i in &mut report.vessels {
        if i.state == "waiting" {
            i.state = DRAIN_UNDRAINED.into();
        }
    }
    report.done = true;
    info!("undrained: this node takes vessels from placement again");
    Ok(report)
}

/// A drain item's state for a vessel that stays because the drain ended
/// (`meshnode undrain`) before its turn.
pub const DRAIN_UNDRAINED: &str = "stays: undrained";

/// The drain's report, once one was asked for.
pub fn drain_report(drains: &Drains) -> Result<DrainReport, protocol::refusal::Refusal> {
    lock(&drains.report).clone().ok_or_else(|| {
        protocol::refusal::Refusal::new(
            protocol::refusal::RefusalCode::NotDraining,
            format!("node {} is not being drained", drains.me),
        )
    })
}

fn set_item(drains: &Drains, id: VesselId, state: &str, to: Option<PeerId>) {
    if let Some(r) = lock(&drains.report).as_mut() {
        if let Some(i) = r.vessels.iter_mut().find(|i| i.id == id) {
            i.state = state.to_string();
            if let Some(t) = to {
                i.to = Some(t.to_string());
            }
        }
    }
}

async fn run_drain(drains: &Drains, generation: u64) {
    inputs_since(drains, Instant::now()).await;
    // Vessels sent to each node by this drain, so that the next ones
    // spread instead of all choosing the same emptiest node.
    let mut assigned: HashMap<PeerId, usize> = HashMap::new();
    loop {
        if drains.generation.load(Ordering::SeqCst) != generation {
            info!("drain ended by an undrain");
            return;
        }
        let next = lock(&drains.report).as_ref().and_then(|r| {
            r.vessels
                .iter()
                .find(|i| i.state == "waiting")
                .map(|i| i.id)
        });
        let Some(id) = next else {
            break;
        };
        match drain_one(drains, id, &mut assigned).await {
            Ok(Drained::Moved(to)) => {
                info!(vessel = %id, %to, "drained");
                set_item(drains, id, "moved", Some(to));
            }
            Ok(Drained::Ended(exit)) => {
                info!(vessel = %id, "drain: it ended ({exit}); nothing to move");
                set_item(drains, id, DRAIN_ENDED, None);
            }
            Err(e) => {
                warn!(vessel = %id, "cannot drain it: {e}");
                set_item(drains, id, &format!("failed: {e}"), None);
            }
        }
    }
    let mut report = lock(&drains.report);
    if drains.generation.load(Ordering::SeqCst) == generation {
        if let Some(r) = report.as_mut() {
            r.done = true;
        }
    }
    info!("drain finished");
}

/// Waits (up to `DRAIN_ROOM_WAIT`) for inputs the event loop gathered after
/// `asked`, so that a drain chooses by what this node knew when it was
/// asked, not by a tick up to a placement interval older (a status that
/// arrived in between, saying a node got busier, would be missed).
async fn inputs_since(drains: &Drains, asked: Instant) {
    let deadline = asked + DRAIN_ROOM_WAIT;
    while lock(&drains.inputs).gathered_at.is_none_or(|at| at < asked) && Instant::now() < deadline
    {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Waits until vessel `id` is not migrating; answers where it went, if it
/// left.
async fn settle(drains: &Drains, id: VesselId) -> Result<Option<PeerId>, String> {
    let deadline = Instant::now() + DRAIN_MOVE_TIMEOUT;
    loop {
        {
            let h = lock(&drains.host);
            let l = h.vessels.get(&id).ok_or("it is gone from this node")?;
            if !l.migrating {
                return Ok(match &l.record {
                    Record::Left { to, .. } => PeerId::from_bytes(to).ok(),
                    _ => None,
                });
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "its move did not finish within {} s",
                DRAIN_MOVE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// What became of a drained vessel that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Drained {
    /// It runs on this node now.
    Moved(PeerId),
    /// It ended (exited, failed or was stopped) before or during its move:
    /// nothing is left to move, and its log stays here.
    Ended(String),
}

/// A drain item's state for a vessel that ended before or during its move.
pub const DRAIN_ENDED: &str = "ended";

/// How vessel `id` ended, if it did: its runner's exit, a user's stop, or
/// it is gone from this node (removed).
fn ended_here(drains: &Drains, id: VesselId) -> Option<String> {
    let h = lock(&drains.host);
    let Some(l) = h.vessels.get(&id) else {
        return Some("it is gone from this node".into());
    };
    if l.migrating {
        return None;
    }
    if l.stopped {
        return Some("stopped".into());
    }
    l.ended().map(|(exit, _)| exit)
}

async fn drain_one(
    drains: &Drains,
    id: VesselId,
    assigned: &mut HashMap<PeerId, usize>,
) -> Result<Drained, String> {
    // A move already under way (by hand, or placement's) finishes first.
    if let Some(to) = settle(drains, id).await? {
        return Ok(Drained::Moved(to));
    }
    if let Some(exit) = ended_here(drains, id) {
        return Ok(Drained::Ended(exit));
    }
    let view = {
        let h = lock(&drains.host);
        let l = h.vessels.get(&id).ok_or("it is gone from this node")?;
        if !movable(l) {
            return Err("it no longer runs here".into());
        }
        view_of(id, l, &h.traffic, Instant::now())
    };
    // A destination that refuses or fails is not asked again for this
    // vessel; the next best is tried, up to a few.
    let mut failures: Vec<String> = Vec::new();
    let mut tried: Vec<PeerId> = Vec::new();
    while tried.len() < DRAIN_DESTINATIONS {
        let Some(to) = destination(drains, id, &view, assigned, &tried).await else {
            break;
        };
        tried.push(to);
        set_item(drains, id, "moving", Some(to));
        let started = start_migration(
            &drains.migrator,
            id,
            to,
            &format!("drained from {}", drains.me),
        );
        // A vessel that ended meanwhile is done, not failed: the move was
        // refused here (or aborted) because nothing runs to move.
        let failure = match started {
            Err(e) => e.to_string(),
            Ok(()) => match settle(drains, id).await? {
                Some(went) => {
                    *assigned.entry(went).or_default() += 1;
                    return Ok(Drained::Moved(went));
                }
                None => drains
                    .migrator
                    .report(id)
                    .and_then(|r| r.error.map(|e| e.detail))
                    .unwrap_or_else(|| "the migration was aborted".into()),
            },
        };
        if let Some(exit) = ended_here(drains, id) {
            return Ok(Drained::Ended(exit));
        }
        warn!(vessel = %id, %to, "drain: moving it failed ({failure}); trying another node");
        failures.push(format!("{to}: {failure}"));
    }
    if let Some(exit) = ended_here(drains, id) {
        return Ok(Drained::Ended(exit));
    }
    if failures.is_empty() {
        return Err("no other member with a fresh status has room for it".into());
    }
    Err(format!("it runs on here; tried {}", failures.join("; ")))
}

/// The best other node for a drained vessel, leaving out `tried`. Right
/// after a start or a restart the other nodes' statuses may not be here
/// yet: it waits for them a little before giving up.
async fn destination(
    drains: &Drains,
    id: VesselId,
    view: &VesselView,
    assigned: &HashMap<PeerId, usize>,
    tried: &[PeerId],
) -> Option<PeerId> {
    let room_deadline = Instant::now() + DRAIN_ROOM_WAIT;
    loop {
        let inputs = lock(&drains.inputs).clone();
        let rtts = inputs.rtts.unwrap_or_else(|| Rtts::new(drains.me));
        let mut rooms = inputs.rooms;
        rooms.retain(|r| !tried.contains(&r.peer));
        for r in &mut rooms {
            r.vessels += assigned.get(&r.peer).copied().unwrap_or(0);
        }
        let found = drain_target(
            view,
            &rtts,
            &rooms,
            inputs.here_load_per_cpu,
            &inputs.params,
        );
        // A vessel that ended needs no room: stop waiting for it.
        if found.is_some() || Instant::now() > room_deadline || ended_here(drains, id).is_some() {
            return found;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
