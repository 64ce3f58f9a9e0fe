//! Placement's tests: costs, margin and hysteresis, pins and cool-down,
//! room, drains, replicas, noise and the traffic book, on made-up meshes.

use super::*;

pub(super) fn peer(n: u8) -> PeerId {
    crate::identity::NodeIdentity::from_signing_key(ed25519_dalek::SigningKey::from_bytes(&[n; 32]))
        .peer_id
}

const V: VesselId = VesselId([7; 8]);

/// A mesh where every node measured every other: `ms[i][j]`.
pub(super) fn rtts(me: usize, ps: &[PeerId], ms: &[Vec<f64>]) -> Rtts {
    let mut r = Rtts::new(ps[me]);
    for (i, row) in ms.iter().enumerate() {
        let t: BTreeMap<PeerId, f64> = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, m)| (ps[j], *m))
            .collect();
        if i == me {
            r.own_ms = t;
        } else {
            r.gossiped_ms.insert(ps[i], t);
        }
    }
    r
}

pub(super) fn roomy(ps: &[PeerId]) -> Vec<NodeRoom> {
    ps.iter()
        .map(|p| NodeRoom {
            peer: *p,
            free_memory_bytes: Some(1 << 30),
            load_per_cpu: Some(0.5),
            vessels: 1,
            draining: false,
        })
        .collect()
}

pub(super) fn view(entries: Vec<(PeerId, f64)>) -> VesselView {
    VesselView {
        id: V,
        pinned: false,
        memory_bytes: 1 << 20,
        last_move: None,
        reason: "deployed here".into(),
        entries,
    }
}

/// A (0), D (1), E (2): RTT(A,E) = 80, RTT(D,E) = 5, RTT(A,D) = 78.
pub(super) fn follow_the_client() -> (Vec<PeerId>, Vec<Vec<f64>>) {
    let ps = vec![peer(1), peer(2), peer(3)];
    let ms = vec![
        vec![0.0, 78.0, 80.0],
        vec![78.0, 0.0, 5.0],
        vec![80.0, 5.0, 0.0],
    ];
    (ps, ms)
}

