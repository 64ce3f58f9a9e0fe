//! Handoffs: a migration of the replicated vessel, in the node's order
//! (`mesh::migrate`, `mesh::serve`): the host asks the voters to sign a
//! `Handoff` to another node (rule 3: only the owner's consent counts, and
//! it keeps its lease meanwhile); with the certificate, the migration
//! layer's source machine moves the vessel ([`super::source`]); this
//! module is the destination's side, which judges the final offer
//! carrying the certificate, prepares, commits and aborts through the
//! migration layer's real [`Destination`], [`NonceBook`] and record rules
//! (the offer's epoch rule, `Record::prepared`, `commit_rule`,
//! `prepared_matches`, `abort_record`; `recovery_of` keeps a restarted
//! `Prepared` record waiting), keeping the certificate beside its
//! `Prepared` record, and the source's commit point (`Left`, written only
//! once prepared); the destination runs from the commit under that
//! certificate, after winning its lease. Asked for by the fault actor now
//! and then, racing takeovers and faults.
//!
//! A change of voter set ([`super::reconfigure`]) is the host's proposal
//! too: the same ballot and votes here, another ending.

use protocol::lease::{
    AssignmentBody, AssignmentKind, Certificate, LeaseRequest, VoterSignature, LEASE_VERSION,
};

use protocol::membership::Nonce;
use protocol::migrate::OfferKind;
use protocol::refusal::Refusal;
use protocol::snapshot::Hash;

use super::node::{local, node_of, runs, won_with, VESSEL};
use super::{Msg, NodeId, World};
use crate::failover::cert::{check_certificate, Ballot};
#[cfg(doc)]
use crate::migration::nonce::NonceBook;

use crate::migration::destination::{CommitPlan, Destination, Session};
use crate::migration::record::{prepared_matches, AbortRecord, Record};
use crate::migration::source::Source;

/// A handoff whose certificate this host won, driven by the migration
/// layer's source machine ([`super::source`]) until it finishes.
#[derive(Debug)]
pub struct Handing {
    pub cert: Certificate,
    /// The epoch it hands off from.
    pub from_epoch: u64,
    pub image: Hash,
    pub machine: Option<Source>,
    /// The request awaiting its answer times out then (local time).
    pub answer_by_ms: Option<u64>,
    /// The machine's retry timer (local time).
    pub retry_at_ms: Option<u64>,
    /// Its commit point is passed.
    pub left: bool,
}

/// A handoff or a change of voter set the host is collecting votes for.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub ballot: Ballot,
    pub proof: Certificate,
    pub since_ms: u64,
}

/// The host (if one runs, and is not handing off already: one migration
/// of a vessel at a time, as in the node) asks for a handoff to another
/// voter.
pub fn ask(w: &mut World) {
    let n = w.nodes.len();
    let Some(host) = (0..n).find(|&i| runs(w, i)) else {
        return;
    };
    let node = &w.nodes[host];
    let (Some(h), None, None) = (
        node.holder.as_ref(),
        node.proposal.as_ref(),
        node.handing.as_ref(),
    ) else {
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
    won_handoff(w, host, cert, from_epoch);
    true
}

/// The handoff's certificate formed: the source machine moves the vessel
/// under it, over the host's own run at the epoch it hands off from only.
fn won_handoff(w: &mut World, host: NodeId, cert: Certificate, from_epoch: u64) {
    if !owns(w, host, from_epoch) {
        w.stats.handoffs_abandoned += 1;
        return;
    }
    let image = handoff_image(cert.body.epoch);
    let h = Handing {
        cert,
        from_epoch,
        image,
        machine: None,
        answer_by_ms: None,
        retry_at_ms: None,
        left: false,
    };
    super::source::start(w, host, h);
}

/// A handoff's image: the final image its source packs, its own per
/// epoch (so that a commit naming another attempt's image is refused).
fn handoff_image(epoch: u64) -> Hash {
    let mut h = [0xa5; 32];
    h[..8].copy_from_slice(&epoch.to_le_bytes());
    Hash(h)
}

/// Whether `host` still owns `epoch`: it holds that lease and its record
/// is `Owned` at it (the node's source checks its record first).
fn owns(w: &World, host: NodeId, epoch: u64) -> bool {
    w.nodes[host]
        .holder
        .as_ref()
        .is_some_and(|x| x.epoch() == epoch)
        && matches!(w.nodes[host].disk.record, Some(Record::Owned { epoch: e, .. }) if e == epoch)
}

/// The destination issues a nonce for the source's next offer (the real
/// [`NonceBook`]).
pub fn issue_nonce(w: &mut World, from: NodeId, to: NodeId) {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&w.rng.next_u64().to_le_bytes());
    let now = w.instant();
    let nonce = w.nodes[to].nonces.issue(from, Nonce(n), now);
    w.send(to, from, Msg::Nonce(nonce));
}

