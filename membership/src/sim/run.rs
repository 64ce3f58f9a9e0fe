//! The event loop of the simulation and its report.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{check, faults, net::Net, node_id, Config, SimNode, World};
use crate::{Action, Membership, SplitMix64};

/// How often the controller checks convergence and detection (µs).
const CHECK_EVERY_US: u64 = 100_000;
/// After the traffic window, before the faults: the late joiner's join.
const LATE_JOIN_GRACE_MS: u64 = 20_000;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Start(usize),
    Tick(usize),
    Deliver {
        to: usize,
        from: usize,
        stream: bool,
        bytes: Vec<u8>,
    },
}

/// What a run measured. Times are simulated milliseconds; traffic is
/// bytes per second per node over the steady window.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub nodes: usize,
    pub seed: u64,
    /// From the first node's start until every node knew every other.
    pub converged_ms: Option<u64>,
    /// From convergence until every piggyback queue was empty.
    pub drained_ms: Option<u64>,
    /// Bytes one node sent, on average, from its start until then.
    pub cold_start_sent_mean_bytes: u64,
    pub sent_mean_bps: f64,
    pub sent_max_bps: f64,
    pub received_mean_bps: f64,
    pub received_max_bps: f64,
    /// Messages one node sent per second, on average (each costs a
    /// transport header on top of its bytes).
    pub sent_messages_per_s: f64,
    /// Of the mean sent: ping, ack, ping request, sync request, sync page.
    pub sent_by_kind_bps: [f64; 5],
    /// Until every node knew a node that joined the converged fleet.
    pub late_join_ms: Option<u64>,
    pub killed: usize,
    /// From the kill until every alive node declared every killed one down.
    pub detection_ms: Option<u64>,
    /// From a partition's heal until every node knew every other again.
    pub heal_converged_ms: Option<u64>,
    pub false_downs: u64,
    pub false_suspicions: u64,
    pub partition_downs: u64,
    pub messages: u64,
    pub decode_errors: u64,
    pub simulated_ms: u64,
}

struct Sim {
    w: World,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    cfg: Config,
    report: Report,
    /// Set at convergence: (traffic window start, its end, faults' time).
    plan: Option<(u64, u64, u64)>,
    snapshot: Vec<(u64, u64, u64)>,
    converged_at_us: Option<u64>,
    kinds_at_window: [u64; 6],
    end_us: u64,
}

/// Runs one seeded simulation; the same config gives the same report.
pub fn run(cfg: &Config) -> Report {
    let mut rng = SplitMix64(cfg.seed);
    let total = cfg.nodes + 1; // the last one is the late joiner
    let net = Net::new(total, cfg.loss, &mut rng);
    let nodes = (0..total)
        .map(|i| SimNode {
            m: Membership::new(node_id(i, &mut rng), 0, 0),
            alive: true,
            started: false,
            tick_at: None,
            sent_bytes: 0,
            sent_messages: 0,
            received_bytes: 0,
        })
        .collect();
    let w = World {
        nodes,
        net,
        rng,
        faults: faults::FaultLog::default(),
        oracles: check::Oracles::default(),
        decode_errors: 0,
        messages: 0,
        bytes_by_kind: [0; 6],
    };
    let report = Report {
        nodes: cfg.nodes,
        seed: cfg.seed,
        ..Report::default()
    };
    let end_us = cfg.converge_limit_ms * 1_000;
    let mut sim = Sim {
        w,
        queue: BinaryHeap::new(),
        seq: 0,
        cfg: cfg.clone(),
        report,
        plan: None,
        snapshot: Vec::new(),
        kinds_at_window: [0; 6],
        converged_at_us: None,
        end_us,
    };
    for i in 0..cfg.nodes {
        let at = i as u64 * cfg.start_spread_ms * 1_000 / cfg.nodes as u64;
        sim.push(at, Event::Start(i));
    }
    sim.run();
    sim.report.false_downs = sim.w.oracles.false_downs;
    sim.report.false_suspicions = sim.w.oracles.false_suspicions;
    sim.report.partition_downs = sim.w.oracles.partition_downs;
    sim.report.messages = sim.w.messages;
    sim.report.decode_errors = sim.w.decode_errors;
    sim.report
}

