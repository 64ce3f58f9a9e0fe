//! The fault actor, apart from the nodes: it kills hosts for good or
//! crashes and restarts nodes, cuts the mesh into random pieces (some links
//! one way only) and suspends nodes. It draws from the world's seed, and
//! stops at the heal.

use protocol::lease::majority;

use super::node::{crash, node_of, restart, runs};
use super::{Event, NodeId, World};

/// How often the fault actor looks for something to break.
const FAULT_TICK_MS: u64 = 100;

/// How long a crashed node stays down, at most (real ms).
const DOWN_MAX_MS: u64 = 3_000;

/// One fault tick in this many, in a run with crashes, restarts a voter
/// that holds a waiting takeover off ([`aimed_restart`]).
const AIMED_CRASH_ONE_IN: u64 = 20;

/// How long a restarting process is away, at most.
const PROCESS_RESTART_MAX_MS: u64 = 300;

/// How long a cut lasts, at most.
const CUT_MAX_MS: u64 = 4_000;

/// How long a suspend lasts, at most: longer than any lease.
const SUSPEND_MAX_MS: u64 = 4_000;

pub fn act(w: &mut World) {
    if !w.faults_on {
        return;
    }
    let s = w.shape.clone();
    if s.crash_every_ms > 0 && w.rng.below(s.crash_every_ms / FAULT_TICK_MS) == 0 {
        crash_one(w);
    }
    if s.crash_every_ms > 0 && w.rng.below(AIMED_CRASH_ONE_IN) == 0 {
        aimed_restart(w);
    }
    if s.partition_every_ms > 0 && w.rng.below(s.partition_every_ms / FAULT_TICK_MS) == 0 {
        partition(w);
    }
    if s.suspend_every_ms > 0 && w.rng.below(s.suspend_every_ms / FAULT_TICK_MS) == 0 {
        if let Some(n) = victim(w) {
            let for_ms = 50 + w.rng.below(SUSPEND_MAX_MS);
            w.nodes[n].suspended_until_us = w.now_us + for_ms * 1_000;
            w.stats.suspends += 1;
            w.note(format!("n{n} suspended for {for_ms} ms"));
        }
    }
    if s.handoff_every_ms > 0 && w.rng.below(s.handoff_every_ms / FAULT_TICK_MS) == 0 {
        super::handoff::ask(w);
    }
    let every = s.reconfigure_every_ms / FAULT_TICK_MS;
    if every > 0 && w.reconfigure_rng.below(every) == 0 {
        super::reconfigure::ask(w);
    }
    w.at_us(FAULT_TICK_MS * 1_000, Event::Fault);
}

/// An up node: a third of the time the one that runs the vessel (a host
/// death), a third one of the other voters whose grant to it still holds
/// (the voters a restart makes forget a grant), else any.
fn victim(w: &mut World) -> Option<NodeId> {
    let n = w.nodes.len();
    let host = (0..n).find(|&i| runs(w, i));
    let granting: Vec<NodeId> = match host {
        Some(h) => (0..n).filter(|&i| i != h && granted_to(w, i, h)).collect(),
        None => Vec::new(),
    };
    let pick = match (host, w.rng.below(3)) {
        (Some(h), 0) => h,
        (Some(_), 1) if !granting.is_empty() => {
            granting[w.rng.below(granting.len() as u64) as usize]
        }
        _ => w.rng.below(n as u64) as NodeId,
    };
    (w.nodes[pick].up && !w.nodes[pick].dead).then_some(pick)
}

/// Whether node `v`'s voter holds a grant to node `h` now.
fn granted_to(w: &World, v: NodeId, h: NodeId) -> bool {
    let voter = &w.nodes[v].voter;
    let now = w.nodes[v].clock.local_ms(w.now_us);
    voter.granted_to.as_ref() == Some(&w.nodes[h].peer) && now < voter.granted_until_ms
}

