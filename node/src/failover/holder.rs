//! The owner's side of the lease: it sends a round to every voter at its
//! local time s, counts the grants of that round, and once a majority
//! granted it may run until s + L(1 - rho) on its own clock (never from
//! when the grants arrived: a grant that took long to come back says
//! nothing about how long ago the voter gave it). It renews every
//! [`super::params::LeaseParams::renew_every_ms`] and checks
//! [`Holder::may_run`] before every slice and before it releases output.
//! A holder starts with no lease, so a restarted owner runs again only
//! after a majority granted it anew (issue 15: "start-up recovery of a
//! replicated vessel first wins the lease back").
//!
//! A holder that has gone a whole hold without the lease *rests* for two
//! holds: it sends no rounds, so that the grants it still collects from a
//! minority of voters (its own voter's among them) run out, and a takeover
//! can gather a majority. Without the rest the simulation found a mesh
//! that never recovered (seed 0: a host cut off from two of four voters,
//! which had promised a takeover, kept its own voter granting it, and that
//! voter refused every takeover, for good).

use std::collections::VecDeque;

use protocol::ids::PeerIdBytes;
use protocol::lease::{majority, Certificate};

use super::params::LeaseParams;
use crate::migration::bugs::{active, Bug};

/// Rounds whose grants still count: a grant of an older round arrives
/// after three newer rounds were sent, and those speak for it.
const ROUNDS_KEPT: usize = 4;

/// One round: sent at `sent_ms`, granted by `granted`.
#[derive(Debug, Clone)]
struct Round {
    round: u64,
    sent_ms: u64,
    granted: Vec<PeerIdBytes>,
}

/// The lease of the owner of one vessel at one epoch.
#[derive(Debug, Clone)]
pub struct Holder {
    pub params: LeaseParams,
    /// The certificate that names this node the owner.
    pub certificate: Certificate,
    rounds: VecDeque<Round>,
    next_round: u64,
    /// It may run before this (its clock).
    valid_until_ms: Option<u64>,
    /// When it first polled (its clock).
    first_poll_ms: Option<u64>,
    /// It sends no round before this (a rest).
    rest_until_ms: u64,
}

