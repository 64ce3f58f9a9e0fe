//! The one durable fact a node keeps about a vessel, and the ownership
//! rules that read it. Everything the protocol promises (a vessel runs on
//! one node at a time; epochs only rise; a committed move is never undone)
//! comes down to these rules and to when the record is made durable
//! (docs/protocol.md, "The commit point, failures and retries").
//!
//! Pure functions: no I/O, no clock. The destination's and the source's
//! drivers and the simulation all decide through them.

use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;
use serde::{Deserialize, Serialize};

use super::bugs::{active, Bug};

/// The durable fact about one vessel on this node
/// (`vessels/<id>/record.cbor`, written atomically and fsynced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// It runs here under `epoch`, from `image` when the node restarts.
    Owned { epoch: u64, image: Hash },
    /// It left for `to` under `epoch` (this node's commit point). `acked`
    /// once the destination confirmed that it runs it.
    Left {
        epoch: u64,
        image: Hash,
        to: Vec<u8>,
        acked: bool,
    },
    /// Received from `from` for `epoch`, validated, not committed: never run
    /// unless the source's signed commit arrives. `before` is the settled
    /// record it stands over (this node's history of the vessel), which an
    /// abort puts back: deleting it would make the node forget epochs it
    /// knew, and an old commit could no longer be told it is stale.
    Prepared {
        epoch: u64,
        image: Hash,
        from: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Box<Record>>,
    },
    /// It ended here.
    Ended {
        epoch: u64,
        image: Hash,
        exit: String,
        code: Option<i32>,
    },
    /// It ran here under `epoch` (from `image`, its newest checkpoint
    /// here), and a certificate for the higher epoch `by_epoch` names
    /// another owner (a takeover while this node was cut off or down):
    /// never run again; its log is kept as a past generation
    /// (docs/protocol.md, "Failover: leases and fencing").
    Fenced {
        epoch: u64,
        image: Hash,
        by_epoch: u64,
    },
}

impl Record {
    /// The highest epoch this record knows of the vessel: its own, or for
    /// a `Fenced` record the epoch that fenced it (an offer must be above
    /// it, since that epoch has an owner).
    pub fn epoch(&self) -> u64 {
        match self {
            Record::Owned { epoch, .. }
            | Record::Left { epoch, .. }
            | Record::Prepared { epoch, .. }
            | Record::Ended { epoch, .. } => *epoch,
            Record::Fenced { by_epoch, .. } => *by_epoch,
        }
    }

    /// The `Prepared` record of a move at `epoch` with `image` from `from`,
    /// over what this node knows of the vessel (`known`).
    pub fn prepared(epoch: u64, image: Hash, from: Vec<u8>, known: Option<&Record>) -> Record {
        let before = match known {
            Some(Record::Prepared { before, .. }) => before.clone(),
            Some(settled) => Some(Box::new(settled.clone())),
            None => None,
        };
        Record::Prepared {
            epoch,
            image,
            from,
            before,
        }
    }

    /// The record without a pending prepare: the settled fact.
    pub fn settled(&self) -> Option<&Record> {
        match self {
            Record::Prepared { before, .. } => before.as_deref(),
            settled => Some(settled),
        }
    }

    pub fn image(&self) -> Hash {
        match self {
            Record::Owned { image, .. }
            | Record::Left { image, .. }
            | Record::Prepared { image, .. }
            | Record::Ended { image, .. }
            | Record::Fenced { image, .. } => *image,
        }
    }
}

/// An offer for `epoch` may be considered only when `epoch` is above every
/// epoch this node records for the vessel: an equal epoch is a move that
/// was already made (or prepared and then aborted), and a lower one is
/// history.
pub fn check_offer_epoch(
    known: Option<&Record>,
    vessel: VesselId,
    epoch: u64,
) -> Result<(), Refusal> {
    let Some(r) = known else { return Ok(()) };
    let stale = if active(Bug::AcceptEqualEpoch) {
        epoch < r.epoch()
    } else {
        epoch <= r.epoch()
    };
    if stale {
        return Err(Refusal::new(
            RefusalCode::StaleEpoch,
            format!(
                "stale epoch: offer for epoch {epoch}, this node knows vessel {vessel} at epoch {}",
                r.epoch()
            ),
        )
        .with_known_epoch(r.epoch()));
    }
    Ok(())
}

