//! One simulated node: a voter of the vessel, maybe its owner (a
//! [`Holder`]), maybe a candidate for a takeover (a [`Ballot`]), with a
//! disk that keeps only what the rules said to make durable. Every
//! decision is the real code's (`failover::voter`, `holder`, `cert`,
//! `migration::record::fenced_by`); this file only carries messages and
//! applies writes.

use ed25519_dalek::SigningKey;
use protocol::ids::PeerIdBytes;
use protocol::lease::{
    peer_id_bytes_of, AssignmentBody, AssignmentKind, Certificate, LeaseRequest, LeaseResponse,
    LEASE_VERSION,
};
use protocol::membership::PublicKey;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

use super::clock::Clock;
use super::{Event, Msg, NodeId, Shape, World};
use crate::failover::cert::{check_certificate, Ballot};
use crate::failover::error::FailoverError;
use crate::failover::holder::Holder;
use crate::failover::params::{LeaseParams, PPM};
use crate::failover::voter::{Answer, Voter, VoterDurable};
use crate::migration::bugs::{active, Bug};
use crate::migration::destination::Destination;
use crate::migration::nonce::NonceBook;
use crate::migration::record::{fenced_by, Record};

/// The one vessel of the simulation.
pub const VESSEL: VesselId = VesselId([0xf0; 8]);

/// What survives a crash.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub voter: VoterDurable,
    pub record: Option<Record>,
    /// The certificate of the `Owned` record's epoch.
    pub owned_cert: Option<Certificate>,
    /// The highest certificate this node's voter knows, written whenever
    /// it learns a higher one, as the node's driver does
    /// (`leases/ID.known.cbor`): safety does not need it, but a replica
    /// that forgot it in a restart could not take over from a dead host,
    /// and would grant a fenced one's old epoch without telling it.
    pub known_cert: Option<Certificate>,
    /// The handoff certificate of a `Left` record (its commit is sent
    /// until acknowledged).
    pub left_cert: Option<Certificate>,
    /// The handoff certificate a destination writes before its `Prepared`
    /// record (as `mesh::serve` does): the commit runs the vessel under it.
    pub prepared_cert: Option<Certificate>,
}

pub struct SimNode {
    pub key: SigningKey,
    pub peer: PeerIdBytes,
    pub clock: Clock,
    pub up: bool,
    /// Dead for good: never restarts.
    pub dead: bool,
    pub suspended_until_us: u64,
    pub incarnation: u64,
    pub disk: Disk,
    pub voter: Voter,
    pub holder: Option<Holder>,
    pub ballot: Option<(Ballot, Certificate, u64)>,
    /// A handoff or a change of voter set this host collects votes for.
    pub proposal: Option<super::handoff::Proposal>,
    /// Lease rounds sent under the current holder (the first few also go
    /// to the voters a change removed, so that they learn it).
    pub rounds_sent: u64,
    /// When it last granted the lease to the owner it knows (its clock).
    pub last_heard_ms: u64,
    pub next_try_ms: u64,
    /// Propose above this epoch (a stale-epoch refusal reported it).
    pub min_epoch: u64,
    /// The highest certificate epoch seen since it started.
    pub seen_epoch: u64,
    /// A handoff this host won and offers, until its destination prepared
    /// (in memory, as the node's migration run keeps it).
    pub handing: Option<super::handoff::Handing>,
    /// Its destination side: the real migration machine, whose sessions
    /// keep the handoff certificate of their final offer.
    pub dest: Destination<NodeId, Certificate>,
    /// The nonces its destination side issued (the real book).
    pub nonces: NonceBook<NodeId>,
}

impl SimNode {
    pub fn new(n: NodeId, shape: &Shape, rng: &mut protocol::fuzzing::SplitMix64) -> SimNode {
        let key = SigningKey::from_bytes(&[n as u8 + 1; 32]);
        let peer = peer_id_bytes_of(&PublicKey::of(&key));
        let rho = shape.params.rho_ppm;
        // Half the clocks at an extreme of the bound, where it bites; or,
        // in a run with the worst clocks, the first host at the slowest
        // and every voter at the fastest.
        let rate_ppm = match (shape.worst_clocks, n, rng.below(4)) {
            (true, 0, _) | (false, _, 0) => PPM - rho,
            (true, _, _) | (false, _, 1) => PPM + rho,
            _ => PPM - rho + rng.below(2 * rho + 1),
        };
        let clock = Clock {
            rate_ppm,
            offset_us: rng.below(1_000_000) * 1_000,
        };
        let now = clock.local_ms(0);
        let voter = Voter::start(peer.clone(), shape.params, VoterDurable::default(), now);
        SimNode {
            key,
            peer,
            clock,
            up: true,
            dead: false,
            suspended_until_us: 0,
            incarnation: 0,
            disk: Disk::default(),
            voter,
            holder: None,
            ballot: None,
            proposal: None,
            rounds_sent: 0,
            last_heard_ms: now,
            next_try_ms: now,
            min_epoch: 0,
            seen_epoch: 0,
            handing: None,
            dest: Destination::default(),
            nonces: NonceBook::default(),
        }
    }
}

