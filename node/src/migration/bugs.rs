//! Deliberate protocol bugs, for showing that the simulation catches them
//! (docs/protocol.md, "The simulation"). Each is a one-line change to a
//! rule that the simulation must notice. They exist only in test builds:
//! in every other build [`active`] is a constant `false`.

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
}

#[cfg(test)]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Whether `bug` is switched on (test builds, this thread only).
#[cfg(test)]
pub fn active(bug: Bug) -> bool {
    ACTIVE.with(|a| a.get() == Some(bug))
}

/// Whether `bug` is switched on: never, outside tests.
#[cfg(not(test))]
#[inline(always)]
pub fn active(_bug: Bug) -> bool {
    false
}

/// Runs `f` with `bug` switched on for this thread (off again afterwards,
/// even if `f` panics).
#[cfg(test)]
pub fn with<R>(bug: Option<Bug>, f: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(None));
        }
    }
    ACTIVE.with(|a| a.set(bug));
    let _off = Off;
    f()
}
