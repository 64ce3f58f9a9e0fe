//! The destination side of a migration: the sessions this node is
//! receiving, and what it decides about each offer, batch of chunks,
//! prepare, commit and abort. I/O-free: the caller reads the record and the
//! store, brings the time, and does the writes these decisions ask for.
//!
//! A session carries driver data `D` beside the protocol's own fields (the
//! node keeps decoded images and the memory it builds ahead there; the
//! simulation keeps nothing).

use std::collections::{HashMap, HashSet};
use std::hash::Hash as StdHash;
use std::time::{Duration, Instant};

use protocol::limits::{
    MAX_INCOMING_MIGRATIONS, MAX_WARM_CHUNKS_PER_MIGRATION, MAX_WARM_CHUNKS_PER_NODE,
};
use protocol::migrate::OfferKind;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

use super::bugs::{active, Bug};
use super::record::{
    abort_record, check_offer_epoch, commit_rule, AbortRecord, CommitRule, Record,
};

/// A migration whose source went quiet (it aborted and the abort was lost,
/// or it died before its commit) is forgotten after this long.
pub const INCOMING_MIGRATION_TTL: Duration = Duration::from_secs(600);

/// One migration this node is receiving.
pub struct Session<P, D> {
    pub from: P,
    pub kind: OfferKind,
    pub epoch: u64,
    /// The hash of the offered image (the final image, or a warm round's).
    pub image: Hash,
    /// Chunks asked for and not received yet (pinned: nothing evicts them).
    pub expected: HashSet<Hash>,
    pub started: Instant,
    /// The image and its `Prepared` record are durable and the answer
    /// `Prepared` went out.
    pub prepared: bool,
    /// Chunks this migration's pre-copy rounds asked for, all rounds
    /// together (see [`Destination::check_warm_budget`]).
    pub warm_chunks: u64,
    pub data: D,
}

impl<P: PartialEq, D> Session<P, D> {
    /// Whether this session is the migration of `from` at `epoch`.
    pub fn is(&self, from: &P, epoch: u64) -> bool {
        &self.from == from && self.epoch == epoch
    }
}

/// What to do with a commit.
pub enum CommitPlan<P, D> {
    /// The vessel runs here under this very commit already: answer
    /// `Committed` again.
    AlreadyDone,
    /// Refuse it.
    Refuse(Refusal),
    /// Run the vessel from this session's prepared image.
    FromSession(Session<P, D>),
    /// No session (this node restarted since it prepared): run it from the
    /// `Prepared` record on disk, if that record is for exactly this commit
    /// ([`super::record::prepared_matches`]); else refuse.
    FromDisk,
}

/// What an abort undoes.
pub struct AbortPlan<P, D> {
    /// The session it ended, if one was open.
    pub session: Option<Session<P, D>>,
    /// What becomes of the record.
    pub record: AbortRecord,
}

/// Every migration this node is receiving, by vessel.
pub struct Destination<P, D> {
    sessions: HashMap<VesselId, Session<P, D>>,
}

impl<P, D> Default for Destination<P, D> {
    fn default() -> Self {
        Destination {
            sessions: HashMap::new(),
        }
    }
}

