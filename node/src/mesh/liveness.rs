//! Failure detection: whether each peer is *up*, *unreachable* (suspected)
//! or *down*, from what this node hears of it.
//!
//! [`Detector`] is a small pure state machine per peer: events in (heard
//! from it, an exchange with it failed, it left, a tick), a [`State`] out.
//! The event loop (`mesh::node`) feeds it and publishes the suspected peers
//! in [`Suspects`], the handle that tasks ask "is peer P suspected, and
//! since when" (control commands, ingress, and failover later).
//!
//! It only *suspects*. It never changes who owns a vessel: a suspected host
//! may be alive behind a partition, so ownership moves only through the
//! lease (issue 15); failure detection only decides *when* to ask for it,
//! when to stop waiting on a host, and what the CLI says.
//!
//! A leaf: it uses nothing else of `mesh/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use protocol::control::{LivenessState, PeerLiveness};

/// Nothing heard from a peer for this long (no ping answer, gossip or
/// reply) makes it unreachable. Three probe intervals at the default ping
/// of 1 s: one lost or late ping is not a death, and a client of a dead
/// host is reset within a few seconds.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);

/// After an exchange with the peer *failed* (its connection closed, a dial
/// or a request failed), this much silence is enough: a killed process
/// closes its connections, and waiting the full [`UNREACHABLE_AFTER`] then
/// only delays the truth. Not zero: a connection that closes while the
/// peer answers on another (or redials at once) is not a death.
pub const UNREACHABLE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Unreachable for this long makes a peer down: a reboot or a short
/// partition is over well within it, so what is still silent has most
/// likely died (a dead SD card, a board unplugged).
pub const DOWN_AFTER: Duration = Duration::from_secs(30);

/// How often the event loop ticks the detectors and publishes the suspects:
/// the latency it adds to a verdict.
pub const LIVENESS_TICK: Duration = Duration::from_millis(250);

/// A liveness tick this late found the node's own event loop stalled (a
/// loaded machine): the peers' words may wait in its queue behind the
/// tick, so that tick judges nobody, and the next one does.
pub const LIVENESS_STALL: Duration = Duration::from_secs(1);

/// The thresholds one node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub unreachable_after: Duration,
    pub unreachable_after_failure: Duration,
    pub down_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            unreachable_after: UNREACHABLE_AFTER,
            unreachable_after_failure: UNREACHABLE_AFTER_FAILURE,
            down_after: DOWN_AFTER,
        }
    }
}

/// Probe intervals a peer may miss before it is unreachable, when pings
/// are slower than the default (a node configured to ping every 5 s must
/// not call its peers unreachable after 3 s).
pub const MISSED_PINGS: u32 = 3;

impl Thresholds {
    /// The defaults, stretched to [`MISSED_PINGS`] probe intervals when
    /// `ping_interval` is longer than a third of [`UNREACHABLE_AFTER`].
    pub fn for_ping_interval(ping_interval: Duration) -> Thresholds {
        let d = Thresholds::default();
        let unreachable_after = d.unreachable_after.max(ping_interval * MISSED_PINGS);
        Thresholds {
            unreachable_after,
            unreachable_after_failure: d.unreachable_after_failure.min(unreachable_after),
            down_after: d.down_after.max(unreachable_after * 2),
        }
    }

    /// These thresholds with another down threshold (tests shorten it), at
    /// least the unreachable one.
    pub fn with_down_after(self, down_after: Duration) -> Thresholds {
        Thresholds {
            down_after: down_after.max(self.unreachable_after),
            ..self
        }
    }
}

/// What the detector concludes of one peer. `since` is when it was last
/// heard from: the moment it went silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Unreachable { since: Instant },
    Down { since: Instant },
}

impl State {
    pub fn is_up(&self) -> bool {
        matches!(self, State::Up)
    }
}

/// What the detector is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Something came from the peer: a ping answer, a gossiped status, a
    /// request or a reply, a new connection.
    Heard,
    /// An exchange with it failed: its last connection closed, a dial or a
    /// ping or a request failed.
    Failed,
    /// It left the mesh (revoked): down at once, until heard from again.
    Left,
    /// Time passed.
    Tick,
}

/// The failure detector of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detector {
    last_heard: Instant,
    /// A failure seen since it was last heard from.
    failed: bool,
    left: bool,
    state: State,
}

