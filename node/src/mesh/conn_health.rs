//! Which of a peer's connections still carry anything, judged by the pings
//! libp2p sends on each one; no I/O (the event loop closes and dials).
//!
//! Why: a connection can look open on one side for seconds after the
//! other side dropped it. A link that flaps inflates QUIC's RTT estimate,
//! and an endpoint waits at least three probe timeouts of silence before
//! it closes a connection (RFC 9000 §10.1): in testnet's flapping scenario
//! one side kept a QUIC connection 8.8 s after its peer had closed it.
//! While it does, half the requests it sends to that peer (request-response
//! picks a connection by request id) go nowhere, and a node whose only
//! connection is such a one never dials again, because it is "connected".
//! So:
//! - a connection with no ping answered for `stale_after`, while another
//!   connection to the same peer just had one answered, is closed
//!   ([`ConnHealth::answered`]);
//! - a peer all of whose connections are stale is dialled afresh, at most
//!   once per [`FRESH_DIAL_EVERY`] ([`ConnHealth::due_fresh_dial`]): a new
//!   connection starts with no backed-off timers.
//!
//! A link that is down stales every connection alike, so nothing is closed
//! for it; only the fresh dials go out, as they would for a peer with no
//! connection at all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

/// The event loop's ticks this far apart mean it stalled (a loaded
/// board), not that the connections did: every connection's silence is
/// forgiven, and nothing is closed until the ticks come on time again.
/// The liveness tick is 250 ms (`liveness::LIVENESS_TICK`), and failure
/// detection skips its verdicts after a gap of `LIVENESS_STALL` (1 s) for
/// the same reason.
pub const TICK_STALL: Duration = Duration::from_secs(1);

/// Least time between two fresh dials of one peer whose connections are
/// all stale: a dial that cannot finish (the link is down) is not
/// stacked on itself every liveness tick.
pub const FRESH_DIAL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: PeerId,
    /// When a ping last came back on it, or when it opened.
    last_answer: Instant,
}

/// The connections of this node's peers and when each last answered.
/// Bounded by the swarm's connection limits: one entry per open
/// connection, removed when it closes.
#[derive(Debug)]
pub struct ConnHealth {
    conns: HashMap<ConnectionId, Conn>,
    fresh_dials: HashMap<PeerId, Instant>,
    /// The event loop's last tick ([`ConnHealth::tick`]).
    last_tick: Option<Instant>,
    /// A connection with no answer this long is stale: the liveness
    /// threshold at which its peer would be unreachable.
    stale_after: Duration,
}

impl ConnHealth {
    pub fn new(stale_after: Duration) -> ConnHealth {
        ConnHealth {
            conns: HashMap::new(),
            fresh_dials: HashMap::new(),
            last_tick: None,
            stale_after,
        }
    }

    /// A connection opened; it counts as answered now.
    pub fn opened(&mut self, id: ConnectionId, peer: PeerId, now: Instant) {
        self.conns.insert(
            id,
            Conn {
                peer,
                last_answer: now,
            },
        );
    }

    pub fn closed(&mut self, id: ConnectionId) {
        if let Some(c) = self.conns.remove(&id) {
            if !self.conns.values().any(|o| o.peer == c.peer) {
                self.fresh_dials.remove(&c.peer);
            }
        }
    }

    /// The event loop's periodic tick. After a stall (ticks more than
    /// [`TICK_STALL`] apart) every connection counts as answered now.
    pub fn tick(&mut self, now: Instant) {
        if self.stalled(now) {
            for c in self.conns.values_mut() {
                c.last_answer = c.last_answer.max(now);
            }
        }
        self.last_tick = Some(now);
    }

    fn stalled(&self, now: Instant) -> bool {
        self.last_tick
            .is_some_and(|t| now.saturating_duration_since(t) > TICK_STALL)
    }

    /// A ping came back on `id`: the same peer's connections that have
    /// been stale, to close. None while this loop is stalled (their
    /// answers may wait in its queue), and none unless `id` itself had
    /// answered within `stale_after`: a connection that answers after a
    /// silence of its own says the peer (a loaded board, a link that was
    /// down) was slow, not that its siblings are dead, and theirs may come
    /// a moment later.
    pub fn answered(&mut self, id: ConnectionId, now: Instant) -> Vec<ConnectionId> {
        let stalled = self.stalled(now);
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        let steady = now.saturating_duration_since(c.last_answer) < self.stale_after;
        c.last_answer = now;
        if stalled || !steady {
            return Vec::new();
        }
        let peer = c.peer;
        self.conns
            .iter()
            .filter(|(other, o)| **other != id && o.peer == peer && self.is_stale(o, now))
            .map(|(other, _)| *other)
            .collect()
    }

    /// Peers with connections, all of them stale, that are due a fresh
    /// dial; each is counted as dialled now. Call it after [`tick`].
    ///
    /// [`tick`]: ConnHealth::tick
    pub fn due_fresh_dial(&mut self, now: Instant) -> Vec<PeerId> {
        let mut peers: HashMap<PeerId, bool> = HashMap::new();
        for c in self.conns.values() {
            let all_stale = peers.entry(c.peer).or_insert(true);
            *all_stale &= self.is_stale(c, now);
        }
        let due: Vec<PeerId> = peers
            .into_iter()
            .filter(|(peer, all_stale)| {
                *all_stale
                    && self
                        .fresh_dials
                        .get(peer)
                        .is_none_or(|t| now.saturating_duration_since(*t) >= FRESH_DIAL_EVERY)
            })
            .map(|(peer, _)| peer)
            .collect();
        for peer in &due {
            self.fresh_dials.insert(*peer, now);
        }
        due
    }

