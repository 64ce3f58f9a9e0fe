//! Placement (design §7): where each vessel should run, as pure logic with no
//! sockets, so that it can be tested with made-up meshes.
//!
//! Inputs:
//! - [`Rtts`]: the smoothed RTT table: this node's RTTs to its peers and
//!   each peer's RTTs to its own peers, from the status gossip;
//! - [`TrafficBook`]: where each vessel's client traffic enters the mesh (a
//!   byte rate per entry node, decayed with a half-life);
//! - [`NodeRoom`]: each candidate's capacity, from the status gossip.
//!
//! Where nobody measured the RTT between a candidate and an entry, the two
//! nodes' gossiped network coordinates ([`crate::vivaldi`]) estimate it;
//! a measured RTT always wins.
//!
//! The cost of hosting a vessel on node N is the traffic-weighted mean RTT
//! from N to the vessel's entry nodes (RTT(N, N) = 0). The hosting node moves
//! a vessel only when the best candidate is *clearly* better — by a relative
//! margin and by an absolute gain in ms — has room for it, stays the best for
//! `hysteresis` consecutive evaluations, and the vessel did not move within
//! the cool-down. Why this cannot flap: with the same inputs, a move from A to
//! B means cost(B) ≤ (1 − margin)·cost(A), so A can never be clearly better
//! than B; only a real change of inputs (the clients moved) larger than the
//! margin, lasting longer than the hysteresis, and after the cool-down, can
//! move it again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::coordinate::NetCoordinate;
use protocol::vessel::VesselId;

/// A candidate must keep this much memory free after taking a vessel: the
/// node runs its own work too, and `MemAvailable` moves while a migration is
/// under way.
pub const MEMORY_HEADROOM_BYTES: u64 = 64 * 1024 * 1024;

/// An entry whose decayed rate fell below this many bytes per second has gone
/// quiet and is forgotten: any client that talks to a service sends more.
pub const QUIET_BYTES_PER_S: f64 = 1.0;

/// Entry nodes kept per vessel; beyond it the smallest is dropped. Bounds the
/// book however many nodes forward traffic (a mesh has at most a few hundred
/// nodes, and the few largest entries decide the cost).
pub const MAX_ENTRIES_PER_VESSEL: usize = 64;

/// Vessels the book keeps traffic for; beyond it the quietest vessel is
/// dropped. A node hosts at most `MAX_VESSELS_PER_NODE` (256) vessels; the
/// rest is slack for vessels that just left.
pub const MAX_VESSELS_IN_BOOK: usize = 512;

/// The policy's parameters (the `placement_*` settings of the config file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementParams {
    /// A candidate must cut the cost by at least this fraction of the cost
    /// here (0.3: 30 %).
    pub margin: f64,
    /// … and by at least this many milliseconds.
    pub min_gain_ms: f64,
    /// … for this many consecutive evaluations, as the same best candidate.
    pub hysteresis: u32,
    /// No automatic move within this long after the vessel's last move (or
    /// after a failed attempt).
    pub cooldown: Duration,
    /// A candidate whose load per CPU is above this *and* above this node's
    /// is too busy (0: load is not looked at). Both, because nodes that
    /// share a machine all report the same load.
    pub max_load_per_cpu: f64,
}

impl Default for PlacementParams {
    fn default() -> Self {
        PlacementParams {
            margin: 0.3,
            min_gain_ms: 10.0,
            hysteresis: 3,
            cooldown: Duration::from_secs(15),
            max_load_per_cpu: 4.0,
        }
    }
}

/// A network coordinate whose error estimate is above this is not used
/// for an estimate: a node that has just started sits at the origin with
/// the largest error (1.5), where every other new node looks 0 ms away,
/// and would draw every vessel to itself. Vivaldi's error is its relative
/// miss, smoothed: below 0.5, estimates are within about half, which the
/// margin and the hysteresis of placement absorb; a node gets there within
/// a few tens of pings.
pub const MAX_ESTIMATE_ERROR: f64 = 0.5;