/// The epoch a source offers a move of a vessel it owns at `owned_epoch`
/// under: the next one, or above the highest epoch a destination reported
/// in a stale-epoch refusal of an earlier offer (`reported`). A destination
/// can hold a `Prepared` record of this source's own earlier attempt at the
/// next epoch (its abort lost, or the source crashed before its commit
/// point) and refuses every offer at that epoch for good; an offer above
/// it is taken, and a late message of that attempt (its abort, its
/// prepare) names another epoch than the new one, so it acts on nothing.
/// `None` if the epoch would overflow.
pub fn offer_epoch(owned_epoch: u64, reported: Option<u64>) -> Option<u64> {
    let reported = reported.filter(|_| !active(Bug::IgnoreReportedEpoch));
    owned_epoch.max(reported.unwrap_or(0)).checked_add(1)
}

/// What a source keeps of stale-epoch refusals: from the refusal of an
/// offer, the epoch to offer above next time (see [`offer_epoch`]).
pub fn reported_epoch(refusal: &Refusal) -> Option<u64> {
    match refusal.code {
        RefusalCode::StaleEpoch => refusal.known_epoch,
        _ => None,
    }
}

/// What a destination does with a commit, judged from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitRule {
    /// It runs (or ran and ended) the vessel under exactly this commit: a
    /// repeated commit is answered `Committed` again.
    AlreadyDone,
    /// Refused: the record is at or above the commit's epoch and is not the
    /// prepared state it would commit.
    Refuse(Refusal),
    /// Go on: run what was prepared for this epoch.
    Proceed,
}

/// The commit rule at the destination. A record above the commit's epoch
/// (of any kind, a `Prepared` one included) means the vessel ran under the
/// commit and has moved on since: the commit is stale, and its source may
/// stop sending it.
pub fn commit_rule(
    known: Option<&Record>,
    vessel: VesselId,
    epoch: u64,
    image: Hash,
) -> CommitRule {
    let Some(r) = known else {
        return CommitRule::Proceed;
    };
    let stale = || {
        CommitRule::Refuse(Refusal::new(
            RefusalCode::StaleEpoch,
            format!(
                "stale epoch: commit for epoch {epoch}, this node knows vessel {vessel} at epoch {}",
                r.epoch()
            ),
        ))
    };
    match r {
        Record::Owned { epoch: e, image: i }
        | Record::Ended {
            epoch: e, image: i, ..
        } if *e == epoch && *i == image => CommitRule::AlreadyDone,
        r if r.epoch() > epoch => stale(),
        Record::Prepared { .. } => CommitRule::Proceed,
        r if r.epoch() == epoch && !active(Bug::AcceptEqualEpoch) => stale(),
        _ => CommitRule::Proceed,
    }
}

/// Whether the destination may run the vessel from a `Prepared` record it
/// finds on disk (after a restart): only the record for exactly this
/// commit.
pub fn prepared_matches(on_disk: Option<&Record>, epoch: u64, image: Hash) -> bool {
    matches!(on_disk, Some(Record::Prepared { epoch: e, image: i, .. }) if *e == epoch && *i == image)
}

/// What an abort does to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortRecord {
    /// Nothing: the record is not the `Prepared` record of this very move
    /// (any other record is a fact the abort cannot undo).
    Keep,
    /// Put back the settled record the `Prepared` one stood over.
    Restore(Record),
    /// Remove the record: the node knew nothing of the vessel before.
    Remove,
}

/// The abort rule: only the `Prepared` record of exactly the move at
/// `epoch` with `image` goes. The image tells two attempts of one source at
/// the same epoch apart: a late abort of the first must not undo the
/// second, whose commit point may have passed already.
pub fn abort_record(known: Option<&Record>, epoch: u64, image: Hash) -> AbortRecord {
    match known {
        Some(Record::Prepared {
            epoch: e,
            image: i,
            before,
            ..
        }) if *e == epoch && (*i == image || active(Bug::AbortIgnoresImage)) => match before {
            Some(b) => AbortRecord::Restore((**b).clone()),
            None => AbortRecord::Remove,
        },
        _ => AbortRecord::Keep,
    }
}

/// Whether a checkpoint of a vessel, taken while it ran here under
/// `epoch`, may become its record (`Owned { epoch, checkpoint }`): only
/// while this node still owns it at that epoch and no migration of it has
/// begun here. A move that committed meanwhile wrote `Left` (a commit
/// point): replacing it with `Owned` would make this node resume the
/// vessel after a restart while the destination runs it too. A move in
/// progress offered an image of its own; it decides, not the checkpoint.
pub fn may_checkpoint(record: Option<&Record>, epoch: u64, migrating: bool) -> bool {
    if active(Bug::CheckpointOverAnyRecord) {
        return !migrating;
    }
    !migrating && matches!(record, Some(Record::Owned { epoch: e, .. }) if *e == epoch)
}

