//! One direction of an emulated link: what happens to each packet.
//!
//! For every packet the link draws two numbers from its stream (always two,
//! whatever the outcome, so the stream stays aligned with the packet count):
//! one decides loss, the other the delay. Then, in order:
//!
//! 1. a partition drops it;
//! 2. loss drops it with probability `loss`;
//! 3. the bandwidth limit is a token bucket of `bandwidth_kbps` with a burst
//!    of 10 ms of traffic (at least two full packets); a packet that finds
//!    too few tokens waits for them (the bucket goes negative: that is the
//!    queue), and one that would wait longer than `queue_ms` is dropped;
//! 4. the delay is drawn uniformly from `latency ± jitter` (never below 0)
//!    and added to the time the packet leaves the bucket;
//! 5. packets on one direction of a link never overtake each other: a packet
//!    whose draw would land it before the previous one waits for it (jitter
//!    in a real path comes from queues, which keep order).
//!
//! Times are seconds since the router started, so the model is plain
//! arithmetic and is tested without a clock.

use crate::rng::Rng;
use crate::scenario::LinkParams;

/// The smallest bucket: two full-size packets.
const MIN_BURST_BYTES: f64 = 3000.0;
/// The bucket holds this much time's worth of traffic.
const BURST_SECS: f64 = 0.010;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Deliver at this time.
    Deliver(f64),
    Lost,
    Blocked,
    QueueFull,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    pub packets: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub lost: u64,
    pub blocked: u64,
    pub queue_drops: u64,
    /// Sum of the delays given (arrival − arrival at the router), seconds.
    pub delay_sum: f64,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub params: LinkParams,
    rng: Rng,
    tokens: f64,
    last_refill: f64,
    last_arrival: f64,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(params: LinkParams, rng: Rng) -> Link {
        Link {
            params,
            rng,
            tokens: f64::NAN,
            last_refill: 0.0,
            last_arrival: 0.0,
            stats: LinkStats::default(),
        }
    }

    fn rate_bytes(&self) -> f64 {
        self.params.bandwidth_kbps * 1000.0 / 8.0
    }

    fn burst(&self) -> f64 {
        (self.rate_bytes() * BURST_SECS).max(MIN_BURST_BYTES)
    }

    /// What happens to a packet of `len` bytes that reaches the link at `now`.
    pub fn decide(&mut self, now: f64, len: usize, blocked: bool) -> Verdict {
        let u_loss = self.rng.unit();
        let u_delay = self.rng.unit();
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        if blocked {
            self.stats.blocked += 1;
            return Verdict::Blocked;
        }
        if u_loss < self.params.loss {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        let mut depart = now;
        if self.params.bandwidth_kbps > 0.0 {
            let rate = self.rate_bytes();
            let burst = self.burst();
            if self.tokens.is_nan() {
                self.tokens = burst;
            } else {
                self.tokens = (self.tokens + (now - self.last_refill).max(0.0) * rate).min(burst);
            }
            self.last_refill = now;
            let len = len as f64;
            if self.tokens < len {
                let wait = (len - self.tokens) / rate;
                if wait * 1000.0 > self.params.queue_ms {
                    self.stats.queue_drops += 1;
                    return Verdict::QueueFull;
                }
                depart = now + wait;
            }
            self.tokens -= len;
        }
        let ms = (self.params.latency_ms + (2.0 * u_delay - 1.0) * self.params.jitter_ms).max(0.0);
        let arrival = (depart + ms / 1000.0).max(self.last_arrival);
        self.last_arrival = arrival;
        self.stats.delivered += 1;
        self.stats.delay_sum += arrival - now;
        Verdict::Deliver(arrival)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(latency_ms: f64) -> LinkParams {
        LinkParams {
            latency_ms,
            ..LinkParams::default()
        }
    }

    #[test]
    fn latency_alone_is_exact() {
        let mut l = Link::new(params(40.0), Rng::new(1));
        assert_eq!(l.decide(1.0, 100, false), Verdict::Deliver(1.040));
    }

    #[test]
    fn jitter_stays_in_range_and_keeps_order() {
        let mut l = Link::new(
            LinkParams {
                latency_ms: 10.0,
                jitter_ms: 5.0,
                ..LinkParams::default()
            },
            Rng::new(3),
        );
        let mut last = 0.0;
        let mut spread = (f64::MAX, f64::MIN);
        for i in 0..2000 {
            let now = i as f64 * 0.050; // far apart: order never binds
            let Verdict::Deliver(at) = l.decide(now, 100, false) else {
                panic!()
            };
            let d = (at - now) * 1000.0;
            assert!((5.0 - 1e-9..=15.0 + 1e-9).contains(&d), "{d}");
            spread = (spread.0.min(d), spread.1.max(d));
            assert!(at >= last);
            last = at;
        }
        assert!(spread.0 < 6.0 && spread.1 > 14.0, "{spread:?}");
        // Packets close together never overtake.
        let mut last = 0.0;
        for i in 0..1000 {
            let Verdict::Deliver(at) = l.decide(200.0 + i as f64 * 1e-4, 100, false) else {
                panic!()
            };
            assert!(at >= last);
            last = at;
        }
    }

    #[test]
    fn loss_rate_and_replay() {
        let p = LinkParams {
            loss: 0.1,
            ..params(5.0)
        };
        let run = |seed| {
            let mut l = Link::new(p, Rng::new(seed));
            (0..10_000)
                .map(|i| l.decide(i as f64 * 0.001, 100, false))
                .collect::<Vec<_>>()
        };
        let a = run(5);
        let lost = a.iter().filter(|v| **v == Verdict::Lost).count();
        assert!((800..1200).contains(&lost), "{lost}");
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
    }

    #[test]
    fn bandwidth_limits_throughput_and_queue_drops() {
        // 800 kbit/s = 100 kB/s; 1000-byte packets every 5 ms offer 200 kB/s.
        let mut l = Link::new(
            LinkParams {
                bandwidth_kbps: 800.0,
                queue_ms: 100.0,
                ..params(0.0)
            },
            Rng::new(1),
        );
        let mut delivered = 0;
        let mut last = 0.0;
        for i in 0..1000 {
            if let Verdict::Deliver(at) = l.decide(i as f64 * 0.005, 1000, false) {
                delivered += 1;
                last = at;
            }
        }
        // 5 s at 100 kB/s is 500 packets (plus the burst, plus the queue).
        assert!((495..=520).contains(&delivered), "{delivered}");
        assert!(l.stats.queue_drops > 400);
        assert!(last <= 5.0 + 0.1 + 1e-9, "{last}");
    }

    #[test]
    fn a_partition_drops_but_consumes_the_draws() {
        let mut a = Link::new(params(1.0), Rng::new(9));
        let mut b = Link::new(params(1.0), Rng::new(9));
        assert_eq!(a.decide(0.0, 10, true), Verdict::Blocked);
        b.decide(0.0, 10, false);
        assert_eq!(a.decide(1.0, 10, false), b.decide(1.0, 10, false));
    }
}