/// While a takeover waits for votes, a voter that holds it off with its
/// grant to the host restarts at once: the moment a voter that forgot its
/// grant could let the takeover in while the host still runs.
fn aimed_restart(w: &mut World) {
    let n = w.nodes.len();
    let (Some(h), true) = (
        (0..n).find(|&i| runs(w, i)),
        w.nodes.iter().any(|x| x.up && x.ballot.is_some()),
    ) else {
        return;
    };
    let granting: Vec<NodeId> = (0..n)
        .filter(|&i| i != h && w.nodes[i].up && granted_to(w, i, h))
        .collect();
    if granting.is_empty() {
        return;
    }
    let v = granting[w.rng.below(granting.len() as u64) as usize];
    crash(w, v, false);
    w.stats.crashes += 1;
    let down_ms = 5 + w.rng.below(PROCESS_RESTART_MAX_MS);
    w.at_us(down_ms * 1_000, Event::Restart { node: v });
}

/// Crashes a node; a quarter of them die for good, as long as a majority
/// of the voters is left alive.
fn crash_one(w: &mut World) {
    let Some(n) = victim(w) else { return };
    let for_good = may_die(w, n) && w.rng.below(4) == 0;
    crash(w, n, for_good);
    if for_good {
        w.stats.deaths += 1;
    } else {
        w.stats.crashes += 1;
        // Half are a process that restarts at once, half a board that
        // reboots.
        let down_ms = match w.rng.below(2) {
            0 => 5 + w.rng.below(PROCESS_RESTART_MAX_MS),
            _ => 50 + w.rng.below(DOWN_MAX_MS),
        };
        w.at_us(down_ms * 1_000, Event::Restart { node: n });
    }
}

/// Whether node `n` may die for good: every voter set that may still
/// matter (those of the certificates from the highest epoch run on, and
/// of the changes proposed now) keeps a majority alive without it.
fn may_die(w: &World, n: NodeId) -> bool {
    let mut sets = w.ghost.sets_from(w.ghost.ran);
    sets.extend(
        w.nodes
            .iter()
            .filter_map(|x| x.proposal.as_ref())
            .map(|p| p.ballot.body.voters.clone()),
    );
    sets.iter().all(|set| {
        let alive = set
            .iter()
            .filter_map(|p| node_of(w, p))
            .filter(|&i| i != n && !w.nodes[i].dead)
            .count();
        alive >= majority(set.len())
    })
}

/// Cuts a random piece of the mesh (a third of the time: the host alone;
/// a third: the host's link to one node) off the rest: every link across, both ways, or a third of the time one
/// way only (the piece hears the rest, the rest does not hear it, or the
/// other way round).
fn partition(w: &mut World) {
    let n = w.nodes.len();
    let mask = 1 + w.rng.below((1 << n) - 2);
    let mut piece: Vec<NodeId> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
    // A third of the cuts take the host alone off the rest (the
    // partition-failover case: a takeover races the old lease), a third
    // only its link to one other node (that node suspects it, while the
    // voters between the two still grant it).
    let mut only: Option<NodeId> = None;
    if let Some(h) = (0..n).find(|&i| runs(w, i)) {
        match w.rng.below(3) {
            0 => piece = vec![h],
            1 => {
                piece = vec![h];
                only = Some((h + 1 + w.rng.below(n as u64 - 1) as usize) % n);
            }
            _ => {}
        }
    }
    let until = w.now_us + (100 + w.rng.below(CUT_MAX_MS)) * 1_000;
    let way = w.rng.below(6);
    for a in 0..n {
        for b in 0..n {
            let across = piece.contains(&a) && !piece.contains(&b) && only.is_none_or(|o| o == b);
            if !across {
                continue;
            }
            if way != 0 {
                w.cut.insert((b, a), until);
            }
            if way != 1 {
                w.cut.insert((a, b), until);
            }
        }
    }
    w.stats.partitions += 1;
    let how = ["out only", "in only", "both ways"][way.min(2) as usize];
    let rest = only.map_or("the rest".to_string(), |o| format!("n{o}"));
    w.note(format!(
        "cut {piece:?} from {rest} ({how}) until {} ms",
        until / 1_000
    ));
}

/// The end of the faults: every link heals, every node that is not dead
/// comes back and wakes; what runs must now settle.
pub fn heal(w: &mut World) {
    w.faults_on = false;
    w.cut.clear();
    for n in 0..w.nodes.len() {
        w.nodes[n].suspended_until_us = w.nodes[n].suspended_until_us.min(w.now_us);
        restart(w, n);
    }
    w.note("healed: no more faults".into());
}
