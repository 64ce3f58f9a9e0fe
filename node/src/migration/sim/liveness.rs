//! The liveness check: once the faults stop, a move asked for must
//! happen. For each vessel, a while after the mesh healed, its owner is
//! asked to move it, to a node that keeps a `Prepared` record of that very
//! owner's move at the next epoch if there is one (a move whose abort was
//! lost: the case where a destination could refuse every later attempt),
//! else to any other node. A move that fails is asked for again a few
//! times; at the end each must have succeeded.

use std::collections::BTreeMap;

use protocol::vessel::VesselId;

use super::node;
use super::{Event, NodeId, World};
use crate::migration::record::Record;

/// How long after the heal the moves are asked for: stragglers sent
/// before the heal (at most [`super::STRAGGLER_MAX_MS`] late) have
/// arrived, and moves in flight have settled.
pub const ASK_AFTER_HEAL_MS: u64 = 6_000;

/// Tries of a move asked for after the heal. A healthy mesh can still fail
/// one (a vessel that does not pause in time, a simulated disk error), so
/// one failure is not a liveness bug; this many in a row are.
const TRIES: u32 = 5;

/// The wait between tries.
const RETRY_MS: u64 = 1_000;

/// One vessel's move asked for after the heal.
#[derive(Debug, Clone)]
pub struct Probe {
    pub to: NodeId,
    pub tries: u32,
    pub done: bool,
    /// Why the last try failed.
    pub last_failure: Option<String>,
}

/// The probes of a run, by vessel.
#[derive(Debug, Default)]
pub struct Probes {
    pub by_vessel: BTreeMap<VesselId, Probe>,
}

/// At the heal: schedule one probe per vessel.
pub fn schedule(w: &mut World) {
    for vessel in w.vessels() {
        w.at(ASK_AFTER_HEAL_MS, Event::Probe { vessel });
    }
}

/// A probe's turn: ask the owner of `vessel` to move it.
pub fn ask(w: &mut World, vessel: VesselId) {
    let owner = w
        .nodes
        .iter()
        .find_map(|n| n.running.get(&vessel).map(|e| (n.id, *e)));
    let Some((from, epoch)) = owner else {
        return failed(w, vessel, "no node runs it".into());
    };
    let to = match w.liveness.by_vessel.get(&vessel) {
        Some(p) => p.to,
        None => destination(w, vessel, from, epoch),
    };
    if to == from {
        // It moved there meanwhile (an earlier try that only looked failed).
        return succeeded(w, vessel, to);
    }
    let probe = w.liveness.by_vessel.entry(vessel).or_insert(Probe {
        to,
        tries: 0,
        done: false,
        last_failure: None,
    });
    probe.tries += 1;
    node::ask_migrate(w, from, vessel, to, "after the faults");
    if !w.nodes[from as usize].sources.contains_key(&vessel) {
        failed(w, vessel, format!("n{from} did not start the move"));
    }
}

/// The node that keeps `from`'s `Prepared` record at `epoch + 1`, if one
/// does; else another node, from the seed.
fn destination(w: &mut World, vessel: VesselId, from: NodeId, epoch: u64) -> NodeId {
    let stuck = w.nodes.iter().map(|n| n.id).find(|n| {
        matches!(w.nodes[*n as usize].record(vessel), Some(Record::Prepared { epoch: e, from: f, .. })
            if *e == epoch + 1 && f.as_slice() == [from])
    });
    if let Some(n) = stuck {
        w.note(format!(
            "probe: n{n} keeps a Prepared record of n{from}'s move of {vessel} at epoch {}",
            epoch + 1
        ));
        return n;
    }
    let nodes = w.shape.nodes as u64;
    (from + 1 + w.rng.below(nodes - 1) as NodeId) % nodes as NodeId
}

/// A move of `vessel` to `to` finished.
pub fn succeeded(w: &mut World, vessel: VesselId, to: NodeId) {
    if let Some(p) = w.liveness.by_vessel.get_mut(&vessel) {
        if p.to == to {
            p.done = true;
        }
    }
}

/// A probe's move failed: ask again later, a few times.
pub fn failed(w: &mut World, vessel: VesselId, why: String) {
    let tries = match w.liveness.by_vessel.get_mut(&vessel) {
        Some(p) if p.done => return,
        Some(p) => {
            p.last_failure = Some(why);
            p.tries
        }
        // Not a probe's move (one in flight at the heal), or no node ran
        // the vessel when the probe came (which `check::at_end` reports
        // as a lost vessel).
        None => return,
    };
    if tries < TRIES {
        w.at(RETRY_MS, Event::Probe { vessel });
    }
}

/// At the end: every probe's move happened.
pub fn check(w: &World) -> Result<(), String> {
    for (vessel, p) in &w.liveness.by_vessel {
        if !p.done {
            return Err(format!(
                "liveness: {vessel} was asked {} times to move to n{} after the faults stopped and never did (last: {})",
                p.tries,
                p.to,
                p.last_failure.as_deref().unwrap_or("no answer")
            ));
        }
    }
    Ok(())
}
