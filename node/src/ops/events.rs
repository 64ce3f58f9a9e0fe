//! The ring of recent events and the event loop's lag.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use protocol::control::OpsEvent;

use crate::sync::lock;

/// Events kept: `status` shows the last few, the dashboard's timeline all;
/// 256 events of well under 1 KiB each bound the ring to about 200 KiB.
pub const MAX_EVENTS: usize = 256;

/// How many ops ticks the lag is judged over (10 s at 250 ms): a stall is
/// seen for that long after it, long enough for `status` to catch it.
pub const LAG_WINDOW_TICKS: usize = 40;

/// The recent events, oldest first, at most [`MAX_EVENTS`].
#[derive(Debug, Default)]
pub struct EventRing {
    events: VecDeque<OpsEvent>,
}

impl EventRing {
    pub fn push(&mut self, event: OpsEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn list(&self) -> Vec<OpsEvent> {
        self.events.iter().cloned().collect()
    }
}

/// The event loop's lateness: each ops tick records how much later than
/// its period it came, and the worst of the last [`LAG_WINDOW_TICKS`] is
/// the lag that `status` judges.
#[derive(Debug, Default)]
pub struct LoopLag {
    window: Mutex<VecDeque<u64>>,
    worst_ms: AtomicU64,
}

impl LoopLag {
    /// A tick came `since_last` after the one before; it was due after
    /// `period`.
    pub fn tick(&self, since_last: Duration, period: Duration) {
        let late_ms = since_last.saturating_sub(period).as_millis() as u64;
        let mut w = lock(&self.window);
        if w.len() >= LAG_WINDOW_TICKS {
            w.pop_front();
        }
        w.push_back(late_ms);
        let worst = w.iter().copied().max().unwrap_or(0);
        self.worst_ms.store(worst, Ordering::Relaxed);
    }

    /// The worst lateness in the window, in milliseconds.
    pub fn worst_ms(&self) -> u64 {
        self.worst_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::control::OpsEventKind;

    fn event(n: u64) -> OpsEvent {
        OpsEvent {
            at_unix_ms: n,
            vessel: format!("{n:016x}"),
            name: "v".into(),
            kind: OpsEventKind::Placement,
            from: None,
            to: None,
            reason: "r".into(),
            downtime_us: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_events_up_to_its_bound() {
        let mut ring = EventRing::default();
        for n in 0..(MAX_EVENTS as u64 + 10) {
            ring.push(event(n));
        }
        let list = ring.list();
        assert_eq!(list.len(), MAX_EVENTS);
        assert_eq!(list[0].at_unix_ms, 10);
        assert_eq!(list.last().unwrap().at_unix_ms, MAX_EVENTS as u64 + 9);
    }

    #[test]
    fn the_lag_is_the_worst_lateness_of_the_window_and_ages_out() {
        let lag = LoopLag::default();
        let period = Duration::from_millis(250);
        lag.tick(Duration::from_millis(1250), period);
        assert_eq!(lag.worst_ms(), 1000);
        for _ in 0..LAG_WINDOW_TICKS - 1 {
            lag.tick(Duration::from_millis(251), period);
        }
        assert_eq!(lag.worst_ms(), 1000, "still in the window");
        lag.tick(Duration::from_millis(250), period);
        assert_eq!(lag.worst_ms(), 1, "the stall aged out");
    }
}