impl SimNode {
    /// The epoch a proposal of this node asks for: above every epoch its
    /// voter knows or promised, and every one a refusal reported.
    pub fn next_epoch(&self) -> u64 {
        let known = self.voter.known.as_ref().map_or(0, |k| k.body.epoch);
        let promised = self.voter.durable.promised.as_ref().map_or(0, |p| p.epoch);
        known.max(promised).max(self.min_epoch) + 1
    }
}

pub(super) fn local(w: &World, n: NodeId) -> u64 {
    w.nodes[n].clock.local_ms(w.now_us)
}

pub(super) fn node_of(w: &World, peer: &PeerIdBytes) -> Option<NodeId> {
    w.nodes.iter().position(|n| &n.peer == peer)
}

fn image_of(epoch: u64) -> Hash {
    Hash([epoch as u8; 32])
}

/// Node 0 deploys the vessel: every voter signs the deploy (by the voter
/// rules), and node 0 owns epoch 1, with no lease yet.
pub fn deploy(w: &mut World) {
    let first = w.shape.voters;
    let voters: Vec<PeerIdBytes> = w.nodes[..first].iter().map(|n| n.peer.clone()).collect();
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: VESSEL,
        epoch: 1,
        owner: voters[0].clone(),
        kind: AssignmentKind::Deploy,
        previous_epoch: 0,
        signers: voters.clone(),
        voters,
    };
    let mut ballot = Ballot::new(body.clone());
    let mut cert = None;
    for n in 0..first {
        let now = local(w, n);
        let from = w.nodes[0].peer.clone();
        let out = w.nodes[n].voter.vote(&from, &body, None, now);
        if let Some(d) = out.write {
            w.nodes[n].disk.voter = d;
        }
        let Ok(Answer::Sign(b)) = out.answer else {
            panic!("a fresh voter signs the deploy: {:?}", out.answer);
        };
        w.ghost.signed(n, &b);
        let sig = b.sign(&w.nodes[n].key, w.nodes[n].peer.clone());
        cert = ballot.add(sig).or(cert);
    }
    let cert = cert.expect("every voter signed");
    w.ghost.cert_formed(&cert);
    for node in w.nodes[..first].iter_mut() {
        // The deploy leaves its certificate with every voter, durably.
        node.disk.known_cert = Some(cert.clone());
        node.voter.known = Some(cert.clone());
    }
    won(w, 0, cert);
}

/// A node's step: the owner renews; a voter that heard nothing of the
/// owner for a hold proposes a takeover.
pub fn tick(w: &mut World, n: NodeId) {
    let now = local(w, n);
    super::source::tick(w, n);
    // A commit not yet acknowledged, and a handoff's votes, about every
    // five ticks.
    if w.rng.below(5) == 0 {
        super::handoff::send_commit(w, n);
        super::handoff::send_votes(w, n);
        super::reconfigure::retry(w, n);
    }
    if w.nodes[n].holder.as_ref().is_some_and(|h| h.resting(now)) {
        // Its certificate won no lease for a hold: a higher promise (of a
        // takeover that never completed) stands in its way, so it takes
        // over from itself above it.
        propose(w, n, now);
        return;
    }
    if w.nodes[n].holder.is_some() {
        send_round(w, n, now);
        return;
    }
    propose(w, n, now);
}

/// Voters a change of voter set removed hear this many rounds of the new
/// epoch (they refuse them, having learnt the certificate that removed
/// them, and stop suspecting the owner).
const ROUNDS_TO_FORMER_VOTERS: u64 = 4;

