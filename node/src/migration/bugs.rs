//! Deliberate protocol bugs, for showing that the simulation catches them
//! (docs/protocol.md, "The simulation"). Each is a one-line change to a
//! rule that the simulation must notice. Several may be switched on at
//! once, to find out which rules cover for which: a rule whose break alone
//! is never caught may still be the only thing standing once another rule
//! is broken too. They exist only in test builds: in every other build
//! [`active`] is a constant `false`.

/// A deliberate break of one safety rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The source runs the vessel again after it wrote its commit point
    /// (as if a slow commit acknowledgement meant the move failed).
    ResumeSourceAfterCommit,
    /// A destination takes an offer (or a commit) whose epoch equals the
    /// one it records, instead of only a higher one.
    AcceptEqualEpoch,
    /// A destination answers `Prepared` without first making the image and
    /// its record durable.
    SkipSyncBeforePrepared,
    /// An abort ends the session and removes the `Prepared` record of its
    /// source's move at its epoch whatever image it names (so a late abort
    /// of an earlier attempt at the same epoch acts on a later one).
    AbortIgnoresImage,
    /// A prepare is taken for the source's final offer at its epoch
    /// whatever image it names (so a late final offer of an earlier
    /// attempt is what a later attempt's prepare makes durable).
    PrepareIgnoresImage,
    /// A nonce can be redeemed more than once (so a duplicated offer is
    /// judged again instead of refused as replayed).
    ReuseNonce,
    /// A source offers at the epoch after its own, whatever epoch a
    /// destination reported refusing its last offer as stale (so a
    /// `Prepared` record of its earlier attempt, whose abort never came,
    /// blocks every later move to that destination).
    IgnoreReportedEpoch,
    /// A checkpoint becomes the vessel's record whatever record it finds
    /// (so one that finishes after a move committed replaces the `Left`
    /// commit point with `Owned`).
    CheckpointOverAnyRecord,
    /// A lease holder counts its lease from when a majority's grants
    /// arrived instead of from when it sent the request (failover).
    HolderCountsFromGrant,
    /// A voter signs a takeover before its own grant of the lease ran out.
    TakeoverBeforeGrantRanOut,
    /// The lease lengths ignore the clock-rate error: the holder counts
    /// L, the voter L + delta, while the clocks drift (delta then covers
    /// only the slice).
    IgnoreClockRate,
    /// A voter's promise (the assignment it signed) is not made durable
    /// before its answer: a crash forgets it.
    VoterForgetsPromise,
    /// A restarted voter signs a takeover at once, without waiting a
    /// lease's hold for the grants it forgot.
    NoBootWait,
    /// A voter that signed a reconfiguration does not remember it: it
    /// signs later assignments that follow an epoch of the old set.
    ForgetReconfiguration,
    /// A destination of a leased vessel that restarts with a `Prepared`
    /// record runs it under the handoff certificate it kept beside that
    /// record, without waiting for the source's commit (as if the
    /// certificate were the commit).
    ResumePreparedUnderHandoff,
}

impl Bug {
    /// Every deliberate bug (`SIM_BUGS` names any of them).
    pub const ALL: [Bug; 15] = [
        Bug::ResumeSourceAfterCommit,
        Bug::AcceptEqualEpoch,
        Bug::SkipSyncBeforePrepared,
        Bug::AbortIgnoresImage,
        Bug::PrepareIgnoresImage,
        Bug::ReuseNonce,
        Bug::IgnoreReportedEpoch,
        Bug::CheckpointOverAnyRecord,
        Bug::HolderCountsFromGrant,
        Bug::TakeoverBeforeGrantRanOut,
        Bug::IgnoreClockRate,
        Bug::VoterForgetsPromise,
        Bug::NoBootWait,
        Bug::ForgetReconfiguration,
        Bug::ResumePreparedUnderHandoff,
    ];

    /// The lease and fencing bugs, which the failover simulation catches
    /// (`failover::sim`); the migration simulation never reaches them.
    pub const LEASE: [Bug; 7] = [
        Bug::HolderCountsFromGrant,
        Bug::TakeoverBeforeGrantRanOut,
        Bug::IgnoreClockRate,
        Bug::VoterForgetsPromise,
        Bug::NoBootWait,
        Bug::ForgetReconfiguration,
        Bug::ResumePreparedUnderHandoff,
    ];

    /// The migration bugs, for sweeping them in the migration simulation.
    pub const MIGRATION: [Bug; 8] = [
        Bug::ResumeSourceAfterCommit,
        Bug::AcceptEqualEpoch,
        Bug::SkipSyncBeforePrepared,
        Bug::AbortIgnoresImage,
        Bug::PrepareIgnoresImage,
        Bug::ReuseNonce,
        Bug::IgnoreReportedEpoch,
        Bug::CheckpointOverAnyRecord,
    ];

    #[cfg(test)]
    fn bit(self) -> u32 {
        1 << self as u32
    }
}

#[cfg(test)]
thread_local! {
    /// The bugs switched on, one bit each.
    static ACTIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether `bug` is switched on (test builds, this thread only).
#[cfg(test)]
pub fn active(bug: Bug) -> bool {
    ACTIVE.with(|a| a.get() & bug.bit() != 0)
}

/// Whether `bug` is switched on: never, outside tests.
#[cfg(not(test))]
#[inline(always)]
pub fn active(_bug: Bug) -> bool {
    false
}

/// Runs `f` with exactly `bugs` switched on for this thread (all off again
/// afterwards, even if `f` panics).
#[cfg(test)]
pub fn with<R>(bugs: &[Bug], f: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(0));
        }
    }
    ACTIVE.with(|a| a.set(bugs.iter().fold(0, |m, b| m | b.bit())));
    let _off = Off;
    f()
}

/// `bugs` as `SIM_BUGS` names them: comma-separated, as declared (both
/// simulations print a failing seed's replay command with it).
#[cfg(test)]
pub fn bug_names(bugs: &[Bug]) -> String {
    let names: Vec<String> = bugs.iter().map(|b| format!("{b:?}")).collect();
    names.join(",")
}

/// The bugs a `SIM_BUGS` value names; an unknown name is an error naming it.
#[cfg(test)]
pub fn parse_bugs(names: &str) -> Result<Vec<Bug>, String> {
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            Bug::ALL
                .into_iter()
                .find(|b| format!("{b:?}") == n)
                .ok_or_else(|| format!("SIM_BUGS: no deliberate bug is called {n:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugs_are_switched_on_together_and_off_afterwards() {
        with(&[Bug::AcceptEqualEpoch, Bug::AbortIgnoresImage], || {
            assert!(active(Bug::AcceptEqualEpoch));
            assert!(active(Bug::AbortIgnoresImage));
            assert!(!active(Bug::ReuseNonce));
        });
        assert!(Bug::ALL.iter().all(|b| !active(*b)));
    }
}