/// A final offer's handoff certificate, checked as `mesh::serve` does: it
/// verifies, and hands exactly this vessel to this node by a handoff.
fn hands_to_me(w: &World, me: NodeId, cert: &Certificate) -> bool {
    let b = &cert.body;
    check_certificate(cert, None).is_ok()
        && b.vessel == VESSEL
        && b.owner == w.nodes[me].peer
        && b.kind == AssignmentKind::Handoff
}

/// The destination takes a final offer through the real [`Destination`]:
/// the epoch rule against its record, a session that keeps the
/// certificate, and the prepare, which writes the certificate and then the
/// `Prepared` record. A repeated offer of what it prepared is answered
/// `Prepared` again.
pub fn offer(w: &mut World, from: NodeId, to: NodeId, (cert, image, nonce): Offered) {
    if !hands_to_me(w, to, &cert) {
        return;
    }
    let epoch = cert.body.epoch;
    let known = w.nodes[to].disk.record.clone();
    let now = w.instant();
    let node = &mut w.nodes[to];
    let checked = node
        .nonces
        .redeem(&nonce, &from, now)
        .and_then(|()| dest_check(&mut node.dest, from, epoch, known.as_ref(), now));
    if let Err(r) = checked {
        w.note(format!(
            "n{to} refuses the handoff offer of epoch {epoch}: {r}"
        ));
        return w.send(to, from, Msg::Refused(epoch, r));
    }
    let dest = &mut w.nodes[to].dest;
    dest.accept(VESSEL, final_session(from, epoch, image, now, cert.clone()));
    if dest.check_prepare(&from, VESSEL, epoch, image).is_err() {
        return;
    }
    let source = w.nodes[from].peer.0.clone();
    let prepared = Record::prepared(epoch, image, source, known.as_ref());
    w.ghost.record_written(to, &prepared);
    let node = &mut w.nodes[to];
    node.disk.prepared_cert = Some(cert);
    node.disk.record = Some(prepared);
    if let Some(s) = node.dest.session_mut(VESSEL, &from, epoch) {
        s.prepared = true;
    }
    w.stats.handoffs_prepared += 1;
    w.note(format!("n{to} prepared the handoff of epoch {epoch}"));
    prepared_answer(w, from, to, epoch);
}

/// A final offer as it arrives: its certificate, image and nonce.
pub type Offered = (Certificate, Hash, Nonce);

/// The offer's checks by the destination's machine: the epoch rule
/// against its record.
fn dest_check(
    dest: &mut Destination<NodeId, Certificate>,
    from: NodeId,
    epoch: u64,
    known: Option<&Record>,
    now: std::time::Instant,
) -> Result<(), Refusal> {
    dest.check_offer(&from, VESSEL, epoch, known, now)
        .map(|_| ())
}

/// `Prepared` in the offer's answer, with the nonce for a next offer.
fn prepared_answer(w: &mut World, from: NodeId, to: NodeId, epoch: u64) {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&w.rng.next_u64().to_le_bytes());
    let now = w.instant();
    let next = w.nodes[to].nonces.issue(from, Nonce(n), now);
    w.send(to, from, Msg::Prepared(epoch, next));
}

/// The source called the move off: the destination's machine ends the
/// session, and its `Prepared` record of that very move goes (restored or
/// removed, as `record::abort_record` says; a record undone is no new
/// record, so the ghost's rise check does not see it).
pub fn abort(w: &mut World, from: NodeId, to: NodeId, epoch: u64, image: Hash) {
    let node = &mut w.nodes[to];
    let known = node.disk.record.clone();
    let plan = node.dest.abort(&from, VESSEL, epoch, image, known.as_ref());
    match plan.record {
        AbortRecord::Keep => return,
        AbortRecord::Restore(before) => node.disk.record = Some(before),
        AbortRecord::Remove => node.disk.record = None,
    }
    node.disk.prepared_cert = None;
    w.note(format!(
        "n{to} undoes its prepare of epoch {epoch}: aborted"
    ));
}