/// The owner's lease round, if one is due: to every voter, and at first
/// to the voters its certificate's change removed.
pub(super) fn send_round(w: &mut World, n: NodeId, now: u64) {
    let Some(h) = w.nodes[n].holder.as_mut() else {
        return;
    };
    let Some(round) = h.poll(now) else {
        return;
    };
    let certificate = h.certificate.clone();
    let node = &mut w.nodes[n];
    node.rounds_sent += 1;
    let former = node.rounds_sent <= ROUNDS_TO_FORMER_VOTERS;
    let body = &certificate.body;
    let to: Vec<PeerIdBytes> = body
        .voters
        .iter()
        .chain(
            body.signers
                .iter()
                .filter(|s| former && !body.voters.contains(s)),
        )
        .cloned()
        .collect();
    for v in to {
        let Some(to) = node_of(w, &v) else { continue };
        let certificate = certificate.clone();
        w.send(
            n,
            to,
            Msg::Request(LeaseRequest::Lease { certificate, round }),
        );
    }
}

/// The takeover a suspecting voter asks for.
fn propose(w: &mut World, n: NodeId, now: u64) {
    let params = w.shape.params;
    let node = &w.nodes[n];
    let Some(known) = node.voter.known.clone() else {
        return;
    };
    let own = node.holder.is_some();
    let voters = &known.body.voters;
    let rank = LeaseParams::takeover_rank(voters, &known.body.owner, &node.peer);
    let suspect = now >= node.last_heard_ms + params.suspect_after_ms(rank);
    if (!own && !suspect) || now < node.next_try_ms {
        return;
    }
    // A voter bound by a change of voter set it signed (rule 5) signs no
    // takeover that follows the old set, its own neither: it waits to
    // learn the change (or, as its owner, asks for the change again).
    let bound = node.voter.durable.follows_from_epoch() > known.body.epoch;
    if !known.body.voters.contains(&node.peer) || bound {
        return;
    }
    let give_up = 3 * params.voter_hold_ms();
    if let Some((b, _, since)) = &node.ballot {
        if b.body.epoch <= known.body.epoch || now >= since + give_up {
            let epoch = b.body.epoch;
            abandon(w, n, epoch, now);
            return;
        }
    }
    if w.nodes[n].ballot.is_none() {
        let node = &w.nodes[n];
        let epoch = node.next_epoch();
        let body = AssignmentBody {
            version: LEASE_VERSION,
            vessel: VESSEL,
            epoch,
            owner: node.peer.clone(),
            kind: AssignmentKind::Takeover,
            previous_epoch: known.body.epoch,
            voters: known.body.voters.clone(),
            signers: known.body.voters.clone(),
        };
        w.note(format!("n{n} proposes a takeover at epoch {epoch}"));
        w.nodes[n].ballot = Some((Ballot::new(body), known.clone(), now));
    }
    let (ballot, proof, _) = w.nodes[n].ballot.clone().expect("just made");
    let me = w.nodes[n].peer.clone();
    for v in &ballot.body.signers {
        let Some(to) = node_of(w, v) else { continue };
        if !ballot.has(v) && (*v != me || signs_last(&ballot)) {
            let body = ballot.body.clone();
            let proof = Some(proof.clone());
            w.send(n, to, Msg::Request(LeaseRequest::Vote { body, proof }));
        }
    }
    // A candidate asks again soon: a voter's hold ends at its own moment.
    let retry = w.rng.below(params.renew_every_ms / 2);
    w.nodes[n].next_try_ms = now + retry;
}

/// Whether a candidate's own voter signs its takeover now: only as the
/// vote that makes the majority (`failover::cert::Ballot::signs_last`).
fn signs_last(ballot: &Ballot) -> bool {
    ballot.signs_last()
}

/// A message arrives at `to`.
pub fn deliver(w: &mut World, from: NodeId, to: NodeId, msg: Msg) {
    let now = local(w, to);
    match msg {
        Msg::Request(LeaseRequest::Lease { certificate, round }) => {
            let answer = serve_lease(w, from, to, &certificate, round, now);
            after_voter(w, to);
            w.send(to, from, Msg::Response(answer));
        }
        Msg::Request(LeaseRequest::Vote { body, proof }) => {
            let answer = serve_vote(w, from, to, &body, proof.as_ref(), now);
            after_voter(w, to);
            w.send(to, from, Msg::Response(answer));
        }
        // Only entries ask for proofs, and the simulation has no entries
        // (route_proof's tests and mesh::ingress::tests check them).
        Msg::Request(LeaseRequest::Proof { .. }) => {}
        Msg::Response(r) => answered(w, from, to, r, now),
        Msg::Commit(cert, image) => super::handoff::commit(w, from, to, *cert, image),
        Msg::Offer(cert, image, nonce) => super::handoff::offer(w, from, to, (*cert, image, nonce)),
        Msg::Prepared(epoch, next) => super::source::prepared(w, from, to, epoch, next),
        Msg::AskNonce => super::handoff::issue_nonce(w, from, to),
        Msg::Nonce(nonce) => super::source::nonce(w, to, nonce),
        Msg::Refused(epoch, r) => super::source::refused(w, from, to, epoch, r),
        Msg::Abort(epoch, image) => super::handoff::abort(w, from, to, epoch, image),
        Msg::Committed(epoch) => super::handoff::committed(w, from, to, epoch),
    }
}

