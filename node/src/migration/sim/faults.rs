//! The actors outside the nodes: the fault injector (crashes, restarts,
//! partitions) and the users and policies that ask for migrations (by
//! hand, by drain, by placement). Both draw from the world's seed.

use protocol::vessel::VesselId;

use super::node::{self, crash, restart};
use super::{Event, NodeId, World};

/// How often the fault actor looks for something to break.
const FAULT_TICK_MS: u64 = 100;

/// Per mille of failed moves whose asker asks for the same move again (a
/// drain or placement that retries, a user who runs the command again).
const ASK_AGAIN_PERMILLE: u64 = 500;

/// The longest wait before asking again: soon, so that the second attempt
/// often races the first one's abort (two attempts by one source at one
/// epoch to one destination).
const ASK_AGAIN_MAX_MS: u64 = 300;

/// The fault actor's turn: maybe crash a node, restart one, or cut a link.
pub fn act(w: &mut World) {
    if !w.faults_on {
        return;
    }
    let shape = w.shape.clone();
    if shape.crash_every_ms > 0 && w.rng.below(shape.crash_every_ms / FAULT_TICK_MS) == 0 {
        let n = w.rng.below(shape.nodes as u64) as NodeId;
        if w.nodes[n as usize].up {
            crash(w, n);
        }
    }
    for n in 0..shape.nodes {
        // A node that is down comes back after about a second.
        if !w.nodes[n as usize].up && w.rng.below(10) == 0 {
            restart(w, n);
        }
    }
    if shape.partition_every_ms > 0 && w.rng.below(shape.partition_every_ms / FAULT_TICK_MS) == 0 {
        let a = w.rng.below(shape.nodes as u64) as NodeId;
        let b = w.rng.below(shape.nodes as u64) as NodeId;
        if a != b {
            let until = w.now_ms + 100 + w.rng.below(3_000);
            w.cut.insert((a.min(b), a.max(b)), until);
            w.stats.partitions += 1;
            w.note(format!("cut n{a} <-> n{b} until {until} ms"));
        }
    }
    w.at(FAULT_TICK_MS, Event::Fault);
}

/// Someone asks for a migration: a user by hand (of any node, right or
/// wrong), a drain (every vessel a node runs), or placement (the node that
/// runs a vessel moves it). They race each other and the faults.
pub fn ask(w: &mut World) {
    if !w.faults_on {
        return;
    }
    let nodes = w.shape.nodes as u64;
    let vessels = w.vessels();
    let pick = |w: &mut World| w.rng.below(nodes) as NodeId;
    match w.rng.below(3) {
        0 => {
            let (from, to) = (pick(w), pick(w));
            let v = vessels[w.rng.below(vessels.len() as u64) as usize];
            if from != to {
                node::ask_migrate(w, from, v, to, "by hand");
            }
        }
        1 => {
            let from = pick(w);
            let running: Vec<_> = w.nodes[from as usize].running.keys().copied().collect();
            for v in running {
                let to = (from + 1 + w.rng.below(nodes - 1) as NodeId) % nodes as NodeId;
                node::ask_migrate(w, from, v, to, "drain");
            }
        }
        _ => {
            let v = vessels[w.rng.below(vessels.len() as u64) as usize];
            let host = (0..nodes as NodeId).find(|n| w.nodes[*n as usize].running.contains_key(&v));
            if let Some(from) = host {
                let to = (from + 1 + w.rng.below(nodes - 1) as NodeId) % nodes as NodeId;
                node::ask_migrate(w, from, v, to, "placement");
            }
        }
    }
    let next = 20 + w.rng.below(400);
    w.at(next, Event::Ask);
}

/// A move failed: maybe its asker will ask for it again, soon.
pub fn maybe_ask_again(w: &mut World, from: NodeId, vessel: VesselId, to: NodeId) {
    if w.faults_on && w.rng.below(1000) < ASK_AGAIN_PERMILLE {
        let delay = w.rng.below(ASK_AGAIN_MAX_MS);
        w.at(delay, Event::AskAgain { from, vessel, to });
    }
}

/// The same move, asked for again.
pub fn ask_again(w: &mut World, from: NodeId, vessel: VesselId, to: NodeId) {
    if w.faults_on {
        node::ask_migrate(w, from, vessel, to, "asked again");
    }
}