impl Sim {
    fn push(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_us, self.seq, event)));
    }

    fn run(&mut self) {
        let mut next_check = 0;
        while let Some(Reverse((t, _, event))) = self.queue.pop() {
            while next_check <= t {
                if self.cfg.progress && next_check % 60_000_000 == 0 {
                    eprintln!(
                        "simulated {} s, {} events queued",
                        next_check / 1_000_000,
                        self.queue.len()
                    );
                }
                if !self.control(next_check) {
                    self.report.simulated_ms = next_check / 1_000;
                    return;
                }
                next_check += CHECK_EVERY_US;
            }
            match event {
                Event::Start(i) => self.start(i, t),
                Event::Tick(i) => self.tick(i, t),
                Event::Deliver {
                    to,
                    from,
                    stream,
                    bytes,
                } => self.deliver(to, from, stream, &bytes, t),
            }
        }
    }

    fn start(&mut self, i: usize, now_us: u64) {
        let seed = self.cfg.seed ^ SplitMix64(i as u64).next_u64();
        let id = self.w.nodes[i].m.id();
        let mut seeds = Vec::new();
        let pool: Vec<usize> = (0..self.w.nodes.len())
            .filter(|&j| self.w.nodes[j].started && self.w.nodes[j].alive)
            .collect();
        for _ in 0..crate::limits::MAX_JOIN_SEEDS.min(pool.len()) {
            let j = pool[self.w.rng.below(pool.len() as u64) as usize];
            seeds.push(self.w.nodes[j].m.id());
        }
        let node = &mut self.w.nodes[i];
        node.m = Membership::new(id, seed, now_us / 1_000);
        node.started = true;
        let mut out = Vec::new();
        node.m.join(&seeds, &mut out);
        self.carry_out(i, out, now_us);
    }

    fn tick(&mut self, i: usize, now_us: u64) {
        let node = &mut self.w.nodes[i];
        if node.tick_at != Some(now_us) || !node.alive {
            return;
        }
        node.tick_at = None;
        let net = &self.w.net;
        let mut distance = |id: &crate::NodeId| Some(net.rtt_ms(i, super::index_of(id)));
        let mut out = Vec::new();
        node.m.tick(now_us / 1_000, &mut distance, &mut out);
        self.carry_out(i, out, now_us);
    }

    fn deliver(&mut self, to: usize, from: usize, stream: bool, bytes: &[u8], now_us: u64) {
        let _ = stream;
        let node = &mut self.w.nodes[to];
        if !node.alive || !node.started {
            return;
        }
        node.received_bytes += bytes.len() as u64;
        let mut out = Vec::new();
        let from_id = self.w.nodes[from].m.id();
        if self.w.nodes[to]
            .m
            .handle(from_id, bytes, now_us / 1_000, &mut out)
            .is_err()
        {
            self.w.decode_errors += 1;
        }
        self.carry_out(to, out, now_us);
    }

    /// Sends what a node asked to send, runs the per-step oracles, and
    /// schedules its next tick.
    fn carry_out(&mut self, i: usize, out: Vec<Action>, now_us: u64) {
        for action in out {
            match action {
                Action::Send { to, bytes, stream } => {
                    let to = super::index_of(&to);
                    self.w.nodes[i].sent_bytes += bytes.len() as u64;
                    self.w.nodes[i].sent_messages += 1;
                    self.w.messages += 1;
                    let kind = usize::from(bytes[1]).min(5);
                    self.w.bytes_by_kind[kind] += bytes.len() as u64;
                    if let Some(d) = self.w.net.delay_us(i, to, stream, &mut self.w.rng) {
                        self.push(
                            now_us + d,
                            Event::Deliver {
                                to,
                                from: i,
                                stream,
                                bytes,
                            },
                        );
                    }
                }
                Action::StateChanged { id, state } => {
                    check::on_state_changed(&mut self.w, i, id, state, now_us)
                }
                Action::Rtt { .. } => {}
            }
        }
        let deadline = (self.w.nodes[i].m.next_deadline_ms() * 1_000).max(now_us);
        let node = &mut self.w.nodes[i];
        if node.tick_at.is_none_or(|t| deadline < t) {
            node.tick_at = Some(deadline);
            self.push(deadline, Event::Tick(i));
        }
    }
}

impl Sim {
    /// The phases of a run, checked every [`CHECK_EVERY_US`]; false ends it.
    fn control(&mut self, now_us: u64) -> bool {
        let late = self.cfg.nodes;
        let Some((_, window_end, faults_at)) = self.plan else {
            self.converge_and_drain(now_us);
            return now_us < self.end_us;
        };
        if now_us == window_end {
            self.measure_traffic();
            self.push(now_us, Event::Start(late));
        }
        if now_us > window_end
            && self.report.late_join_ms.is_none()
            && check::all_know(&self.w, late)
        {
            self.report.late_join_ms = Some((now_us - window_end) / 1_000);
        }
        if now_us >= faults_at {
            let plan = self.cfg.faults.clone();
            faults::act(&mut self.w, &plan, faults_at, now_us);
            self.observe_faults(now_us);
        }
        now_us < self.end_us && !(now_us > faults_at && self.all_measured())
    }