/// Voter `to` answers `from`'s lease request.
fn serve_lease(
    w: &mut World,
    from: NodeId,
    to: NodeId,
    certificate: &Certificate,
    round: u64,
    now: u64,
) -> Result<LeaseResponse, Refusal> {
    let sender = w.nodes[from].peer.clone();
    let out = w.nodes[to].voter.lease(&sender, certificate, now);
    match out.answer {
        Ok(Answer::Granted { epoch }) => {
            w.stats.grants += 1;
            let known = w.nodes[to].voter.known.as_ref().map(|k| k.body.epoch);
            if known == Some(epoch) {
                w.nodes[to].last_heard_ms = now;
            }
            Ok(LeaseResponse::Granted {
                vessel: VESSEL,
                epoch,
                round,
            })
        }
        Ok(Answer::Superseded(c)) => Ok(LeaseResponse::Superseded(c)),
        Ok(Answer::Sign(_)) => unreachable!("a lease request is never signed"),
        Err(e) => Err(e.refusal()),
    }
}

/// Voter `to` answers `from`'s vote request, its promise made durable
/// first (as far as the rule said to).
fn serve_vote(
    w: &mut World,
    from: NodeId,
    to: NodeId,
    body: &AssignmentBody,
    proof: Option<&Certificate>,
    now: u64,
) -> Result<LeaseResponse, Refusal> {
    let sender = w.nodes[from].peer.clone();
    let out = w.nodes[to].voter.vote(&sender, body, proof, now);
    if let Some(d) = out.write {
        w.nodes[to].disk.voter = d;
    }
    match out.answer {
        Ok(Answer::Sign(b)) => {
            w.ghost.signed(to, &b);
            let node = &mut w.nodes[to];
            if b.owner != node.peer {
                // It voted for another candidate: it stands down and gives
                // that one a hold (as Raft's candidates do), so that two
                // never split every vote.
                node.ballot = None;
                node.last_heard_ms = node.last_heard_ms.max(now);
            }
            Ok(LeaseResponse::Voted(b.sign(&node.key, node.peer.clone())))
        }
        Ok(Answer::Superseded(c)) => Ok(LeaseResponse::Superseded(c)),
        Ok(Answer::Granted { .. }) => unreachable!("a vote is never a grant"),
        Err(e) => {
            let held = matches!(
                e,
                FailoverError::GrantRunning { .. } | FailoverError::BootWait { .. }
            );
            w.stats.held_off += u64::from(held);
            w.stats.boot_waits += u64::from(matches!(e, FailoverError::BootWait { .. }));
            let below = matches!(e, FailoverError::BelowReconfiguration { .. });
            w.stats.below_reconfiguration += u64::from(below);
            Err(e.refusal())
        }
    }
}

