//! Serf's tests of its coordinate client (coordinate/client_test.go and
//! performance_test.go), with Serf's topologies and thresholds, and a
//! geographic mesh with the error gate.

use super::*;

const MS: f64 = 1.0e-3;

fn client(config: VivaldiConfig, seed: u64) -> Vivaldi<usize> {
    Vivaldi::new(config, seed).expect("a valid configuration")
}

fn dims(n: usize) -> VivaldiConfig {
    VivaldiConfig {
        dimensions: n,
        ..VivaldiConfig::default()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn defaults_are_serfs() {
    let c = VivaldiConfig::default();
    assert_eq!(c.dimensions, 8);
    assert_eq!((c.error_max, c.ce, c.cc), (1.5, 0.25, 0.25));
    assert_eq!(c.adjustment_window, 20);
    assert_eq!(c.height_min_s, 10.0e-6);
    assert_eq!(c.latency_filter_size, 3);
    assert_eq!(c.gravity_rho_s, 150.0);
}

/// TestClient_NewClient.
#[test]
fn a_new_client_is_at_the_origin() {
    assert!(matches!(
        Vivaldi::<usize>::new(dims(0), 1),
        Err(VivaldiError::NoDimensions)
    ));
    let c = client(dims(7), 1);
    assert_eq!(c.coordinate(), &fresh(&dims(7)));
    assert_eq!(c.coordinate().error, VIVALDI_ERROR_MAX);
}

/// TestClient_Update: a node right above us, further than its position
/// says, pushes us down.
#[test]
fn a_longer_rtt_than_expected_pushes_us_away() {
    let mut c = client(dims(3), 1);
    assert_eq!(c.coordinate().vec_s, vec![0.0; 3]);
    let mut other = fresh(&dims(3));
    other.vec_s[2] = 0.001;
    let rtt = secs(2.0 * other.vec_s[2]);
    c.update(9, &other, rtt).unwrap();
    assert!(c.coordinate().vec_s[2] < 0.0, "{:?}", c.coordinate());
    // The height grew too (the RTT is more than space explains), and the
    // error moved toward this sample's miss.
    assert!(c.coordinate().height_s > HEIGHT_MIN_S);
    assert!(c.coordinate().error < VIVALDI_ERROR_MAX);
}

/// TestClient_InvalidInRTT: past Serf's 10 s maximum, refused.
#[test]
fn an_rtt_over_ten_seconds_is_refused() {
    let mut c = client(dims(3), 1);
    let other = fresh(&dims(3));
    let got = c.update(1, &other, Duration::from_secs(11));
    assert!(matches!(got, Err(VivaldiError::RttOutOfRange { .. })));
    assert_eq!(c.coordinate(), &fresh(&dims(3)));
    assert!(c.update(1, &other, Duration::ZERO).is_ok());
}

/// TestClient_DistanceTo.
#[test]
fn distance_to_a_raw_coordinate() {
    let config = VivaldiConfig {
        height_min_s: 0.0,
        ..dims(3)
    };
    let c = client(config, 1);
    let mut other = fresh(&config);
    other.vec_s[2] = 12.345;
    assert!((c.distance_s(&other).unwrap() - 12.345).abs() < 1e-9);
}

/// TestClient_latencyFilter: the median of the last three samples per
/// node; a glitch never reaches Vivaldi; nodes are not coupled; a
/// forgotten node starts afresh.
#[test]
fn the_latency_filter_takes_the_median_of_three() {
    let mut c = client(dims(3), 1);
    let (alice, bob) = (1, 2);
    let mut f = |node, s: f64| c.latency_filter(node, s);
    for (sample, want) in [
        (0.201, 0.201),
        (0.200, 0.201),
        (0.207, 0.201),
        (1.9, 0.207),
        (0.203, 0.207),
        (0.199, 0.203),
        (0.211, 0.203),
    ] {
        assert!((f(alice, sample) - want).abs() < 1e-9, "{sample} → {want}");
    }
    assert!((f(bob, 0.310) - 0.310).abs() < 1e-9);
    c.forget(&alice);
    assert!((c.latency_filter(alice, 0.888) - 0.888).abs() < 1e-9);
    assert_eq!(c.latency_filter.len(), 2);
}

/// TestClient_NaN_Defense: a peer's NaN never gets in; an incompatible
/// coordinate is refused; our own, if it ever goes bad, is reset.
#[test]
fn nan_from_a_peer_is_refused_and_a_bad_own_coordinate_is_reset() {
    let config = VivaldiConfig::default();
    let mut c = client(config, 1);
    let rtt = Duration::from_millis(250);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut other = fresh(&config);
        other.vec_s[0] = bad;
        assert!(other.check().is_err());
        let got = c.update(1, &other, rtt);
        assert!(
            matches!(got, Err(VivaldiError::BadCoordinate(_))),
            "{got:?}"
        );
        let mut other = fresh(&config);
        other.error = bad;
        assert!(c.update(1, &other, rtt).is_err());
        assert_eq!(c.coordinate().check(), Ok(()));
    }
    // Finite but absurd: refused too (a hostile peer cannot drag us
    // minutes away).
    let mut far = fresh(&config);
    far.vec_s[0] = 1.0e6;
    assert!(c.update(1, &far, rtt).is_err());
    // Incompatible.
    let mut other = fresh(&config);
    other.vec_s = vec![0.0; 2 * config.dimensions];
    assert!(matches!(
        c.update(1, &other, rtt),
        Err(VivaldiError::Incompatible { .. })
    ));
    assert_eq!(c.coordinate(), &fresh(&config));
    // Poison our own state: the next update resets it.
    c.coord.vec_s[0] = f64::NAN;
    let got = c.update(1, &fresh(&config), rtt).unwrap().clone();
    assert_eq!(got.check(), Ok(()));
    assert_eq!(c.resets(), 1);
}

// Serf's performance tests: its simulation and its topologies.

/// A uniform draw in [0, 1).
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u = uniform(rng).max(1e-12);
    let v = uniform(rng);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn clients(n: usize, config: VivaldiConfig) -> Vec<Vivaldi<usize>> {
    (0..n).map(|i| client(config, 1000 + i as u64)).collect()
}

/// Serf's `Simulate`: each cycle, every node samples one random other
/// node; `sample` gives the RTT it measures (the truth, plus any noise).
fn simulate(
    cs: &mut [Vivaldi<usize>],
    cycles: usize,
    rng: &mut SplitMix64,
    mut sample: impl FnMut(usize, usize, &mut SplitMix64) -> f64,
) {
    let n = cs.len();
    for _ in 0..cycles {
        for i in 0..n {
            let j = rng.below(n as u64) as usize;
            if j == i {
                continue;
            }
            let other = cs[j].coordinate().clone();
            let rtt_s = sample(i, j, rng);
            cs[i]
                .update(j, &other, secs(rtt_s))
                .expect("a valid sample");
        }
    }
}

/// Every pair's relative error of the estimate against the truth.
fn errors(cs: &[Vivaldi<usize>], truth: &[Vec<f64>]) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..cs.len() {
        for j in i + 1..cs.len() {
            let est = cs[i].distance_s(cs[j].coordinate()).unwrap();
            out.push((est - truth[i][j]).abs() / truth[i][j]);
        }
    }
    out
}

