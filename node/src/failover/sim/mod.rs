//! A seeded simulation of the lease and fencing protocol, in the manner of
//! the migration layer's (`migration::sim`, after TigerBeetle's VOPR): 3 to
//! 5 voter nodes of one replicated vessel drive the real [`Voter`],
//! [`Holder`], [`Ballot`] and record rules over a simulated network that
//! loses, delays, duplicates and reorders messages, while a separate
//! fault actor ([`faults`]) kills hosts for good or crashes and restarts
//! them (a voter keeps only what it was told to make durable), cuts the
//! mesh into random pieces (some links one way only), suspends nodes (their
//! boot clock runs on), and every node's clock runs at its own rate within
//! `1 ± rho` of real time ([`clock`]). A replica that hears nothing from
//! the host for a hold asks for a takeover; a restarted owner asks for the
//! lease before it runs.
//!
//! After every step, in real simulated time ([`check`]): at most one node
//! *runs* the vessel (it does from the moment its own clock says it holds
//! the lease until that lease, plus one slice, ran out on its own clock,
//! unless it is down or suspended); no two certificates name different
//! owners for one epoch; records and promises only rise. Once the faults
//! stop, with a majority of voters alive and connected, exactly one node
//! runs it.
//!
//! A handoff (a migration of the replicated vessel, [`handoff`],
//! [`source`]) is a real migration, in the node's order: the host wins the
//! `Handoff` certificate; the migration layer's real `Source` machine
//! (the final round) pauses the vessel (a paused host runs nothing),
//! packs, gets a nonce from the destination's real `NonceBook`, and sends
//! the final offer carrying the certificate; the destination judges,
//! prepares, commits or aborts it through the real [`Destination`] and
//! record rules, keeping the certificate beside its `Prepared` record;
//! the source passes its commit point (`Left`) only once prepared, and
//! the destination runs under the certificate after the commit. The
//! checks add: nothing runs under a handoff's epoch before its source
//! wrote `Left`.
//!
//! Its own world rather than the migration simulation's: that one's nodes,
//! messages and ghost are migrations' of many vessels; what is shared is
//! the seeded randomness ([`SplitMix64`]), the deliberate bugs
//! (`migration::bugs`, [`Bug::LEASE`]) and the migration machines
//! themselves, each simulation with its own driver of them (this one's
//! has no pre-copy rounds or lacking chunks).
//!
//! `SIM_SEED=N cargo test -p meshnode --lib failover_simulation_replays_one_seed -- --nocapture`
//! replays a seed (with `SIM_BUGS=Name` for one a deliberate bug failed).

mod check;
mod clock;
mod faults;
mod handoff;
mod node;
mod reconfigure;
mod source;

use std::collections::BTreeMap;

use protocol::fuzzing::SplitMix64;
use protocol::lease::{LeaseRequest, LeaseResponse};
use protocol::refusal::Refusal;

use crate::failover::params::{LeaseParams, LONGEST_SLICE_MS};
#[cfg(doc)]
use crate::failover::{cert::Ballot, holder::Holder, voter::Voter};
pub use crate::migration::bugs::parse_bugs;
use crate::migration::bugs::{self, bug_names, Bug};
#[cfg(doc)]
use crate::migration::destination::Destination;
use node::SimNode;

/// A node's index.
pub type NodeId = usize;

/// How one run is shaped; every field comes from the seed.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Nodes in all: the first voter set, then spares that a
    /// reconfiguration may make voters.
    pub nodes: usize,
    /// The first voter set: nodes 0 to `voters - 1`.
    pub voters: usize,
    pub params: LeaseParams,
    /// How long faults are injected, then how long the healed mesh has.
    pub fault_ms: u64,
    pub heal_ms: u64,
    pub loss_permille: u64,
    pub dup_permille: u64,
    pub max_delay_ms: u64,
    pub straggler_permille: u64,
    /// Mean time between crashes, partitions, suspends (0: none).
    pub crash_every_ms: u64,
    pub partition_every_ms: u64,
    pub suspend_every_ms: u64,
    /// Mean time between handoffs asked of the host (0: none).
    pub handoff_every_ms: u64,
    /// Mean time between changes of voter set asked of the host (0: none).
    pub reconfigure_every_ms: u64,
    /// The first host's clock at the slowest rate, every other at the
    /// fastest: the worst case of the inequality.
    pub worst_clocks: bool,
}