fn answered(w: &mut World, from: NodeId, to: NodeId, r: Result<LeaseResponse, Refusal>, now: u64) {
    let voter = w.nodes[from].peer.clone();
    match r {
        Ok(LeaseResponse::Granted { epoch, round, .. }) => {
            if let Some(h) = w.nodes[to].holder.as_mut().filter(|h| h.epoch() == epoch) {
                let before = h.may_run(now);
                h.granted(&voter, round, now);
                if !before && h.may_run(now) {
                    w.note(format!("n{to} holds the lease at epoch {epoch}"));
                }
            }
        }
        Ok(LeaseResponse::Voted(sig)) => {
            if super::handoff::voted(w, to, &sig) {
                return;
            }
            let cert = match w.nodes[to].ballot.as_mut() {
                Some((b, _, _)) => b.add(sig),
                None => None,
            };
            let last = w.nodes[to].ballot.as_ref().and_then(|(b, proof, _)| {
                let me = &w.nodes[to].peer;
                (cert.is_none() && !b.has(me) && b.signs_last())
                    .then(|| (b.body.clone(), proof.clone()))
            });
            if let Some((body, proof)) = last {
                let proof = Some(proof);
                w.send(to, to, Msg::Request(LeaseRequest::Vote { body, proof }));
                return;
            }
            if let Some(cert) = cert {
                w.ghost.cert_formed(&cert);
                w.stats.takeovers += 1;
                let others: Vec<String> = (0..w.nodes.len())
                    .filter(|&i| i != to)
                    .filter_map(|i| {
                        let h = w.nodes[i].holder.as_ref()?;
                        let u = h.valid_until_ms()? + w.shape.params.longest_slice_ms;
                        let end = w.nodes[i].clock.real_at(u, w.now_us) / 1_000;
                        Some(format!("n{i} may run until {end} ms"))
                    })
                    .collect();
                w.note(format!(
                    "n{to} holds a certificate for epoch {} ({})",
                    cert.body.epoch,
                    others.join(", ")
                ));
                won(w, to, cert);
            }
        }
        Ok(LeaseResponse::Superseded(c)) => {
            if check_certificate(&c, None).is_ok() {
                let _ = w.nodes[to].voter.learn(&c);
                after_voter(w, to);
            }
        }
        Ok(LeaseResponse::Proof(_)) => {}
        Err(refusal) => {
            let (true, Some(k)) = (refusal.code == RefusalCode::StaleEpoch, refusal.known_epoch)
            else {
                return;
            };
            let node = &mut w.nodes[to];
            node.min_epoch = node.min_epoch.max(k);
            if node
                .ballot
                .as_ref()
                .is_some_and(|(b, _, _)| b.body.epoch <= k)
            {
                abandon(w, to, k, now);
            }
        }
    }
}

/// A candidate gives its ballot up (another took the epoch, or it waited
/// too long) and waits a random time of up to a hold before the next one,
/// far longer than a round trip, so that candidates that suspected the
/// host at once do not split every vote after it (they did, for good:
/// seed 41, with the next try a fraction of a renewal away).
fn abandon(w: &mut World, n: NodeId, epoch: u64, now: u64) {
    let backoff = w.rng.below(w.shape.params.voter_hold_ms());
    let node = &mut w.nodes[n];
    node.min_epoch = node.min_epoch.max(epoch);
    node.ballot = None;
    node.next_try_ms = now + backoff;
}

/// The node holds a certificate naming it: its record becomes `Owned` at
/// that epoch (durably), and it asks for the lease before it runs.
pub(super) fn won(w: &mut World, n: NodeId, cert: Certificate) {
    let image = image_of(cert.body.epoch);
    won_with(w, n, cert, image);
}

/// [`won`], running `image` (a handoff's, which its source offered).
pub(super) fn won_with(w: &mut World, n: NodeId, cert: Certificate, image: Hash) {
    let epoch = cert.body.epoch;
    let record = Record::Owned { epoch, image };
    w.ghost.record_written(n, &record);
    let params = w.shape.params;
    let node = &mut w.nodes[n];
    node.disk.record = Some(record);
    node.disk.owned_cert = Some(cert.clone());
    let first_round = w.round_rng.next_u64();
    let node = &mut w.nodes[n];
    node.holder = Some(Holder::new(params, cert.clone(), first_round));
    node.rounds_sent = 0;
    node.ballot = None;
    let _ = node.voter.learn(&cert);
    after_voter(w, n);
}

/// After the voter learnt something: keep its highest certificate, and
/// fence this node's own run if a higher one names another owner.
fn after_voter(w: &mut World, n: NodeId) {
    let Some(k) = w.nodes[n].voter.known.clone() else {
        return;
    };
    let now = local(w, n);
    let node = &mut w.nodes[n];
    // The node's driver writes a higher certificate down as it learns it
    // (`mesh::lease::store`): a restart remembers it.
    if node
        .disk
        .known_cert
        .as_ref()
        .is_none_or(|c| c.body.epoch < k.body.epoch)
    {
        node.disk.known_cert = Some(k.clone());
    }
    if node.seen_epoch < k.body.epoch {
        node.seen_epoch = k.body.epoch;
        // A new owner: give it a hold to start renewing before suspecting
        // it. Not a voter the change of set made: it never heard of the
        // owner, and suspects it at once, as the node's takeover watch
        // does for a replica whose voter granted nothing yet.
        if k.body.signers.contains(&node.peer) {
            node.last_heard_ms = node.last_heard_ms.max(now);
        }
    }
    if k.body.owner == node.peer {
        return;
    }
    if node
        .holder
        .as_ref()
        .is_some_and(|h| h.epoch() < k.body.epoch)
    {
        node.holder = None;
    }
    // Someone won since this node proposed: let it have its lease.
    if node
        .ballot
        .as_ref()
        .is_some_and(|(b, _, _)| b.body.previous_epoch < k.body.epoch)
    {
        node.ballot = None;
    }
    if let Some(r) = fenced_by(node.disk.record.as_ref(), k.body.epoch) {
        let was_owned = matches!(node.disk.record, Some(Record::Owned { .. }));
        node.disk.record = Some(r.clone());
        let change = node.voter.durable.change.clone();
        if let Some(d) = node.voter.drop_change(k.body.epoch) {
            node.disk.voter = d;
            w.ghost.change_dropped(n, change.expect("dropped one"));
        }
        w.ghost.record_written(n, &r);
        if was_owned {
            w.stats.fenced += 1;
            w.note(format!("n{n} fenced by epoch {}", k.body.epoch));
        }
    }
}

