//! Whether a vessel may run right now: the lease gate (issue 15).
//!
//! A replicated vessel runs only while its host holds the vessel's lease
//! (docs/protocol.md, "Failover: leases and fencing"). The lease driver
//! writes here until when the lease holds, on the boot clock; the vessel's
//! thread looks before every slice, and a host call that waited looks
//! before it returns to the guest. A vessel whose lease is not held is
//! *held*: its thread runs no guest code and only takes commands (a stop,
//! a memory copy) until the lease comes back.
//!
//! Guest code between two looks runs unchecked for at most one slice's
//! fuel (a few milliseconds) plus the host calls that did not wait. So a
//! slice starts only if the lease holds for [`UNCHECKED_RUN_MARGIN`] more,
//! or for the longest unchecked run seen lately if that was longer (a
//! loaded board). What is left over (a thread descheduled for longer than
//! that between its look and its run) is what the protocol's margin
//! `delta` covers; a run that outlasts the margin it was given is counted
//! ([`LeaseGate::overruns`]) and logged by the driver.
//!
//! A vessel without a lease (replicas 0) has an open gate, which costs one
//! atomic load per slice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::boot_clock::BootInstant;

/// How long the lease must still hold for a slice to start: a slice is a
/// few milliseconds of fuel on a Pi-class CPU (`dock::DEFAULT_FUEL_SLICE`),
/// so 50 ms leaves room for a busy scheduler, and is small against the
/// lease (1.5 s by default) so a held lease is hardly shortened.
pub const UNCHECKED_RUN_MARGIN: Duration = Duration::from_millis(50);

/// The widest the margin grows, however long a run was seen: a run longer
/// than this is far beyond what the protocol's margin covers anyway (it is
/// counted as an overrun and logged), and a wider margin would keep the
/// vessel from ever running under a lease of 1.5 s.
pub const MAX_UNCHECKED_RUN_MARGIN: Duration = Duration::from_millis(500);

/// How often a held vessel's thread looks at its commands while it waits
/// for the lease (a renewal wakes it at once; this bounds a stop's wait).
pub const HELD_POLL: Duration = Duration::from_millis(20);

/// Each unchecked run seen lowers the remembered longest one by this
/// fraction (in 1/1024ths), so one slow slice long ago stops widening the
/// margin.
const LONGEST_DECAY_PER_1024: u64 = 8;

/// The value of `until_ns` of a gate that is always open.
const OPEN: u64 = u64::MAX;

/// Until when a vessel may run; shared by its lease driver (writes) and its
/// thread (reads).
#[derive(Debug)]
pub struct LeaseGate {
    /// Boot-clock nanoseconds until which the lease holds; 0: not held;
    /// [`OPEN`]: not leased at all.
    until_ns: AtomicU64,
    /// When guest code was last let run (a slice start, or a wait's end).
    let_run_ns: AtomicU64,
    /// The longest unchecked run seen lately, decaying.
    longest_run_ns: AtomicU64,
    /// Unchecked runs that outlasted the margin they were let run with.
    overruns: AtomicU64,
    changed: Condvar,
    lock: Mutex<()>,
}

impl LeaseGate {
    fn with(until_ns: u64) -> Arc<LeaseGate> {
        Arc::new(LeaseGate {
            until_ns: AtomicU64::new(until_ns),
            let_run_ns: AtomicU64::new(0),
            longest_run_ns: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            changed: Condvar::new(),
            lock: Mutex::new(()),
        })
    }

    /// The gate of a vessel that is not leased (replicas 0): always open.
    pub fn open() -> Arc<LeaseGate> {
        LeaseGate::with(OPEN)
    }

    /// The gate of a leased vessel before its first grant: shut.
    pub fn shut() -> Arc<LeaseGate> {
        LeaseGate::with(0)
    }

    /// Whether the vessel is leased at all.
    pub fn is_leased(&self) -> bool {
        self.until_ns.load(Ordering::Acquire) != OPEN
    }