#[test]
fn moves_to_the_entry_after_the_hysteresis() {
    let (ps, ms) = follow_the_client();
    let mut pl = Placement::new(PlacementParams::default());
    let r = rtts(0, &ps, &ms);
    let v = view(vec![(ps[2], 1000.0)]);
    let t = Instant::now();
    for i in 0..2 {
        let got = pl.evaluate(&v, &r, &roomy(&ps), Some(0.5), t);
        assert!(
            matches!(&got, Verdict::Stay(Why::Waiting { to, streak, .. }) if *to == ps[2] && *streak == i + 1),
            "{got:?}"
        );
    }
    match pl.evaluate(&v, &r, &roomy(&ps), Some(0.5), t) {
        Verdict::Move {
            to,
            here_ms,
            there_ms,
            why,
        } => {
            assert_eq!(to, ps[2]);
            assert_eq!((here_ms, there_ms), (80.0, 0.0));
            assert!(why.contains("0 ms here vs 80 ms"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn margin_and_minimum_gain_both_hold() {
    let ps = vec![peer(1), peer(2), peer(3)];
    let p = PlacementParams::default();
    // 8 ms better: 100 % relatively, under the 10 ms minimum gain.
    let ms = vec![
        vec![0.0, 30.0, 8.0],
        vec![30.0, 0.0, 30.0],
        vec![8.0, 30.0, 0.0],
    ];
    let mut pl = Placement::new(p);
    let v = view(vec![(ps[2], 500.0)]);
    for _ in 0..10 {
        let got = pl.evaluate(&v, &rtts(0, &ps, &ms), &roomy(&ps), None, Instant::now());
        assert!(
            matches!(got, Verdict::Stay(Why::SmallGain { .. })),
            "{got:?}"
        );
    }
    // 40 ms better out of 200: over the minimum gain, under the margin.
    let ms = vec![
        vec![0.0, 160.0, 200.0],
        vec![160.0, 0.0, 170.0],
        vec![200.0, 170.0, 0.0],
    ];
    let v = view(vec![(ps[1], 1.0), (ps[2], 1.0)]);
    // Here: 180; at D: 85; at E: 100.
    let got = pl.evaluate(&v, &rtts(0, &ps, &ms), &roomy(&ps), None, Instant::now());
    assert!(
        matches!(got, Verdict::Stay(Why::Waiting { to, .. }) if to == ps[1]),
        "{got:?}"
    );
    let ms = vec![
        vec![0.0, 160.0, 200.0],
        vec![160.0, 0.0, 60.0],
        vec![200.0, 60.0, 0.0],
    ];
    let v = view(vec![(ps[0], 10.0), (ps[1], 1.0), (ps[2], 1.0)]);
    // Here: (0·10 + 160 + 200)/12 = 30; at D: (1600 + 60)/12 ≈ 138.
    let got = pl.evaluate(&v, &rtts(0, &ps, &ms), &roomy(&ps), None, Instant::now());
    assert!(matches!(got, Verdict::Stay(Why::Nearest { .. })), "{got:?}");
    assert!(got_text(&got).starts_with("nearest to its clients: 30 ms here"));
}

fn got_text(v: &Verdict) -> String {
    match v {
        Verdict::Stay(w) => w.to_string(),
        Verdict::Move { why, .. } => why.clone(),
    }
}

#[test]
fn pinned_cool_down_and_no_traffic_stay() {
    let (ps, ms) = follow_the_client();
    let r = rtts(0, &ps, &ms);
    let mut pl = Placement::new(PlacementParams::default());
    let now = Instant::now();
    let mut v = view(vec![(ps[2], 1000.0)]);
    v.pinned = true;
    for _ in 0..10 {
        assert_eq!(
            pl.evaluate(&v, &r, &roomy(&ps), None, now),
            Verdict::Stay(Why::Pinned)
        );
    }
    v.pinned = false;
    v.last_move = Some(now);
    v.reason = "drained from A".into();
    let later = now + Duration::from_secs(3);
    let got = pl.evaluate(&v, &r, &roomy(&ps), None, later);
    assert_eq!(
        got_text(&got),
        "cool-down 12 s after a move (drained from A)"
    );
    let v = view(vec![]);
    assert_eq!(
        got_text(&pl.evaluate(&v, &r, &roomy(&ps), None, later)),
        "deployed here; no client traffic yet"
    );
    // A failed attempt cools down as well.
    let v = view(vec![(ps[2], 1000.0)]);
    pl.note_failed(V, ps[2], now);
    let got = pl.evaluate(&v, &r, &roomy(&ps), None, later);
    assert!(got_text(&got).contains("after a failed move to"), "{got:?}");
    let after = now + PlacementParams::default().cooldown;
    for _ in 0..2 {
        pl.evaluate(&v, &r, &roomy(&ps), None, after);
    }
    assert!(matches!(
        pl.evaluate(&v, &r, &roomy(&ps), None, after),
        Verdict::Move { .. }
    ));
}

#[test]
fn a_node_without_room_is_passed_over() {
    let (ps, ms) = follow_the_client();
    let r = rtts(0, &ps, &ms);
    let mut pl = Placement::new(PlacementParams::default());
    let mut nodes = roomy(&ps);
    // E has no memory to spare: D, 5 ms away from E, is next best.
    nodes[2].free_memory_bytes = Some(MEMORY_HEADROOM_BYTES);
    let v = view(vec![(ps[2], 1000.0)]);
    let now = Instant::now();
    let mut last = None;
    for _ in 0..3 {
        last = Some(pl.evaluate(&v, &r, &nodes, None, now));
    }
    assert!(
        matches!(last, Some(Verdict::Move { to, .. }) if to == ps[1]),
        "{last:?}"
    );
    // Neither: no room anywhere nearer, and `ps` says why.
    nodes[1].draining = true;
    let got = pl.evaluate(&v, &r, &nodes, None, now);
    assert!(matches!(got, Verdict::Stay(Why::NoRoom { .. })), "{got:?}");
    assert!(got_text(&got).contains("has no room"), "{got:?}");
    // Busy: above the limit and busier than here.
    nodes[1].draining = false;
    nodes[1].load_per_cpu = Some(9.0);
    let got = pl.evaluate(&v, &r, &nodes, Some(1.0), now);
    assert!(matches!(got, Verdict::Stay(Why::NoRoom { .. })), "{got:?}");
    let lack = nodes[1].lacks_room(1 << 20, Some(1.0), &PlacementParams::default());
    assert!(lack.unwrap().contains("busy"));
    // As busy as here (one machine): not a reason.
    let mut pl = Placement::new(PlacementParams::default());
    for _ in 0..2 {
        pl.evaluate(&v, &r, &nodes, Some(9.0), now);
    }
    assert!(matches!(
        pl.evaluate(&v, &r, &nodes, Some(9.0), now),
        Verdict::Move { to, .. } if to == ps[1]
    ));
}

#[test]
fn unmeasured_rtt_is_symmetric_or_blocks() {
    let (ps, _) = follow_the_client();
    let mut r = Rtts::new(ps[0]);
    r.gossiped_ms
        .insert(ps[2], [(ps[0], 80.0)].into_iter().collect());
    assert_eq!(r.rtt_ms(&ps[0], &ps[2]), Some(80.0));
    assert_eq!(r.rtt_ms(&ps[1], &ps[2]), None);
    let mut pl = Placement::new(PlacementParams::default());
    let v = view(vec![(ps[1], 10.0)]);
    let got = pl.evaluate(&v, &r, &roomy(&ps), None, Instant::now());
    assert!(
        matches!(got, Verdict::Stay(Why::UnknownRtt { .. })),
        "{got:?}"
    );
}

#[test]
fn a_drain_prefers_nearness_then_the_emptiest_node_with_room() {
    let (ps, ms) = follow_the_client();
    let r = rtts(0, &ps, &ms);
    let mut nodes = roomy(&ps);
    nodes[1].vessels = 5;
    let p = PlacementParams::default();
    // No traffic: the node with fewer vessels.
    assert_eq!(
        drain_target(&view(vec![]), &r, &nodes, None, &p),
        Some(ps[2])
    );
    // Clients at D: D, however full.
    let v = view(vec![(ps[1], 10.0)]);
    assert_eq!(drain_target(&v, &r, &nodes, None, &p), Some(ps[1]));
    // Never this node; none when nobody else has room.
    nodes[1].draining = true;
    nodes[2].free_memory_bytes = Some(0);
    assert_eq!(drain_target(&v, &r, &nodes, None, &p), None);
}

/// Replicas go to the nodes nearest the vessel's clients, never to its
/// host or a node without room; a replica still fit stays; fewer nodes
/// than asked for give what there is.
#[test]
fn replicas_go_nearest_the_clients_and_keep_their_place() {
    let ps: Vec<PeerId> = (1..=4).map(peer).collect();
    // The clients enter at node 3; node 2 is next to it, node 1 far.
    let ms = vec![
        vec![0.0, 50.0, 40.0, 45.0],
        vec![50.0, 0.0, 60.0, 70.0],
        vec![40.0, 60.0, 0.0, 2.0],
        vec![45.0, 70.0, 2.0, 0.0],
    ];
    let r = rtts(0, &ps, &ms);
    let v = view(vec![(ps[3], 1000.0)]);
    let p = PlacementParams::default();
    let nodes = roomy(&ps);
    let got = replica_targets(&v, &r, &nodes, None, &p, &[], 2);
    assert_eq!(got, vec![ps[3], ps[2]], "nearest the clients first");
    // A kept replica stays even though another is nearer, and even
    // when its status says no room now (or it has none fresh).
    let got = replica_targets(&v, &r, &nodes, None, &p, &[ps[1]], 2);
    assert_eq!(got, vec![ps[1], ps[3]]);
    let mut full = nodes.clone();
    full[1].free_memory_bytes = Some(0);
    let got = replica_targets(&v, &r, &full, None, &p, &[ps[1]], 2);
    assert_eq!(got, vec![ps[1], ps[3]]);
    // A new one needs room.
    let got = replica_targets(&v, &r, &full, None, &p, &[], 3);
    assert_eq!(got, vec![ps[3], ps[2]]);
    // Never the host itself; asked for more than there are: all there is.
    let got = replica_targets(&v, &r, &nodes, None, &p, &[ps[0]], 4);
    assert_eq!(got.len(), 3);
    assert!(!got.contains(&ps[0]));
    assert!(replica_targets(&v, &r, &nodes, None, &p, &[], 0).is_empty());
}

/// A small seeded generator (no dependency for one test helper).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the policy on a simulated mesh: the node hosting the vessel
/// evaluates it every second, with RTTs from `rtt(t, i, j)` and traffic
/// from `entries(t)`; a move hands it to the other node's policy.
/// Returns the moves as (time s, from, to).
fn simulate(
    n: usize,
    secs: u32,
    mut rtt: impl FnMut(u32, usize, usize) -> f64,
    mut entries: impl FnMut(u32) -> Vec<(usize, f64)>,
) -> Vec<(u32, usize, usize)> {
    let ps: Vec<PeerId> = (0..n).map(|i| peer(i as u8 + 1)).collect();
    let mut policies: Vec<Placement> = (0..n)
        .map(|_| Placement::new(PlacementParams::default()))
        .collect();
    let t0 = Instant::now();
    let mut host = 0;
    let mut last_move = None;
    let mut moves = Vec::new();
    for t in 0..secs {
        let now = t0 + Duration::from_secs(t as u64);
        let ms: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            0.0
                        } else {
                            rtt(t, i.min(j), i.max(j))
                        }
                    })
                    .collect()
            })
            .collect();
        let mut v = view(entries(t).into_iter().map(|(i, w)| (ps[i], w)).collect());
        v.last_move = last_move;
        let r = rtts(host, &ps, &ms);
        if let Verdict::Move { to, .. } = policies[host].evaluate(&v, &r, &roomy(&ps), None, now) {
            let to = ps.iter().position(|p| *p == to).unwrap();
            moves.push((t, host, to));
            host = to;
            last_move = Some(now);
        }
    }
    moves
}