    /// Before the traffic window: waits for convergence, then for every
    /// node's piggyback queue to drain (the cold start's join notices), so
    /// that the window measures background traffic, not the cold start.
    fn converge_and_drain(&mut self, now_us: u64) {
        let Some(converged_us) = self.converged_at_us else {
            if now_us >= self.cfg.start_spread_ms * 1_000 && check::converged(&self.w) {
                self.converged_at_us = Some(now_us);
                self.report.converged_ms = Some(now_us / 1_000);
                self.end_us = now_us + (self.cfg.drain_limit_ms + 1_000) * 1_000;
            }
            return;
        };
        let drained = self
            .w
            .nodes
            .iter()
            .filter(|n| n.alive && n.started)
            .all(|n| n.m.pending_broadcasts() == 0);
        if !drained && now_us < converged_us + self.cfg.drain_limit_ms * 1_000 {
            return;
        }
        if std::env::var_os("SIM_DEBUG").is_some() {
            for (i, n) in self
                .w
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive && n.started && n.m.pending_broadcasts() > 0)
                .take(5)
            {
                eprintln!(
                    "node {i}: {} pending, live {}, stats {:?}",
                    n.m.pending_broadcasts(),
                    n.m.live_members(),
                    n.m.stats
                );
            }
        }
        let live: Vec<&SimNode> = self
            .w
            .nodes
            .iter()
            .filter(|n| n.alive && n.started)
            .collect();
        self.report.drained_ms = drained.then_some((now_us - converged_us) / 1_000);
        self.report.cold_start_sent_mean_bytes =
            live.iter().map(|n| n.sent_bytes).sum::<u64>() / live.len().max(1) as u64;
        self.kinds_at_window = self.w.bytes_by_kind;
        self.snapshot = self
            .w
            .nodes
            .iter()
            .map(|n| (n.sent_bytes, n.received_bytes, n.sent_messages))
            .collect();
        let window_end = now_us + self.cfg.steady_ms * 1_000;
        let faults_at = window_end + LATE_JOIN_GRACE_MS * 1_000;
        self.plan = Some((now_us, window_end, faults_at));
        self.end_us = faults_at + self.cfg.after_faults_ms * 1_000;
    }

    fn observe_faults(&mut self, now_us: u64) {
        let killed = self.w.faults.killed.len();
        if killed > 0 && self.w.oracles.down_seen.len() != killed {
            self.w.oracles.down_seen = vec![0; killed];
            self.w.oracles.detected_at_us = vec![None; killed];
            self.report.killed = killed;
        }
        if killed > 0
            && self.report.detection_ms.is_none()
            && check::detections(&mut self.w, now_us)
        {
            let at = self.w.faults.killed_at_us.unwrap_or(now_us);
            self.report.detection_ms = Some((now_us - at) / 1_000);
        }
        if let Some(healed) = self.w.faults.healed_at_us {
            if self.report.heal_converged_ms.is_none() && check::converged(&self.w) {
                self.report.heal_converged_ms = Some((now_us - healed) / 1_000);
            }
        }
    }

    /// Whether the run has all it measures (a flapping link runs to the end).
    fn all_measured(&self) -> bool {
        let f = &self.cfg.faults;
        (f.kill.is_none() || self.report.detection_ms.is_some())
            && (f.partition.is_none() || self.report.heal_converged_ms.is_some())
            && f.flap_period_ms.is_none()
            && self.report.late_join_ms.is_some()
    }

    fn measure_traffic(&mut self) {
        let secs = self.cfg.steady_ms as f64 / 1_000.0;
        let (mut sent, mut received) = (Vec::new(), Vec::new());
        let mut messages = 0;
        for (n, (s0, r0, m0)) in self.w.nodes.iter().zip(&self.snapshot) {
            if n.alive && n.started {
                sent.push((n.sent_bytes - s0) as f64 / secs);
                received.push((n.received_bytes - r0) as f64 / secs);
                messages += n.sent_messages - m0;
            }
        }
        self.report.sent_messages_per_s = messages as f64 / secs / sent.len().max(1) as f64;
        let nodes = sent.len().max(1) as f64;
        for (k, (now, then)) in self
            .w
            .bytes_by_kind
            .iter()
            .zip(self.kinds_at_window)
            .enumerate()
            .skip(1)
        {
            self.report.sent_by_kind_bps[k - 1] = (now - then) as f64 / secs / nodes;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        self.report.sent_mean_bps = mean(&sent);
        self.report.sent_max_bps = max(&sent);
        self.report.received_mean_bps = mean(&received);
        self.report.received_max_bps = max(&received);
    }
}