/// Serf's `Evaluate`: (mean, max) relative error.
fn evaluate(cs: &[Vivaldi<usize>], truth: &[Vec<f64>]) -> (f64, f64) {
    let e = errors(cs, truth);
    let max = e.iter().copied().fold(0.0, f64::max);
    (e.iter().sum::<f64>() / e.len() as f64, max)
}

fn matrix(n: usize, rtt: impl Fn(usize, usize) -> f64) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match i.cmp(&j) {
                    std::cmp::Ordering::Equal => 0.0,
                    std::cmp::Ordering::Less => rtt(i, j),
                    std::cmp::Ordering::Greater => rtt(j, i),
                })
                .collect()
        })
        .collect()
}

fn run(truth: &[Vec<f64>], config: VivaldiConfig, cycles: usize) -> Vec<Vivaldi<usize>> {
    run_seeded(truth, config, cycles, 1)
}

fn run_seeded(
    truth: &[Vec<f64>],
    config: VivaldiConfig,
    cycles: usize,
    seed: u64,
) -> Vec<Vivaldi<usize>> {
    let mut cs = clients(truth.len(), config);
    let mut rng = SplitMix64(seed);
    simulate(&mut cs, cycles, &mut rng, |i, j, _| truth[i][j]);
    cs
}

/// TestPerformance_Line: 10 nodes 10 ms apart on a line. Serf's bounds:
/// mean error ≤ 0.31 %, max ≤ 1.3 %.
#[test]
fn converges_on_a_line() {
    let truth = matrix(10, |i, j| (j - i) as f64 * 10.0 * MS);
    let (avg, max) = evaluate(&run(&truth, VivaldiConfig::default(), 1000), &truth);
    assert!(avg <= 0.0031 && max <= 0.0130, "line: avg {avg}, max {max}");
}