/// Whether node `n` runs the vessel now: up, awake, owner by its record,
/// and its own clock within its lease plus one slice begun before it ran
/// out.
pub fn runs(w: &World, n: NodeId) -> bool {
    let node = &w.nodes[n];
    if !node.up || node.suspended_until_us > w.now_us {
        return false;
    }
    let Some(h) = node.holder.as_ref() else {
        return false;
    };
    // Paused by its handoff's source machine for the final round.
    let paused = node
        .handing
        .as_ref()
        .and_then(|x| x.machine.as_ref())
        .is_some_and(|m| m.is_paused());
    if paused {
        return false;
    }
    let owned = matches!(node.disk.record, Some(Record::Owned { epoch, .. }) if epoch == h.epoch());
    let slice = w.shape.params.longest_slice_ms;
    owned && h.valid_until_ms().is_some_and(|u| local(w, n) < u + slice)
}

pub fn crash(w: &mut World, n: NodeId, for_good: bool) {
    let node = &mut w.nodes[n];
    node.up = false;
    node.dead = for_good;
    node.incarnation += 1;
    node.holder = None;
    node.ballot = None;
    node.proposal = None;
    if node.handing.take().is_some_and(|h| !h.left) {
        w.stats.handoffs_abandoned += 1;
    }
    node.dest = Destination::default();
    node.nonces = NonceBook::default();
    w.note(format!(
        "n{n} {}",
        if for_good { "dies for good" } else { "crashes" }
    ));
}

/// A node comes back with its disk: its voter forgot its grants (and waits
/// a hold before any takeover), and an owner has no lease until a majority
/// grants it again.
pub fn restart(w: &mut World, n: NodeId) {
    if w.nodes[n].up || w.nodes[n].dead {
        return;
    }
    let now = local(w, n);
    let params = w.shape.params;
    let first_round = w.round_rng.next_u64();
    let node = &mut w.nodes[n];
    node.up = true;
    node.incarnation += 1;
    node.suspended_until_us = 0;
    node.voter = Voter::start(node.peer.clone(), params, node.disk.voter.clone(), now);
    node.voter.known = [&node.disk.known_cert, &node.disk.owned_cert]
        .into_iter()
        .flatten()
        .max_by_key(|c| c.body.epoch)
        .cloned();
    node.seen_epoch = 0;
    node.holder = match (&node.disk.record, &node.disk.owned_cert) {
        (Some(Record::Owned { epoch, .. }), Some(c)) if c.body.epoch == *epoch => {
            Some(Holder::new(params, c.clone(), first_round))
        }
        _ => None,
    };
    let resume_prepared = match (&node.disk.record, &node.disk.prepared_cert) {
        (Some(Record::Prepared { epoch, image, .. }), Some(c)) if c.body.epoch == *epoch => {
            Some((c.clone(), *image))
        }
        _ => None,
    };
    node.rounds_sent = 0;
    node.last_heard_ms = now;
    node.next_try_ms = now;
    let incarnation = node.incarnation;
    w.note(format!("n{n} restarts"));
    w.at_us(
        0,
        Event::Tick {
            node: n,
            incarnation,
        },
    );
    after_voter(w, n);
    // A `Prepared` record waits for its source's commit, however long
    // (`record::recovery_of`): never run alone.
    if let Some((cert, image)) = resume_prepared.filter(|_| active(Bug::ResumePreparedUnderHandoff))
    {
        won_with(w, n, cert, image);
    }
}
