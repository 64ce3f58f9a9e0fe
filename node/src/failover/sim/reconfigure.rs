//! Changes of voter set: now and then the fault actor asks the host to
//! replace a voter (a dead one first: liveness's `down`) or two, add one
//! or drop one, as the node's keeper does when its replicas change. The host
//! proposes a `Reconfigure` that follows its own certificate, the voters of
//! that certificate sign it by rule 5 (`failover::voter`), and once it holds
//! the certificate it runs under the new epoch only after a majority of the
//! *new* set granted it a lease: its old set's lease ends at the change.

use protocol::ids::PeerIdBytes;
use protocol::lease::{AssignmentBody, AssignmentKind, Certificate, LEASE_VERSION};
use protocol::limits::MIN_VOTERS_FOR_FAILOVER;

use super::node::{local, node_of, runs, send_round, VESSEL};
use super::{NodeId, World};
use crate::migration::record::Record;

/// The largest voter set the simulation makes (it has at most 7 nodes).
const MAX_SIM_VOTERS: usize = 5;

/// The host (if one runs, and proposes and hands off nothing else) asks
/// to change its voter set.
pub fn ask(w: &mut World) {
    let Some(host) = (0..w.nodes.len()).find(|&i| runs(w, i)) else {
        return;
    };
    let node = &w.nodes[host];
    // Not while it hands the vessel off: the handoff's certificate
    // formed, and the change would follow an epoch it is leaving.
    let (Some(h), None, None) = (
        node.holder.as_ref(),
        node.proposal.as_ref(),
        node.handing.as_ref(),
    ) else {
        return;
    };
    let proof = h.certificate.clone();
    let Some(voters) = new_set(w, host, &proof.body.voters) else {
        return;
    };
    let node = &w.nodes[host];
    let epoch = node.next_epoch().max(proof.body.epoch + 1);
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: VESSEL,
        epoch,
        owner: node.peer.clone(),
        kind: AssignmentKind::Reconfigure,
        previous_epoch: proof.body.epoch,
        signers: proof.body.voters.clone(),
        voters,
    };
    let names: Vec<String> = body
        .voters
        .iter()
        .filter_map(|p| node_of(w, p))
        .map(|i| format!("n{i}"))
        .collect();
    w.note(format!(
        "n{host} asks to change its voters to [{}] at epoch {epoch}",
        names.join(" ")
    ));
    w.stats.reconfigurations_asked += 1;
    super::handoff::propose(w, host, body, proof);
}

/// The new set: a dead voter replaced (or dropped), else at random a
/// voter replaced by a node outside the set, one added, or one dropped;
/// never the host dropped, never a dead node added, never fewer than
/// [`MIN_VOTERS_FOR_FAILOVER`]. The order is kept (it ranks takeovers).
fn new_set(w: &mut World, host: NodeId, old: &[PeerIdBytes]) -> Option<Vec<PeerIdBytes>> {
    let ids: Vec<NodeId> = old.iter().filter_map(|p| node_of(w, p)).collect();
    let outside: Vec<NodeId> = (0..w.nodes.len())
        .filter(|i| !ids.contains(i) && !w.nodes[*i].dead)
        .collect();
    let dead: Vec<NodeId> = ids.iter().copied().filter(|i| w.nodes[*i].dead).collect();
    let removable: Vec<NodeId> = match dead.is_empty() {
        false => dead,
        true => ids.iter().copied().filter(|i| *i != host).collect(),
    };
    let mut set = ids.clone();
    let add = |set: &mut Vec<NodeId>, rng: &mut protocol::fuzzing::SplitMix64| {
        if !outside.is_empty() {
            set.push(outside[rng.below(outside.len() as u64) as usize]);
        }
    };
    let drop = removable[w.reconfigure_rng.below(removable.len() as u64) as usize];
    let other = removable[w.reconfigure_rng.below(removable.len() as u64) as usize];
    if !set.contains(&host) {
        // A host that came by a handoff to a node outside the set becomes
        // a voter (the node's keeper puts itself first).
        set.insert(0, host);
    }
    let rng = &mut w.reconfigure_rng;
    match rng.below(4) {
        0 if set.len() < MAX_SIM_VOTERS => add(&mut set, rng),
        1 if set.len() > MIN_VOTERS_FOR_FAILOVER => set.retain(|i| *i != drop),
        // Two replaced at once: a majority of the new set may then be
        // voters that never granted the old lease.
        2 if other != drop && outside.len() >= 2 => {
            set.retain(|i| *i != drop && *i != other);
            add(&mut set, rng);
            let mut more = set.clone();
            add(&mut more, rng);
            set = match more.last() != set.last() {
                true => more,
                false => set,
            };
        }
        _ => {
            set.retain(|i| *i != drop);
            add(&mut set, rng);
        }
    }
    let fits = set.len() >= MIN_VOTERS_FOR_FAILOVER && set.len() <= MAX_SIM_VOTERS;
    (fits && set != ids).then(|| set.iter().map(|i| w.nodes[*i].peer.clone()).collect())
}

/// The change's certificate formed: the host owns the new epoch (its
/// record and certificate durable), with a holder that has no lease yet,
/// and sends its first round at once, to the new voters and the old.
pub fn won(w: &mut World, host: NodeId, cert: Certificate, from_epoch: u64) {
    // Only over its own run at the epoch it changes from (as a handoff).
    let node = &w.nodes[host];
    let owns = node
        .holder
        .as_ref()
        .is_some_and(|x| x.epoch() == from_epoch)
        && matches!(node.disk.record, Some(Record::Owned { epoch, .. }) if epoch == from_epoch);
    if !owns {
        return;
    }
    let epoch = cert.body.epoch;
    super::node::won(w, host, cert);
    w.stats.reconfigurations += 1;
    w.note(format!(
        "n{host} holds the change of voters at epoch {epoch}"
    ));
    let now = local(w, host);
    send_round(w, host, now);
}

/// The host's own voter signed a change of voter set that follows the
/// epoch it holds and that never formed (its votes were lost, a signer was
/// down, or a higher promise took its epoch): it asks for the same change
/// again, above every epoch it knows of. The voters that signed it are
/// bound to nothing else (rule 5) and sign it again; the others may still.
pub fn retry(w: &mut World, host: NodeId) {
    let node = &w.nodes[host];
    let (None, None, Some(h), Some(c)) = (
        node.proposal.as_ref(),
        node.handing.as_ref(),
        node.holder.as_ref(),
        node.voter.durable.change.as_ref(),
    ) else {
        return;
    };
    if c.owner != node.peer || c.previous_epoch != h.epoch() {
        return;
    }
    let mut body = c.clone();
    body.epoch = node.next_epoch();
    let proof = h.certificate.clone();
    w.note(format!(
        "n{host} asks again for its change of voters, at epoch {}",
        body.epoch
    ));
    super::handoff::propose(w, host, body, proof);
}
