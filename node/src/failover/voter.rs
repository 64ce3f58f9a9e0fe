//! A voter's state for one vessel, and its decisions. What it must never
//! forget ([`VoterDurable`]: the highest assignment it signed, and the
//! epoch below which it grants nothing) is returned as a write that the
//! driver makes durable (fsync) *before* the answer leaves; the rest (its
//! grants, the certificates it was shown) it may forget in a crash, which
//! is why a restarted voter signs no takeover for one hold
//! ([`super::params::LeaseParams::voter_hold_ms`]) after it starts.
//!
//! The rules (docs/protocol.md, "Failover: leases and fencing"):
//! 1. Grant the lease at epoch E to the owner its certificate names, if
//!    this voter knows no higher certificate (else: `Superseded`, the
//!    asker is fenced) and has signed no takeover above E; a grant holds
//!    the voter for [`super::params::LeaseParams::voter_hold_ms`].
//! 2. Sign a takeover at E' (for its proposer) iff E' is above every
//!    epoch it promised or knows, its own grant ran out, and its boot wait
//!    is over. It grants nothing below E' after.
//! 3. Sign a handoff at E' iff E' is above every epoch it promised or
//!    knows and the owner of the epoch it follows asks (its consent; that
//!    owner's commit point, not the lease, keeps the two apart).
//! 4. Sign a deploy iff it knows nothing of the vessel.
//! 5. Sign a reconfiguration at E' (a new voter set, the same owner) iff
//!    E' is above every epoch it promised or knows, the owner of the
//!    epoch E it follows asks (its consent, as for a handoff), and, as for
//!    a takeover, its grants to every other node ran out and its boot wait
//!    is over. After signing it grants nothing below E' and signs nothing
//!    that follows an epoch below E' (durably: `change`), except the same
//!    change asked again by its owner at a higher epoch (its votes were
//!    lost, or a higher promise took the epoch), so that no certificate
//!    can pass the change by following the old set.
//!
//! A grant's hold does not stop a takeover *by the node it was for*: an
//! owner whose certificate came too late to be granted (a majority had
//! promised a higher takeover that never completed) takes over from
//! itself, and one node runs at most once.

use protocol::ids::PeerIdBytes;
use protocol::lease::{AssignmentBody, AssignmentKind, Certificate};
use serde::{Deserialize, Serialize};

use super::cert::{check_assignment, check_certificate, check_proof};
use super::error::FailoverError;
use super::params::LeaseParams;
use crate::migration::bugs::{active, Bug};

/// What a voter must keep through a crash, for one vessel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterDurable {
    /// The highest assignment this voter signed.
    pub promised: Option<AssignmentBody>,
    /// It grants no lease below this epoch: a takeover it signed fences
    /// every epoch below the takeover's.
    pub grants_from_epoch: u64,
    /// The highest reconfiguration it signed (rule 5): it signs nothing
    /// that follows an epoch below it but that change again. Absent in
    /// files written before voter sets could change.
    #[serde(default)]
    pub change: Option<AssignmentBody>,
    /// `grants_from_epoch` before that change, restored if its owner drops
    /// it ([`Voter::drop_change`]).
    #[serde(default)]
    pub grants_from_before_change: u64,
}

impl VoterDurable {
    fn promised_epoch(&self) -> u64 {
        self.promised.as_ref().map_or(0, |p| p.epoch)
    }

    /// It signs nothing that follows an epoch below this (rule 5).
    pub fn follows_from_epoch(&self) -> u64 {
        self.change.as_ref().map_or(0, |c| c.epoch)
    }

    /// Whether `body` asks again for the change it is bound by: the same
    /// owner, the same new set, after the same epoch, higher.
    fn same_change(&self, body: &AssignmentBody) -> bool {
        self.change.as_ref().is_some_and(|c| {
            body.kind == AssignmentKind::Reconfigure
                && c.owner == body.owner
                && c.voters == body.voters
                && c.previous_epoch == body.previous_epoch
        })
    }
}

/// A voter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The lease at `epoch`, for the request's round.
    Granted { epoch: u64 },
    /// Sign this assignment (the driver signs with the node key).
    Sign(AssignmentBody),
    /// A higher certificate: the asker's epoch is over.
    Superseded(Certificate),
}

/// A decision, and the durable state to write before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub answer: Result<Answer, FailoverError>,
    /// Make this durable first (None: nothing durable changed).
    pub write: Option<VoterDurable>,
}