    fn is_stale(&self, c: &Conn, now: Instant) -> bool {
        now.saturating_duration_since(c.last_answer) >= self.stale_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(3);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A peer with two connections, both opened at `t0`.
    fn two_connections(h: &mut ConnHealth, t0: Instant) -> (PeerId, ConnectionId, ConnectionId) {
        let peer = PeerId::random();
        let (one, two) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        h.opened(one, peer, t0);
        h.opened(two, peer, t0);
        (peer, one, two)
    }

    #[test]
    fn a_connection_silent_while_a_sibling_answers_is_closed() {
        let mut h = ConnHealth::new(STALE);
        let t0 = Instant::now();
        let (peer, other_peer) = (PeerId::random(), PeerId::random());
        let (zombie, fresh, elsewhere) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        h.opened(zombie, peer, t0);
        h.opened(elsewhere, other_peer, t0);
        h.opened(fresh, peer, t0 + s(2));
        // Not yet stale: nothing closed.
        assert!(h.answered(fresh, t0 + s(2)).is_empty());
        // Stale, and its sibling answers: closed. Another peer's silent
        // connection is not this peer's business.
        assert_eq!(h.answered(fresh, t0 + s(4)), vec![zombie]);
        h.closed(zombie);
        assert!(h.answered(fresh, t0 + s(9)).is_empty());
    }

    #[test]
    fn a_link_that_is_down_closes_nothing_and_dials_afresh_once_a_second() {
        let mut h = ConnHealth::new(STALE);
        let t0 = Instant::now();
        let (peer, one, two) = two_connections(&mut h, t0);
        assert!(h.due_fresh_dial(t0 + s(1)).is_empty(), "still fresh");
        // Both silent: dialled afresh, at most once per FRESH_DIAL_EVERY.
        assert_eq!(h.due_fresh_dial(t0 + s(3)), vec![peer]);
        assert!(h
            .due_fresh_dial(t0 + s(3) + FRESH_DIAL_EVERY / 2)
            .is_empty());
        assert_eq!(h.due_fresh_dial(t0 + s(3) + FRESH_DIAL_EVERY), vec![peer]);
        // One answers again after its own silence: the link came back, and
        // two's answer may come a moment later: nothing closed yet.
        assert!(h.answered(one, t0 + s(5)).is_empty());
        assert!(h.due_fresh_dial(t0 + s(5)).is_empty());
        // One answers steadily, two stays silent: two is closed.
        assert_eq!(h.answered(one, t0 + s(6)), vec![two]);
        h.closed(two);
        assert!(h.due_fresh_dial(t0 + s(6)).is_empty());
    }

    #[test]
    fn a_peer_that_stalled_loses_no_connection_when_it_answers_again() {
        let mut h = ConnHealth::new(STALE);
        let t0 = Instant::now();
        let (_, one, two) = two_connections(&mut h, t0);
        // The peer's loop stalls 5 s (a board under load, qemu in
        // testnet's mixed fleet); then both answer, one a moment first.
        assert!(h.answered(one, t0 + s(5)).is_empty());
        assert!(h
            .answered(two, t0 + s(5) + Duration::from_millis(50))
            .is_empty());
        assert!(h.answered(one, t0 + s(6)).is_empty());
    }

    #[test]
    fn a_stalled_event_loop_closes_no_connection() {
        let mut h = ConnHealth::new(STALE);
        let t0 = Instant::now();
        let (_, one, two) = two_connections(&mut h, t0);
        h.tick(t0);
        // The loop stalls 5 s; the first ping it handles after that is on
        // `one`, and `two`'s waits behind it in the queue.
        assert!(
            h.answered(one, t0 + s(5)).is_empty(),
            "stalled: nothing closed"
        );
        h.tick(t0 + s(5));
        assert!(
            h.due_fresh_dial(t0 + s(5)).is_empty(),
            "forgiven by the tick"
        );
        assert!(
            h.answered(one, t0 + s(6)).is_empty(),
            "two's silence counts from the tick"
        );
        // Ticks on time again: a silence after the stall counts, from the
        // tick that forgave it (5 s).
        h.tick(t0 + s(6));
        h.tick(t0 + s(7));
        assert!(h.answered(one, t0 + s(7)).is_empty(), "two silent 2 s");
        h.tick(t0 + s(8));
        assert_eq!(h.answered(one, t0 + s(8)), vec![two]);
    }

    #[test]
    fn unknown_connections_are_ignored_and_the_table_empties() {
        let mut h = ConnHealth::new(STALE);
        let t0 = Instant::now();
        assert!(h.answered(ConnectionId::new_unchecked(9), t0).is_empty());
        let peer = PeerId::random();
        h.opened(ConnectionId::new_unchecked(1), peer, t0);
        assert_eq!(h.due_fresh_dial(t0 + s(5)), vec![peer]);
        h.closed(ConnectionId::new_unchecked(1));
        assert!(h.conns.is_empty() && h.fresh_dials.is_empty());
    }
}