/// The session of a final offer with nothing lacking (its push carried
/// every chunk), keeping the offer's handoff certificate.
fn final_session(
    from: NodeId,
    epoch: u64,
    image: Hash,
    now: std::time::Instant,
    cert: Certificate,
) -> Session<NodeId, Certificate> {
    Session {
        from,
        kind: OfferKind::Final,
        epoch,
        image,
        expected: Default::default(),
        started: now,
        prepared: false,
        warm_chunks: 0,
        data: cert,
    }
}

/// The commit point: durable before the commit leaves, and nothing runs
/// here after it; false if the host no longer owns the epoch it hands off
/// from (a source that was fenced, or moved on, meanwhile writes nothing,
/// and its destination's `Prepared` record never runs: the 20,000-seed
/// run found a late vote completing a fenced host's handoff, seed 6320:
/// Left{4} over Fenced{by 6}).
pub fn left(w: &mut World, host: NodeId) -> bool {
    let Some(h) = w.nodes[host].handing.as_ref() else {
        return false;
    };
    if !owns(w, host, h.from_epoch) {
        return false;
    }
    let (cert, image) = (h.cert.clone(), h.image);
    let record = Record::Left {
        epoch: cert.body.epoch,
        image,
        to: cert.body.owner.0.clone(),
        acked: false,
    };
    w.ghost.record_written(host, &record);
    w.ghost.left(cert.body.epoch);
    let node = &mut w.nodes[host];
    node.disk.record = Some(record);
    node.disk.left_cert = Some(cert.clone());
    node.holder = None;
    if let Some(h) = node.handing.as_mut() {
        h.left = true;
    }
    let _ = node.voter.learn(&cert);
    w.stats.handoffs += 1;
    w.note(format!(
        "n{host} holds the handoff certificate for epoch {} and its destination prepared: left",
        cert.body.epoch
    ));
    true
}

/// Sends the commit of a `Left` record not yet acknowledged.
pub fn send_commit(w: &mut World, host: NodeId) {
    let node = &w.nodes[host];
    let (
        Some(Record::Left {
            acked: false,
            image,
            ..
        }),
        Some(cert),
    ) = (&node.disk.record, &node.disk.left_cert)
    else {
        return;
    };
    let Some(to) = node_of(w, &cert.body.owner) else {
        return;
    };
    let (cert, image) = (cert.clone(), *image);
    w.send(host, to, Msg::Commit(Box::new(cert), image));
}

/// The destination takes the commit by the real [`Destination::commit`]
/// and record rules: from its prepared session, or after a restart from
/// its `Prepared` record (and the certificate written before it); it owns
/// the new epoch under that certificate and asks for its lease before it
/// runs. A commit it took already, or one its record has moved past, is
/// acknowledged, so that the source stops sending it.
pub fn commit(w: &mut World, from: NodeId, to: NodeId, cert: Certificate, image: Hash) {
    if !hands_to_me(w, to, &cert) {
        return;
    }
    let epoch = cert.body.epoch;
    let node = &mut w.nodes[to];
    let known = node.disk.record.clone();
    let run_under = match node
        .dest
        .commit(&from, VESSEL, epoch, image, known.as_ref())
    {
        CommitPlan::AlreadyDone => return w.send(to, from, Msg::Committed(epoch)),
        CommitPlan::Refuse(_) => {
            if known.is_some_and(|r| r.epoch() > epoch) {
                w.send(to, from, Msg::Committed(epoch));
            }
            return;
        }
        CommitPlan::FromSession(s) => s.data,
        CommitPlan::FromDisk => match node.disk.prepared_cert.clone() {
            Some(c) if prepared_matches(known.as_ref(), epoch, image) && c.body.epoch == epoch => c,
            _ => return,
        },
    };
    w.note(format!("n{to} takes the commit of epoch {epoch}"));
    won_with(w, to, run_under, image);
    w.send(to, from, Msg::Committed(epoch));
}

/// The source hears the commit was taken: its machine (if it still runs
/// one: a restarted source sends the commit of its `Left` record alone)
/// marks it.
pub fn committed(w: &mut World, from: NodeId, host: NodeId, epoch: u64) {
    mark_acked_at(w, host, epoch);
    super::source::committed(w, from, host, epoch);
}

/// The machine's `MarkAcked`: the `Left` record its handoff wrote.
pub fn mark_acked(w: &mut World, host: NodeId) {
    if let Some(epoch) = w.nodes[host].handing.as_ref().map(|h| h.cert.body.epoch) {
        mark_acked_at(w, host, epoch);
    }
}

fn mark_acked_at(w: &mut World, host: NodeId, epoch: u64) {
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