/// The RTT table, in milliseconds: this node's own, and what peers gossip
/// of theirs. RTT is taken as symmetric: when A did not report B, B's report
/// of A is used. Where nobody measured a pair, the two nodes' network
/// coordinates (issue 19) estimate it.
#[derive(Debug, Clone)]
pub struct Rtts {
    pub me: PeerId,
    pub own_ms: BTreeMap<PeerId, f64>,
    pub gossiped_ms: BTreeMap<PeerId, BTreeMap<PeerId, f64>>,
    /// This node's coordinate and those of members with a fresh status.
    pub coordinates: BTreeMap<PeerId, NetCoordinate>,
}

impl Rtts {
    pub fn new(me: PeerId) -> Rtts {
        Rtts {
            me,
            own_ms: BTreeMap::new(),
            gossiped_ms: BTreeMap::new(),
            coordinates: BTreeMap::new(),
        }
    }

    /// RTT between two nodes as their coordinates estimate it, when both
    /// have a valid, settled one (error at most [`MAX_ESTIMATE_ERROR`]).
    pub fn estimate_ms(&self, a: &PeerId, b: &PeerId) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        let settled = |p: &PeerId| {
            self.coordinates
                .get(p)
                .filter(|c| c.error <= MAX_ESTIMATE_ERROR)
        };
        settled(a)?.estimate_ms(settled(b)?)
    }

    /// The measured RTT when there is one, else the estimate: what costs
    /// are made of.
    pub fn rtt_or_estimate_ms(&self, a: &PeerId, b: &PeerId) -> Option<f64> {
        self.rtt_ms(a, b).or_else(|| self.estimate_ms(a, b))
    }

    fn reported(&self, from: &PeerId, to: &PeerId) -> Option<f64> {
        if *from == self.me {
            self.own_ms.get(to).copied()
        } else {
            self.gossiped_ms.get(from).and_then(|t| t.get(to)).copied()
        }
    }

    /// RTT between two nodes, when someone measured it.
    pub fn rtt_ms(&self, a: &PeerId, b: &PeerId) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        self.reported(a, b).or_else(|| self.reported(b, a))
    }

    /// Traffic-weighted mean RTT from `node` to the entries, measured where
    /// someone measured it and estimated from coordinates elsewhere; `Err`
    /// names an entry whose RTT to `node` is neither.
    pub fn cost_ms(&self, node: &PeerId, entries: &[(PeerId, f64)]) -> Result<f64, PeerId> {
        let total: f64 = entries.iter().map(|(_, w)| w).sum();
        let mut sum = 0.0;
        for (e, w) in entries {
            sum += w * self.rtt_or_estimate_ms(node, e).ok_or(*e)?;
        }
        Ok(if total > 0.0 { sum / total } else { 0.0 })
    }
}

/// A candidate node's capacity, from its gossiped status.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRoom {
    pub peer: PeerId,
    /// `None` when its platform does not say (then memory is not checked).
    pub free_memory_bytes: Option<u64>,
    pub load_per_cpu: Option<f64>,
    pub vessels: usize,
    /// Being drained: takes no vessels from placement.
    pub draining: bool,
}

impl NodeRoom {
    /// Why this node cannot take a vessel of `memory_bytes`, if it cannot.
    pub fn lacks_room(
        &self,
        memory_bytes: u64,
        here_load_per_cpu: Option<f64>,
        params: &PlacementParams,
    ) -> Option<String> {
        if self.draining {
            return Some("it is being drained".into());
        }
        if self.vessels >= protocol::limits::MAX_VESSELS_PER_NODE {
            return Some(format!("it runs {} vessels already", self.vessels));
        }
        if let Some(free) = self.free_memory_bytes {
            if free < memory_bytes.saturating_add(MEMORY_HEADROOM_BYTES) {
                return Some(format!(
                    "{} MiB free, it needs {} MiB",
                    free >> 20,
                    (memory_bytes + MEMORY_HEADROOM_BYTES) >> 20
                ));
            }
        }
        if let (true, Some(load)) = (params.max_load_per_cpu > 0.0, self.load_per_cpu) {
            if load > params.max_load_per_cpu && load > here_load_per_cpu.unwrap_or(0.0) {
                return Some(format!("it is busy (load {load:.1} per CPU)"));
            }
        }
        None
    }
}

