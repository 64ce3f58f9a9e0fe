//! The oracles, checked at every step: no member that is alive and that
//! the observer can reach is declared down (false positives; a suspicion
//! of one is counted apart, as it is allowed); every node learns of every
//! member (convergence) and of a late joiner; every killed node is
//! declared down by every alive node. Times are recorded for the report.

use super::World;
use crate::{NodeId, PeerState};

#[derive(Default, Debug, Clone)]
pub struct Oracles {
    /// Alive, reachable members declared down.
    pub false_downs: u64,
    /// Alive, reachable members suspected (allowed; refuted later).
    pub false_suspicions: u64,
    /// Members declared down once a partition cut the fleet: each side
    /// rightly declares the other down, and after the heal those death
    /// notices reach the other side before the refutations do (as in
    /// memberlist); counted apart, the check is that the fleet converges.
    pub partition_downs: u64,
    /// For each killed node: how many alive observers declared it down.
    pub down_seen: Vec<u32>,
    /// When the last alive observer declared each killed node down.
    pub detected_at_us: Vec<Option<u64>>,
}

/// Called for every state change a node reports.
pub fn on_state_changed(w: &mut World, observer: usize, id: NodeId, state: PeerState, now_us: u64) {
    let target = super::index_of(&id);
    if !w.faults.partitioned.is_empty() && state == PeerState::Down && w.nodes[target].alive {
        w.oracles.partition_downs += 1;
        return;
    }
    let exempt = w
        .faults
        .flapping
        .is_some_and(|(a, b)| (a, b) == (observer.min(target), observer.max(target)));
    let wrong = w.nodes[target].alive && w.net.connected(observer, target) && !exempt;
    match state {
        PeerState::Down if wrong => {
            w.oracles.false_downs += 1;
            if w.oracles.false_downs <= 3 {
                eprintln!(
                    "false down: node {observer} declared {target} down at {} ms",
                    now_us / 1000
                );
            }
        }
        PeerState::Unreachable if wrong => w.oracles.false_suspicions += 1,
        PeerState::Down => {
            if let Some(k) = w.faults.killed.iter().position(|&v| v == target) {
                w.oracles.down_seen[k] += 1;
            }
        }
        _ => {}
    }
}

/// Whether every started, alive node knows every other as live.
pub fn converged(w: &World) -> bool {
    let live = w.nodes.iter().filter(|n| n.alive && n.started).count();
    w.nodes
        .iter()
        .filter(|n| n.alive && n.started)
        .all(|n| n.m.live_members() == live)
}

/// Whether every alive node knows `id` as alive.
pub fn all_know(w: &World, id: usize) -> bool {
    let id = w.nodes[id].m.id();
    w.nodes
        .iter()
        .filter(|n| n.alive && n.started)
        .all(|n| n.m.state_of(&id) == Some(crate::MemberState::Alive))
}

/// Records when each killed node was declared down by every alive node;
/// true once all were.
pub fn detections(w: &mut World, now_us: u64) -> bool {
    let alive = w.nodes.iter().filter(|n| n.alive && n.started).count() as u32;
    let mut all = true;
    for k in 0..w.faults.killed.len() {
        if w.oracles.detected_at_us[k].is_none() && w.oracles.down_seen[k] >= alive {
            w.oracles.detected_at_us[k] = Some(now_us);
        }
        all &= w.oracles.detected_at_us[k].is_some();
    }
    all
}
