//! The invariants, checked after every step of the simulation, and what
//! must hold once the faults stop. The ghost remembers what no single node
//! can see: every commit point ever written, every epoch ever run.

use std::collections::BTreeMap;

use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;

use super::{NodeId, World};
use crate::migration::record::Record;

/// What the simulation knows of the whole mesh's history.
#[derive(Default)]
pub struct Ghost {
    /// The highest epoch of a commit point (`Left`) ever written, by vessel.
    committed: BTreeMap<VesselId, u64>,
    /// The highest epoch a vessel has run under, anywhere.
    ran: BTreeMap<VesselId, u64>,
    /// The highest epoch of a record each node wrote, by vessel.
    recorded: BTreeMap<(NodeId, VesselId), u64>,
    /// Broken rules seen while recording (reported at the next check).
    broken: Vec<String>,
}

impl Ghost {
    pub fn deployed(&mut self, vessel: VesselId) {
        self.ran.insert(vessel, 1);
    }

    /// A node's settled records (`Owned`, `Left`, `Ended`) of a vessel
    /// only rise; a `Prepared` record stands above the settled one it
    /// covers, and an abort that puts the settled one back lowers nothing
    /// the node had settled.
    pub fn record_written(&mut self, node: NodeId, vessel: VesselId, record: &Record, now_ms: u64) {
        let before = self.recorded.get(&(node, vessel)).copied().unwrap_or(0);
        let e = record.epoch();
        match record {
            Record::Prepared { before: under, .. } => {
                let under = under.as_ref().map_or(0, |r| r.epoch());
                if e <= under || under < before {
                    self.broken.push(format!(
                        "epochs only increase: n{node} prepared {vessel} at epoch {e} over a settled epoch {under} (it had settled {before}) ({now_ms} ms)"
                    ));
                }
            }
            _ if e < before => self.broken.push(format!(
                "epochs only increase: n{node} recorded {vessel} at epoch {e} after epoch {before} ({now_ms} ms)"
            )),
            _ => {
                self.recorded.insert((node, vessel), e);
            }
        }
        if let Record::Left { epoch, .. } = record {
            let c = self.committed.entry(vessel).or_insert(0);
            *c = (*c).max(*epoch);
        }
    }

    pub fn started(&mut self, node: NodeId, vessel: VesselId, epoch: u64) {
        let committed = self.committed.get(&vessel).copied().unwrap_or(0);
        if epoch < committed {
            self.broken.push(format!(
                "a committed move was undone: n{node} runs {vessel} at epoch {epoch}, after the commit point of epoch {committed}"
            ));
        }
        let ran = self.ran.entry(vessel).or_insert(0);
        if epoch < *ran {
            self.broken.push(format!(
                "epochs only increase: n{node} runs {vessel} at epoch {epoch}, after it ran at epoch {ran}"
            ));
        }
        *ran = (*ran).max(epoch);
    }

    pub fn refused(&mut self, refusal: &Refusal) {
        if refusal.code == RefusalCode::Unknown || refusal.code == RefusalCode::Internal {
            self.broken
                .push(format!("a refusal without a protocol code: {refusal}"));
        }
    }
}

/// After every step: no vessel runs twice, and nothing the ghost saw broke
/// a rule.
pub fn after_step(w: &mut World) -> Result<(), String> {
    if let Some(b) = w.ghost.broken.first() {
        return Err(b.clone());
    }
    for v in w.vessels() {
        let hosts: Vec<String> = w
            .nodes
            .iter()
            .filter_map(|n| n.running.get(&v).map(|e| format!("n{} at epoch {e}", n.id)))
            .collect();
        if hosts.len() > 1 {
            return Err(format!("two owners run {v}: {}", hosts.join(", ")));
        }
    }
    Ok(())
}

/// Once the faults stopped and the mesh settled: every vessel runs exactly
/// once, at the node whose record owns it at the highest epoch any record
/// names, no migration is left half done, and every move the liveness
/// check asked for happened.
pub fn at_end(w: &mut World) -> Result<(), String> {
    after_step(w)?;
    for v in w.vessels() {
        let top = w
            .nodes
            .iter()
            .filter_map(|n| {
                n.disk
                    .records
                    .get(&v)
                    .filter(|r| !matches!(r, Record::Prepared { .. }))
            })
            .map(|r| r.epoch())
            .max()
            .unwrap_or(0);
        let owner = w
            .nodes
            .iter()
            .find(|n| matches!(n.disk.records.get(&v), Some(Record::Owned { epoch, .. }) if *epoch == top));
        let Some(owner) = owner else {
            return Err(format!(
                "{v} is lost: no node owns it at epoch {top}, the highest its records name"
            ));
        };
        if owner.running.get(&v) != Some(&top) {
            return Err(format!(
                "{v} is lost: n{} owns it at epoch {top} but does not run it",
                owner.id
            ));
        }
        if let Some(n) = w.nodes.iter().find(|n| n.sources.contains_key(&v)) {
            return Err(format!("{v}: n{}'s migration of it never finished", n.id));
        }
    }
    super::liveness::check(w)
}