/// What placement knows of one vessel hosted here.
#[derive(Debug, Clone)]
pub struct VesselView {
    pub id: VesselId,
    pub pinned: bool,
    pub memory_bytes: u64,
    /// When it last arrived here by a move.
    pub last_move: Option<Instant>,
    /// How it came to be here ("deployed here", "migrated here from …").
    pub reason: String,
    /// Its client traffic: (entry node, bytes per second).
    pub entries: Vec<(PeerId, f64)>,
}

/// Why a vessel stays where it is (what `meshnode ps` shows).
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    Pinned,
    NoTraffic {
        reason: String,
    },
    CoolDown {
        left: Duration,
        after: String,
    },
    UnknownRtt {
        entry: PeerId,
    },
    /// No other node is nearer its clients (`next`: the nearest other one).
    Nearest {
        here_ms: f64,
        next: Option<(PeerId, f64)>,
    },
    /// Another node is nearer, but not by the margin and the minimum gain.
    SmallGain {
        to: PeerId,
        here_ms: f64,
        there_ms: f64,
    },
    /// Every node that would be clearly nearer lacks room.
    NoRoom {
        to: PeerId,
        here_ms: f64,
        there_ms: f64,
        lack: String,
    },
    /// `to` is clearly nearer; it moves once that held `needed` times.
    Waiting {
        to: PeerId,
        here_ms: f64,
        there_ms: f64,
        streak: u32,
        needed: u32,
    },
}

/// A PeerId short enough for a table: its last 8 characters.
pub fn short(p: &PeerId) -> String {
    let s = p.to_string();
    s[s.len().saturating_sub(8)..].to_string()
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Pinned => f.write_str("pinned (never moved automatically)"),
            Why::NoTraffic { reason } => write!(f, "{reason}; no client traffic yet"),
            Why::CoolDown { left, after } => {
                write!(f, "cool-down {} s after {after}", left.as_secs().max(1))
            }
            Why::UnknownRtt { entry } => write!(
                f,
                "clients enter at {} and its RTT is neither measured nor estimated yet",
                short(entry)
            ),
            Why::Nearest { here_ms, next } => match next {
                Some((p, ms)) => write!(
                    f,
                    "nearest to its clients: {here_ms:.0} ms here vs {ms:.0} ms at {}",
                    short(p)
                ),
                None => write!(
                    f,
                    "nearest to its clients: {here_ms:.0} ms here (no other node measured)"
                ),
            },
            Why::SmallGain {
                to,
                here_ms,
                there_ms,
            } => write!(
                f,
                "{} is a little nearer its clients ({there_ms:.0} ms vs {here_ms:.0} ms here), not enough to move",
                short(to)
            ),
            Why::NoRoom {
                to,
                here_ms,
                there_ms,
                lack,
            } => write!(
                f,
                "{} is nearer its clients ({there_ms:.0} ms vs {here_ms:.0} ms here) but has no room: {lack}",
                short(to)
            ),
            Why::Waiting {
                to,
                here_ms,
                there_ms,
                streak,
                needed,
            } => write!(
                f,
                "{} is nearer its clients ({there_ms:.0} ms vs {here_ms:.0} ms here): moving if it holds ({streak}/{needed})",
                short(to)
            ),
        }
    }
}

/// What placement decided for one vessel.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Stay(Why),
    /// Move it to `to`; `why` says so from the destination's point of view
    /// (it travels with the vessel and `ps` shows it there).
    Move {
        to: PeerId,
        here_ms: f64,
        there_ms: f64,
        why: String,
    },
}

/// The policy, with what it remembers between evaluations: each vessel's
/// pending candidate (for the hysteresis) and failed attempts (which cool
/// down like a move).
#[derive(Debug, Default)]
pub struct Placement {
    pub params: PlacementParams,
    pending: HashMap<VesselId, (PeerId, u32)>,
    failed: HashMap<VesselId, (PeerId, Instant)>,
}

