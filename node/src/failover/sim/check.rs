//! The invariants, after every step, and what must hold once the faults
//! stop. The ghost remembers what no node can see: the owner of every
//! epoch any certificate ever named, and every record each node wrote.

use std::collections::BTreeMap;

use protocol::ids::PeerIdBytes;
use protocol::lease::{majority, Certificate};

use super::node::runs;
use super::{NodeId, World};
use crate::migration::record::Record;

#[derive(Default)]
pub struct Ghost {
    /// The owner every certificate formed so far names, by epoch.
    owners: BTreeMap<u64, PeerIdBytes>,
    /// The epoch of the last record each node wrote.
    records: BTreeMap<NodeId, u64>,
    /// The highest epoch any node has run under.
    ran: u64,
    broken: Vec<String>,
}

impl Ghost {
    /// A certificate came to be: one owner per epoch, ever.
    pub fn cert_formed(&mut self, cert: &Certificate) {
        let (epoch, owner) = (cert.body.epoch, &cert.body.owner);
        match self.owners.get(&epoch) {
            Some(o) if o != owner => self.broken.push(format!(
                "two owners of epoch {epoch}: certificates name two nodes"
            )),
            _ => {
                self.owners.insert(epoch, owner.clone());
            }
        }
    }

    /// A node's records only rise.
    pub fn record_written(&mut self, node: NodeId, record: &Record) {
        let before = self.records.get(&node).copied().unwrap_or(0);
        if record.epoch() < before {
            self.broken.push(format!(
                "records only rise: n{node} wrote {record:?} over a record at epoch {before}"
            ));
        }
        self.records.insert(node, record.epoch());
    }

    pub fn highest_epoch(&self) -> u64 {
        self.owners.keys().next_back().copied().unwrap_or(0)
    }
}

fn runners(w: &World) -> Vec<NodeId> {
    (0..w.nodes.len()).filter(|&n| runs(w, n)).collect()
}

/// Every node's view, for a failure message.
fn views(w: &World) -> String {
    let mut out = String::new();
    for (n, node) in w.nodes.iter().enumerate() {
        let lease = node
            .holder
            .as_ref()
            .map(|h| (h.epoch(), h.valid_until_ms()));
        out.push_str(&format!(
            "\n  n{n}: up {} dead {} suspended {} clock {} ms (rate {} ppm) record {:?} lease {lease:?} grants until {} promised {:?}",
            node.up,
            node.dead,
            node.suspended_until_us > w.now_us,
            node.clock.local_ms(w.now_us),
            node.clock.rate_ppm,
            node.disk.record,
            node.voter.granted_until_ms,
            node.voter.durable.promised.as_ref().map(|p| (p.epoch, p.kind)),
        ));
    }
    out
}

pub fn after_step(w: &mut World) -> Result<(), String> {
    if let Some(b) = w.ghost.broken.first() {
        return Err(format!("{b}{}", views(w)));
    }
    let running = runners(w);
    if running.len() > 1 {
        return Err(format!(
            "at most one runner: {running:?} run the vessel at once{}",
            views(w)
        ));
    }
    // Once an epoch's owner ran, nothing runs under an older one again.
    for n in running {
        let epoch = w.nodes[n].holder.as_ref().map_or(0, |h| h.epoch());
        if epoch < w.ghost.ran {
            return Err(format!(
                "epochs run only rise: n{n} runs epoch {epoch} after epoch {} ran{}",
                w.ghost.ran,
                views(w)
            ));
        }
        w.ghost.ran = epoch;
    }
    Ok(())
}

/// After the heal, with a majority of the voters alive: exactly one node
/// runs the vessel, under the highest epoch any certificate names.
pub fn at_end(w: &mut World) -> Result<(), String> {
    let alive = w.nodes.iter().filter(|n| !n.dead).count();
    if alive < majority(w.nodes.len()) {
        return Ok(());
    }
    let running = runners(w);
    let [n] = running[..] else {
        return Err(format!(
            "liveness: {} nodes run the vessel {running:?} {} s after the faults stopped{}",
            running.len(),
            w.shape.heal_ms / 1_000,
            views(w)
        ));
    };
    let epoch = w.nodes[n].holder.as_ref().map_or(0, |h| h.epoch());
    if epoch != w.ghost.highest_epoch() {
        return Err(format!(
            "liveness: n{n} runs epoch {epoch}, the highest certificate is {}{}",
            w.ghost.highest_epoch(),
            views(w)
        ));
    }
    Ok(())
}
