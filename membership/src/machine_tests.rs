//! The state machine driven by hand: the probe path, refutation, relays,
//! bounded gossip and target choice.

use super::*;
use crate::limits::{retransmit_limit, suspicion_timeout_ms, MAX_DATAGRAM_BYTES};

/// Ids spread over the id space as hashed keys are.
fn id(n: u8) -> NodeId {
    let mut rng = crate::SplitMix64(u64::from(n));
    let mut id = [n; 32];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    NodeId(id)
}

fn alive(n: u8) -> Change {
    Change {
        id: id(n),
        incarnation: 0,
        state: MemberState::Alive,
    }
}

/// Node 1, knowing nodes `others` as alive (told by a sync page).
fn node(others: &[u8]) -> Membership {
    let mut m = Membership::new(id(1), 42, 0);
    let entries = others.iter().map(|&n| alive(n)).collect();
    let page = Message::SyncResponse {
        until: None,
        entries,
        next: None,
    }
    .encode();
    m.handle(id(others[0]), &page, 0, &mut Vec::new()).unwrap();
    m
}

fn sends(out: &[Action]) -> Vec<(NodeId, Message)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send { to, bytes, .. } => Some((*to, Message::decode(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

/// Ticks every 10 ms from `from_ms` to `to_ms` (inclusive) and collects
/// the actions.
fn run(m: &mut Membership, from_ms: u64, to_ms: u64) -> Vec<Action> {
    let mut out = Vec::new();
    for t in (from_ms..=to_ms).step_by(10) {
        m.tick(t, &mut |_| None, &mut out);
    }
    out
}

fn first_ping(out: &[Action]) -> (NodeId, u32) {
    sends(out)
        .into_iter()
        .find_map(|(to, msg)| match msg {
            Message::Ping { seq, .. } => Some((to, seq)),
            _ => None,
        })
        .expect("a ping in the first round")
}

#[test]
fn a_silent_member_gets_indirect_probes_then_is_suspected_then_down() {
    let mut m = node(&[2, 3, 4, 5, 6]);
    let out = run(&mut m, 0, 1_000);
    let (target, seq) = first_ping(&out);
    let reqs: Vec<NodeId> = sends(&out)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            Message::PingReq {
                seq: s, target: t, ..
            } if s == seq && t == target => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), INDIRECT_PROBES, "{reqs:?}");
    assert!(!reqs.contains(&target) && !reqs.contains(&id(1)));
    let suspected = Action::StateChanged {
        id: target,
        state: PeerState::Unreachable,
    };
    let out = run(&mut m, 1_010, 2_500);
    assert!(
        out.contains(&suspected),
        "suspected after the round: {out:?}"
    );
    let down = Action::StateChanged {
        id: target,
        state: PeerState::Down,
    };
    let timeout = suspicion_timeout_ms(6);
    let out = run(&mut m, 2_510, 2_500 + timeout);
    assert!(out.contains(&down), "down once the suspicion timed out");
    assert_eq!(m.state_of(&target), Some(MemberState::Dead));
}

#[test]
fn an_ack_through_a_helper_keeps_the_member_up() {
    let mut m = node(&[2, 3, 4, 5, 6]);
    let t0 = (0..1_000)
        .step_by(10)
        .find(|&t| !run(&mut m, t, t).is_empty())
        .unwrap();
    m = node(&[2, 3, 4, 5, 6]);
    let out = run(&mut m, 0, t0 + 600);
    let (target, seq) = first_ping(&out);
    let helper = sends(&out)
        .into_iter()
        .find_map(|(to, msg)| matches!(msg, Message::PingReq { .. }).then_some(to))
        .expect("indirect probes after the timeout");
    let ack = Message::Ack {
        seq,
        gossip: vec![],
    }
    .encode();
    let mut out = Vec::new();
    m.handle(helper, &ack, t0 + 700, &mut out).unwrap();
    assert!(
        !out.iter().any(|a| matches!(a, Action::Rtt { .. })),
        "no RTT from a relayed ack"
    );
    let out = run(&mut m, t0 + 710, t0 + 1_500);
    let suspected = Action::StateChanged {
        id: target,
        state: PeerState::Unreachable,
    };
    assert!(!out.contains(&suspected));
    assert_eq!(m.state_of(&target), Some(MemberState::Alive));
}

#[test]
fn a_direct_ack_reports_the_rtt() {
    let mut m = node(&[2, 3]);
    let out = run(&mut m, 0, 1_000);
    let (target, seq) = first_ping(&out);
    let mut out = Vec::new();
    let ack = Message::Ack {
        seq,
        gossip: vec![],
    }
    .encode();
    m.handle(target, &ack, 1_200, &mut out).unwrap();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Rtt { id, .. } if *id == target)),
        "{out:?}"
    );
}