impl Placement {
    pub fn new(params: PlacementParams) -> Placement {
        Placement {
            params,
            pending: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// An automatic move to `to` failed at `now`: no new attempt within the
    /// cool-down.
    pub fn note_failed(&mut self, id: VesselId, to: PeerId, now: Instant) {
        self.failed.insert(id, (to, now));
    }

    /// Forgets vessels that are no longer hosted here.
    pub fn retain(&mut self, here: impl Fn(&VesselId) -> bool) {
        self.pending.retain(|v, _| here(v));
        self.failed.retain(|v, _| here(v));
    }

    /// Decides for one vessel hosted by `rtts.me`. `nodes` are the other
    /// members that could take it (this node's own entry is ignored).
    pub fn evaluate(
        &mut self,
        v: &VesselView,
        rtts: &Rtts,
        nodes: &[NodeRoom],
        here_load_per_cpu: Option<f64>,
        now: Instant,
    ) -> Verdict {
        let verdict = self.decide(v, rtts, nodes, here_load_per_cpu, now);
        if !matches!(verdict, Verdict::Stay(Why::Waiting { .. })) {
            self.pending.remove(&v.id);
        }
        verdict
    }

    fn decide(
        &mut self,
        v: &VesselView,
        rtts: &Rtts,
        nodes: &[NodeRoom],
        here_load_per_cpu: Option<f64>,
        now: Instant,
    ) -> Verdict {
        let p = self.params;
        if v.pinned {
            return Verdict::Stay(Why::Pinned);
        }
        if let Some(at) = v.last_move {
            let since = now.saturating_duration_since(at);
            if since < p.cooldown {
                return Verdict::Stay(Why::CoolDown {
                    left: p.cooldown - since,
                    after: if v.reason.is_empty() {
                        "a move".into()
                    } else {
                        format!("a move ({})", v.reason)
                    },
                });
            }
        }
        if let Some((to, at)) = self.failed.get(&v.id) {
            let since = now.saturating_duration_since(*at);
            if since < p.cooldown {
                return Verdict::Stay(Why::CoolDown {
                    left: p.cooldown - since,
                    after: format!("a failed move to {}", short(to)),
                });
            }
        }
        if v.entries.is_empty() {
            return Verdict::Stay(Why::NoTraffic {
                reason: v.reason.clone(),
            });
        }
        let here_ms = match rtts.cost_ms(&rtts.me, &v.entries) {
            Ok(c) => c,
            Err(entry) => return Verdict::Stay(Why::UnknownRtt { entry }),
        };
        // Every other node whose cost is known, cheapest first (ties by id,
        // so that the order does not depend on the input's).
        let mut costed: Vec<(&NodeRoom, f64)> = nodes
            .iter()
            .filter(|n| n.peer != rtts.me)
            .filter_map(|n| rtts.cost_ms(&n.peer, &v.entries).ok().map(|c| (n, c)))
            .collect();
        costed.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.peer.cmp(&b.0.peer)));
        let clearly_better =
            |c: f64| here_ms - c >= p.min_gain_ms && here_ms - c >= p.margin * here_ms;
        let Some(&(nearest, nearest_ms)) = costed.first() else {
            return Verdict::Stay(Why::Nearest {
                here_ms,
                next: None,
            });
        };
        if nearest_ms >= here_ms {
            return Verdict::Stay(Why::Nearest {
                here_ms,
                next: Some((nearest.peer, nearest_ms)),
            });
        }
        if !clearly_better(nearest_ms) {
            return Verdict::Stay(Why::SmallGain {
                to: nearest.peer,
                here_ms,
                there_ms: nearest_ms,
            });
        }
        let mut first_lack: Option<(PeerId, f64, String)> = None;
        let mut fitting: Vec<(PeerId, f64)> = Vec::new();
        for (n, c) in costed.iter().filter(|(_, c)| clearly_better(*c)) {
            match n.lacks_room(v.memory_bytes, here_load_per_cpu, &p) {
                None => fitting.push((n.peer, *c)),
                Some(lack) => {
                    first_lack.get_or_insert((n.peer, *c, lack));
                }
            }
        }
        let Some(&(best, best_ms)) = fitting.first() else {
            let (to, there_ms, lack) = first_lack.expect("a clearly better node exists");
            return Verdict::Stay(Why::NoRoom {
                to,
                here_ms,
                there_ms,
                lack,
            });
        };
        // The pending candidate keeps its streak while it is still clearly
        // better and within the minimum gain of the best: two nodes of about
        // the same cost do not reset each other's streak with every jitter.
        let (to, there_ms, streak) = match self.pending.get(&v.id) {
            Some(&(prev, n)) => match fitting.iter().find(|(q, _)| *q == prev) {
                Some(&(q, c)) if c <= best_ms + p.min_gain_ms => (q, c, n + 1),
                _ => (best, best_ms, 1),
            },
            None => (best, best_ms, 1),
        };
        if streak >= p.hysteresis.max(1) {
            return Verdict::Move {
                to,
                here_ms,
                there_ms,
                why: format!(
                    "nearer its clients: {there_ms:.0} ms here vs {here_ms:.0} ms at {}",
                    short(&rtts.me)
                ),
            };
        }
        self.pending.insert(v.id, (to, streak));
        Verdict::Stay(Why::Waiting {
            to,
            here_ms,
            there_ms,
            streak,
            needed: p.hysteresis,
        })
    }
}

