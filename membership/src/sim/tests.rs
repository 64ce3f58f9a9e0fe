//! The simulator's seeded runs, fast enough for every `cargo test`; the
//! 1,000 and 10,000-node runs are `examples/scale.rs`.

use super::*;
use crate::limits::suspicion_timeout_ms;

/// The gates at 100 nodes: background traffic ≤ 4 KB/s per node
/// (goal ≤ 1 KB/s), cold-start convergence ≤ 30 s (goal ≤ 10 s).
const GATE_TRAFFIC_BPS: f64 = 4_000.0;
const GOAL_TRAFFIC_BPS: f64 = 1_000.0;
const GOAL_CONVERGENCE_MS: u64 = 10_000;

/// A killed node is first missed within a few rounds (each round about
/// one node in N probes it), then suspected for the suspicion timeout,
/// then its death reaches everyone in about log N rounds of gossip.
fn detection_bound_ms(n: usize) -> u64 {
    suspicion_timeout_ms(n) + 15_000
}

fn assert_healthy(r: &Report) {
    assert_eq!(r.decode_errors, 0, "{r:?}");
    assert_eq!(
        r.false_downs, 0,
        "an alive, reachable member was declared down: {r:?}"
    );
    let converged = r.converged_ms.expect("the fleet never converged");
    assert!(
        converged <= GOAL_CONVERGENCE_MS,
        "convergence {converged} ms: {r:?}"
    );
    assert!(
        r.late_join_ms.is_some_and(|ms| ms <= GOAL_CONVERGENCE_MS),
        "late join: {r:?}"
    );
}

#[test]
fn a_hundred_nodes_meet_the_gates_and_detect_a_tenth_killed() {
    let r = run(&Config::new(100, 1));
    eprintln!("{r:?}");
    assert_healthy(&r);
    assert!(
        r.sent_mean_bps <= GOAL_TRAFFIC_BPS && r.sent_max_bps <= GATE_TRAFFIC_BPS,
        "{r:?}"
    );
    assert!(r.received_max_bps <= GATE_TRAFFIC_BPS, "{r:?}");
    assert!(
        r.drained_ms.is_some(),
        "the cold start's gossip never drained: {r:?}"
    );
    assert_eq!(r.killed, 10);
    let detected = r
        .detection_ms
        .expect("a killed node was never declared down by all");
    assert!(
        detected <= detection_bound_ms(100),
        "detection {detected} ms: {r:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = Config::new(40, 7);
    assert_eq!(format!("{:?}", run(&cfg)), format!("{:?}", run(&cfg)));
}

/// A fuzz-style property over seeds: every run converges, declares no
/// live member down, and detects every killed one within the bound.
#[test]
fn every_seed_converges_without_false_downs() {
    for seed in 2..7 {
        let mut cfg = Config::new(50, seed);
        cfg.faults.kill = Some((0.2, 0));
        let r = run(&cfg);
        assert_healthy(&r);
        let detected = r
            .detection_ms
            .unwrap_or_else(|| panic!("seed {seed}: {r:?}"));
        assert!(detected <= detection_bound_ms(50), "seed {seed}: {r:?}");
    }
}

#[test]
fn a_healed_partition_converges_again() {
    let mut cfg = Config::new(60, 3);
    cfg.faults = FaultPlan {
        partition: Some((0.3, 0, 30_000)),
        ..FaultPlan::default()
    };
    let r = run(&cfg);
    assert_healthy(&r);
    // After the heal both sides must hear they were declared dead (a
    // reconnect ping carries it) and refute; anti-entropy then spreads it.
    let healed = r.heal_converged_ms.expect("never converged after the heal");
    assert!(healed <= 60_000, "{r:?}");
}

#[test]
fn a_flapping_link_declares_nobody_down() {
    let mut cfg = Config::new(50, 4);
    cfg.faults = FaultPlan {
        flap_period_ms: Some(3_000),
        ..FaultPlan::default()
    };
    cfg.after_faults_ms = 60_000;
    let r = run(&cfg);
    assert_healthy(&r);
}

/// With 5 % of datagrams lost the indirect probes keep false suspicions
/// rare and refutable; a kill is still detected.
#[test]
fn a_lossy_network_still_converges_and_detects() {
    let mut cfg = Config::new(80, 5);
    cfg.loss = 0.05;
    let r = run(&cfg);
    eprintln!("{r:?}");
    assert_eq!(r.decode_errors, 0);
    assert!(r.converged_ms.is_some_and(|ms| ms <= 30_000), "{r:?}");
    assert!(
        r.detection_ms
            .is_some_and(|ms| ms <= detection_bound_ms(80)),
        "{r:?}"
    );
    assert_eq!(r.false_downs, 0, "{r:?}");
}