impl Outcome {
    fn answer(answer: Answer) -> Outcome {
        Outcome {
            answer: Ok(answer),
            write: None,
        }
    }

    fn refuse(e: FailoverError) -> Outcome {
        Outcome {
            answer: Err(e),
            write: None,
        }
    }
}

/// One voter's state for one vessel.
#[derive(Debug, Clone)]
pub struct Voter {
    pub me: PeerIdBytes,
    pub params: LeaseParams,
    pub durable: VoterDurable,
    /// The highest certificate this voter was shown (volatile).
    pub known: Option<Certificate>,
    /// No takeover before this (its grants; volatile: forgotten in a
    /// crash, which the boot wait covers) ...
    pub granted_until_ms: u64,
    /// ... unless for this node, when every hold still running is for it
    /// (None: for several, or none yet).
    pub granted_to: Option<PeerIdBytes>,
    /// When this voter started (its boot clock).
    pub started_ms: u64,
}

impl Voter {
    /// A voter that starts at `now_ms` with what it made durable before.
    pub fn start(
        me: PeerIdBytes,
        params: LeaseParams,
        durable: VoterDurable,
        now_ms: u64,
    ) -> Voter {
        Voter {
            me,
            params,
            durable,
            known: None,
            granted_until_ms: 0,
            granted_to: None,
            started_ms: now_ms,
        }
    }

    fn known_epoch(&self) -> u64 {
        self.known.as_ref().map_or(0, |c| c.body.epoch)
    }

    fn known_body(&self) -> Option<&AssignmentBody> {
        self.known.as_ref().map(|c| &c.body)
    }

    /// Checks `cert` and keeps it if it is the highest seen.
    pub fn learn(&mut self, cert: &Certificate) -> Result<(), FailoverError> {
        if self.known.as_ref() == Some(cert) {
            return Ok(()); // checked when it was learnt
        }
        check_certificate(cert, self.known_body())?;
        if cert.body.epoch > self.known_epoch() {
            self.known = Some(cert.clone());
        }
        Ok(())
    }

    /// Holds this voter off any takeover by another node than `owner` for
    /// a hold from `now_ms`.
    fn hold_for(&mut self, owner: &PeerIdBytes, now_ms: u64) {
        let until = now_ms + self.params.voter_hold_ms();
        if now_ms >= self.granted_until_ms {
            self.granted_to = Some(owner.clone());
        } else if self.granted_to.as_ref() != Some(owner) {
            self.granted_to = None;
        }
        self.granted_until_ms = self.granted_until_ms.max(until);
    }

    /// Rule 1: a lease request from `from` with its certificate.
    pub fn lease(&mut self, from: &PeerIdBytes, cert: &Certificate, now_ms: u64) -> Outcome {
        if let Err(e) = self.learn(cert) {
            return Outcome::refuse(e);
        }
        let epoch = cert.body.epoch;
        if !cert.body.voters.contains(&self.me) {
            return Outcome::refuse(FailoverError::NotVoter);
        }
        if &cert.body.owner != from {
            return Outcome::refuse(FailoverError::NotOwner { epoch });
        }
        if let Some(k) = self.known.as_ref().filter(|k| k.body.epoch > epoch) {
            return Outcome::answer(Answer::Superseded(k.clone()));
        }
        if epoch < self.durable.grants_from_epoch {
            return Outcome::refuse(FailoverError::StaleEpoch {
                epoch,
                known: self.durable.grants_from_epoch,
            });
        }
        self.hold_for(from, now_ms);
        Outcome::answer(Answer::Granted { epoch })
    }

    /// Rules 2 to 4: `from` asks this voter to sign `body`; `proof` is the
    /// certificate of the epoch it follows.
    pub fn vote(
        &mut self,
        from: &PeerIdBytes,
        body: &AssignmentBody,
        proof: Option<&Certificate>,
        now_ms: u64,
    ) -> Outcome {
        match self.vote_check(from, body, proof, now_ms) {
            Ok(None) => {}
            Ok(Some(answer)) => return Outcome::answer(answer),
            Err(e) => return Outcome::refuse(e),
        }
        let mut durable = self.durable.clone();
        durable.promised = Some(body.clone());
        if body.kind == AssignmentKind::Reconfigure && !durable.same_change(body) {
            durable.grants_from_before_change = durable.grants_from_epoch;
        }
        if matches!(
            body.kind,
            AssignmentKind::Takeover | AssignmentKind::Reconfigure
        ) {
            durable.grants_from_epoch = durable.grants_from_epoch.max(body.epoch);
        }
        if body.kind == AssignmentKind::Reconfigure && !active(Bug::ForgetReconfiguration) {
            durable.change = Some(body.clone());
        }
        self.durable = durable.clone();
        Outcome {
            answer: Ok(Answer::Sign(body.clone())),
            write: (!active(Bug::VoterForgetsPromise)).then_some(durable),
        }
    }