/// Where a drain sends a vessel: the other node with room that is nearest
/// its clients (when it has any and their RTTs are known), then the one that
/// runs the fewest vessels, then the one with the most free memory. `None`
/// when no other node has room.
pub fn drain_target(
    v: &VesselView,
    rtts: &Rtts,
    nodes: &[NodeRoom],
    here_load_per_cpu: Option<f64>,
    params: &PlacementParams,
) -> Option<PeerId> {
    nodes
        .iter()
        .filter(|n| n.peer != rtts.me)
        .filter(|n| {
            n.lacks_room(v.memory_bytes, here_load_per_cpu, params)
                .is_none()
        })
        .map(|n| {
            let cost = if v.entries.is_empty() {
                0.0
            } else {
                rtts.cost_ms(&n.peer, &v.entries).unwrap_or(f64::INFINITY)
            };
            (n, cost)
        })
        .min_by(|(a, ca), (b, cb)| {
            ca.total_cmp(cb)
                .then(a.vessels.cmp(&b.vessels))
                .then(b.free_memory_bytes.cmp(&a.free_memory_bytes))
                .then(a.peer.cmp(&b.peer))
        })
        .map(|(n, _)| n.peer)
}

/// Where a vessel's replicas go (issue 15): `count` nodes other than this
/// one (the host). The replicas in `keep` (the caller's: those still
/// members and not failing) stay first, whatever their room or distance
/// now: a replica is a copy that took a whole image to make, and a moment
/// without a fresh status, or a slightly nearer node, is no reason to make
/// another. The rest are nodes with room for the vessel, as a drain
/// chooses a destination (nearest its clients, then fewest vessels, then
/// most free memory), since a replica is where the vessel would run after a
/// failover; fewer than `count` when fewer nodes have room.
pub fn replica_targets(
    v: &VesselView,
    rtts: &Rtts,
    nodes: &[NodeRoom],
    here_load_per_cpu: Option<f64>,
    params: &PlacementParams,
    keep: &[PeerId],
    count: usize,
) -> Vec<PeerId> {
    let candidates: Vec<(&NodeRoom, f64)> = nodes
        .iter()
        .filter(|n| n.peer != rtts.me)
        .filter(|n| {
            n.lacks_room(v.memory_bytes, here_load_per_cpu, params)
                .is_none()
        })
        .map(|n| {
            let cost = match v.entries.is_empty() {
                true => 0.0,
                false => rtts.cost_ms(&n.peer, &v.entries).unwrap_or(f64::INFINITY),
            };
            (n, cost)
        })
        .collect();
    let mut out: Vec<PeerId> = Vec::new();
    for k in keep.iter().filter(|k| **k != rtts.me) {
        if out.len() < count && !out.contains(k) {
            out.push(*k);
        }
    }
    let mut rest: Vec<&(&NodeRoom, f64)> = candidates
        .iter()
        .filter(|(n, _)| !out.contains(&n.peer))
        .collect();
    rest.sort_by(|(a, ca), (b, cb)| {
        ca.total_cmp(cb)
            .then(a.vessels.cmp(&b.vessels))
            .then(b.free_memory_bytes.cmp(&a.free_memory_bytes))
            .then(a.peer.cmp(&b.peer))
    });
    let missing = count.saturating_sub(out.len());
    out.extend(rest.into_iter().take(missing).map(|(n, _)| n.peer));
    out
}

