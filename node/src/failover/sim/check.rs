//! The invariants, after every step, and what must hold once the faults
//! stop. The ghost remembers what no node can see: the assignment of every
//! epoch any certificate ever named, every record each node wrote, and
//! every assignment each voter ever signed (through its crashes), against
//! which it checks that a voter signs a change of voter set only by rule 5.

use std::collections::BTreeMap;

use protocol::ids::PeerIdBytes;
use protocol::lease::{majority, AssignmentBody, AssignmentKind, Certificate};

use super::node::runs;
use super::{NodeId, World};
use crate::migration::record::Record;

#[derive(Default)]
pub struct Ghost {
    /// The assignment every certificate formed so far names, by epoch.
    pub formed: BTreeMap<u64, AssignmentBody>,
    /// Every assignment each voter signed, ever.
    signed: BTreeMap<NodeId, Vec<AssignmentBody>>,
    /// The changes of voter set their fenced owner's voter dropped: none
    /// may ever run.
    dropped: Vec<AssignmentBody>,
    /// The epoch of the last record each node wrote.
    records: BTreeMap<NodeId, u64>,
    /// The highest epoch any node has run under.
    pub ran: u64,
    /// The epochs of the handoffs whose source passed its commit point.
    left: std::collections::BTreeSet<u64>,
    broken: Vec<String>,
}

impl Ghost {
    /// A certificate came to be: one owner and one voter set per epoch,
    /// ever.
    pub fn cert_formed(&mut self, cert: &Certificate) {
        let (epoch, body) = (cert.body.epoch, &cert.body);
        match self.formed.get(&epoch) {
            Some(o) if o.owner != body.owner => self.broken.push(format!(
                "two owners of epoch {epoch}: certificates name two nodes"
            )),
            Some(o) if o.voters != body.voters => self.broken.push(format!(
                "two voter sets at epoch {epoch}: certificates name {} and {} voters",
                o.voters.len(),
                body.voters.len()
            )),
            _ => {
                self.formed.insert(epoch, body.clone());
            }
        }
    }

    /// Voter `n` signed `body`. Rule 5, checked against all it ever signed
    /// (a repeat of its own promise, or of a certified assignment, promises
    /// nothing new): after a change of voter set, nothing that follows an
    /// epoch below it but the same change asked again by its owner.
    pub fn signed(&mut self, n: NodeId, body: &AssignmentBody) {
        let before = self.signed.entry(n).or_default();
        if before.contains(body) || self.formed.get(&body.epoch) == Some(body) {
            return;
        }
        let dropped = &self.dropped;
        let change = before
            .iter()
            .filter(|b| b.kind == AssignmentKind::Reconfigure && !dropped.contains(b))
            .max_by_key(|b| b.epoch);
        if let Some(c) = change.filter(|c| body.previous_epoch < c.epoch) {
            let again = body.kind == AssignmentKind::Reconfigure
                && (&body.owner, &body.voters, body.previous_epoch)
                    == (&c.owner, &c.voters, c.previous_epoch);
            if !again {
                self.broken.push(format!(
                    "n{n} signed a {} at epoch {} that follows epoch {}, below the change of voters it signed at epoch {}",
                    body.kind, body.epoch, body.previous_epoch, c.epoch
                ));
            }
        }
        before.push(body.clone());
    }

    /// Node `n`, fenced, dropped its own change `c` (and every earlier ask
    /// of the same change).
    pub fn change_dropped(&mut self, n: NodeId, c: AssignmentBody) {
        let same = |b: &AssignmentBody| {
            b.kind == AssignmentKind::Reconfigure
                && (&b.owner, &b.voters, b.previous_epoch)
                    == (&c.owner, &c.voters, c.previous_epoch)
        };
        let asks: Vec<AssignmentBody> = self.signed.get(&n).map_or(Vec::new(), |v| {
            v.iter().filter(|b| same(b)).cloned().collect()
        });
        self.dropped.extend(asks);
        self.dropped.push(c);
    }

