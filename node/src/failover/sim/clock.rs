//! Each simulated node's boot clock: it runs at its own rate, within
//! `1 ± rho` of real time, from its own offset, and keeps counting through
//! a suspend (as `CLOCK_BOOTTIME` does). Real time is in microseconds, so
//! that whole-millisecond readings lose less than one local millisecond.

use crate::failover::params::PPM;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Local microseconds per million real ones.
    pub rate_ppm: u64,
    /// Local microseconds at real time 0.
    pub offset_us: u64,
}

impl Clock {
    /// The local reading, in whole milliseconds, at real time `real_us`.
    pub fn local_ms(&self, real_us: u64) -> u64 {
        self.local_us(real_us) / 1_000
    }

    fn local_us(&self, real_us: u64) -> u64 {
        self.offset_us + (real_us as u128 * self.rate_ppm as u128 / PPM as u128) as u64
    }

    /// The first real microsecond at which the local clock reads at least
    /// `local_ms` (now, if it already does).
    pub fn real_at(&self, local_ms: u64, now_us: u64) -> u64 {
        let want = local_ms * 1_000;
        if self.local_us(now_us) >= want {
            return now_us;
        }
        let mut t = ((want - self.offset_us) as u128 * PPM as u128 / self.rate_ppm as u128) as u64;
        while self.local_us(t) < want {
            t += 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_reads_more_and_real_at_inverts_it() {
        let c = Clock {
            rate_ppm: 1_100_000,
            offset_us: 5_000_000,
        };
        assert_eq!(c.local_ms(0), 5_000);
        assert_eq!(c.local_ms(1_000_000), 6_100);
        let t = c.real_at(6_100, 0);
        assert_eq!(c.local_ms(t), 6_100);
        assert_eq!(c.local_ms(t - 1), 6_099);
        assert_eq!(c.real_at(10, 7), 7, "already past");
    }
}
