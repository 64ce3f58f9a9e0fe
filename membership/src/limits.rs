//! Every bound of the membership protocol, named, with why (in the manner
//! of wasmparser's `limits.rs`). Times are in milliseconds of the caller's
//! monotonic clock. docs/protocol.md, "Membership and failure detection at
//! scale", explains them for operators.

/// One probe round: each node probes one member per interval, so a node
/// sends about one ping and answers about one ping per second whatever the
/// fleet's size (memberlist's LAN default is 1 s too). This is what makes
/// background traffic constant per node instead of growing with N.
pub const PROBE_INTERVAL_MS: u64 = 1_000;

/// How long a direct ping waits for its ack before indirect probes start.
/// Above the worst RTT of the geographic model (about 330 ms between
/// Frankfurt and Singapore with jitter) and memberlist's 500 ms default.
pub const PROBE_TIMEOUT_MS: u64 = 500;

/// How long indirect probes wait for a relayed ack after the direct
/// timeout: the request, the helper's ping and its ack, and the relay are
/// up to two of the model's worst RTTs (2 × 330 ms), plus margin. memberlist
/// waits to the end of its 1 s interval, enough on a LAN, not across
/// continents; a probe may thus outlast its round (the next waits).
pub const INDIRECT_TIMEOUT_MS: u64 = 1_000;

/// Indirect probes sent through other members when a direct ping times
/// out (SWIM's k; memberlist's IndirectChecks is 3): a lost packet or one
/// bad link does not make a member suspect, only a member nobody reaches.
pub const INDIRECT_PROBES: usize = 3;

/// Nearest members (by the caller's RTT or coordinate estimate) that get
/// probed more often than the rest, so that placement has fresh RTTs to
/// its likely candidates. Small: they are extra load on nearby nodes.
pub const NEAREST_COUNT: usize = 4;

/// One round in this many probes a nearest member; the others walk the
/// member table in id order (SWIM's round-robin), so every member is
/// probed by each node within about two passes of `ceil(N × 4/3)` rounds
/// (a pass starts at a random id) and its death is first seen
/// within about one round on average (N nodes each probe one member).
pub const NEAREST_PROBE_EVERY_ROUNDS: u64 = 4;

/// Members sampled at random when the nearest set is refreshed, with the
/// current nearest ones: finding the nearest costs this many distance
/// look-ups per refresh, not N (a node never scans the whole fleet).
pub const NEAREST_SAMPLE: usize = 32;

/// Rounds between refreshes of the nearest set.
pub const NEAREST_REFRESH_ROUNDS: u64 = 8;

/// Suspicion timeout: `SUSPICION_MULT × log10(N)` probe intervals (at
/// least one log), clamped to the min and max below, as memberlist's
/// `SuspicionMult` (4). Long enough for the suspect to hear of it through
/// gossip (which takes about log N rounds) and refute it.
pub const SUSPICION_MULT: u64 = 4;
/// The floor of the suspicion timeout: a small fleet still gives a
/// suspect several rounds to refute.
pub const SUSPICION_MIN_MS: u64 = 4_000;
/// The ceiling: detection of a dead member must stay bounded at any N.
pub const SUSPICION_MAX_MS: u64 = 30_000;

/// Each change is piggybacked this many times `× ceil(log10(N + 1))`
/// (memberlist's RetransmitMult is 4): enough for an epidemic to reach
/// every node with high probability, then it is dropped.
pub const RETRANSMIT_MULT: u32 = 4;

/// Changes piggybacked on one ping, ack or ping request. With
/// [`MAX_CHANGE_BYTES`] each, a message stays within one datagram.
pub const MAX_PIGGYBACK_CHANGES: usize = 24;

/// Changes queued for piggybacking at most (Serf bounds its queue the same
/// way, MaxQueueDepth): past it the most-sent one is dropped. A steady
/// fleet queues a handful; only a cold start or a mass failure queues
/// more, and then anti-entropy's pages carry what gossip dropped. Keeps a
/// node's memory for gossip bounded at any fleet size.
pub const MAX_QUEUED_CHANGES: usize = 1_024;

/// The encoded size of one change at most: a 32-byte id, a varint
/// incarnation (5 bytes for a u32) and a state byte.
pub const MAX_CHANGE_BYTES: usize = 32 + 5 + 1;