/// Whether a vessel with this record may start a migration from this node.
pub fn check_may_migrate(
    known: Option<&Record>,
    vessel: VesselId,
    running: bool,
    migrating: bool,
) -> Result<(), Refusal> {
    match known {
        None => Err(Refusal::new(
            RefusalCode::UnknownVessel,
            format!("vessel {vessel} is not on this node"),
        )),
        Some(_) if migrating => Err(Refusal::new(
            RefusalCode::Busy,
            format!("vessel {vessel} is migrating already"),
        )),
        Some(Record::Owned { .. }) if running => Ok(()),
        Some(_) => Err(Refusal::new(
            RefusalCode::NotOwner,
            format!("vessel {vessel} is not running on this node"),
        )),
    }
}

/// What a node does at start-up with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// It owns the vessel: run it from the record's image.
    Resume,
    /// It decided to commit a move (`Left`, not acknowledged): send the
    /// commit until the destination confirms. Nothing runs here.
    FinishCommit { to: Vec<u8> },
    /// History (it left and the destination confirmed, or it ended): known
    /// for `ps` and `logs`, never run.
    Remember,
    /// Prepared, not committed: wait for the source's commit, never run alone.
    AwaitCommit,
}

/// The start-up rule for one record.
pub fn recovery_of(record: &Record) -> Recovery {
    match record {
        Record::Owned { .. } => Recovery::Resume,
        Record::Left {
            to, acked: false, ..
        } => Recovery::FinishCommit { to: to.clone() },
        Record::Left { acked: true, .. } | Record::Ended { .. } | Record::Fenced { .. } => {
            Recovery::Remember
        }
        Record::Prepared { .. } => Recovery::AwaitCommit,
    }
}

