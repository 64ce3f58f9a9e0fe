//! A seeded simulation of the whole migration protocol, in the manner of
//! TigerBeetle's VOPR: N nodes in one process drive the real state machines
//! ([`super::source::Source`], [`super::destination::Destination`], the
//! rules of [`super::record`], the [`super::nonce::NonceBook`]) over a
//! simulated network that delays, drops, duplicates and reorders messages
//! and partitions nodes, on simulated disks that keep only what was made
//! durable when a node crashes. Migrations are asked for by hand, by drain
//! and by placement, racing each other, and a failed one is often asked for
//! again at once. The invariants are checked after every step ([`check`]);
//! once the faults stop, a move asked for must happen ([`liveness`]).
//!
//! Everything comes from the seed: a failing seed prints itself, and
//! `SIM_SEED=N cargo test -p meshnode --lib simulation_replays_one_seed`
//! replays it exactly, printing its trace (`SIM_BUGS` names the deliberate
//! bugs of a seed that failed with them). The faults are injected by a
//! separate actor ([`faults`]) from the nodes, as VOPR does.
//!
//! `cargo test -p meshnode --lib simulation` runs a few hundred seeds;
//! `SIM_SEEDS=100000 cargo test -p meshnode --lib simulation_many_seeds -- --ignored --nocapture`
//! runs many more, outside CI.

mod check;
mod faults;
mod liveness;
mod node;
mod source_run;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use protocol::fuzzing::SplitMix64;
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

pub use super::bugs::parse_bugs;
use super::bugs::{self, bug_names, Bug};
use super::source::Input;
use check::Ghost;
use node::{Msg, SimNode};

/// A node's name in the simulation.
pub type NodeId = u8;

/// How one run is shaped; every field comes from the seed.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: u8,
    pub vessels: u8,
    /// How long faults are injected and migrations asked for.
    pub fault_ms: u64,
    /// How long the healed mesh then has to settle.
    pub heal_ms: u64,
    /// Per mille of messages lost, duplicated.
    pub loss_permille: u64,
    pub dup_permille: u64,
    /// The largest delay of a message (so reordering).
    pub max_delay_ms: u64,
    /// Per mille of messages that straggle: delayed by up to
    /// [`STRAGGLER_MAX_MS`] (a retransmission, a congested path), so that
    /// an old message can arrive after a newer exchange finished.
    pub straggler_permille: u64,
    /// Mean time between node crashes (0: none).
    pub crash_every_ms: u64,
    /// Mean time between partitions (0: none).
    pub partition_every_ms: u64,
}

impl Shape {
    fn from_seed(rng: &mut SplitMix64) -> Shape {
        Shape {
            nodes: 2 + rng.below(4) as u8,
            vessels: 1 + rng.below(3) as u8,
            fault_ms: 5_000 + rng.below(15_000),
            heal_ms: 20_000,
            loss_permille: rng.below(80),
            dup_permille: rng.below(80),
            max_delay_ms: 1 + rng.below(60),
            straggler_permille: rng.below(60),
            crash_every_ms: [0, 500, 2_000, 5_000][rng.below(4) as usize],
            partition_every_ms: [0, 1_000, 4_000][rng.below(3) as usize],
        }
    }
}

/// Mixed into a seed for the checkpoints' randomness.
const CHECKPOINT_SEED_SALT: u64 = 0xc4ec_0000_0000_0013;

/// How often every node checkpoints the vessels it runs (simulated time):
/// often against a move's few round trips, so that checkpoints race moves.
const CHECKPOINT_EVERY_MS: u64 = 50;

/// Something that happens at a time.
#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    /// A local step of a node finished (a disk write, a pause, a copy).
    Local {
        node: NodeId,
        incarnation: u64,
        step: node::LocalStep,
    },
    /// A source's request got no answer in time.
    Timeout {
        node: NodeId,
        incarnation: u64,
        request: u64,
    },
    /// A source's retry timer.
    Retry {
        node: NodeId,
        incarnation: u64,
        vessel: VesselId,
        run: u64,
    },
    /// The fault actor's turn.
    Fault,
    /// Every node checkpoints the vessels it runs ([`node::checkpoint_tick`]).
    Checkpoint,
    /// Someone asks for a migration.
    Ask,
    /// The liveness check asks for a move of `vessel` ([`liveness`]).
    Probe {
        vessel: VesselId,
    },
    /// Whoever asked for a move that failed asks for the same move again.
    AskAgain {
        from: NodeId,
        vessel: VesselId,
        to: NodeId,
    },
}