#[test]
fn a_suspected_member_refutes_with_a_higher_incarnation() {
    let mut m = node(&[2]);
    let suspicion = Change {
        id: id(1),
        incarnation: 0,
        state: MemberState::Suspect,
    };
    let ping = Message::Ping {
        seq: 5,
        gossip: vec![suspicion],
    }
    .encode();
    let mut out = Vec::new();
    m.handle(id(2), &ping, 10, &mut out).unwrap();
    assert_eq!(m.incarnation(), 1);
    let refuted = Change {
        id: id(1),
        incarnation: 1,
        state: MemberState::Alive,
    };
    match &sends(&out)[..] {
        [(to, Message::Ack { seq: 5, gossip })] => {
            assert_eq!(*to, id(2));
            assert!(gossip.contains(&refuted), "{gossip:?}");
        }
        other => panic!("{other:?}"),
    }
    // An old suspicion (a lower incarnation) is not refuted again.
    let ping = Message::Ping {
        seq: 6,
        gossip: vec![suspicion],
    }
    .encode();
    m.handle(id(2), &ping, 20, &mut Vec::new()).unwrap();
    assert_eq!(m.incarnation(), 1);
}

#[test]
fn a_ping_request_is_relayed_and_its_ack_returned() {
    let mut m = node(&[2, 3]);
    let mut out = Vec::new();
    let req = Message::PingReq {
        seq: 9,
        target: id(3),
        gossip: vec![],
    }
    .encode();
    m.handle(id(2), &req, 0, &mut out).unwrap();
    let [(to, Message::Ping { seq, .. })] = &sends(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*to, id(3));
    let mut out = Vec::new();
    m.handle(
        id(3),
        &Message::Ack {
            seq: *seq,
            gossip: vec![],
        }
        .encode(),
        50,
        &mut out,
    )
    .unwrap();
    let [(to, Message::Ack { seq: 9, .. })] = &sends(&out)[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*to, id(2));
}

#[test]
fn a_change_is_piggybacked_a_bounded_number_of_times() {
    let mut m = node(&[2, 3, 4]);
    let news = Change {
        id: id(9),
        incarnation: 0,
        state: MemberState::Alive,
    };
    let mut out = Vec::new();
    m.handle(
        id(2),
        &Message::Ping {
            seq: 1,
            gossip: vec![news],
        }
        .encode(),
        0,
        &mut out,
    )
    .unwrap();
    for seq in 2..40 {
        m.handle(
            id(3),
            &Message::Ping {
                seq,
                gossip: vec![],
            }
            .encode(),
            0,
            &mut out,
        )
        .unwrap();
    }
    let carried = sends(&out)
        .iter()
        .filter(|(_, msg)| matches!(msg, Message::Ack { gossip, .. } if gossip.contains(&news)))
        .count();
    assert_eq!(carried as u32, retransmit_limit(m.live_members()));
}

#[test]
fn every_member_is_probed_within_a_bounded_number_of_rounds() {
    let others: Vec<u8> = (2..22).collect();
    let mut m = node(&others);
    let mut probed = std::collections::BTreeMap::new();
    let rounds = 20 * 4 / 3 + 4;
    let mut out = Vec::new();
    for round in 0..rounds as u64 {
        let t = round * PROBE_INTERVAL_MS + 999;
        // Node 7 and the three whose id starts lowest are the nearest:
        // one round in four goes to one of them.
        m.tick(
            t,
            &mut |n| {
                Some(if *n == id(7) {
                    1
                } else {
                    100 + u64::from(n.0[0])
                })
            },
            &mut out,
        );
        for (to, msg) in sends(&out) {
            if let Message::Ping { seq, .. } = msg {
                *probed.entry(to).or_insert(0) += 1;
                let ack = Message::Ack {
                    seq,
                    gossip: vec![],
                }
                .encode();
                m.handle(to, &ack, t + 1, &mut Vec::new()).unwrap();
            }
        }
        out.clear();
    }
    assert_eq!(probed.len(), 20, "every member probed: {probed:?}");
    let mut by_distance: Vec<NodeId> = others
        .iter()
        .map(|&k| id(k))
        .filter(|n| *n != id(7))
        .collect();
    by_distance.sort_by_key(|n| n.0[0]);
    let mut nearest = vec![id(7)];
    nearest.extend(&by_distance[..3]);
    assert_eq!(m.nearest(), nearest);
    for n in nearest {
        assert!(probed[&n] >= 2, "the nearest more often: {probed:?}");
    }
}

#[test]
fn an_oversized_or_malformed_message_is_a_typed_error() {
    let mut m = node(&[2]);
    let big = vec![crate::message::WIRE_VERSION, 1, 0, 0]
        .into_iter()
        .chain(vec![0; MAX_DATAGRAM_BYTES]);
    let err = m
        .handle(id(2), &big.collect::<Vec<_>>(), 0, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                limit: MAX_DATAGRAM_BYTES,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        m.handle(id(2), &[9], 0, &mut Vec::new()),
        Err(DecodeError::Version(9))
    );
}

#[test]
fn a_leaving_member_tells_others_and_they_show_it_left() {
    let mut m = node(&[2, 3, 4, 5]);
    let mut out = Vec::new();
    m.leave(&mut out);
    let pings = sends(&out);
    assert_eq!(pings.len(), INDIRECT_PROBES);
    let (to, ping) = &pings[0];
    let mut peer = Membership::new(*to, 7, 0);
    let mut heard = Vec::new();
    peer.handle(id(1), &ping.encode(), 10, &mut heard).unwrap();
    assert!(
        heard.contains(&Action::StateChanged {
            id: id(1),
            state: PeerState::Left
        }),
        "{heard:?}"
    );
    assert!(
        run(&mut m, 0, 3_000).is_empty(),
        "a node that left probes no more"
    );
}
