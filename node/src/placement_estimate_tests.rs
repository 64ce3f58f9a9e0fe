//! Placement with network coordinates (issue 19, item 2): a candidate
//! whose RTT to an entry nobody measured is costed from the two nodes'
//! coordinates, and a measured RTT still wins over the estimate.

use super::tests::{follow_the_client, peer, roomy, view};
use super::*;
use protocol::coordinate::VIVALDI_ERROR_MAX;

/// Settled coordinates on one axis, at `ms` milliseconds from the origin,
/// with no height: the estimate between two is the difference.
fn place(r: &mut Rtts, at: &[(PeerId, f64)]) {
    for (p, ms) in at {
        let mut c = NetCoordinate::default();
        c.vec_s[0] = ms / 1000.0;
        c.height_s = 0.0;
        c.error = 0.1;
        r.coordinates.insert(*p, c);
    }
}

/// A (0) hosts the vessel; its clients enter at E (2), which has no room;
/// D (1) never measured an RTT to E, and nobody reported one. A and E
/// measured each other (80 ms).
fn unmeasured_candidate() -> (Vec<PeerId>, Rtts, Vec<NodeRoom>) {
    let (ps, _) = follow_the_client();
    let mut r = Rtts::new(ps[0]);
    r.own_ms.insert(ps[2], 80.0);
    let mut nodes = roomy(&ps);
    nodes[2].draining = true;
    (ps, r, nodes)
}

#[test]
fn a_candidate_with_only_an_estimate_is_now_costed() {
    let (ps, mut r, nodes) = unmeasured_candidate();
    let v = view(vec![(ps[2], 1000.0)]);
    let now = Instant::now();
    // Without coordinates D cannot be costed: only E, which has no room.
    let got = Placement::new(PlacementParams::default()).evaluate(&v, &r, &nodes, None, now);
    assert!(matches!(got, Verdict::Stay(Why::NoRoom { .. })), "{got:?}");
    // With them, D is about 5 ms from E: clearly better than 80 ms here.
    place(&mut r, &[(ps[0], 0.0), (ps[1], 75.0), (ps[2], 80.0)]);
    assert_eq!(r.rtt_ms(&ps[1], &ps[2]), None);
    let est = r.estimate_ms(&ps[1], &ps[2]).unwrap();
    assert!((est - 5.0).abs() < 1e-6, "{est}");
    let mut pl = Placement::new(PlacementParams::default());
    let mut last = None;
    for _ in 0..3 {
        last = Some(pl.evaluate(&v, &r, &nodes, None, now));
    }
    match last {
        Some(Verdict::Move {
            to,
            here_ms,
            there_ms,
            ..
        }) => {
            assert_eq!(to, ps[1]);
            // Here is the measured 80 ms, not the coordinates' 80.
            assert_eq!(here_ms, 80.0);
            assert!((there_ms - 5.0).abs() < 1e-6, "{there_ms}");
        }
        other => panic!("{other:?}"),
    }
    // A drain and replicas see it too.
    let p = PlacementParams::default();
    assert_eq!(drain_target(&v, &r, &nodes, None, &p), Some(ps[1]));
}

#[test]
fn a_measured_rtt_overrides_the_estimate() {
    let (ps, mut r, nodes) = unmeasured_candidate();
    place(&mut r, &[(ps[0], 0.0), (ps[1], 75.0), (ps[2], 80.0)]);
    // D measured E: 79 ms, whatever the coordinates say (5 ms).
    r.gossiped_ms
        .insert(ps[1], [(ps[2], 79.0)].into_iter().collect());
    assert_eq!(r.rtt_or_estimate_ms(&ps[1], &ps[2]), Some(79.0));
    // The measured one wins in both directions (E's own report too).
    let mut r2 = r.clone();
    r2.gossiped_ms.clear();
    r2.gossiped_ms
        .insert(ps[2], [(ps[1], 79.0)].into_iter().collect());
    assert_eq!(r2.rtt_or_estimate_ms(&ps[1], &ps[2]), Some(79.0));
    let v = view(vec![(ps[2], 1000.0)]);
    assert_eq!(r.cost_ms(&ps[1], &v.entries), Ok(79.0));
    // So D is not clearly better than here (80 ms), and the vessel stays:
    // the only clearly better node is E, which has no room.
    let mut pl = Placement::new(PlacementParams::default());
    for _ in 0..5 {
        let got = pl.evaluate(&v, &r, &nodes, None, Instant::now());
        assert!(
            matches!(&got, Verdict::Stay(Why::NoRoom { to, .. }) if *to == ps[2]),
            "{got:?}"
        );
    }
    assert_eq!(
        drain_target(&v, &r, &nodes, None, &PlacementParams::default()),
        Some(ps[1])
    );
    // And the host's own measurement wins over its coordinate too: the
    // coordinates put A 80 ms from E; measured, it is 40.
    r.own_ms.insert(ps[2], 40.0);
    assert_eq!(r.cost_ms(&ps[0], &v.entries), Ok(40.0));
}

#[test]
fn unsettled_or_invalid_coordinates_give_no_estimate() {
    let (ps, mut r, nodes) = unmeasured_candidate();
    place(&mut r, &[(ps[0], 0.0), (ps[1], 75.0), (ps[2], 80.0)]);
    // A node that just started: the largest error.
    r.coordinates.get_mut(&ps[1]).unwrap().error = VIVALDI_ERROR_MAX;
    assert_eq!(r.estimate_ms(&ps[1], &ps[2]), None);
    let v = view(vec![(ps[2], 1000.0)]);
    let got =
        Placement::new(PlacementParams::default()).evaluate(&v, &r, &nodes, None, Instant::now());
    assert!(matches!(got, Verdict::Stay(Why::NoRoom { .. })), "{got:?}");
    // A NaN that got into the table anyway estimates nothing.
    r.coordinates.get_mut(&ps[1]).unwrap().error = 0.1;
    r.coordinates.get_mut(&ps[1]).unwrap().vec_s[0] = f64::NAN;
    assert_eq!(r.estimate_ms(&ps[1], &ps[2]), None);
    // A node unknown to the table: none either; itself: 0.
    assert_eq!(r.estimate_ms(&peer(9), &ps[2]), None);
    assert_eq!(r.estimate_ms(&peer(9), &peer(9)), Some(0.0));
}