/// Counts, to show that a run exercised the protocol.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub asked: u64,
    pub started: u64,
    pub committed: u64,
    pub aborted: u64,
    pub refused: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub messages: u64,
    /// Offers at exactly the epoch the destination records (the case the
    /// equal-epoch rule refuses): a second attempt by one source at one
    /// epoch to one destination, or a late or repeated offer.
    pub equal_epoch_offers: u64,
    /// Checkpoints that became a vessel's record.
    pub checkpoints: u64,
}

/// The simulated world.
pub struct World {
    rng: SplitMix64,
    /// The checkpoints' own randomness (their delays, their images), so
    /// that adding them left every earlier seed's moves, faults and
    /// timings as they were: a seed that caught a bug before still runs
    /// the same story, now with checkpoints racing it.
    checkpoint_rng: SplitMix64,
    shape: Shape,
    now_ms: u64,
    base: Instant,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    /// Pairs that cannot talk, until the time given.
    cut: BTreeMap<(NodeId, NodeId), u64>,
    faults_on: bool,
    next_request: u64,
    ghost: Ghost,
    stats: Stats,
    trace: Vec<String>,
    /// The moves asked for after the heal, which must happen.
    liveness: liveness::Probes,
    options: Options,
}

/// What a run checks beyond the safety invariants.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// After the heal, ask each vessel's owner for a move and require that
    /// it happens ([`liveness`]). On unless a test turns it off.
    pub liveness: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { liveness: true }
    }
}

/// Lines of trace kept for a failing seed (the last ones).
const TRACE_LINES: usize = 400;

/// The longest extra delay of a straggling message.
const STRAGGLER_MAX_MS: u64 = 5_000;

/// How long a request waits for its answer.
const REQUEST_TIMEOUT_MS: u64 = 1_000;

impl World {
    fn new(seed: u64, options: Options) -> World {
        let mut rng = SplitMix64(seed);
        let shape = Shape::from_seed(&mut rng);
        let nodes = (0..shape.nodes).map(SimNode::new).collect();
        let mut w = World {
            rng,
            checkpoint_rng: SplitMix64(seed ^ CHECKPOINT_SEED_SALT),
            shape,
            now_ms: 0,
            base: Instant::now(),
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            cut: BTreeMap::new(),
            faults_on: true,
            next_request: 1,
            ghost: Ghost::default(),
            stats: Stats::default(),
            trace: Vec::new(),
            liveness: liveness::Probes::default(),
            options,
        };
        w.deploy();
        w.at(0, Event::Fault);
        w.at(0, Event::Ask);
        w.at(0, Event::Checkpoint);
        w
    }

    /// Every vessel starts at epoch 1 on a node of its own (round robin).
    fn deploy(&mut self) {
        for v in 0..self.shape.vessels {
            let id = VesselId([v; 8]);
            let node = v % self.shape.nodes;
            let image = self.fresh_hash();
            self.nodes[node as usize].deploy(id, image);
            self.ghost.deployed(id);
        }
    }