/// TestPerformance_Grid: 25 nodes on a 5 × 5 grid, 10 ms apart. Serf's
/// bounds: mean ≤ 0.16 %, max ≤ 2.3 %, fitted to the one sequence Go's
/// `math/rand` seed 1 draws. Ours draws others: over seeds 1 to 9 the mean
/// measured 0.09 to 0.20 %, the max 0.7 to 1.9 %; so the mean's bound here
/// is 0.25 %, on five seeds, and the max keeps Serf's.
#[test]
fn converges_on_a_grid() {
    let truth = matrix(25, |i, j| {
        let (dx, dy) = (
            i as f64 % 5.0 - j as f64 % 5.0,
            (i / 5) as f64 - (j / 5) as f64,
        );
        (dx * dx + dy * dy).sqrt() * 10.0 * MS
    });
    for seed in 1..=5 {
        let cs = run_seeded(&truth, VivaldiConfig::default(), 1000, seed);
        let (avg, max) = evaluate(&cs, &truth);
        assert!(
            avg <= 0.0025 && max <= 0.0230,
            "grid, seed {seed}: avg {avg}, max {max}"
        );
    }
}

/// TestPerformance_Split: two LANs (1 ms) joined by a 10 ms WAN. Serf's
/// bounds: mean ≤ 0.006 %, max ≤ 0.048 %.
#[test]
fn converges_on_a_split_network() {
    let split = 25 / 2;
    let truth = matrix(25, |i, j| {
        let across = (i <= split) != (j <= split);
        1.0 * MS + if across { 10.0 * MS } else { 0.0 }
    });
    let (avg, max) = evaluate(&run(&truth, VivaldiConfig::default(), 1000), &truth);
    assert!(
        avg <= 0.000060 && max <= 0.00048,
        "split: avg {avg}, max {max}"
    );
}

/// TestPerformance_Height: in two dimensions, node 0 is as far (two
/// radii) from every node of a circle; only a height explains it, so it
/// must grow one of about the radius while the others stay near zero.
/// Serf's bounds (other heights ≤ 3 % of the radius, mean error ≤ 0.28 %,
/// max ≤ 6.4 %) are fitted to Go's seed-1 sequence; ours, over seeds 1 to
/// 9, measured other heights 2.5 to 3.8 %, mean 0.29 to 0.41 %, max 4.6 to
/// 7.8 %: bounds here 4.5 %, 0.5 % and 9 %, on five seeds; the centre's
/// height keeps Serf's (≥ 97 %).
#[test]
fn a_node_equally_far_from_all_grows_a_height() {
    let radius = 100.0 * MS;
    let n = 25;
    let truth = matrix(n, |i, j| {
        if i == 0 {
            return 2.0 * radius;
        }
        let at = |k: usize| 2.0 * std::f64::consts::PI * k as f64 / n as f64;
        let (dx, dy) = (at(j).cos() - at(i).cos(), at(j).sin() - at(i).sin());
        (dx * dx + dy * dy).sqrt() * radius
    });
    for seed in 1..=5 {
        let cs = run_seeded(&truth, dims(2), 1000, seed);
        for (i, c) in cs.iter().enumerate() {
            let h = c.coordinate().height_s;
            match i {
                0 => assert!(h >= 0.97 * radius, "seed {seed}: centre height {h}"),
                _ => assert!(h <= 0.045 * radius, "seed {seed}: node {i} height {h}"),
            }
        }
        let (avg, max) = evaluate(&cs, &truth);
        assert!(
            avg <= 0.005 && max <= 0.09,
            "height, seed {seed}: avg {avg}, max {max}"
        );
    }
}

/// TestPerformance_Drift: four nodes on a square placed off-centre;
/// gravity pulls the square's centre toward the origin.
#[test]
fn gravity_pulls_the_system_back_to_the_origin() {
    let dist = 500.0 * MS;
    let mut cs = clients(4, dims(2));
    let start = [[0.0, 0.0], [0.0, dist], [dist, dist], [dist, dist]];
    for (c, v) in cs.iter_mut().zip(start) {
        c.coord.vec_s = v.to_vec();
    }
    let truth = matrix(4, |i, j| match i % 2 == 0 && j % 2 == 0 {
        true => std::f64::consts::SQRT_2 * dist,
        false => dist,
    });
    let centre_error = |cs: &[Vivaldi<usize>]| {
        let mid: Vec<f64> = (0..2)
            .map(|d| {
                let vs = cs.iter().map(|c| c.coordinate().vec_s[d]);
                let (lo, hi) = vs.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
                lo + (hi - lo) / 2.0
            })
            .collect();
        magnitude_s(mid.into_iter())
    };
    let mut rng = SplitMix64(1);
    simulate(&mut cs, 1000, &mut rng, |i, j, _| truth[i][j]);
    let baseline = centre_error(&cs);
    simulate(&mut cs, 10_000, &mut rng, |i, j, _| truth[i][j]);
    let after = centre_error(&cs);
    assert!(after <= 0.8 * baseline, "drift {baseline} → {after}");
}