/// The clock-rate bounds a run picks from: a good crystal's, the default
/// bound's, and two far beyond, where rho's share of a lease is large.
const RHO_CHOICES_PPM: [u64; 4] = [100, 10_000, 50_000, 100_000];

/// Lease lengths a run picks from (ms).
const LEASE_CHOICES_MS: [u64; 3] = [300, 800, 1_500];

impl Shape {
    fn from_seed(rng: &mut SplitMix64) -> Shape {
        let rho_ppm = RHO_CHOICES_PPM[rng.below(4) as usize];
        let lease_ms = LEASE_CHOICES_MS[rng.below(3) as usize];
        // The margin is the least that is safe (plus 0 to 20 ms), so that
        // each term of the inequality is what keeps the runs apart.
        let margin_ms = LeaseParams::min_margin_ms(LONGEST_SLICE_MS, rho_ppm) + rng.below(21);
        let params = LeaseParams {
            lease_ms,
            rho_ppm,
            margin_ms,
            renew_every_ms: lease_ms / 4,
            longest_slice_ms: LONGEST_SLICE_MS,
        };
        let voters = 3 + rng.below(3) as usize;
        Shape {
            nodes: voters,
            voters,
            params,
            fault_ms: 4_000 + rng.below(12_000),
            heal_ms: 12_000,
            loss_permille: rng.below(150),
            dup_permille: rng.below(80),
            max_delay_ms: 1 + rng.below(80),
            straggler_permille: rng.below(40),
            // From storms to calm, so that some runs have a host that ran
            // long enough to be cut off cleanly.
            crash_every_ms: [0, 700, 2_000, 5_000, 10_000][rng.below(5) as usize],
            partition_every_ms: [0, 600, 2_000, 5_000][rng.below(4) as usize],
            suspend_every_ms: [0, 1_000, 3_000, 10_000][rng.below(4) as usize],
            worst_clocks: rng.below(3) == 0,
            handoff_every_ms: [0, 1_000, 4_000][rng.below(3) as usize],
            reconfigure_every_ms: 0,
        }
    }

    /// Spares and changes of voter set, from a stream of their own, so that
    /// every other draw of a seed stays what it was before voter sets
    /// could change.
    fn with_reconfigurations(mut self, rng: &mut SplitMix64) -> Shape {
        self.nodes = self.voters + rng.below(3) as usize;
        self.reconfigure_every_ms = [0, 1_500, 4_000][rng.below(3) as usize];
        self
    }
}

/// Mixed into a seed for the spares and the changes of voter set.
const RECONFIGURE_SEED_SALT: u64 = 0x5e7c_0000_0000_0015;

/// A message between two nodes.
#[derive(Debug, Clone)]
pub enum Msg {
    Request(LeaseRequest),
    Response(Result<LeaseResponse, Refusal>),
    /// A handoff's commit, from its source to its destination: its
    /// certificate and the image it offered.
    Commit(Box<protocol::lease::Certificate>, protocol::snapshot::Hash),
    /// The destination took the commit of this epoch.
    Committed(u64),
    /// A handoff's final offer, with the certificate won for it, its
    /// image and the destination's nonce, prepared at once (the node's
    /// final offer with its push).
    Offer(
        Box<protocol::lease::Certificate>,
        protocol::snapshot::Hash,
        protocol::membership::Nonce,
    ),
    /// The destination prepared the handoff of this epoch; the nonce is
    /// for a next offer.
    Prepared(u64, protocol::membership::Nonce),
    /// A handoff's source asks its destination for a nonce, and gets one.
    AskNonce,
    Nonce(protocol::membership::Nonce),
    /// The destination refused the final offer of this epoch.
    Refused(u64, Refusal),
    /// The source called off the handoff of this epoch and image.
    Abort(u64, protocol::snapshot::Hash),
}