    /// This node, the owner, asks for the change `body` although it is not
    /// one of its signers (it came by a handoff to a node outside the set):
    /// it remembers the change as if its voter had signed it, so that it
    /// asks for it again after a restart (the voters that signed it are
    /// bound to nothing else). Returns what to make durable first.
    pub fn ask_change(&mut self, body: &AssignmentBody) -> Option<VoterDurable> {
        let newer = body.epoch > self.durable.follows_from_epoch();
        (body.kind == AssignmentKind::Reconfigure && newer).then(|| {
            if !self.durable.same_change(body) {
                self.durable.grants_from_before_change = self.durable.grants_from_epoch;
            }
            self.durable.change = Some(body.clone());
            self.durable.clone()
        })
    }

    /// This node owned the epoch its own change follows and was fenced by
    /// epoch `fenced_by` above it: it runs under that change never (it
    /// would only while it owns that epoch, and its records only rise), and
    /// the change's certificate, formed or not, never leaves it. So its own
    /// voter drops the change's bar and grant floor, which would otherwise
    /// keep the remaining voters from a majority. Returns what to make
    /// durable.
    pub fn drop_change(&mut self, fenced_by: u64) -> Option<VoterDurable> {
        let c = self.durable.change.as_ref()?;
        if c.owner != self.me || fenced_by <= c.previous_epoch {
            return None;
        }
        if self.durable.grants_from_epoch == c.epoch {
            self.durable.grants_from_epoch = self.durable.grants_from_before_change;
        }
        self.durable.change = None;
        Some(self.durable.clone())
    }

    /// The checks of a vote: an answer that needs no new promise
    /// (`Some`), or go on and promise (`None`).
    fn vote_check(
        &mut self,
        from: &PeerIdBytes,
        body: &AssignmentBody,
        proof: Option<&Certificate>,
        now_ms: u64,
    ) -> Result<Option<Answer>, FailoverError> {
        if let Some(p) = proof {
            check_proof(body, p)?;
            self.learn(p)?;
        }
        let follows = self.known_body().filter(|k| k.epoch == body.previous_epoch);
        check_assignment(body, follows)?;
        if !body.signers.contains(&self.me) {
            return Err(FailoverError::NotVoter);
        }
        if self.durable.promised.as_ref() == Some(body) || self.known_body() == Some(body) {
            // A repeated request, or one already certified: signing again
            // promises nothing new.
            return Ok(Some(Answer::Sign(body.clone())));
        }
        if let Some(k) = self.known.as_ref().filter(|k| k.body.epoch >= body.epoch) {
            return Ok(Some(Answer::Superseded(k.clone())));
        }
        let reconfigured = self.durable.follows_from_epoch();
        if body.previous_epoch < reconfigured && !self.durable.same_change(body) {
            // Rule 5: it follows a voter set this voter helped replace.
            return match self.known.as_ref().filter(|k| k.body.epoch >= reconfigured) {
                Some(k) => Ok(Some(Answer::Superseded(k.clone()))),
                None => Err(FailoverError::BelowReconfiguration {
                    follows: body.previous_epoch,
                    reconfigured,
                }),
            };
        }
        let known = self.durable.promised_epoch().max(self.known_epoch());
        if body.epoch <= known {
            return Err(FailoverError::StaleEpoch {
                epoch: body.epoch,
                known,
            });
        }
        match body.kind {
            AssignmentKind::Deploy => self.may_deploy()?,
            AssignmentKind::Handoff => self.may_hand_off(from, body)?,
            AssignmentKind::Takeover => self.may_take_over(from, body, now_ms)?,
            AssignmentKind::Reconfigure => self.may_reconfigure(from, body, now_ms)?,
        }
        Ok(None)
    }

