//! When this node gossips its status (issue 19): when something the others
//! act on changed, and otherwise only once in `refresh` status intervals
//! ([`STATUS_REFRESH_INTERVALS`], which its status says, so that receivers
//! judge its age by it; 1 while a member runs an older release, which
//! counts a status stale after 3 intervals).
//!
//! Every status reaches every node through gossipsub, with its duplicates:
//! at 20 idle nodes that was nine tenths of each node's background traffic
//! (384 KB/s per node with a status every 2 s, 42 KB/s with one a minute;
//! docs/benchmarks.md, "100 nodes in testnet"). An idle node's status
//! hardly changes between two intervals, but its load, free memory and
//! smoothed RTTs always move a little, so every sample was a new message.
//! Here a sample is sent only when it differs from the last one sent by
//! more than the others could act on: a vessel or service came or went,
//! the node drains, its name, software or certificate changed, an RTT to a
//! peer appeared, went, or moved by [`RTT_CHANGE_PERCENT`] (and at least
//! [`RTT_CHANGE_MIN_US`]), its load moved by [`LOAD_CHANGE_MILLI`], its
//! free memory by [`FREE_MEMORY_CHANGE_PERCENT`] of its total, or its
//! network coordinate by [`COORDINATE_MOVE_MS`]; the measured ones (load,
//! memory, RTTs, coordinate) no sooner than
//! [`MEASURED_CHANGE_MIN_INTERVALS`] after the last status. A node that sees a new
//! member sends its status at the next interval too, so that a joiner
//! learns the fleet's services and rooms at once, not at the next refresh.
//!
//! Pure: the event loop keeps the last status sent and asks [`why_send`].

use protocol::control::NodeStatus;
#[cfg(doc)]
use protocol::control::STATUS_REFRESH_INTERVALS;
use protocol::coordinate::{magnitude_s, NetCoordinate};
use protocol::membership::MemberCertificate;

use crate::placement::MAX_ESTIMATE_ERROR;

/// An RTT to a peer that moved by more than this share of its last sent
/// value is a change: placement compares RTTs of candidates, and a 20 %
/// move is what reorders two candidates in practice (a smaller one is the
/// smoothing's own noise).
pub const RTT_CHANGE_PERCENT: u64 = 20;

/// ... and by at least this much: on a LAN a 0.3 ms RTT that moves by
/// 0.1 ms is a third, and changes nothing placement decides.
pub const RTT_CHANGE_MIN_US: u64 = 2_000;

/// A one-minute load average (× 1000) that moved by more than this: a
/// quarter of a CPU, the step at which placement's load weighting moves a
/// vessel (a smaller one is the average's own wobble on an idle board).
pub const LOAD_CHANGE_MILLI: u32 = 250;

/// Free memory that moved by more than this share of the node's total: a
/// vessel that was placed, started or stopped shows up as such a step.
pub const FREE_MEMORY_CHANGE_PERCENT: u64 = 10;

/// A network coordinate that moved by more than this (its vector and
/// height). Small, because the estimates it gives within a region are
/// 5–20 ms: with 5 ms here, testnet's coordinates scenario saw an
/// in-region estimate 34 % off (gate 25 %) while the sender's newer
/// coordinate waited. How often it goes is bounded anyway, by
/// [`MEASURED_CHANGE_MIN_INTERVALS`].
pub const COORDINATE_MOVE_MS: f64 = 0.5;

/// The status this node sent last (kept in the node's state by the event
/// loop): [`why_send`] sends the next only when it changed enough, a new member came, or its refresh is due.
#[derive(Default)]
pub struct StatusSent {
    pub last: Option<(NodeStatus, MemberCertificate)>,
    pub intervals_since: u32,
    /// A new member was seen here since the last one.
    pub new_member: bool,
}

/// A *measured* field (load, free memory, RTTs, the coordinate) that
/// changed enough goes out no sooner than this many intervals after the
/// last status: they move with the machine's and the network's noise (on
/// a loaded 20-node testnet some moved enough at nearly every interval,
/// and the traffic did not fall), and placement acts on a lasting change,
/// not on the next sample. What names things (vessels, services, names,
/// draining, software) goes at once.
pub const MEASURED_CHANGE_MIN_INTERVALS: u32 = 5;

/// Why a status goes out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// None was sent yet.
    First,
    /// A new member was seen here since the last one.
    NewMember,
    /// Its refresh went by since the last one.
    Refresh,
    /// This field changed enough.
    Changed(&'static str),
}

