//! A seeded, replayable simulation of the membership protocol at 100 to
//! 10,000 nodes (issue 19, item 4), after TigerBeetle's VOPR and this
//! repo's `failover::sim`: N real [`Membership`] machines exchange their
//! real encoded messages over a geographic network model ([`net`]); a
//! separate fault actor ([`faults`]) kills a share of the nodes at once,
//! partitions the fleet and makes a link flap; the oracles ([`check`])
//! run at every step. Nothing here is wall-clock: a seed replays a run.
//!
//! The run: the nodes start one after another over `start_spread_ms`,
//! each joining through up to three seeds among those started before it
//! (as discovery would find them); once every node knows every other
//! (convergence), the run waits for every piggyback queue to drain (the
//! cold start's join notices; at most `drain_limit_ms`), then a window of
//! `steady_ms` measures the background traffic; a late joiner starts and
//! the time until all know it is measured; then the faults, and the time
//! until every alive node declared every killed one down.

pub mod check;
pub mod faults;
pub mod net;
mod run;

pub use faults::FaultPlan;
pub use run::{run, Report};

use crate::{Membership, NodeId, SplitMix64};

#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: usize,
    pub seed: u64,
    /// Datagram loss probability.
    pub loss: f64,
    pub start_spread_ms: u64,
    /// Give up on convergence after this long.
    pub converge_limit_ms: u64,
    pub steady_ms: u64,
    pub faults: FaultPlan,
    /// How long the run goes on after the faults start.
    pub after_faults_ms: u64,
    /// The longest wait, after convergence, for the piggyback queues to
    /// drain before the traffic window.
    pub drain_limit_ms: u64,
    /// Print the simulated time every simulated minute (long runs).
    pub progress: bool,
}

impl Config {
    pub fn new(nodes: usize, seed: u64) -> Config {
        Config {
            nodes,
            seed,
            loss: 0.0,
            start_spread_ms: 1_000,
            converge_limit_ms: 300_000,
            steady_ms: 20_000,
            faults: FaultPlan {
                kill: Some((0.10, 0)),
                ..FaultPlan::default()
            },
            after_faults_ms: 60_000,
            drain_limit_ms: 600_000,
            progress: false,
        }
    }
}

pub struct SimNode {
    pub m: Membership,
    pub alive: bool,
    pub started: bool,
    /// The pending tick's time (µs), so that stale ticks are skipped.
    tick_at: Option<u64>,
    pub sent_bytes: u64,
    pub sent_messages: u64,
    pub received_bytes: u64,
}

pub struct World {
    pub nodes: Vec<SimNode>,
    pub net: net::Net,
    pub rng: SplitMix64,
    pub faults: faults::FaultLog,
    pub oracles: check::Oracles,
    pub decode_errors: u64,
    pub messages: u64,
    /// Bytes sent per message kind (the wire's kind byte), for the report.
    pub bytes_by_kind: [u64; 6],
}

/// A node's id: random bytes (ids sort in no particular order of
/// index), with the index in its last four bytes for the simulator.
pub fn node_id(index: usize, rng: &mut SplitMix64) -> NodeId {
    let mut id = [0u8; 32];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    id[28..].copy_from_slice(&(index as u32).to_le_bytes());
    NodeId(id)
}

pub fn index_of(id: &NodeId) -> usize {
    let mut b = [0u8; 4];
    b.copy_from_slice(&id.0[28..]);
    u32::from_le_bytes(b) as usize
}

impl World {
    /// A random share of the started, alive nodes (at least one).
    pub fn pick(&mut self, share: f64) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].started)
            .collect();
        let count = ((pool.len() as f64 * share).round() as usize).clamp(1, pool.len());
        for i in 0..count {
            let j = i + self.rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }
}

#[cfg(test)]
mod tests;