/// TestPerformance_Random: RTTs drawn at random (100 ± 10 ms), which no
/// space embeds exactly. Serf's bounds: mean ≤ 7.5 %, max ≤ 33 %.
#[test]
fn random_rtts_are_embedded_within_serfs_bounds() {
    let mut rng = SplitMix64(1);
    let draws: Vec<f64> = (0..25 * 25).map(|_| normal(&mut rng)).collect();
    let truth = matrix(25, |i, j| 100.0 * MS + draws[i * 25 + j] * 10.0 * MS);
    let (avg, max) = evaluate(&run(&truth, VivaldiConfig::default(), 1000), &truth);
    assert!(avg <= 0.075 && max <= 0.33, "random: avg {avg}, max {max}");
}

/// Where the geographic mesh's regions are: (latitude, longitude) of
/// Frankfurt, Virginia, Oregon and Singapore.
const REGIONS: [(f64, f64); 4] = [(50.1, 8.7), (38.9, -77.0), (45.5, -122.7), (1.35, 103.8)];

/// A geographic RTT matrix, ms, as the testnet models the WAN:
/// `per_region` nodes scattered within about ±3° of each region's centre;
/// RTT from the great-circle distance at 200 km/ms with a 1.5 path
/// inflation, plus each node's access link (0.5 to 4 ms, each way).
fn geographic(per_region: usize, rng: &mut SplitMix64) -> Vec<Vec<f64>> {
    let mut nodes = Vec::new();
    for (lat, lon) in REGIONS {
        for _ in 0..per_region {
            let at = (
                lat + 6.0 * (uniform(rng) - 0.5),
                lon + 6.0 * (uniform(rng) - 0.5),
            );
            nodes.push((at, 0.5 + 3.5 * uniform(rng)));
        }
    }
    let km = |(a, b): (f64, f64), (c, d): (f64, f64)| {
        let (p1, p2) = (a.to_radians(), c.to_radians());
        let (dp, dl) = ((c - a).to_radians(), (d - b).to_radians());
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0 * h.sqrt().asin()
    };
    matrix(nodes.len(), |i, j| {
        let ((a, access_a), (b, access_b)) = (nodes[i], nodes[j]);
        2.0 * km(a, b) * 1.5 / 200.0 + 2.0 * (access_a + access_b)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Issue 19's figure: 24 nodes in 4 regions learn their coordinates from
/// 1,000 rounds of random pings with ±10 % jitter and a 3× spike on one
/// ping in twenty; the median relative error of every pair's estimate
/// against the configured matrix must be within the gate (25 %). Prints
/// the figure (docs/benchmarks.md, "Vivaldi estimate error"):
/// `cargo test -p meshnode --lib vivaldi::tests::geographic -- --nocapture`.
#[test]
fn geographic_mesh_estimates_within_the_gate() {
    let per_region = 6;
    let mut rng = SplitMix64(0x19_0002);
    let truth_ms = geographic(per_region, &mut rng);
    let truth: Vec<Vec<f64>> = truth_ms
        .iter()
        .map(|r| r.iter().map(|ms| ms * MS).collect())
        .collect();
    let mut cs = clients(truth.len(), VivaldiConfig::default());
    simulate(&mut cs, 1000, &mut rng, |i, j, rng| {
        let jitter = 0.9 + 0.2 * uniform(rng);
        let spike = if rng.below(20) == 0 { 3.0 } else { 1.0 };
        truth[i][j] * jitter * spike
    });
    let all = errors(&cs, &truth);
    let region = |k: usize| k / per_region;
    let (mut within, mut across) = (Vec::new(), Vec::new());
    let (mut within_ms, mut across_ms) = (Vec::new(), Vec::new());
    // The pairs in the order `errors` lists them.
    let n = truth.len();
    let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    for ((i, j), e) in pairs.zip(&all) {
        let (errs, rtts) = match region(i) == region(j) {
            true => (&mut within, &mut within_ms),
            false => (&mut across, &mut across_ms),
        };
        errs.push(*e);
        rtts.push(truth_ms[i][j]);
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.0}–{hi:.0} ms")
    };
    eprintln!(
        "configured RTTs: {} within a region, {} across",
        range(&within_ms),
        range(&across_ms)
    );
    let (m, p90) = (median(all.clone()), {
        let mut s = all.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() * 9 / 10]
    });
    eprintln!(
        "vivaldi geographic mesh ({} nodes, {} regions, {} pairs): median relative error {:.1} %, \
         p90 {:.1} %; within a region {:.1} %, across regions {:.1} %",
        truth.len(),
        REGIONS.len(),
        all.len(),
        100.0 * m,
        100.0 * p90,
        100.0 * median(within),
        100.0 * median(across),
    );
    assert!(m <= 0.25, "median relative error {m} over the gate of 25 %");
}