/// Whether to send `next` now: `last` is the status sent last (`None`
/// before the first), `intervals_since` how many status intervals ago,
/// `new_member` whether a new member was seen since, `refresh` the most
/// intervals between two.
pub fn why_send(
    last: Option<&NodeStatus>,
    next: &NodeStatus,
    intervals_since: u32,
    new_member: bool,
    refresh: u32,
) -> Option<Send> {
    let Some(last) = last else {
        return Some(Send::First);
    };
    if let Some(field) = named_changed(last, next) {
        return Some(Send::Changed(field));
    }
    let measured_due = intervals_since >= MEASURED_CHANGE_MIN_INTERVALS.min(refresh);
    if let Some(field) = measured_changed(last, next).filter(|_| measured_due) {
        return Some(Send::Changed(field));
    }
    if new_member {
        return Some(Send::NewMember);
    }
    (intervals_since >= refresh).then_some(Send::Refresh)
}

/// The first field that names things and changed, if any.
fn named_changed(last: &NodeStatus, next: &NodeStatus) -> Option<&'static str> {
    let same = [
        ("vessels", last.vessels == next.vessels),
        ("services", last.services == next.services),
        ("draining", last.draining == next.draining),
        ("named", last.named == next.named),
        ("name", last.name == next.name),
        ("software", last.software == next.software),
        ("version", last.version == next.version),
        ("cpus", last.cpus == next.cpus),
        (
            "total_memory_bytes",
            last.total_memory_bytes == next.total_memory_bytes,
        ),
        (
            "coordinate",
            settled(&last.coordinate) == settled(&next.coordinate),
        ),
    ];
    same.into_iter().find(|(_, s)| !s).map(|(f, _)| f)
}

/// The first measured field that changed enough, if any.
fn measured_changed(last: &NodeStatus, next: &NodeStatus) -> Option<&'static str> {
    let moved = [
        ("load_milli", load_moved(last.load_milli, next.load_milli)),
        ("free_memory_bytes", memory_moved(last, next)),
        ("rtts", rtts_moved(last, next)),
        (
            "coordinate",
            coordinate_moved(&last.coordinate, &next.coordinate),
        ),
    ];
    moved.into_iter().find(|(_, m)| *m).map(|(f, _)| f)
}

/// Whether others may estimate RTTs from the coordinate (placement uses
/// only a settled one): its first settled value must reach them at once,
/// or a loopback mesh, whose coordinates hardly move, waits a refresh.
fn settled(c: &Option<NetCoordinate>) -> bool {
    c.as_ref()
        .is_some_and(|c| c.error <= MAX_ESTIMATE_ERROR && c.check().is_ok())
}

fn load_moved(last: Option<u32>, next: Option<u32>) -> bool {
    match (last, next) {
        (Some(a), Some(b)) => a.abs_diff(b) > LOAD_CHANGE_MILLI,
        (a, b) => a.is_some() != b.is_some(),
    }
}

fn memory_moved(last: &NodeStatus, next: &NodeStatus) -> bool {
    match (last.free_memory_bytes, next.free_memory_bytes) {
        (Some(a), Some(b)) => {
            let total = next.total_memory_bytes.unwrap_or(a.max(b)).max(1);
            a.abs_diff(b).saturating_mul(100) / total > FREE_MEMORY_CHANGE_PERCENT
        }
        (a, b) => a.is_some() != b.is_some(),
    }
}

/// A peer's RTT appeared, went, or moved by [`RTT_CHANGE_PERCENT`] and
/// [`RTT_CHANGE_MIN_US`].
fn rtts_moved(last: &NodeStatus, next: &NodeStatus) -> bool {
    if last.rtts.len() != next.rtts.len() {
        return true;
    }
    next.rtts.iter().any(|n| {
        let Some(l) = last.rtts.iter().find(|l| l.peer == n.peer) else {
            return true;
        };
        let moved = l.rtt_us.abs_diff(n.rtt_us);
        moved >= RTT_CHANGE_MIN_US && moved.saturating_mul(100) > l.rtt_us * RTT_CHANGE_PERCENT
    })
}