/// Where each vessel's client traffic enters the mesh: per (vessel, entry
/// node), an exponentially decayed byte count, read as a byte rate. An entry
/// that goes quiet halves its weight every half-life and is forgotten once
/// below [`QUIET_BYTES_PER_S`].
///
/// Shared (`Arc<TrafficBook>`) between the ingress, which records every
/// frame it carries, and the placement tick, which reads it; one short lock
/// per call.
#[derive(Debug)]
pub struct TrafficBook {
    half_life: Duration,
    inner: Mutex<HashMap<VesselId, HashMap<PeerId, Decayed>>>,
}

#[derive(Debug, Clone, Copy)]
struct Decayed {
    /// Bytes, decayed to `at`.
    bytes: f64,
    at: Instant,
}

impl Decayed {
    fn at(&self, now: Instant, half_life: Duration) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.bytes * (-dt / half_life.as_secs_f64()).exp2()
    }
}

impl TrafficBook {
    pub fn new(half_life: Duration) -> TrafficBook {
        TrafficBook {
            // A zero half-life would divide by zero: a millisecond forgets
            // everything at once just as well.
            half_life: half_life.max(Duration::from_millis(1)),
            inner: Mutex::new(HashMap::new()),
        }
    }

    pub fn half_life(&self) -> Duration {
        self.half_life
    }

    /// `bytes` of `vessel`'s client traffic entered the mesh at `entry` (in
    /// either direction) at `now`.
    pub fn record(&self, vessel: VesselId, entry: PeerId, bytes: u64, now: Instant) {
        let h = self.half_life;
        let mut book = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !book.contains_key(&vessel) && book.len() >= MAX_VESSELS_IN_BOOK {
            let quietest = book
                .iter()
                .map(|(v, es)| (*v, es.values().map(|d| d.at(now, h)).sum::<f64>()))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(v, _)| v);
            if let Some(q) = quietest {
                book.remove(&q);
            }
        }
        let entries = book.entry(vessel).or_default();
        if !entries.contains_key(&entry) && entries.len() >= MAX_ENTRIES_PER_VESSEL {
            let smallest = entries
                .iter()
                .min_by(|a, b| a.1.at(now, h).total_cmp(&b.1.at(now, h)))
                .map(|(p, _)| *p);
            if let Some(s) = smallest {
                entries.remove(&s);
            }
        }
        let d = entries.entry(entry).or_insert(Decayed {
            bytes: 0.0,
            at: now,
        });
        let decayed = d.at(now, h);
        *d = Decayed {
            bytes: decayed + bytes as f64,
            at: now.max(d.at),
        };
    }

    /// The vessel's entries with their rate in bytes per second, largest
    /// first; quiet entries are dropped.
    pub fn entries(&self, vessel: VesselId, now: Instant) -> Vec<(PeerId, f64)> {
        // A decayed sum S of a steady rate r settles at r·H/ln 2.
        let per_s = std::f64::consts::LN_2 / self.half_life.as_secs_f64();
        let mut book = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entries) = book.get_mut(&vessel) else {
            return Vec::new();
        };
        let h = self.half_life;
        entries.retain(|_, d| d.at(now, h) * per_s >= QUIET_BYTES_PER_S);
        let mut out: Vec<(PeerId, f64)> = entries
            .iter()
            .map(|(p, d)| (*p, d.at(now, h) * per_s))
            .collect();
        if out.is_empty() {
            book.remove(&vessel);
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Forgets a vessel (it left this node; its new host keeps its own).
    pub fn forget(&self, vessel: VesselId) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&vessel);
    }
}

impl Default for TrafficBook {
    fn default() -> Self {
        TrafficBook::new(Duration::from_millis(DEFAULT_TRAFFIC_HALF_LIFE_MS))
    }
}

/// The default traffic half-life: a client that moved weighs more at its new
/// entry than at its old one after about 1.3 half-lives (with the default
/// margin), so 2 s lets a vessel follow within the 10 s goal.
pub const DEFAULT_TRAFFIC_HALF_LIFE_MS: u64 = 2000;

#[cfg(test)]
#[path = "placement_estimate_tests.rs"]
mod estimate_tests;

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