#[test]
fn noisy_rtts_never_flap() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // Clients enter at node 2; the vessel starts on node 0, 20 ms
        // away, with ±40 % jitter on every RTT.
        let moves = simulate(
            3,
            600,
            |_, i, j| {
                let base = match (i, j) {
                    (0, 2) => 20.0,
                    (1, 2) => 22.0,
                    _ => 30.0,
                };
                base * (0.6 + 0.8 * rng.next())
            },
            |_| vec![(2usize, 1.0)],
        );
        // Entry node 2 is itself a candidate at 0 ms: exactly one move
        // there, then never back.
        assert_eq!(moves.len(), 1, "seed {seed}: {moves:?}");
        assert_eq!(moves[0].2, 2, "seed {seed}: {moves:?}");
    }
}

/// Clients enter at nodes 2 and 3 (which have no room), weighted by
/// `weights(t)`; nodes 0 and 1 mirror each other (40 and 80 ms from the
/// entries) with ±15 % jitter on every RTT. Returns how often the
/// vessel moved.
fn two_hosts(seed: u64, mut weights: impl FnMut(u64) -> (f64, f64)) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let ps: Vec<PeerId> = (0..4).map(|i| peer(i as u8 + 1)).collect();
    let mut policies: Vec<Placement> = (0..2)
        .map(|_| Placement::new(PlacementParams::default()))
        .collect();
    let mut nodes = roomy(&ps);
    nodes[2].free_memory_bytes = Some(0);
    nodes[3].free_memory_bytes = Some(0);
    let t0 = Instant::now();
    let (mut host, mut moves, mut last_move) = (0usize, 0, None);
    for t in 0..600u64 {
        let now = t0 + Duration::from_secs(t);
        let mut j = |base: f64| base * (0.85 + 0.3 * rng.next());
        let ms = vec![
            vec![0.0, 10.0, j(40.0), j(80.0)],
            vec![10.0, 0.0, j(80.0), j(40.0)],
            vec![40.0, 80.0, 0.0, 90.0],
            vec![80.0, 40.0, 90.0, 0.0],
        ];
        let (w2, w3) = weights(t);
        let mut v = view(vec![(ps[2], w2), (ps[3], w3)]);
        v.last_move = last_move;
        let r = rtts(host, &ps, &ms);
        if let Verdict::Move { to, .. } = policies[host].evaluate(&v, &r, &nodes, None, now) {
            host = ps.iter().position(|p| *p == to).unwrap();
            moves += 1;
            last_move = Some(now);
        }
    }
    moves
}