    fn vessels(&self) -> Vec<VesselId> {
        (0..self.shape.vessels).map(|v| VesselId([v; 8])).collect()
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn fresh_hash(&mut self) -> Hash {
        let mut h = [0u8; 32];
        for c in h.chunks_mut(8) {
            c.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        Hash(h)
    }

    fn at(&mut self, delay_ms: u64, event: Event) {
        self.seq += 1;
        self.events
            .insert((self.now_ms + delay_ms, self.seq), event);
    }

    fn note(&mut self, line: String) {
        if self.trace.len() >= TRACE_LINES {
            self.trace.remove(0);
        }
        self.trace.push(format!("{:>7} ms {line}", self.now_ms));
    }

    /// Runs the faulty phase, then heals everything and lets it settle.
    fn run(&mut self) -> Result<(), String> {
        let end = self.shape.fault_ms + self.shape.heal_ms;
        while let Some((&(t, seq), _)) = self.events.iter().next() {
            if t > end {
                break;
            }
            let event = self.events.remove(&(t, seq)).expect("just seen");
            self.now_ms = t;
            if self.faults_on && t >= self.shape.fault_ms {
                self.heal();
            }
            self.step(event);
            check::after_step(self)?;
        }
        check::at_end(self)
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Event::Local {
                node,
                incarnation,
                step,
            } => {
                if self.nodes[node as usize].incarnation == incarnation {
                    node::local_done(self, node, step);
                }
            }
            Event::Timeout {
                node,
                incarnation,
                request,
            } => {
                if self.nodes[node as usize].incarnation == incarnation {
                    source_run::timed_out(self, node, request);
                }
            }
            Event::Retry {
                node,
                incarnation,
                vessel,
                run,
            } => {
                if self.nodes[node as usize].incarnation == incarnation {
                    source_run::feed(self, node, vessel, run, Input::RetryDue);
                }
            }
            Event::Fault => faults::act(self),
            Event::Checkpoint => {
                node::checkpoint_tick(self);
                self.at(CHECKPOINT_EVERY_MS, Event::Checkpoint);
            }
            Event::Ask => faults::ask(self),
            Event::Probe { vessel } => liveness::ask(self, vessel),
            Event::AskAgain { from, vessel, to } => faults::ask_again(self, from, vessel, to),
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if !self.nodes[to as usize].up {
            return;
        }
        match msg {
            Msg::Request { id, body } => node::serve(self, to, from, id, body),
            Msg::Response { id, body } => source_run::answered(self, to, id, body),
        }
    }

    /// Puts a message on the wire: lost, delayed, duplicated as the shape
    /// says, and never across a cut.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        self.stats.messages += 1;
        if self.is_cut(from, to) {
            return;
        }
        let faults = self.faults_on;
        if faults && self.rng.below(1000) < self.shape.loss_permille {
            return;
        }
        let copies = if faults && self.rng.below(1000) < self.shape.dup_permille {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = 1 + self.rng.below(self.shape.max_delay_ms);
            if faults && self.rng.below(1000) < self.shape.straggler_permille {
                delay += self.rng.below(STRAGGLER_MAX_MS);
            }
            let msg = msg.clone();
            self.at(delay, Event::Deliver { from, to, msg });
        }
    }

    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        let key = (a.min(b), a.max(b));
        self.cut.get(&key).is_some_and(|&until| until > self.now_ms)
    }

    /// The end of the faults: every cut healed, every node up, no more
    /// migrations asked for; what runs must now settle.
    fn heal(&mut self) {
        self.faults_on = false;
        self.cut.clear();
        for n in 0..self.nodes.len() {
            if !self.nodes[n].up {
                node::restart(self, n as NodeId);
            }
        }
        self.note("healed: no more faults".into());
        if self.options.liveness {
            liveness::schedule(self);
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }
}

/// Runs one seed with `bugs` switched on (none for the protocol as it
/// is); an invariant broken is an error that names the seed, the bugs, the
/// invariant and the run's last steps.
pub fn run_seed(seed: u64, bugs_on: &[Bug]) -> Result<Stats, String> {
    run_seed_with(seed, bugs_on, Options::default())
}

/// [`run_seed`], with `options`.
pub fn run_seed_with(seed: u64, bugs_on: &[Bug], options: Options) -> Result<Stats, String> {
    bugs::with(bugs_on, || {
        let mut world = World::new(seed, options);
        match world.run() {
            Ok(()) => Ok(world.stats.clone()),
            Err(why) => Err(format!(
                "seed {seed} ({:?}, bugs {bugs_on:?}, {options:?}): {why}\nreplay: SIM_SEED={seed} SIM_BUGS={} SIM_LIVENESS={} cargo test -p meshnode --lib simulation_replays_one_seed -- --nocapture\nlast steps:\n{}",
                world.shape,
                bug_names(bugs_on),
                u8::from(options.liveness),
                world.trace.join("\n")
            )),
        }
    })
}

#[cfg(test)]
mod tests;