impl Detector {
    /// A peer just met: up, as if heard from `now`.
    pub fn new(now: Instant) -> Detector {
        Detector {
            last_heard: now,
            failed: false,
            left: false,
            state: State::Up,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Takes `event` at `now`; answers the new state when it changed.
    pub fn on(&mut self, event: Event, now: Instant, th: &Thresholds) -> Option<State> {
        match event {
            Event::Heard => {
                self.last_heard = self.last_heard.max(now);
                self.failed = false;
                self.left = false;
            }
            Event::Failed => self.failed = true,
            Event::Left => self.left = true,
            Event::Tick => {}
        }
        let next = self.judge(now, th);
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }

    fn judge(&self, now: Instant, th: &Thresholds) -> State {
        let since = self.last_heard;
        let silent = now.saturating_duration_since(since);
        if self.left || silent >= th.down_after {
            return State::Down { since };
        }
        let suspect_after = if self.failed {
            th.unreachable_after_failure
        } else {
            th.unreachable_after
        };
        if silent >= suspect_after {
            State::Unreachable { since }
        } else {
            State::Up
        }
    }
}

/// A suspected peer, as tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspicion {
    /// Down rather than only unreachable.
    pub down: bool,
    /// When it was last heard from.
    pub since: Instant,
    /// The same moment on the wall clock, for people.
    pub since_wall: SystemTime,
}

impl Suspicion {
    fn of(state: State, now: Instant, wall_now: SystemTime) -> Option<Suspicion> {
        let (down, since) = match state {
            State::Up => return None,
            State::Unreachable { since } => (false, since),
            State::Down { since } => (true, since),
        };
        let since_wall = wall_now
            .checked_sub(now.saturating_duration_since(since))
            .unwrap_or(wall_now);
        Some(Suspicion {
            down,
            since,
            since_wall,
        })
    }

    /// How long nothing was heard from it.
    pub fn silent(&self) -> Duration {
        self.since.elapsed()
    }

    pub fn state(&self) -> LivenessState {
        if self.down {
            LivenessState::Down
        } else {
            LivenessState::Unreachable
        }
    }

    /// `unreachable since 07:41:02 UTC (9.4 s)`.
    pub fn describe(&self) -> String {
        format!(
            "{} since {} UTC ({:.1} s)",
            self.state(),
            clock_utc(self.since_wall),
            self.silent().as_secs_f64()
        )
    }
}

/// What `peers` shows of a peer's detector.
pub fn peer_liveness(d: &Detector) -> PeerLiveness {
    let silent = d.last_heard().elapsed();
    let heard_wall = SystemTime::now().checked_sub(silent);
    PeerLiveness {
        state: match d.state() {
            State::Up => LivenessState::Up,
            State::Unreachable { .. } => LivenessState::Unreachable,
            State::Down { .. } => LivenessState::Down,
        },
        silent_ms: silent.as_millis() as u64,
        last_heard_unix_ms: heard_wall
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64),
    }
}

/// `HH:MM:SS` of a wall-clock time, in UTC.
pub fn clock_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The member peers this node suspects now, shared by the event loop
/// (which publishes them every [`LIVENESS_TICK`]) with the tasks that ask.
#[derive(Clone)]
pub struct Suspects {
    tx: Arc<tokio::sync::watch::Sender<BTreeMap<PeerId, Suspicion>>>,
}

impl Default for Suspects {
    fn default() -> Self {
        Suspects {
            tx: Arc::new(tokio::sync::watch::Sender::new(BTreeMap::new())),
        }
    }
}

impl Suspects {
    /// Whether `peer` is suspected, and since when.
    pub fn of(&self, peer: &PeerId) -> Option<Suspicion> {
        self.tx.borrow().get(peer).copied()
    }

    /// Returns once `peer` is suspected (never, while it answers).
    pub async fn until_suspected(&self, peer: PeerId) -> Suspicion {
        self.until(peer, |_| true).await
    }

    /// Returns once `peer` is down (never, while it answers).
    pub async fn until_down(&self, peer: PeerId) -> Suspicion {
        self.until(peer, |s| s.down).await
    }

