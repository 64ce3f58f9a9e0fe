//! Smoothed round-trip time per peer, as TCP does it (RFC 6298): an
//! exponentially weighted moving average with gain 1/8, which damps a single
//! slow ping (a busy board, a GC pause elsewhere) without hiding a lasting
//! change for more than a few seconds at one ping a second.

use std::time::Duration;

/// Weight of a new sample in the average.
const RTT_GAIN: f64 = 1.0 / 8.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct SmoothedRtt {
    srtt_us: Option<f64>,
    last_us: u64,
    samples: u64,
}

impl SmoothedRtt {
    pub fn observe(&mut self, rtt: Duration) {
        let sample_us = rtt.as_secs_f64() * 1e6;
        self.srtt_us = Some(match self.srtt_us {
            None => sample_us,
            Some(s) => s + RTT_GAIN * (sample_us - s),
        });
        self.last_us = rtt.as_micros() as u64;
        self.samples += 1;
    }

    /// The smoothed RTT in microseconds, once there is a sample.
    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us.map(|s| s.round() as u64)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_taken_whole_then_smoothed() {
        let mut r = SmoothedRtt::default();
        assert_eq!(r.srtt_us(), None);
        r.observe(Duration::from_millis(8));
        assert_eq!(r.srtt_us(), Some(8000));
        r.observe(Duration::from_millis(16));
        assert_eq!(r.srtt_us(), Some(9000));
        for _ in 0..100 {
            r.observe(Duration::from_millis(16));
        }
        assert!((15_990..=16_000).contains(&r.srtt_us().unwrap()));
    }
}