    /// The voter sets of the certificates at `epoch` and above (the first
    /// set if none is).
    pub fn sets_from(&self, epoch: u64) -> Vec<Vec<PeerIdBytes>> {
        let mut sets: Vec<Vec<PeerIdBytes>> = self
            .formed
            .range(epoch..)
            .map(|(_, b)| b.voters.clone())
            .collect();
        if sets.is_empty() {
            sets.extend(self.formed.values().next_back().map(|b| b.voters.clone()));
        }
        sets
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

    /// A handoff's source wrote its commit point (`Left`) at `epoch`.
    pub fn left(&mut self, epoch: u64) {
        self.left.insert(epoch);
    }

    /// Whether a certificate that formed can still be used: not a change
    /// of voter set its fenced owner dropped, nor a handoff its source
    /// gave up before its commit point (the node's migration fails then,
    /// and the source runs on under the epoch it had; the destination's
    /// `Prepared` record waits for a commit that never comes).
    fn usable(&self, body: &AssignmentBody) -> bool {
        let handoff_given_up =
            body.kind == AssignmentKind::Handoff && !self.left.contains(&body.epoch);
        !self.dropped.contains(body) && !handoff_given_up
    }

    /// The highest epoch a usable certificate names ([`Ghost::usable`]).
    pub fn highest_epoch(&self) -> u64 {
        self.formed
            .iter()
            .rev()
            .find(|(_, b)| self.usable(b))
            .map_or(0, |(e, _)| *e)
    }

    /// The voters of the highest certificate (as [`Ghost::highest_epoch`]).
    pub fn highest_voters(&self) -> Vec<PeerIdBytes> {
        self.formed
            .values()
            .rev()
            .find(|b| self.usable(b))
            .map_or(Vec::new(), |b| b.voters.clone())
    }
}

/// Whether a change of voter set that never formed binds a living voter
/// while its owner will never ask for it again: it is dead for good, or no
/// longer owns the epoch the change follows (it was fenced, or moved the
/// vessel on). The voters that signed it sign nothing that passes it by
/// (rule 5), so the vessel fails over only by hand if the others are too
/// few: the documented limit of the rule (docs/protocol.md, "What it
/// costs"), counted here and not held to liveness.
fn stranded_change(w: &mut World) -> bool {
    let stranded = w.nodes.iter().filter(|n| !n.dead).any(|n| {
        n.voter.durable.change.as_ref().is_some_and(|c| {
            let formed = w.ghost.formed.get(&c.epoch) == Some(c);
            let owner = w.nodes.iter().find(|o| o.peer == c.owner);
            let asks_again = owner.is_some_and(|o| {
                !o.dead
                    && matches!(o.disk.record, Some(Record::Owned { epoch, .. }) if epoch == c.previous_epoch)
            });
            !formed && !asks_again
        })
    });
    w.stats.stranded_changes += u64::from(stranded);
    stranded
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
    // Once an epoch's owner ran, nothing runs under an older one again;
    // nothing runs under a change its fenced owner dropped, nor under a
    // handoff before its commit point.
    for n in running {
        let epoch = w.nodes[n].holder.as_ref().map_or(0, |h| h.epoch());
        let body = w.nodes[n].holder.as_ref().map(|h| &h.certificate.body);
        if body.is_some_and(|b| w.ghost.dropped.contains(b)) {
            return Err(format!(
                "n{n} runs epoch {epoch}, a change of voters its owner dropped{}",
                views(w)
            ));
        }
        // A handoff's epoch runs only after its source's commit point:
        // before it, the source may still run (or run again) under its own.
        let handoff = body.is_some_and(|b| b.kind == AssignmentKind::Handoff);
        if handoff && !w.ghost.left.contains(&epoch) {
            return Err(format!(
                "n{n} runs epoch {epoch}, a handoff whose source never wrote its commit point{}",
                views(w)
            ));
        }
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
    let voters = w.ghost.highest_voters();
    let alive = voters
        .iter()
        .filter(|p| w.nodes.iter().any(|n| &n.peer == *p && !n.dead))
        .count();
    if alive < majority(voters.len()) || stranded_change(w) {
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