/// A probe-path message at most: one UDP datagram on a 1500-byte MTU
/// (memberlist's UDPBufferSize is 1400 too).
pub const MAX_DATAGRAM_BYTES: usize = 1_400;

/// Entries in one sync page (anti-entropy and a joiner's full sync): a
/// page is one stream message of at most [`MAX_SYNC_BYTES`].
pub const SYNC_PAGE_ENTRIES: usize = 1_024;

/// A sync message at most: [`SYNC_PAGE_ENTRIES`] changes plus a header.
pub const MAX_SYNC_BYTES: usize = SYNC_PAGE_ENTRIES * MAX_CHANGE_BYTES + 128;

/// Members a digest range covers: an anti-entropy round compares one range
/// of this many entries by hash (a few dozen bytes) and pulls it only when
/// it differs, so a converged fleet pays almost nothing for it.
pub const SYNC_RANGE_ENTRIES: usize = 256;

/// One anti-entropy round per this interval, with one random member: the
/// backstop for changes whose gossip was dropped, and what lets a joiner
/// learn the fleet faster than gossip alone (which carries at most
/// [`MAX_PIGGYBACK_CHANGES`] per message).
pub const SYNC_INTERVAL_MS: u64 = 5_000;

/// The next anti-entropy round after one that learned something: while
/// the fleet changes (a cold start, a healed partition) pulling fast makes
/// convergence a pull epidemic of about log2(N) rounds; a round whose
/// digest matches costs a few dozen bytes, so a converged fleet falls back
/// to [`SYNC_INTERVAL_MS`] by itself.
pub const SYNC_FAST_INTERVAL_MS: u64 = 1_000;

/// Pages one anti-entropy round may pull: a joiner pulls a fleet of up to
/// 32 × 1,024 members in one round; the round's cost is bounded.
pub const MAX_SYNC_PAGES_PER_ROUND: usize = 32;

/// Seeds a joiner asks for a full sync at once.
pub const MAX_JOIN_SEEDS: usize = 3;

/// One round in this many pings a random *dead* member instead, with its
/// death notice piggybacked, so that after a partition heals both sides
/// hear of it and refute (Serf's reconnect). No suspicion follows a miss.
pub const RECONNECT_EVERY_ROUNDS: u64 = 10;

/// Members tracked at most (alive, suspect and dead): the largest
/// simulated fleet is 10,000. A join past it is refused and counted.
pub const MAX_MEMBERS: usize = 16_384;

/// How long a member that left (or was confirmed dead) is remembered, so
/// that its old alive notices arriving late do not bring it back and a
/// reconnect can still find it (Serf's reconnect_timeout is 24 h).
pub const DEAD_RETAIN_MS: u64 = 24 * 3_600 * 1_000;

/// Ping requests a node relays at once for others; past it a request is
/// dropped (the requester's other helpers still answer).
pub const MAX_RELAYS: usize = 64;

/// `ceil(log10(n + 1))`, at least 1: how the suspicion timeout and the
/// retransmit count grow with the fleet.
pub fn log10_ceil(n: usize) -> u64 {
    let mut log = 0;
    let mut power = 1usize;
    while power <= n {
        log += 1;
        power = power.saturating_mul(10);
    }
    log.max(1)
}

/// The suspicion timeout for a fleet of `n` live members.
pub fn suspicion_timeout_ms(n: usize) -> u64 {
    (SUSPICION_MULT * log10_ceil(n) * PROBE_INTERVAL_MS).clamp(SUSPICION_MIN_MS, SUSPICION_MAX_MS)
}

/// How many times one change is piggybacked in a fleet of `n`.
pub fn retransmit_limit(n: usize) -> u32 {
    RETRANSMIT_MULT * log10_ceil(n) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_with_the_log_of_the_fleet() {
        assert_eq!(log10_ceil(0), 1);
        assert_eq!(log10_ceil(9), 1);
        assert_eq!(log10_ceil(10), 2);
        assert_eq!(log10_ceil(10_000), 5);
        assert_eq!(suspicion_timeout_ms(5), SUSPICION_MIN_MS);
        assert_eq!(suspicion_timeout_ms(100), 12_000);
        assert_eq!(retransmit_limit(1_000), 16);
        let ping = 16 + MAX_PIGGYBACK_CHANGES * MAX_CHANGE_BYTES;
        assert!(ping <= MAX_DATAGRAM_BYTES, "{ping}");
    }
}