/// Something that happens at a real time.
#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Box<Msg>,
    },
    /// A node's step: renew, suspect, propose.
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Restart {
        node: NodeId,
    },
    Fault,
}

/// Counts, to show that a run exercised the protocol.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub grants: u64,
    pub takeovers: u64,
    pub fenced: u64,
    pub crashes: u64,
    pub deaths: u64,
    pub partitions: u64,
    pub suspends: u64,
    pub messages: u64,
    /// Takeover votes refused because a grant ran on, or a boot wait.
    pub held_off: u64,
    /// Of those, refused by a boot wait alone.
    pub boot_waits: u64,
    /// Handoffs asked for, and those whose certificate formed.
    pub handoffs_asked: u64,
    pub handoffs: u64,
    /// Handoffs whose certificate formed, given up before the commit
    /// point (the source fenced or crashed, or its destination refused
    /// the final offer or never answered within a hold).
    pub handoffs_abandoned: u64,
    /// Final offers a destination prepared (through the migration
    /// layer's `Destination` and record rules).
    pub handoffs_prepared: u64,
    /// Changes of voter set asked for, and those whose certificate
    /// formed (and the host then ran under).
    pub reconfigurations_asked: u64,
    pub reconfigurations: u64,
    /// Votes refused because the voter had signed a change of voter set
    /// above the epoch the vote followed (rule 5).
    pub below_reconfiguration: u64,
    /// Runs that ended with a change of voter set half signed and its
    /// owner dead for good (not held to liveness: see `check::at_end`).
    pub stranded_changes: u64,
}

/// Mixed into a seed for the holders' round numbers.
const ROUND_SEED_SALT: u64 = 0x7e45_e000_0000_0015;

/// Lines of trace kept for a failing seed.
const TRACE_LINES: usize = 300;

/// How often a node steps (real time).
const TICK_US: u64 = 20_000;

/// The longest extra delay of a straggling message.
const STRAGGLER_MAX_MS: u64 = 3_000;

