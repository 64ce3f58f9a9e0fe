//! Smoothed round-trip time per peer, as TCP does it (RFC 6298): an
//! exponentially weighted moving average with gain 1/8, which damps a single
//! slow ping (a busy board, a GC pause elsewhere) without hiding a lasting
//! change for more than a few seconds at one ping a second.
//!
//! A sample far above the average is clamped before it is averaged: a ping
//! sent just before a partition is answered when the partition heals, and
//! its "RTT" is the partition's length, not the path's; averaged whole, one
//! 15 s sample would add about 2 s to the average and keep placement off
//! that peer for the best part of a minute. A real rise still shows: the
//! clamp grows with the average, so a path that really went from 5 ms to
//! 400 ms is followed within a few samples more than without it.

use std::time::{Duration, Instant};

/// Weight of a new sample in the average.
const RTT_GAIN: f64 = 1.0 / 8.0;

/// A sample counts for at most this many times the current average …
const OUTLIER_FACTOR: f64 = 4.0;

/// … or the average plus this, whichever is more (so that a jump from a
/// LAN's 0.3 ms to a WAN's 80 ms is taken whole).
const OUTLIER_HEADROOM_US: f64 = 100_000.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct SmoothedRtt {
    srtt_us: Option<f64>,
    last_us: u64,
    samples: u64,
    /// When the last sample arrived: an RTT nobody measured for a while
    /// (pings failing in a partition) is not trusted for placement.
    last_at: Option<Instant>,
}

impl SmoothedRtt {
    pub fn observe(&mut self, rtt: Duration) {
        self.observe_at(rtt, Instant::now());
    }

    pub fn observe_at(&mut self, rtt: Duration, now: Instant) {
        let sample_us = rtt.as_secs_f64() * 1e6;
        self.srtt_us = Some(match self.srtt_us {
            None => sample_us,
            Some(s) => {
                let clamped = sample_us.min((s * OUTLIER_FACTOR).max(s + OUTLIER_HEADROOM_US));
                s + RTT_GAIN * (clamped - s)
            }
        });
        self.last_us = rtt.as_micros() as u64;
        self.samples += 1;
        self.last_at = Some(now);
    }

    /// The smoothed RTT in microseconds, once there is a sample.
    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us.map(|s| s.round() as u64)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// How long ago the last sample arrived.
    pub fn age(&self) -> Option<Duration> {
        self.last_at.map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_taken_whole_then_smoothed() {
        let mut r = SmoothedRtt::default();
        assert_eq!(r.srtt_us(), None);
        assert_eq!(r.age(), None);
        r.observe(Duration::from_millis(8));
        assert_eq!(r.srtt_us(), Some(8000));
        assert!(r.age().unwrap() < Duration::from_secs(1));
        r.observe(Duration::from_millis(16));
        assert_eq!(r.srtt_us(), Some(9000));
        for _ in 0..100 {
            r.observe(Duration::from_millis(16));
        }
        assert!((15_990..=16_000).contains(&r.srtt_us().unwrap()));
    }

    /// Regression: a ping that spanned a 15 s partition made the average
    /// about 1.9 s, and it took some 40 samples to come back under 10 ms.
    #[test]
    fn a_sample_that_spans_a_partition_barely_moves_the_average() {
        let mut r = SmoothedRtt::default();
        for _ in 0..20 {
            r.observe(Duration::from_millis(5));
        }
        r.observe(Duration::from_secs(15));
        let after = r.srtt_us().unwrap();
        assert!(after < 20_000, "{after} µs");
        for _ in 0..10 {
            r.observe(Duration::from_millis(5));
        }
        assert!(r.srtt_us().unwrap() < 10_000);
    }

    /// A real change is followed: 5 → 80 ms is taken whole (the placement
    /// reaction time depends on it), and 5 → 400 ms is reached in about as
    /// many samples as an unclamped average would need.
    #[test]
    fn real_changes_still_show() {
        let mut r = SmoothedRtt::default();
        for _ in 0..20 {
            r.observe(Duration::from_millis(5));
        }
        r.observe(Duration::from_millis(80));
        assert_eq!(r.srtt_us(), Some(14_375));
        let mut r = SmoothedRtt::default();
        r.observe(Duration::from_millis(5));
        let mut n = 0;
        while r.srtt_us().unwrap() < 300_000 {
            r.observe(Duration::from_millis(400));
            n += 1;
        }
        assert!(n <= 16, "{n} samples to follow 5 → 400 ms");
    }
}