fn coordinate_moved(last: &Option<NetCoordinate>, next: &Option<NetCoordinate>) -> bool {
    match (last, next) {
        (Some(a), Some(b)) if a.is_compatible(b) => {
            let vec = magnitude_s(a.vec_s.iter().zip(&b.vec_s).map(|(x, y)| x - y));
            let moved_ms = (vec + (a.height_s - b.height_s).abs()) * 1000.0;
            moved_ms > COORDINATE_MOVE_MS
        }
        (None, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::control::{PeerRtt, STATUS_REFRESH_INTERVALS as R};

    fn status() -> NodeStatus {
        let mut s = crate::mesh::status::sample(vec!["v1".into()]);
        s.load_milli = Some(500);
        s.free_memory_bytes = Some(500 << 20);
        s.total_memory_bytes = Some(1 << 30);
        s.rtts = vec![PeerRtt {
            peer: "p".into(),
            rtt_us: 10_000,
        }];
        s
    }

    #[test]
    fn an_idle_status_is_sent_only_at_the_refresh() {
        let last = status();
        let mut next = status();
        next.load_milli = Some(600);
        next.free_memory_bytes = Some(520 << 20);
        next.rtts[0].rtt_us = 11_500;
        assert_eq!(why_send(None, &next, 0, false, R), Some(Send::First));
        for i in 0..R {
            assert_eq!(
                why_send(Some(&last), &next, i, false, R),
                None,
                "interval {i}"
            );
        }
        assert_eq!(
            why_send(Some(&last), &next, R, false, R),
            Some(Send::Refresh)
        );
        assert_eq!(
            why_send(Some(&last), &next, 1, true, R),
            Some(Send::NewMember)
        );
        // With a member of an older release: every interval, as before.
        assert_eq!(
            why_send(Some(&last), &next, 1, false, 1),
            Some(Send::Refresh)
        );
    }

    /// A field's name and a change of it.
    type Case = (&'static str, fn(&mut NodeStatus));

    #[test]
    fn what_the_others_act_on_is_sent_at_once() {
        let last = status();
        let named: [Case; 3] = [
            ("vessels", |s| s.vessels.push("v2".into())),
            ("draining", |s| s.draining = true),
            ("name", |s| s.name = Some("b".into())),
        ];
        for (field, change) in named {
            let mut next = status();
            change(&mut next);
            let why = why_send(Some(&last), &next, 1, false, R);
            assert_eq!(why, Some(Send::Changed(field)), "at once");
        }
        let measured: [Case; 4] = [
            ("load_milli", |s| s.load_milli = Some(800)),
            ("free_memory_bytes", |s| {
                s.free_memory_bytes = Some(300 << 20)
            }),
            ("rtts", |s| s.rtts[0].rtt_us = 13_000),
            ("rtts", |s| s.rtts.clear()),
        ];
        let soon = MEASURED_CHANGE_MIN_INTERVALS;
        for (field, change) in measured {
            let mut next = status();
            change(&mut next);
            assert_eq!(why_send(Some(&last), &next, soon - 1, false, R), None);
            let why = why_send(Some(&last), &next, soon, false, R);
            assert_eq!(why, Some(Send::Changed(field)), "after {soon} intervals");
        }
    }

    #[test]
    fn a_lan_rtt_that_moves_by_a_fraction_of_a_millisecond_is_no_change() {
        let mut last = status();
        last.rtts[0].rtt_us = 300;
        let mut next = last.clone();
        next.rtts[0].rtt_us = 450;
        assert_eq!(
            why_send(Some(&last), &next, MEASURED_CHANGE_MIN_INTERVALS, false, R),
            None
        );
    }

    #[test]
    fn a_coordinate_is_sent_when_it_moved_more_than_a_few_ms() {
        let c = |x: f64| NetCoordinate {
            vec_s: vec![x, 0.0],
            error: 0.5,
            adjustment_s: 0.0,
            height_s: 0.001,
        };
        let mut last = status();
        last.coordinate = Some(NetCoordinate {
            error: 1.5,
            ..c(0.050)
        });
        let mut settles = last.clone();
        settles.coordinate = Some(c(0.050));
        assert_eq!(
            why_send(Some(&last), &settles, 1, false, R),
            Some(Send::Changed("coordinate")),
            "its first settled value goes at once"
        );
        last.coordinate = Some(c(0.050));
        let mut near = last.clone();
        near.coordinate = Some(c(0.0502));
        assert_eq!(
            why_send(Some(&last), &near, MEASURED_CHANGE_MIN_INTERVALS, false, R),
            None
        );
        let mut far = last.clone();
        far.coordinate = Some(c(0.060));
        assert_eq!(
            why_send(Some(&last), &far, MEASURED_CHANGE_MIN_INTERVALS, false, R),
            Some(Send::Changed("coordinate"))
        );
    }
}