impl<P: Clone + Eq + StdHash, D> Destination<P, D> {
    /// The checks of an offer that need this node's state: room for
    /// another migration and the epoch rule. Returns the open session of
    /// the same migration (an earlier round), whose work a later round
    /// keeps.
    pub fn check_offer(
        &mut self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        known: Option<&Record>,
        now: Instant,
    ) -> Result<Option<&Session<P, D>>, Refusal> {
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.started) < INCOMING_MIGRATION_TTL);
        if self.sessions.len() >= MAX_INCOMING_MIGRATIONS && !self.sessions.contains_key(&vessel) {
            return Err(Refusal::new(
                RefusalCode::Busy,
                format!(
                    "this node receives {MAX_INCOMING_MIGRATIONS} migrations already; retry later"
                ),
            ));
        }
        check_offer_epoch(known, vessel, epoch)?;
        Ok(self.sessions.get(&vessel).filter(|s| s.is(from, epoch)))
    }

    /// Judges a pre-copy round that would ask the source for `lacking`
    /// chunks, against the migration's budget (its earlier rounds count)
    /// and the node's (every other incoming migration's rounds count).
    /// Returns the migration's count with this round's, for its session.
    pub fn check_warm_budget(
        &self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        lacking: u64,
    ) -> Result<u64, Refusal> {
        let earlier = self
            .session(vessel, from, epoch)
            .map_or(0, |s| s.warm_chunks);
        let mine = earlier.saturating_add(lacking);
        if mine > MAX_WARM_CHUNKS_PER_MIGRATION {
            return Err(Refusal::new(
                RefusalCode::Limit,
                format!(
                    "the pre-copy of vessel {vessel} would take {mine} chunks, over the \
                     limit of {MAX_WARM_CHUNKS_PER_MIGRATION} per migration"
                ),
            ));
        }
        let others: u64 = self
            .sessions
            .iter()
            .filter(|(v, _)| **v != vessel)
            .map(|(_, s)| s.warm_chunks)
            .sum();
        if others.saturating_add(mine) > MAX_WARM_CHUNKS_PER_NODE {
            return Err(Refusal::new(
                RefusalCode::Busy,
                format!(
                    "incoming pre-copies would take {} chunks, over this node's limit of \
                     {MAX_WARM_CHUNKS_PER_NODE}; retry later",
                    others.saturating_add(mine)
                ),
            ));
        }
        Ok(mine)
    }

    /// Opens (or, for a later round or a newer offer, replaces) the session
    /// of an accepted offer.
    pub fn accept(&mut self, vessel: VesselId, session: Session<P, D>) {
        self.sessions.insert(vessel, session);
    }

    pub fn session(&self, vessel: VesselId, from: &P, epoch: u64) -> Option<&Session<P, D>> {
        self.sessions.get(&vessel).filter(|s| s.is(from, epoch))
    }

    pub fn session_mut(
        &mut self,
        vessel: VesselId,
        from: &P,
        epoch: u64,
    ) -> Option<&mut Session<P, D>> {
        self.sessions.get_mut(&vessel).filter(|s| s.is(from, epoch))
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Judges a batch of chunks: returns the ones to store. A chunk that was
    /// not asked for is refused, unless `stored` says it is here already (a
    /// batch sent again after its answer was lost).
    pub fn check_chunks(
        &self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        hashes: impl IntoIterator<Item = Hash>,
        stored: impl Fn(&Hash) -> bool,
    ) -> Result<Vec<Hash>, Refusal> {
        let s = self
            .session(vessel, from, epoch)
            .ok_or_else(|| no_migration(vessel, epoch))?;
        let mut wanted = Vec::new();
        for h in hashes {
            if s.expected.contains(&h) {
                wanted.push(h);
            } else if !stored(&h) {
                return Err(Refusal::new(
                    RefusalCode::UnexpectedChunk,
                    format!("chunk {h} was not asked for by this migration"),
                ));
            }
        }
        Ok(wanted)
    }

    /// The chunks named arrived and are stored.
    pub fn stored(&mut self, vessel: VesselId, hashes: impl IntoIterator<Item = Hash>) {
        if let Some(s) = self.sessions.get_mut(&vessel) {
            for h in hashes {
                s.expected.remove(&h);
            }
        }
    }

    /// A prepare is taken only for the final offer of this very migration
    /// and image, once every chunk it asked for is here. The image matters:
    /// an earlier attempt's final offer that arrives late replaces the
    /// session (same source, same epoch), and must not be what a later
    /// attempt's prepare makes durable.
    pub fn check_prepare(
        &self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        image: Hash,
    ) -> Result<&Session<P, D>, Refusal> {
        let s = self
            .session(vessel, from, epoch)
            .filter(|s| s.kind == OfferKind::Final)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::NoMigration,
                    format!("no final offer of vessel {vessel} at epoch {epoch} from this node"),
                )
            })?;
        if s.image != image && !active(Bug::PrepareIgnoresImage) {
            return Err(Refusal::new(
                RefusalCode::NoMigration,
                format!("the final offer of vessel {vessel} at epoch {epoch} here names another image than this prepare"),
            ));
        }
        if !s.expected.is_empty() {
            return Err(Refusal::new(
                RefusalCode::MissingChunks,
                format!("{} chunks are still missing", s.expected.len()),
            ));
        }
        Ok(s)
    }

    /// Decides a commit (its signature and addressing already checked).
    /// The session, if it is this commit's, is taken out.
    pub fn commit(
        &mut self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        image: Hash,
        known: Option<&Record>,
    ) -> CommitPlan<P, D> {
        match commit_rule(known, vessel, epoch, image) {
            CommitRule::AlreadyDone => return CommitPlan::AlreadyDone,
            CommitRule::Refuse(r) => return CommitPlan::Refuse(r),
            CommitRule::Proceed => {}
        }
        let ours = self
            .sessions
            .get(&vessel)
            .filter(|s| s.is(from, epoch) && s.image == image);
        match ours {
            // Only a final offer's image can run: a pre-copy round's names
            // chunks only. A commit that names one (a hostile or broken
            // source) is refused by code, never taken for a final image.
            Some(s) if s.kind == OfferKind::Warm => CommitPlan::Refuse(warm_commit(vessel, epoch)),
            Some(s) if s.prepared => match self.sessions.remove(&vessel) {
                Some(s) => CommitPlan::FromSession(s),
                None => CommitPlan::FromDisk,
            },
            _ => CommitPlan::FromDisk,
        }
    }

    /// Decides an abort (its signature already checked) of the move at
    /// `epoch` with the final image `image`: that move's session ends, and
    /// its `Prepared` record goes. An abort of an earlier attempt at the
    /// same epoch (another image) that arrives late undoes nothing.
    pub fn abort(
        &mut self,
        from: &P,
        vessel: VesselId,
        epoch: u64,
        image: Hash,
        known: Option<&Record>,
    ) -> AbortPlan<P, D> {
        let ours = self.sessions.get(&vessel).is_some_and(|s| {
            s.is(from, epoch)
                && (s.kind == OfferKind::Warm || s.image == image || active(Bug::AbortIgnoresImage))
        });
        let session = match ours {
            true => self.sessions.remove(&vessel),
            false => None,
        };
        AbortPlan {
            session,
            record: abort_record(known, epoch, image),
        }
    }
}