    /// Rule 5: the owner of the epoch it follows asks (its consent), for
    /// itself, and this voter's grants to every other node ran out (the
    /// takeover's rule: a node that took the old set's epoch over in the
    /// meantime has stopped before the change forms, and gets no grant
    /// after it). The consent alone refuses that case while the voter
    /// remembers the takeover's certificate (a grant learnt it); the hold
    /// and the boot wait keep it refused when it does not (a restart, or
    /// a write of it that failed).
    fn may_reconfigure(
        &self,
        from: &PeerIdBytes,
        body: &AssignmentBody,
        now_ms: u64,
    ) -> Result<(), FailoverError> {
        self.may_hand_off(from, body)?;
        self.may_take_over(from, body, now_ms)
    }

    fn may_deploy(&self) -> Result<(), FailoverError> {
        match self.durable.promised.is_none() && self.known.is_none() {
            true => Ok(()),
            false => Err(FailoverError::Exists),
        }
    }

    /// Only the owner of the epoch a handoff follows consents to it.
    fn may_hand_off(&self, from: &PeerIdBytes, body: &AssignmentBody) -> Result<(), FailoverError> {
        match self.known.as_ref() {
            Some(k) if k.body.epoch == body.previous_epoch && &k.body.owner == from => Ok(()),
            _ => Err(FailoverError::NotOwner {
                epoch: body.previous_epoch,
            }),
        }
    }