#[test]
fn near_equal_nodes_under_noise_never_move() {
    for seed in 1..=20u64 {
        assert_eq!(two_hosts(seed, |_| (1.0, 1.0)), 0, "seed {seed}");
    }
}

#[test]
fn clients_that_alternate_faster_than_the_hysteresis_never_move_it() {
    // Every other second nearly all traffic enters at the far entry:
    // clearly better elsewhere for one evaluation, never for three.
    for seed in 1..=20u64 {
        let moves = two_hosts(seed, |t| if t % 2 == 0 { (9.0, 1.0) } else { (1.0, 9.0) });
        assert_eq!(moves, 0, "seed {seed}");
    }
}

#[test]
fn follows_a_client_that_moves_once_within_the_reaction_goal() {
    // The client enters at 2, then from t = 100 at 1 (RTT(1,2) = 80):
    // the vessel goes to 2, then to 1, and never back.
    let book = TrafficBook::default();
    let t0 = Instant::now();
    let ps: Vec<PeerId> = (0..3).map(|i| peer(i as u8 + 1)).collect();
    let mut policies: Vec<Placement> = (0..3)
        .map(|_| Placement::new(PlacementParams::default()))
        .collect();
    let ms = vec![
        vec![0.0, 80.0, 80.0],
        vec![80.0, 0.0, 80.0],
        vec![80.0, 80.0, 0.0],
    ];
    let (mut host, mut last_move) = (0usize, None);
    let mut moves = Vec::new();
    // 10 requests a second, evaluated every second.
    for tick in 0..3000u64 {
        let now = t0 + Duration::from_millis(100 * tick);
        let entry = if tick < 1000 { 2 } else { 1 };
        book.record(V, ps[entry], 200, now);
        if tick % 10 == 0 {
            let mut v = view(book.entries(V, now));
            v.last_move = last_move;
            if let Verdict::Move { to, .. } =
                policies[host].evaluate(&v, &rtts(host, &ps, &ms), &roomy(&ps), None, now)
            {
                host = ps.iter().position(|p| *p == to).unwrap();
                moves.push((tick, host));
                last_move = Some(now);
            }
        }
    }
    assert_eq!(moves.len(), 2, "{moves:?}");
    assert_eq!(moves[0].1, 2);
    assert_eq!(moves[1].1, 1);
    // Decided within 6 s of the client's move (the rest of the 10 s goal
    // is the migration itself).
    let reaction_s = (moves[1].0 - 1000) as f64 / 10.0;
    assert!(reaction_s <= 6.0, "reacted in {reaction_s} s");
}