/// The refusal for a request about a migration that is not open here.
pub fn no_migration(vessel: VesselId, epoch: u64) -> Refusal {
    Refusal::new(
        RefusalCode::NoMigration,
        format!("no migration of vessel {vessel} at epoch {epoch} from this node is in progress"),
    )
}

/// The refusal for a commit that names a pre-copy round's image.
pub fn warm_commit(vessel: VesselId, epoch: u64) -> Refusal {
    Refusal::new(
        RefusalCode::NoMigration,
        format!(
            "the commit of vessel {vessel} at epoch {epoch} names a pre-copy image: only a \
             prepared final image can be committed"
        ),
    )
}

/// The refusal for a commit this node has nothing prepared for.
pub fn nothing_prepared(vessel: VesselId, epoch: u64) -> Refusal {
    Refusal::new(
        RefusalCode::NoMigration,
        format!("nothing prepared for vessel {vessel} at epoch {epoch}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(from: u8, kind: OfferKind, epoch: u64, expected: &[Hash]) -> Session<u8, ()> {
        Session {
            from,
            kind,
            epoch,
            image: Hash([9; 32]),
            expected: expected.iter().copied().collect(),
            started: Instant::now(),
            prepared: false,
            warm_chunks: 0,
            data: (),
        }
    }

    /// Issue 14, item 3: pre-copy rounds are counted, per migration (all
    /// its rounds) and per node (all migrations), so that a member cannot
    /// fill this node's disk with round after round of fresh chunks.
    #[test]
    fn pre_copy_chunks_are_counted_against_a_migration_and_a_node_budget() {
        let (v, w) = (VesselId([1; 8]), VesselId([2; 8]));
        let mut d: Destination<u8, ()> = Destination::default();
        let half = MAX_WARM_CHUNKS_PER_MIGRATION / 2;
        let mut s = session(1, OfferKind::Warm, 2, &[]);
        s.warm_chunks = d.check_warm_budget(&1, v, 2, half).unwrap();
        d.accept(v, s);
        // A later round of the same migration adds to its count.
        let n = d.check_warm_budget(&1, v, 2, half).unwrap();
        assert_eq!(n, MAX_WARM_CHUNKS_PER_MIGRATION);
        let e = d.check_warm_budget(&1, v, 2, half + 1).unwrap_err();
        assert_eq!(e.code, RefusalCode::Limit);
        // A new migration of another vessel counts against the node's.
        d.session_mut(v, &1, 2).unwrap().warm_chunks = n;
        let room = MAX_WARM_CHUNKS_PER_NODE - n;
        assert_eq!(d.check_warm_budget(&2, w, 1, room).unwrap(), room);
        let e = d.check_warm_budget(&2, w, 1, room + 1).unwrap_err();
        assert_eq!(e.code, RefusalCode::Busy);
        // Another source or epoch of the same vessel starts from nothing.
        assert_eq!(d.check_warm_budget(&2, v, 3, half).unwrap(), half);
    }

    #[test]
    fn chunks_are_taken_only_when_asked_for_or_already_stored() {
        let v = VesselId([1; 8]);
        let mut d = Destination::default();
        d.accept(v, session(1, OfferKind::Final, 2, &[Hash([1; 32])]));
        assert_eq!(
            d.check_chunks(&1, v, 2, [Hash([1; 32])], |_| false)
                .unwrap(),
            vec![Hash([1; 32])]
        );
        let e = d
            .check_chunks(&1, v, 2, [Hash([2; 32])], |_| false)
            .unwrap_err();
        assert_eq!(e.code, RefusalCode::UnexpectedChunk);
        assert!(d
            .check_chunks(&1, v, 2, [Hash([2; 32])], |_| true)
            .unwrap()
            .is_empty());
        assert_eq!(
            d.check_chunks(&2, v, 2, [], |_| true).unwrap_err().code,
            RefusalCode::NoMigration
        );
        assert_eq!(
            d.check_prepare(&1, v, 2, Hash([9; 32])).err().unwrap().code,
            RefusalCode::MissingChunks
        );
        d.stored(v, [Hash([1; 32])]);
        assert!(d.check_prepare(&1, v, 2, Hash([9; 32])).is_ok());
        let other = d.check_prepare(&1, v, 2, Hash([8; 32])).err().unwrap();
        assert_eq!(
            other.code,
            RefusalCode::NoMigration,
            "a prepare for another image"
        );
    }

    #[test]
    fn a_commit_runs_only_a_prepared_session_of_its_own() {
        let v = VesselId([1; 8]);
        let mut d = Destination::default();
        d.accept(v, session(1, OfferKind::Final, 2, &[]));
        assert!(matches!(
            d.commit(&1, v, 2, Hash([9; 32]), None),
            CommitPlan::FromDisk
        ));
        d.session_mut(v, &1, 2).unwrap().prepared = true;
        assert!(matches!(
            d.commit(&1, v, 2, Hash([8; 32]), None),
            CommitPlan::FromDisk
        ));
        assert!(matches!(
            d.commit(&1, v, 2, Hash([9; 32]), None),
            CommitPlan::FromSession(_)
        ));
        assert!(d.is_empty());
    }

    /// Issue 14, item 3: a warm offer, then a commit that names the warm
    /// image. The session is one of a pre-copy round, which has no image
    /// to run; the commit was once taken from it (and the node's commit
    /// hit `expect("final")` under the host lock, poisoning it). Here the
    /// warm session is marked prepared, as a prepare of the same epoch's
    /// final offer that finishes after the warm offer replaced its session
    /// does.
    #[test]
    fn a_commit_that_names_a_warm_image_is_refused_by_code() {
        let v = VesselId([1; 8]);
        let mut d: Destination<u8, ()> = Destination::default();
        d.accept(v, session(1, OfferKind::Warm, 2, &[]));
        for prepared in [false, true] {
            d.session_mut(v, &1, 2).unwrap().prepared = prepared;
            match d.commit(&1, v, 2, Hash([9; 32]), None) {
                CommitPlan::Refuse(r) => {
                    assert_eq!(r.code, RefusalCode::NoMigration);
                    assert!(r.detail.contains("pre-copy image"), "{}", r.detail);
                }
                _ => panic!("a commit of a warm image was not refused"),
            }
        }
        // The warm session stays: the source may still send its final offer.
        assert!(d.session(v, &1, 2).is_some());
    }

    #[test]
    fn the_number_of_incoming_migrations_is_bounded() {
        let mut d: Destination<u8, ()> = Destination::default();
        let now = Instant::now();
        for i in 0..MAX_INCOMING_MIGRATIONS {
            d.accept(VesselId([i as u8; 8]), session(1, OfferKind::Warm, 2, &[]));
        }
        let e = d
            .check_offer(&1, VesselId([200; 8]), 2, None, now)
            .err()
            .unwrap();
        assert_eq!(e.code, RefusalCode::Busy);
        assert!(d
            .check_offer(&1, VesselId([0; 8]), 2, None, now)
            .unwrap()
            .is_some());
    }
}