    async fn until(&self, peer: PeerId, enough: impl Fn(&Suspicion) -> bool) -> Suspicion {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(s) = rx.borrow_and_update().get(&peer).filter(|s| enough(s)) {
                return *s;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Publishes the states of `peers` (event loop only). A suspect keeps
    /// its entry while its verdict and last-heard moment stay, so that
    /// waiters are woken only by a change.
    pub fn publish(&self, peers: impl Iterator<Item = (PeerId, State)>) {
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        let next: BTreeMap<PeerId, State> = peers.filter(|(_, s)| !s.is_up()).collect();
        self.tx.send_if_modified(|map| {
            let before = map.len();
            map.retain(|p, s| {
                next.get(p)
                    .is_some_and(|n| Suspicion::of(*n, now, wall_now).is_some_and(|n| same(&n, s)))
            });
            let mut changed = map.len() != before;
            for (p, state) in next {
                if let (std::collections::btree_map::Entry::Vacant(slot), Some(s)) =
                    (map.entry(p), Suspicion::of(state, now, wall_now))
                {
                    slot.insert(s);
                    changed = true;
                }
            }
            changed
        });
    }
}

fn same(a: &Suspicion, b: &Suspicion) -> bool {
    a.down == b.down && a.since == b.since
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The defaults are the documented ones (docs/guide.md, "A node that
    /// stops answering"): the integration tests shorten only the down
    /// threshold, so these values are checked here.
    #[test]
    fn the_defaults_are_3_s_1_s_after_a_failure_and_30_s() {
        let d = Thresholds::default();
        assert_eq!(d.unreachable_after, Duration::from_secs(3));
        assert_eq!(d.unreachable_after_failure, Duration::from_secs(1));
        assert_eq!(d.down_after, Duration::from_secs(30));
        // The default ping (1 s) keeps them; a slow ping stretches them.
        assert_eq!(Thresholds::for_ping_interval(Duration::from_secs(1)), d);
        let slow = Thresholds::for_ping_interval(Duration::from_secs(5));
        assert_eq!(slow.unreachable_after, Duration::from_secs(15));
        assert_eq!(slow.down_after, Duration::from_secs(30));
        let slower = Thresholds::for_ping_interval(Duration::from_secs(20));
        assert_eq!(slower.down_after, Duration::from_secs(120));
        assert_eq!(
            d.with_down_after(Duration::from_millis(1)).down_after,
            d.unreachable_after,
            "never down before unreachable"
        );
    }

    #[test]
    fn silence_goes_up_then_unreachable_then_down_since_the_last_word() {
        let th = Thresholds::default();
        let t0 = Instant::now();
        let mut d = Detector::new(t0);
        let heard = t0 + 500 * MS;
        assert_eq!(d.on(Event::Heard, heard, &th), None);
        assert_eq!(d.on(Event::Tick, heard + 2999 * MS, &th), None);
        assert_eq!(
            d.on(Event::Tick, heard + 3000 * MS, &th),
            Some(State::Unreachable { since: heard })
        );
        assert_eq!(d.on(Event::Tick, heard + 20_000 * MS, &th), None);
        assert_eq!(
            d.on(Event::Tick, heard + 30_000 * MS, &th),
            Some(State::Down { since: heard })
        );
        // Heard again: up at once.
        assert_eq!(
            d.on(Event::Heard, heard + 31_000 * MS, &th),
            Some(State::Up)
        );
    }

    #[test]
    fn a_failure_suspects_sooner_but_not_at_once() {
        let th = Thresholds::default();
        let t0 = Instant::now();
        let mut d = Detector::new(t0);
        // Its connection closes right after a ping answer: not yet.
        assert_eq!(d.on(Event::Failed, t0 + 100 * MS, &th), None);
        assert_eq!(d.on(Event::Tick, t0 + 999 * MS, &th), None);
        assert_eq!(
            d.on(Event::Tick, t0 + 1000 * MS, &th),
            Some(State::Unreachable { since: t0 })
        );
        // A word from it clears the failure: the long threshold again.
        assert_eq!(d.on(Event::Heard, t0 + 1100 * MS, &th), Some(State::Up));
        assert_eq!(d.on(Event::Tick, t0 + 3000 * MS, &th), None);
        assert!(d.state().is_up());
    }

    #[test]
    fn a_peer_that_left_is_down_until_heard_from() {
        let th = Thresholds::default();
        let t0 = Instant::now();
        let mut d = Detector::new(t0);
        assert_eq!(
            d.on(Event::Left, t0 + 10 * MS, &th),
            Some(State::Down { since: t0 })
        );
        assert_eq!(d.on(Event::Tick, t0 + 5000 * MS, &th), None);
        assert_eq!(d.on(Event::Heard, t0 + 6000 * MS, &th), Some(State::Up));
    }

    #[test]
    fn a_late_word_does_not_move_the_last_heard_back() {
        let th = Thresholds::default();
        let t0 = Instant::now();
        let mut d = Detector::new(t0 + 2000 * MS);
        d.on(Event::Heard, t0, &th);
        assert_eq!(d.last_heard(), t0 + 2000 * MS);
    }

    #[tokio::test]
    async fn suspects_wake_a_waiter_once_the_peer_is_suspected_and_forget_it_when_up() {
        let suspects = Suspects::default();
        let (p, q) = (PeerId::random(), PeerId::random());
        let since = Instant::now() - Duration::from_secs(4);
        let waiter = tokio::spawn({
            let s = suspects.clone();
            async move { s.until_suspected(p).await }
        });
        suspects.publish([(p, State::Up), (q, State::Unreachable { since })].into_iter());
        assert!(suspects.of(&p).is_none());
        assert!(!waiter.is_finished());
        suspects.publish([(p, State::Unreachable { since }), (q, State::Up)].into_iter());
        let s = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(!s.down && s.since == since);
        assert!(s.silent() >= Duration::from_secs(4));
        assert!(suspects.of(&q).is_none(), "q is up again");
        let text = s.describe();
        assert!(
            text.starts_with("unreachable since ") && text.contains(" UTC (4."),
            "{text}"
        );
        let down = tokio::spawn({
            let s = suspects.clone();
            async move { s.until_down(p).await }
        });
        tokio::task::yield_now().await;
        assert!(!down.is_finished(), "only unreachable yet");
        suspects.publish([(p, State::Down { since })].into_iter());
        assert!(suspects.of(&p).unwrap().down);
        let s = tokio::time::timeout(Duration::from_secs(5), down)
            .await
            .expect("woken when down")
            .unwrap();
        assert!(s.down);
    }

    #[test]
    fn clock_times_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_601_600 + 7 * 3600 + 41 * 60 + 2);
        assert_eq!(clock_utc(t), "07:41:02");
    }
}