impl Holder {
    /// A holder with no lease yet, whose rounds are numbered from
    /// `first_round`: a random number from the driver, so that a grant of
    /// an earlier holder of this node (before a restart, still on its way
    /// or duplicated) never matches a round of this one. Numbering from 1
    /// again let a straggling grant from before a crash extend the
    /// restarted owner's lease while a takeover ran (the simulation's
    /// 20,000-seed run, seed 8233: two runners).
    pub fn new(params: LeaseParams, certificate: Certificate, first_round: u64) -> Holder {
        Holder {
            params,
            certificate,
            rounds: VecDeque::new(),
            next_round: first_round,
            valid_until_ms: None,
            first_poll_ms: None,
            rest_until_ms: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.certificate.body.epoch
    }

    /// Whether a round is due at `now_ms`: the first one at once, then one
    /// every renewal interval. Returns the round to send to every voter.
    pub fn poll(&mut self, now_ms: u64) -> Option<u64> {
        if self.rests(now_ms) {
            return None;
        }
        let due = self
            .rounds
            .back()
            .is_none_or(|r| now_ms >= r.sent_ms + self.params.renew_every_ms);
        if !due {
            return None;
        }
        let round = self.next_round;
        self.next_round = self.next_round.wrapping_add(1);
        if self.rounds.len() == ROUNDS_KEPT {
            self.rounds.pop_front();
        }
        self.rounds.push_back(Round {
            round,
            sent_ms: now_ms,
            granted: Vec::new(),
        });
        Some(round)
    }

    /// Whether it rests at `now_ms` (and starts a rest when it has gone a
    /// whole hold without the lease, counted from its last lease, its first
    /// round or its last rest).
    fn rests(&mut self, now_ms: u64) -> bool {
        if now_ms < self.rest_until_ms {
            return true;
        }
        let hold = self.params.voter_hold_ms();
        let first = *self.first_poll_ms.get_or_insert(now_ms);
        let trying_since = self
            .valid_until_ms
            .unwrap_or(first)
            .max(first)
            .max(self.rest_until_ms);
        if !self.may_run(now_ms) && now_ms >= trying_since + hold {
            self.rest_until_ms = now_ms + 2 * hold;
            return true;
        }
        false
    }

    /// Whether it is resting (sends no rounds) at `now_ms`.
    pub fn resting(&self, now_ms: u64) -> bool {
        now_ms < self.rest_until_ms
    }

    /// `voter` granted `round` (the answer arrived at `now_ms`); counts it
    /// once, and extends the lease when that round has a majority.
    pub fn granted(&mut self, voter: &PeerIdBytes, round: u64, now_ms: u64) {
        let voters = &self.certificate.body.voters;
        if !voters.contains(voter) {
            return;
        }
        let needed = majority(voters.len());
        let Some(r) = self.rounds.iter_mut().find(|r| r.round == round) else {
            return;
        };
        if r.granted.contains(voter) {
            return;
        }
        r.granted.push(voter.clone());
        if r.granted.len() == needed {
            let from = match active(Bug::HolderCountsFromGrant) {
                true => now_ms,
                false => r.sent_ms,
            };
            let until = from + self.params.holder_ms();
            self.valid_until_ms = Some(self.valid_until_ms.map_or(until, |u| u.max(until)));
        }
    }

    /// Whether the vessel may run a slice (or release output) at `now_ms`.
    pub fn may_run(&self, now_ms: u64) -> bool {
        self.valid_until_ms.is_some_and(|u| now_ms < u)
    }

    /// Until when it may run (its clock), if it ever held the lease.
    pub fn valid_until_ms(&self) -> Option<u64> {
        self.valid_until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::cert::tests::{body, id, signed};
    use protocol::lease::AssignmentKind;

    fn holder() -> Holder {
        let cert = signed(body(1, 0, AssignmentKind::Deploy, 3), &[0, 1, 2]);
        Holder::new(LeaseParams::default(), cert, 1)
    }

    #[test]
    fn the_lease_counts_from_the_send_time_of_a_granted_round() {
        let p = LeaseParams::default();
        let mut h = holder();
        assert!(!h.may_run(0), "no lease before a majority granted");
        let r = h.poll(1_000).expect("the first round is due at once");
        assert_eq!(h.poll(1_001), None);
        h.granted(&id(1), r, 1_300);
        assert!(!h.may_run(1_300), "one of three is no majority");
        h.granted(&id(1), r, 1_301);
        assert!(!h.may_run(1_301), "a voter counts once");
        h.granted(&id(7), r, 1_302);
        assert!(!h.may_run(1_302), "a stranger does not count");
        h.granted(&id(2), r, 1_400);
        assert!(h.may_run(1_400));
        assert_eq!(h.valid_until_ms(), Some(1_000 + p.holder_ms()));
        assert!(!h.may_run(1_000 + p.holder_ms()), "from the send time");
    }

    #[test]
    fn it_renews_on_time_and_late_grants_of_recent_rounds_count() {
        let p = LeaseParams::default();
        let mut h = holder();
        let r1 = h.poll(0).unwrap();
        let r2 = h.poll(p.renew_every_ms).expect("renewal due");
        h.granted(&id(0), r2, p.renew_every_ms + 1);
        h.granted(&id(1), r1, p.renew_every_ms + 2);
        assert!(
            !h.may_run(p.renew_every_ms + 2),
            "grants of two rounds do not add up"
        );
        h.granted(&id(2), r1, p.renew_every_ms + 3);
        assert_eq!(h.valid_until_ms(), Some(p.holder_ms()));
        h.granted(&id(1), r2, p.renew_every_ms + 4);
        assert_eq!(h.valid_until_ms(), Some(p.renew_every_ms + p.holder_ms()));
        for k in 3..=6 {
            h.poll(k * p.renew_every_ms);
        }
        h.granted(&id(0), r1, 10_000);
        assert_eq!(
            h.valid_until_ms(),
            Some(p.renew_every_ms + p.holder_ms()),
            "a forgotten round is ignored"
        );
    }

    #[test]
    fn a_holder_without_the_lease_for_a_hold_rests_for_two() {
        let p = LeaseParams::default();
        let hold = p.voter_hold_ms();
        let mut h = holder();
        assert!(h.poll(0).is_some());
        assert!(h.poll(hold - 1).is_some(), "still trying");
        assert_eq!(h.poll(hold), None, "a hold without the lease");
        assert!(h.resting(hold) && h.resting(3 * hold - 1));
        assert_eq!(h.poll(3 * hold - 1), None);
        let r = h.poll(3 * hold).expect("tries again after the rest");
        for v in 0..2 {
            h.granted(&id(v), r, 3 * hold + 1);
        }
        assert!(h.may_run(3 * hold + 1));
        let until = h.valid_until_ms().unwrap();
        assert!(
            h.poll(until + hold - 1).is_some(),
            "lost it, tries for a hold"
        );
        assert_eq!(h.poll(until + hold), None);
    }
}