    /// A takeover for its proposer, once this voter's grants ran out and
    /// it has been up for a hold (it may have granted before a crash).
    fn may_take_over(
        &self,
        from: &PeerIdBytes,
        body: &AssignmentBody,
        now_ms: u64,
    ) -> Result<(), FailoverError> {
        if &body.owner != from {
            return Err(FailoverError::NotOwner { epoch: body.epoch });
        }
        // Holds for the proposer alone do not stop it: it takes over from
        // itself (an owner whose certificate a higher promise made useless
        // gets a new one), and one node runs at most once.
        let others = self.granted_to.as_ref() != Some(from);
        if now_ms < self.granted_until_ms && others && !active(Bug::TakeoverBeforeGrantRanOut) {
            return Err(FailoverError::GrantRunning {
                remaining_ms: self.granted_until_ms - now_ms,
            });
        }
        let boot_end = self.started_ms + self.params.voter_hold_ms();
        if now_ms < boot_end && !active(Bug::NoBootWait) {
            return Err(FailoverError::BootWait {
                remaining_ms: boot_end - now_ms,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::cert::tests::{body, id, signed};

    fn voter(n: u8, now_ms: u64) -> Voter {
        Voter::start(
            id(n),
            LeaseParams::default(),
            VoterDurable::default(),
            now_ms,
        )
    }

    fn deployed() -> Certificate {
        signed(body(1, 0, AssignmentKind::Deploy, 3), &[0, 1, 2])
    }

    #[test]
    fn a_grant_holds_the_voter_off_a_takeover_for_its_hold() {
        let p = LeaseParams::default();
        let mut v = voter(1, 0);
        let boot = p.voter_hold_ms();
        let g = v.lease(&id(0), &deployed(), boot);
        assert_eq!(g.answer, Ok(Answer::Granted { epoch: 1 }));
        assert_eq!(g.write, None, "a grant need not be durable");
        let take = body(2, 2, AssignmentKind::Takeover, 3);
        let early = v.vote(&id(2), &take, None, boot + p.voter_hold_ms() - 1);
        assert_eq!(
            early.answer,
            Err(FailoverError::GrantRunning { remaining_ms: 1 })
        );
        let on_time = v.vote(&id(2), &take, None, boot + p.voter_hold_ms());
        assert_eq!(on_time.answer, Ok(Answer::Sign(take.clone())));
        assert_eq!(on_time.write.as_ref().unwrap().grants_from_epoch, 2);
        // After the takeover it grants the old owner nothing ...
        let old = v.lease(&id(0), &deployed(), boot + p.voter_hold_ms() + 1);
        assert!(matches!(
            old.answer,
            Err(FailoverError::StaleEpoch { epoch: 1, known: 2 })
        ));
        // ... and once shown the new certificate, tells it so.
        let cert = signed(take, &[1, 2]);
        let new = v.lease(&id(2), &cert, boot + p.voter_hold_ms() + 2);
        assert_eq!(new.answer, Ok(Answer::Granted { epoch: 2 }));
        let old = v.lease(&id(0), &deployed(), boot + p.voter_hold_ms() + 3);
        assert_eq!(old.answer, Ok(Answer::Superseded(cert)));
    }

    #[test]
    fn an_owner_may_take_over_from_itself_while_its_grant_runs() {
        let hold = LeaseParams::default().voter_hold_ms();
        let mut v = voter(1, 0);
        assert!(matches!(
            v.lease(&id(0), &deployed(), hold).answer,
            Ok(Answer::Granted { .. })
        ));
        let by_owner = body(2, 0, AssignmentKind::Takeover, 3);
        assert!(matches!(
            v.vote(&id(0), &by_owner, None, hold + 1).answer,
            Ok(Answer::Sign(_))
        ));
        // Its grant to node 0 still holds off any other proposer.
        let by_other = body(3, 2, AssignmentKind::Takeover, 3);
        assert!(matches!(
            v.vote(&id(2), &by_other, None, hold + 2).answer,
            Err(FailoverError::GrantRunning { .. })
        ));
        let mut w = voter(1, 0);
        w.lease(&id(0), &deployed(), hold);
        let cert2 = signed(body(2, 2, AssignmentKind::Handoff, 3), &[0, 1]);
        w.lease(&id(2), &cert2, hold + 1);
        let by_two = body(3, 2, AssignmentKind::Takeover, 3);
        assert!(
            matches!(
                w.vote(&id(2), &by_two, None, hold + 2).answer,
                Err(FailoverError::GrantRunning { .. })
            ),
            "a grant to node 0 still runs"
        );
    }

    #[test]
    fn a_restarted_voter_waits_a_hold_before_a_takeover() {
        let p = LeaseParams::default();
        let mut v = voter(1, 10_000);
        v.lease(&id(1), &deployed(), 10_000); // not the owner: refused
        let take = body(2, 2, AssignmentKind::Takeover, 3);
        let early = v.vote(&id(2), &take, Some(&deployed()), 10_000 + 5);
        assert_eq!(
            early.answer,
            Err(FailoverError::BootWait {
                remaining_ms: p.voter_hold_ms() - 5
            })
        );
        let later = v.vote(&id(2), &take, None, 10_000 + p.voter_hold_ms());
        assert!(matches!(later.answer, Ok(Answer::Sign(_))));
    }

    #[test]
    fn one_promise_per_epoch_and_only_upwards() {
        let hold = LeaseParams::default().voter_hold_ms();
        let mut v = voter(0, 0);
        let a = body(2, 1, AssignmentKind::Takeover, 3);
        let b = body(2, 2, AssignmentKind::Takeover, 3);
        assert!(v.vote(&id(1), &a, None, hold).write.is_some());
        let again = v.vote(&id(1), &a, None, hold);
        assert_eq!(again.answer, Ok(Answer::Sign(a.clone())), "repeated");
        assert_eq!(again.write, None);
        assert!(matches!(
            v.vote(&id(2), &b, None, hold).answer,
            Err(FailoverError::StaleEpoch { epoch: 2, known: 2 })
        ));
        let mut c = body(3, 2, AssignmentKind::Takeover, 3);
        c.previous_epoch = 1;
        assert!(matches!(
            v.vote(&id(2), &c, None, hold).answer,
            Ok(Answer::Sign(_))
        ));
        // A takeover is for its proposer only.
        let d = body(4, 2, AssignmentKind::Takeover, 3);
        assert_eq!(
            v.vote(&id(1), &d, None, 3 * hold).answer,
            Err(FailoverError::NotOwner { epoch: 4 })
        );
    }

    #[test]
    fn a_handoff_needs_the_owners_consent_and_a_deploy_a_fresh_voter() {
        let mut v = voter(2, 0);
        let deploy = body(1, 0, AssignmentKind::Deploy, 3);
        assert!(matches!(
            v.vote(&id(0), &deploy, None, 0).answer,
            Ok(Answer::Sign(_))
        ));
        let hand = body(2, 1, AssignmentKind::Handoff, 3);
        assert_eq!(
            v.vote(&id(1), &hand, Some(&deployed()), 1).answer,
            Err(FailoverError::NotOwner { epoch: 1 })
        );
        let ok = v.vote(&id(0), &hand, Some(&deployed()), 1);
        assert_eq!(ok.answer, Ok(Answer::Sign(hand)));
        assert_eq!(
            ok.write.unwrap().grants_from_epoch,
            0,
            "the owner keeps its lease"
        );
        assert_eq!(
            v.lease(&id(0), &deployed(), 2).answer,
            Ok(Answer::Granted { epoch: 1 })
        );
        let mut w = voter(1, 0);
        let other = body(1, 1, AssignmentKind::Deploy, 3);
        assert!(matches!(
            w.vote(&id(1), &other, None, 0).answer,
            Ok(Answer::Sign(_))
        ));
        assert!(matches!(
            w.vote(&id(0), &deploy, None, 0).answer,
            Err(FailoverError::StaleEpoch { .. })
        ));
        let mut x = voter(1, 0);
        x.durable.grants_from_epoch = 0;
        x.known = None;
        x.durable.promised = None;
        x.lease(&id(0), &deployed(), 0);
        assert_eq!(
            x.vote(&id(0), &deploy, None, 0).answer,
            Ok(Answer::Sign(deploy.clone())),
            "the certified deploy itself"
        );
        assert!(matches!(
            x.vote(&id(1), &other, None, 0).answer,
            Ok(Answer::Superseded(_))
        ));
        let late = body(3, 1, AssignmentKind::Deploy, 3);
        assert_eq!(
            x.vote(&id(1), &late, None, 0).answer,
            Err(FailoverError::Exists)
        );
    }

    /// A reconfiguration of the deploy's set {0,1,2} to {0,1,3}, by owner 0.
    fn reconfigure(epoch: u64) -> AssignmentBody {
        let mut b = body(epoch, 0, AssignmentKind::Reconfigure, 3);
        b.previous_epoch = 1;
        b.voters[2] = id(3);
        b
    }

    #[test]
    fn a_reconfiguration_needs_the_owner_and_no_grant_to_another_node() {
        let hold = LeaseParams::default().voter_hold_ms();
        let mut v = voter(1, 0);
        let change = reconfigure(2);
        assert_eq!(
            v.vote(&id(2), &change, Some(&deployed()), hold).answer,
            Err(FailoverError::NotOwner { epoch: 1 }),
            "only the owner proposes its own change"
        );
        // A grant to the owner does not hold its own change off ...
        v.lease(&id(0), &deployed(), hold);
        let ok = v.vote(&id(0), &change, Some(&deployed()), hold + 1);
        assert_eq!(ok.answer, Ok(Answer::Sign(change.clone())));
        let written = ok.write.expect("a promise");
        assert_eq!(written.follows_from_epoch(), 2);
        assert_eq!(written.grants_from_epoch, 2, "no grant below the change");
        // ... a grant to another node does, until it ran out.
        let mut w = voter(2, 0);
        let cert2 = signed(body(2, 2, AssignmentKind::Takeover, 3), &[1, 2]);
        w.lease(&id(2), &cert2, hold);
        let mut after2 = reconfigure(3);
        after2.previous_epoch = 2;
        after2.owner = id(2);
        assert!(matches!(
            w.vote(&id(2), &after2, Some(&cert2), hold + 1).answer,
            Ok(Answer::Sign(_))
        ));
        let mut x = voter(1, 0);
        x.lease(&id(2), &cert2, hold);
        let mut by0 = reconfigure(3);
        by0.previous_epoch = 1;
        x.known = Some(deployed());
        assert!(
            matches!(
                x.vote(&id(0), &by0, Some(&deployed()), hold + 1).answer,
                Ok(Answer::Superseded(_)) | Err(_)
            ),
            "a voter that knows epoch 2 does not let epoch 1's owner change the set"
        );
        let mut y = voter(1, 0);
        let other_cert = signed(body(1, 0, AssignmentKind::Deploy, 3), &[0, 1]);
        y.lease(&id(0), &other_cert, hold);
        y.granted_to = Some(id(2));
        assert!(matches!(
            y.vote(&id(0), &change, Some(&deployed()), hold + 1).answer,
            Err(FailoverError::GrantRunning { .. })
        ));
        // The proof must be a certificate of the epoch followed, signed by
        // the signers the change names.
        let mut z = voter(1, 0);
        let other = signed(body(1, 0, AssignmentKind::Deploy, 4), &[0, 1, 2]);
        assert_eq!(
            z.vote(&id(0), &change, Some(&other), hold).answer,
            Err(FailoverError::WrongSigners { epoch: 1 })
        );
    }

    #[test]
    fn after_a_reconfiguration_a_voter_signs_nothing_that_follows_the_old_set() {
        let hold = LeaseParams::default().voter_hold_ms();
        let mut v = voter(1, 0);
        let change = reconfigure(2);
        let signed_change = v.vote(&id(0), &change, Some(&deployed()), hold);
        assert!(signed_change.write.is_some());
        // A takeover at 3 that follows epoch 1 (the old set), by a node
        // that never heard of the change: refused, with the change's epoch.
        let mut stale = body(3, 2, AssignmentKind::Takeover, 3);
        stale.previous_epoch = 1;
        let r = v.vote(&id(2), &stale, Some(&deployed()), 3 * hold).answer;
        assert_eq!(
            r,
            Err(FailoverError::BelowReconfiguration {
                follows: 1,
                reconfigured: 2
            })
        );
        assert_eq!(r.unwrap_err().refusal().known_epoch, Some(2));
        // The same change asked again by its owner, higher: signed.
        let again = reconfigure(4);
        assert_eq!(
            v.vote(&id(0), &again, Some(&deployed()), 3 * hold).answer,
            Ok(Answer::Sign(again.clone()))
        );
        let mut other_set = reconfigure(5);
        other_set.voters[2] = id(4);
        assert!(matches!(
            v.vote(&id(0), &other_set, Some(&deployed()), 3 * hold)
                .answer,
            Err(FailoverError::BelowReconfiguration { .. })
        ));
        // Once it knows the change's certificate, it shows it instead.
        let cert = signed(again.clone(), &[0, 1]);
        v.learn(&cert).unwrap();
        let mut stale6 = stale.clone();
        stale6.epoch = 6;
        assert_eq!(
            v.vote(&id(2), &stale6, Some(&deployed()), 3 * hold).answer,
            Ok(Answer::Superseded(cert.clone()))
        );
        // And it signs a takeover that follows the new set.
        let mut next = body(5, 3, AssignmentKind::Takeover, 3);
        next.voters = again.voters.clone();
        next.signers = again.voters.clone();
        next.previous_epoch = 4;
        assert!(matches!(
            v.vote(&id(3), &next, Some(&cert), 3 * hold).answer,
            Ok(Answer::Sign(_))
        ));
        // The rule survives a restart: it is in the durable state.
        let restarted = Voter::start(id(1), LeaseParams::default(), v.durable.clone(), 0);
        assert_eq!(restarted.durable.follows_from_epoch(), 4);
    }

    #[test]
    fn a_fenced_owner_drops_its_own_change_and_no_one_else_does() {
        let hold = LeaseParams::default().voter_hold_ms();
        let mut owner = voter(0, 0);
        owner.durable.grants_from_epoch = 1;
        let change = reconfigure(2);
        assert!(owner
            .vote(&id(0), &change, Some(&deployed()), hold)
            .write
            .is_some());
        assert_eq!(owner.durable.grants_from_epoch, 2);
        assert_eq!(owner.drop_change(1), None, "not fenced above epoch 1");
        let d = owner.drop_change(3).expect("fenced by epoch 3");
        assert_eq!((d.change, d.grants_from_epoch), (None, 1), "floor restored");
        let mut stale = body(4, 2, AssignmentKind::Takeover, 3);
        stale.previous_epoch = 1;
        assert!(
            matches!(
                owner
                    .vote(&id(2), &stale, Some(&deployed()), 3 * hold)
                    .answer,
                Ok(Answer::Sign(_))
            ),
            "no longer bound"
        );
        let mut signer = voter(1, 0);
        signer.vote(&id(0), &change, Some(&deployed()), hold);
        assert_eq!(
            signer.drop_change(3),
            None,
            "only the change's owner drops it"
        );
    }

    #[test]
    fn a_lease_is_for_the_owner_and_voters_of_a_valid_certificate() {
        let mut v = voter(1, 0);
        assert_eq!(
            v.lease(&id(1), &deployed(), 0).answer,
            Err(FailoverError::NotOwner { epoch: 1 })
        );
        let mut outsider = voter(5, 0);
        assert_eq!(
            outsider.lease(&id(0), &deployed(), 0).answer,
            Err(FailoverError::NotVoter)
        );
        let short = signed(body(1, 0, AssignmentKind::Deploy, 3), &[0]);
        assert!(matches!(
            v.lease(&id(0), &short, 0).answer,
            Err(FailoverError::Certificate(_))
        ));
    }
}
