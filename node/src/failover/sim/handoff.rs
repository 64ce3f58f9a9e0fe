//! Handoffs: a migration of the replicated vessel, modelled (not through
//! the migration layer's `Source` and `Destination`): the host asks the
//! voters to sign a `Handoff` to another node (rule 3: only the owner's
//! consent counts, and it keeps its lease meanwhile), writes its commit
//! point (`Left`) once it holds the certificate, and only then sends the
//! commit, until the destination acknowledges; the destination runs from
//! the commit, after winning its lease. Asked for by the fault actor now
//! and then, racing takeovers and faults.
//!
//! A change of voter set ([`super::reconfigure`]) is the host's proposal
//! too: the same ballot and votes here, another ending.

use protocol::lease::{
    AssignmentBody, AssignmentKind, Certificate, LeaseRequest, VoterSignature, LEASE_VERSION,
};

use super::node::{local, node_of, runs, won, VESSEL};
use super::{Msg, NodeId, World};
use crate::failover::cert::{check_certificate, Ballot};
use crate::migration::record::Record;

/// A handoff or a change of voter set the host is collecting votes for.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub ballot: Ballot,
    pub proof: Certificate,
    pub since_ms: u64,
}

/// The host (if one runs, and is not handing off already) asks for a
/// handoff to another voter.
pub fn ask(w: &mut World) {
    let n = w.nodes.len();
    let Some(host) = (0..n).find(|&i| runs(w, i)) else {
        return;
    };
    let node = &w.nodes[host];
    let (Some(h), None) = (node.holder.as_ref(), node.proposal.as_ref()) else {
        return;
    };
    let proof = h.certificate.clone();
    let to = (host + 1 + w.rng.below(n as u64 - 1) as usize) % n;
    let epoch = node.next_epoch().max(proof.body.epoch + 1);
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: VESSEL,
        epoch,
        owner: w.nodes[to].peer.clone(),
        kind: AssignmentKind::Handoff,
        previous_epoch: proof.body.epoch,
        voters: proof.body.voters.clone(),
        signers: proof.body.voters.clone(),
    };
    w.note(format!(
        "n{host} asks for a handoff to n{to} at epoch {epoch}"
    ));
    w.stats.handoffs_asked += 1;
    propose(w, host, body, proof);
}

/// The host proposes `body`, which follows its own certificate `proof`.
pub fn propose(w: &mut World, host: NodeId, body: AssignmentBody, proof: Certificate) {
    let now = local(w, host);
    w.nodes[host].proposal = Some(Proposal {
        ballot: Ballot::new(body),
        proof,
        since_ms: now,
    });
    send_votes(w, host);
}

/// Asks every voter that has not signed yet; gives up after a hold, or
/// when this node no longer owns the epoch it hands off from.
pub fn send_votes(w: &mut World, host: NodeId) {
    let now = local(w, host);
    let hold = w.shape.params.voter_hold_ms();
    let Some(h) = w.nodes[host].proposal.clone() else {
        return;
    };
    let owner = w.nodes[host]
        .holder
        .as_ref()
        .is_some_and(|x| x.epoch() == h.proof.body.epoch);
    if !owner || now >= h.since_ms + hold {
        w.nodes[host].proposal = None;
        return;
    }
    // A change of voter set is signed by the owner's own voter first, and
    // asked of the others only once it is: the voters it binds (rule 5)
    // are then never bound by a change its owner does not know it asked
    // for, and asks again for after a restart (`reconfigure::retry`).
    let me = w.nodes[host].peer.clone();
    let change = h.ballot.body.kind == AssignmentKind::Reconfigure;
    if change && !h.ballot.body.signers.contains(&me) {
        // Not a signer: it remembers the change it asks for all the same.
        if let Some(d) = w.nodes[host].voter.ask_change(&h.ballot.body) {
            w.nodes[host].disk.voter = d;
        }
    }
    if change && h.ballot.body.signers.contains(&me) && !h.ballot.has(&me) {
        let (body, proof) = (h.ballot.body.clone(), Some(h.proof.clone()));
        w.send(host, host, Msg::Request(LeaseRequest::Vote { body, proof }));
        let signed = w.nodes[host]
            .proposal
            .as_ref()
            .is_some_and(|p| p.ballot.has(&me));
        if !signed {
            return;
        }
    }
    let Some(h) = w.nodes[host].proposal.clone() else {
        return;
    };
    for v in &h.ballot.body.signers {
        let Some(to) = node_of(w, v) else { continue };
        if !h.ballot.has(v) {
            let body = h.ballot.body.clone();
            let proof = Some(h.proof.clone());
            w.send(host, to, Msg::Request(LeaseRequest::Vote { body, proof }));
        }
    }
}