#[test]
fn traffic_fades_with_its_half_life() {
    let book = TrafficBook::new(Duration::from_secs(2));
    let t0 = Instant::now();
    let (a, b) = (peer(1), peer(2));
    // 1000 B/s at a for a minute: the rate reads about 1000.
    for i in 0..600u64 {
        book.record(V, a, 100, t0 + Duration::from_millis(100 * i));
    }
    let t1 = t0 + Duration::from_secs(60);
    let rate = book.entries(V, t1)[0].1;
    assert!((900.0..1100.0).contains(&rate), "{rate}");
    // Quiet for one half-life: half; b starts at the same rate.
    for i in 0..20u64 {
        book.record(V, b, 100, t1 + Duration::from_millis(100 * i));
    }
    let t2 = t1 + Duration::from_secs(2);
    let e = book.entries(V, t2);
    let ra = e.iter().find(|(p, _)| *p == a).unwrap().1;
    assert!((ra / rate - 0.5).abs() < 0.01, "{ra} vs {rate}");
    assert_eq!(e.len(), 2);
    // Quiet long enough: a is forgotten, then the vessel too.
    let e = book.entries(V, t2 + Duration::from_secs(30));
    assert!(e.len() <= 1, "{e:?}");
    assert!(book.entries(V, t2 + Duration::from_secs(120)).is_empty());
    book.record(V, a, 10, t2);
    book.forget(V);
    assert!(book.entries(V, t2).is_empty());
}

#[test]
fn the_book_is_bounded_and_shared_across_threads() {
    let book = std::sync::Arc::new(TrafficBook::new(Duration::from_secs(10)));
    let now = Instant::now();
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let book = book.clone();
            std::thread::spawn(move || {
                for i in 0..100u8 {
                    book.record(VesselId([t; 8]), peer(i % 70 + 1), 1000 + i as u64, now);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..4u8 {
        let e = book.entries(VesselId([t; 8]), now);
        assert_eq!(e.len(), MAX_ENTRIES_PER_VESSEL);
        assert!(e.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