/// The record a node writes when it sees a certificate for `cert_epoch`
/// that names another owner: an `Owned` record below that epoch becomes
/// `Fenced` (never run again), and a `Fenced` one learns the higher epoch.
/// `None`: nothing to write (the record is at or above it, or is no run
/// of this node's: a `Left`, `Prepared` or `Ended` record is never run
/// anyway). Records only rise: the result is always above the record.
pub fn fenced_by(record: Option<&Record>, cert_epoch: u64) -> Option<Record> {
    match record? {
        Record::Owned { epoch, image } if *epoch < cert_epoch => Some(Record::Fenced {
            epoch: *epoch,
            image: *image,
            by_epoch: cert_epoch,
        }),
        Record::Fenced {
            epoch,
            image,
            by_epoch,
        } if *by_epoch < cert_epoch => Some(Record::Fenced {
            epoch: *epoch,
            image: *image,
            by_epoch: cert_epoch,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_higher_certificate_fences_an_owned_record_and_it_is_never_run() {
        let owned = Record::Owned {
            epoch: 3,
            image: h(1),
        };
        assert_eq!(fenced_by(Some(&owned), 3), None, "its own epoch");
        assert_eq!(fenced_by(Some(&owned), 2), None, "an older one");
        let fenced = fenced_by(Some(&owned), 5).expect("fenced");
        assert_eq!(
            fenced,
            Record::Fenced {
                epoch: 3,
                image: h(1),
                by_epoch: 5
            }
        );
        assert_eq!(
            fenced.epoch(),
            5,
            "an offer must be above the fencing epoch"
        );
        assert_eq!(recovery_of(&fenced), Recovery::Remember);
        assert_eq!(fenced_by(Some(&fenced), 5), None);
        assert_eq!(fenced_by(Some(&fenced), 6).map(|r| r.epoch()), Some(6));
        assert!(!may_checkpoint(Some(&fenced), 3, false));
        assert_eq!(
            check_offer_epoch(Some(&fenced), id(), 5).unwrap_err().code,
            RefusalCode::StaleEpoch
        );
        let left = Record::Left {
            epoch: 3,
            image: h(1),
            to: vec![1],
            acked: true,
        };
        assert_eq!(fenced_by(Some(&left), 9), None);
        assert_eq!(fenced_by(None, 9), None);
    }

    fn id() -> VesselId {
        VesselId([7; 8])
    }
    fn h(n: u8) -> Hash {
        Hash([n; 32])
    }

    #[test]
    fn an_offer_must_be_above_every_epoch_known() {
        assert!(check_offer_epoch(None, id(), 1).is_ok());
        let owned = Record::Owned {
            epoch: 3,
            image: h(1),
        };
        assert_eq!(
            check_offer_epoch(Some(&owned), id(), 3).unwrap_err().code,
            RefusalCode::StaleEpoch
        );
        assert_eq!(
            check_offer_epoch(Some(&owned), id(), 2).unwrap_err().code,
            RefusalCode::StaleEpoch
        );
        assert!(check_offer_epoch(Some(&owned), id(), 4).is_ok());
        let refusal = check_offer_epoch(Some(&owned), id(), 3).unwrap_err();
        assert_eq!(reported_epoch(&refusal), Some(3));
        let failed = crate::migration::MigrationError::new(
            crate::migration::Step::WarmOffer,
            crate::migration::ErrorKind::Refused(refusal),
        );
        assert_eq!(failed.reported_epoch(), Some(3), "as the driver reads it");
    }

    #[test]
    fn a_source_offers_above_what_a_destination_reported() {
        assert_eq!(offer_epoch(3, None), Some(4));
        assert_eq!(offer_epoch(3, Some(4)), Some(5));
        assert_eq!(
            offer_epoch(3, Some(2)),
            Some(4),
            "an old report changes nothing"
        );
        assert_eq!(offer_epoch(u64::MAX, None), None);
        let other = Refusal::new(RefusalCode::Busy, "busy").with_known_epoch(9);
        assert_eq!(reported_epoch(&other), None);
    }

    #[test]
    fn a_repeated_commit_is_done_and_an_old_one_refused() {
        let owned = Record::Owned {
            epoch: 3,
            image: h(1),
        };
        assert_eq!(
            commit_rule(Some(&owned), id(), 3, h(1)),
            CommitRule::AlreadyDone
        );
        assert!(matches!(
            commit_rule(Some(&owned), id(), 3, h(2)),
            CommitRule::Refuse(_)
        ));
        let left = Record::Left {
            epoch: 4,
            image: h(1),
            to: vec![1],
            acked: true,
        };
        assert!(matches!(
            commit_rule(Some(&left), id(), 4, h(1)),
            CommitRule::Refuse(_)
        ));
        let prepared = Record::prepared(4, h(1), vec![1], None);
        assert_eq!(
            commit_rule(Some(&prepared), id(), 4, h(1)),
            CommitRule::Proceed
        );
        assert!(
            matches!(
                commit_rule(Some(&prepared), id(), 3, h(1)),
                CommitRule::Refuse(_)
            ),
            "a record above the commit's epoch, a prepared one included, makes it stale"
        );
        assert_eq!(commit_rule(None, id(), 4, h(1)), CommitRule::Proceed);
    }

    #[test]
    fn only_a_prepared_record_of_that_move_is_aborted_and_history_comes_back() {
        let left = Record::Left {
            epoch: 3,
            image: h(9),
            to: vec![2],
            acked: true,
        };
        let prepared = Record::prepared(4, h(1), vec![1], Some(&left));
        assert_eq!(
            abort_record(Some(&prepared), 4, h(1)),
            AbortRecord::Restore(left.clone())
        );
        assert_eq!(abort_record(Some(&prepared), 5, h(1)), AbortRecord::Keep);
        assert_eq!(
            abort_record(Some(&prepared), 4, h(2)),
            AbortRecord::Keep,
            "an earlier attempt"
        );
        let fresh = Record::prepared(4, h(1), vec![1], None);
        assert_eq!(abort_record(Some(&fresh), 4, h(1)), AbortRecord::Remove);
        let owned = Record::Owned {
            epoch: 4,
            image: h(1),
        };
        assert_eq!(abort_record(Some(&owned), 4, h(1)), AbortRecord::Keep);
        // A prepare over a prepare keeps the settled record beneath both.
        let again = Record::prepared(5, h(2), vec![1], Some(&prepared));
        assert_eq!(again.settled(), Some(&left));
    }

    #[test]
    fn recovery_runs_only_what_it_owns() {
        assert_eq!(
            recovery_of(&Record::Owned {
                epoch: 1,
                image: h(1)
            }),
            Recovery::Resume
        );
        assert_eq!(
            recovery_of(&Record::Left {
                epoch: 2,
                image: h(1),
                to: vec![9],
                acked: false
            }),
            Recovery::FinishCommit { to: vec![9] }
        );
        assert_eq!(
            recovery_of(&Record::prepared(2, h(1), vec![9], None)),
            Recovery::AwaitCommit
        );
    }
}