    /// The lease now holds until `until` (the driver, after a majority
    /// granted it). Wakes a held vessel.
    pub fn hold_until(&self, until: BootInstant) {
        self.until_ns
            .store(until.as_ns().min(OPEN - 1), Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    /// The lease is gone (lost, or another node took the vessel over):
    /// no guest code runs from the next look on.
    pub fn shut_now(&self) {
        self.until_ns.store(0, Ordering::Release);
    }

    /// Until when the lease holds (`None`: not leased at all).
    pub fn until(&self) -> Option<BootInstant> {
        match self.until_ns.load(Ordering::Acquire) {
            OPEN => None,
            ns => Some(BootInstant::from_ns(ns)),
        }
    }

    /// The margin a run is let start with: the named one, or the longest
    /// unchecked run seen lately if longer.
    pub fn margin(&self) -> Duration {
        UNCHECKED_RUN_MARGIN
            .max(Duration::from_nanos(
                self.longest_run_ns.load(Ordering::Relaxed),
            ))
            .min(MAX_UNCHECKED_RUN_MARGIN)
    }

    /// Whether guest code may run now: the lease holds for the margin
    /// more. A `true` answer is remembered as the start of an unchecked
    /// run (see [`LeaseGate::ran_until`]).
    pub fn may_run(&self, now: BootInstant) -> bool {
        let until = self.until_ns.load(Ordering::Acquire);
        if until == OPEN {
            // Noted even when open: a gate can become leased while guest
            // code runs, and the run is then measured from here.
            self.let_run_ns.store(now.as_ns(), Ordering::Relaxed);
            return true;
        }
        let ok = now.after(self.margin()).as_ns() <= until;
        if ok {
            self.let_run_ns.store(now.as_ns(), Ordering::Relaxed);
        }
        ok
    }

    /// Guest code stopped running at `now` (a slice ended, or a call
    /// began to wait): the unchecked run since the last `may_run` is
    /// measured, for the margin.
    pub fn ran_until(&self, now: BootInstant) {
        if !self.is_leased() {
            return;
        }
        let from = self.let_run_ns.load(Ordering::Relaxed);
        if from == 0 {
            return; // never let run yet: nothing to measure
        }
        let run = now.as_ns().saturating_sub(from);
        let margin = self.margin().as_nanos() as u64;
        if run > margin {
            self.overruns.fetch_add(1, Ordering::Relaxed);
        }
        let old = self.longest_run_ns.load(Ordering::Relaxed);
        let decayed = old - old * LONGEST_DECAY_PER_1024 / 1024;
        self.longest_run_ns
            .store(decayed.max(run), Ordering::Relaxed);
    }

    /// Unchecked runs that outlasted their margin, since the vessel started.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Blocks until the lease lets guest code run, or `timeout` passes;
    /// returns whether it may run.
    pub fn wait_may_run(&self, timeout: Duration) -> bool {
        if self.may_run(BootInstant::now()) {
            return true;
        }
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (_guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |_| !self.may_run(BootInstant::now()))
            .unwrap_or_else(|p| p.into_inner());
        self.may_run(BootInstant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> BootInstant {
        BootInstant::from_ns(ms * 1_000_000)
    }

    #[test]
    fn an_open_gate_always_lets_run() {
        let g = LeaseGate::open();
        assert!(!g.is_leased());
        assert!(g.may_run(at_ms(u64::MAX / 2_000_000)));
        assert_eq!(g.until(), None);
    }

    #[test]
    fn a_slice_starts_only_with_the_margin_left() {
        let g = LeaseGate::shut();
        assert!(g.is_leased());
        assert!(!g.may_run(at_ms(1)), "no lease yet");
        g.hold_until(at_ms(1_000));
        assert!(g.may_run(at_ms(900)));
        assert!(g.may_run(at_ms(950)), "exactly the margin left");
        assert!(!g.may_run(at_ms(951)));
        g.shut_now();
        assert!(!g.may_run(at_ms(10)));
    }

    #[test]
    fn a_long_unchecked_run_widens_the_margin_and_is_counted() {
        let g = LeaseGate::shut();
        g.hold_until(at_ms(10_000));
        assert!(g.may_run(at_ms(100)));
        g.ran_until(at_ms(400)); // a 300 ms slice: the board is loaded
        assert_eq!(g.overruns(), 1);
        assert_eq!(g.margin(), Duration::from_millis(300));
        assert!(!g.may_run(at_ms(9_800)), "300 ms no longer fit");
        assert!(g.may_run(at_ms(9_700)));
        // It decays as ordinary slices follow.
        for i in 0..2_000 {
            assert!(g.may_run(at_ms(1_000 + i)));
            g.ran_until(at_ms(1_000 + i));
        }
        assert_eq!(g.margin(), UNCHECKED_RUN_MARGIN);
    }

    /// Regression: a gate that became leased while guest code ran measured
    /// that run from boot (its start was never noted while open), so the
    /// margin grew to hours and the vessel was held for good
    /// (waiting::a_napping_vessel_moves_with_pre_copy_rounds never saw its
    /// napper fill its memory once deployments won leases).
    #[test]
    fn a_gate_leased_while_the_vessel_runs_keeps_a_sane_margin() {
        let g = LeaseGate::open();
        assert!(g.may_run(at_ms(1_000_000)));
        g.hold_until(at_ms(1_010_000));
        g.ran_until(at_ms(1_000_003));
        assert_eq!(g.margin(), UNCHECKED_RUN_MARGIN);
        assert!(g.may_run(at_ms(1_000_004)));
        // A shut gate never let run: nothing measured.
        let s = LeaseGate::shut();
        s.hold_until(at_ms(10_000));
        s.ran_until(at_ms(5_000));
        assert_eq!(s.margin(), UNCHECKED_RUN_MARGIN);
        // However long a run, the margin stays bounded.
        assert!(s.may_run(at_ms(1)));
        s.ran_until(at_ms(100_000));
        assert_eq!(s.margin(), MAX_UNCHECKED_RUN_MARGIN);
    }

    #[test]
    fn a_held_vessel_wakes_when_the_lease_comes() {
        let g = LeaseGate::shut();
        let g2 = g.clone();
        let t = std::thread::spawn(move || g2.wait_may_run(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        g.hold_until(BootInstant::now().after(Duration::from_secs(5)));
        assert!(t.join().unwrap());
        let shut = LeaseGate::shut();
        assert!(!shut.wait_may_run(Duration::from_millis(10)));
    }
}
