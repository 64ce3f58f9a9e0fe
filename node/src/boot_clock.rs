//! The clock a lease is counted on (issue 15): `CLOCK_BOOTTIME`.
//!
//! A lease must keep counting while a board is suspended: a host that
//! sleeps through its lease and wakes up must see it as over, or it would
//! run on beside the replica that took over meanwhile. Rust's `Instant` is
//! `CLOCK_MONOTONIC`, which stops during a suspend, and a board without a
//! real-time clock cannot use wall time (it jumps when NTP first answers).
//! `CLOCK_BOOTTIME` is monotonic and counts the suspend.

use std::time::Duration;

/// A reading of the boot clock, in nanoseconds since the machine booted.
/// Only differences between readings of one machine mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BootInstant(u64);

impl BootInstant {
    /// The clock now.
    pub fn now() -> BootInstant {
        BootInstant(read_ns())
    }

    /// A reading `ns` nanoseconds after boot (tests, and values kept as
    /// integers by the lease code).
    pub const fn from_ns(ns: u64) -> BootInstant {
        BootInstant(ns)
    }

    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> BootInstant {
        BootInstant(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: BootInstant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(target_os = "linux")]
fn read_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every Linux since 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // It cannot fail with a valid clock id and pointer; if a kernel ever
    // refuses, CLOCK_MONOTONIC (via Instant) is the next best thing.
    if rc != 0 {
        return monotonic_fallback_ns();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn read_ns() -> u64 {
    monotonic_fallback_ns()
}

fn monotonic_fallback_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_rises_with_monotonic_time() {
        let a = BootInstant::now();
        let i = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = BootInstant::now();
        let mono = i.elapsed();
        assert!(b > a);
        let boot = b.since(a);
        // Without a suspend in between the two clocks agree closely.
        assert!(boot >= Duration::from_millis(20), "{boot:?}");
        assert!(
            boot.abs_diff(mono) < Duration::from_millis(5),
            "{boot:?} {mono:?}"
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let t = BootInstant::from_ns(u64::MAX - 1);
        assert_eq!(t.after(Duration::from_secs(1)).as_ns(), u64::MAX);
        assert_eq!(BootInstant::from_ns(5).since(t), Duration::ZERO);
    }
}