/// The simulated world.
pub struct World {
    rng: SplitMix64,
    /// The holders' first round numbers: a stream of its own, so that
    /// drawing them left every seed's faults as they were.
    round_rng: SplitMix64,
    /// The changes of voter set: a stream of their own, likewise.
    reconfigure_rng: SplitMix64,
    shape: Shape,
    now_us: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    /// Directed links that drop everything, until the real time given.
    cut: BTreeMap<(NodeId, NodeId), u64>,
    faults_on: bool,
    ghost: check::Ghost,
    stats: Stats,
    trace: Vec<String>,
    /// Real time 0, for the migration machines' `Instant`s.
    base: std::time::Instant,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = SplitMix64(seed);
        let mut reconfigure_rng = SplitMix64(seed ^ RECONFIGURE_SEED_SALT);
        let shape = Shape::from_seed(&mut rng).with_reconfigurations(&mut reconfigure_rng);
        let nodes = (0..shape.nodes)
            .map(|n| match n < shape.voters {
                true => SimNode::new(n, &shape, &mut rng),
                false => SimNode::new(n, &shape, &mut reconfigure_rng),
            })
            .collect();
        let mut w = World {
            rng,
            round_rng: SplitMix64(seed ^ ROUND_SEED_SALT),
            reconfigure_rng,
            shape,
            now_us: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            cut: BTreeMap::new(),
            faults_on: true,
            ghost: check::Ghost::default(),
            stats: Stats::default(),
            trace: Vec::new(),
            base: std::time::Instant::now(),
        };
        node::deploy(&mut w);
        for n in 0..w.nodes.len() {
            let jitter = w.rng.below(TICK_US);
            w.at_us(
                jitter,
                Event::Tick {
                    node: n,
                    incarnation: 0,
                },
            );
        }
        w.at_us(0, Event::Fault);
        w
    }

    fn at_us(&mut self, delay_us: u64, event: Event) {
        self.seq += 1;
        self.events
            .insert((self.now_us + delay_us, self.seq), event);
    }

    /// Now, as an `Instant` (real simulated time).
    fn instant(&self) -> std::time::Instant {
        self.base + std::time::Duration::from_micros(self.now_us)
    }

    fn note(&mut self, line: String) {
        if self.trace.len() >= TRACE_LINES {
            self.trace.remove(0);
        }
        self.trace
            .push(format!("{:>8.1} ms {line}", self.now_us as f64 / 1e3));
    }

    fn run(&mut self) -> Result<(), String> {
        let end_us = (self.shape.fault_ms + self.shape.heal_ms) * 1_000;
        while let Some((&(t, seq), _)) = self.events.iter().next() {
            if t > end_us {
                break;
            }
            let event = self.events.remove(&(t, seq)).expect("just seen");
            self.now_us = t;
            if self.faults_on && t >= self.shape.fault_ms * 1_000 {
                faults::heal(self);
            }
            self.step(event);
            check::after_step(self)?;
        }
        self.now_us = end_us;
        check::at_end(self)
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => {
                let n = &self.nodes[to];
                if !n.up {
                    return;
                }
                if n.suspended_until_us > self.now_us {
                    // Its kernel keeps the message; the node reads it on waking.
                    let wake = n.suspended_until_us - self.now_us;
                    self.at_us(wake, Event::Deliver { from, to, msg });
                    return;
                }
                node::deliver(self, from, to, *msg);
            }
            Event::Tick { node, incarnation } => {
                let n = &self.nodes[node];
                if !n.up || n.incarnation != incarnation {
                    return;
                }
                if n.suspended_until_us <= self.now_us {
                    node::tick(self, node);
                }
                self.at_us(TICK_US, Event::Tick { node, incarnation });
            }
            Event::Restart { node } => node::restart(self, node),
            Event::Fault => faults::act(self),
        }
    }

    /// Puts a message on the wire: lost, delayed, duplicated as the shape
    /// says, and never across a cut link. A node's message to itself is
    /// handled at once.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        self.stats.messages += 1;
        if from == to {
            node::deliver(self, from, to, msg);
            return;
        }
        if self.cut.get(&(from, to)).is_some_and(|&u| u > self.now_us) {
            return;
        }
        let faults = self.faults_on;
        if faults && self.rng.below(1000) < self.shape.loss_permille {
            return;
        }
        let copies = 1 + u64::from(faults && self.rng.below(1000) < self.shape.dup_permille);
        for _ in 0..copies {
            let mut delay_us = 100 + self.rng.below(self.shape.max_delay_ms * 1_000);
            if faults && self.rng.below(1000) < self.shape.straggler_permille {
                delay_us += self.rng.below(STRAGGLER_MAX_MS * 1_000);
            }
            let msg = Box::new(msg.clone());
            self.at_us(delay_us, Event::Deliver { from, to, msg });
        }
    }
}

/// Runs one seed with `bugs_on` switched on; a broken invariant is an
/// error naming the seed, its shape, the bugs and the last steps.
pub fn run_seed(seed: u64, bugs_on: &[Bug]) -> Result<Stats, String> {
    bugs::with(bugs_on, || {
        let mut world = World::new(seed);
        let result = world.run();
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{:?}\n{}", world.shape, world.trace.join("\n"));
        }
        match result {
            Ok(()) => Ok(world.stats.clone()),
            Err(why) => Err(format!(
                "seed {seed} ({:?}, bugs {bugs_on:?}): {why}\nreplay: SIM_SEED={seed} SIM_BUGS={} cargo test -p meshnode --lib failover_simulation_replays_one_seed -- --nocapture\nlast steps:\n{}",
                world.shape,
                bug_names(bugs_on),
                world.trace.join("\n")
            )),
        }
    })
}

#[cfg(test)]
mod tests;