/// A vote for this node's handoff or change of voter set; false if it is
/// not one.
pub fn voted(w: &mut World, host: NodeId, sig: &VoterSignature) -> bool {
    let Some(h) = w.nodes[host].proposal.as_mut() else {
        return false;
    };
    if h.ballot.body.verify(sig).is_err() {
        return false;
    }
    let Some(cert) = h.ballot.add(sig.clone()) else {
        return true;
    };
    let from_epoch = h.proof.body.epoch;
    w.nodes[host].proposal = None;
    w.ghost.cert_formed(&cert);
    if cert.body.kind == AssignmentKind::Reconfigure {
        super::reconfigure::won(w, host, cert, from_epoch);
        return true;
    }
    left(w, host, cert, from_epoch);
    true
}

/// The handoff's certificate formed: the commit point, then the commit.
fn left(w: &mut World, host: NodeId, cert: Certificate, from_epoch: u64) {
    // The commit point only over its own run at the epoch it hands off
    // from: a source that was fenced (or moved on) meanwhile writes
    // nothing, and the certificate names a destination that never hears
    // of it (the 20,000-seed run found a late vote completing a fenced
    // host's handoff, seed 6320: Left{4} over Fenced{by 6}).
    let owns = w.nodes[host]
        .holder
        .as_ref()
        .is_some_and(|x| x.epoch() == from_epoch)
        && matches!(w.nodes[host].disk.record, Some(Record::Owned { epoch, .. }) if epoch == from_epoch);
    if !owns {
        return;
    }
    // The commit point: durable before the commit leaves, and nothing
    // runs here after it.
    let record = Record::Left {
        epoch: cert.body.epoch,
        image: w.nodes[host]
            .disk
            .record
            .as_ref()
            .map_or(protocol::snapshot::Hash([0; 32]), |r| r.image()),
        to: cert.body.owner.0.clone(),
        acked: false,
    };
    w.ghost.record_written(host, &record);
    let node = &mut w.nodes[host];
    node.disk.record = Some(record);
    node.disk.left_cert = Some(cert.clone());
    node.holder = None;
    let _ = node.voter.learn(&cert);
    w.stats.handoffs += 1;
    w.note(format!(
        "n{host} holds the handoff certificate for epoch {}: left",
        cert.body.epoch
    ));
    send_commit(w, host);
}

/// Sends the commit of a `Left` record not yet acknowledged.
pub fn send_commit(w: &mut World, host: NodeId) {
    let node = &w.nodes[host];
    let (Some(Record::Left { acked: false, .. }), Some(cert)) =
        (&node.disk.record, &node.disk.left_cert)
    else {
        return;
    };
    let Some(to) = node_of(w, &cert.body.owner) else {
        return;
    };
    let cert = cert.clone();
    w.send(host, to, Msg::Commit(Box::new(cert)));
}

/// The destination takes the commit: it owns the new epoch (and asks for
/// its lease before it runs), unless it knows a record at or above it.
pub fn commit(w: &mut World, from: NodeId, to: NodeId, cert: Certificate) {
    let me = &w.nodes[to];
    if cert.body.owner != me.peer || check_certificate(&cert, None).is_err() {
        return;
    }
    let epoch = cert.body.epoch;
    let below = me.disk.record.as_ref().is_none_or(|r| r.epoch() < epoch);
    if below {
        w.note(format!("n{to} takes the commit of epoch {epoch}"));
        won(w, to, cert);
    }
    let owns =
        matches!(w.nodes[to].disk.record, Some(Record::Owned { epoch: e, .. }) if e >= epoch);
    let moved_on = w.nodes[to]
        .disk
        .record
        .as_ref()
        .is_some_and(|r| r.epoch() > epoch);
    if owns || moved_on {
        w.send(to, from, Msg::Committed(epoch));
    }
}

/// The source hears the commit was taken.
pub fn committed(w: &mut World, host: NodeId, epoch: u64) {
    let node = &mut w.nodes[host];
    if let Some(Record::Left {
        epoch: e, acked, ..
    }) = node.disk.record.as_mut()
    {
        if *e == epoch {
            *acked = true;
        }
    }
}
