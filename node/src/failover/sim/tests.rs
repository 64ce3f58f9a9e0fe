//! The failover simulation's tests: the protocol as it is keeps every
//! invariant over many seeds, a seed replays exactly, and each deliberate
//! lease bug is caught within a known number of seeds.

use super::*;

/// Seeds per `cargo test` run.
const CI_SEEDS: u64 = 300;

fn seeds(default: u64) -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn sweep(n: u64) -> Stats {
    let mut t = Stats::default();
    for seed in 0..n {
        let s = run_seed(seed, &[]).unwrap_or_else(|e| panic!("{e}"));
        t.grants += s.grants;
        t.takeovers += s.takeovers;
        t.fenced += s.fenced;
        t.crashes += s.crashes;
        t.deaths += s.deaths;
        t.partitions += s.partitions;
        t.suspends += s.suspends;
        t.messages += s.messages;
        t.held_off += s.held_off;
        t.boot_waits += s.boot_waits;
        t.handoffs_asked += s.handoffs_asked;
        t.handoffs += s.handoffs;
        t.handoffs_abandoned += s.handoffs_abandoned;
        t.handoffs_prepared += s.handoffs_prepared;
        t.reconfigurations_asked += s.reconfigurations_asked;
        t.reconfigurations += s.reconfigurations;
        t.below_reconfiguration += s.below_reconfiguration;
        t.stranded_changes += s.stranded_changes;
    }
    t
}

#[test]
fn failover_simulation_holds_every_invariant_over_many_seeds() {
    let t = sweep(seeds(CI_SEEDS));
    eprintln!("failover simulation: {t:?}");
    // A run that takes nothing over, fences nothing or holds no vote off
    // shows nothing: each must happen, many times.
    assert!(t.takeovers > 100 && t.fenced > 20, "{t:?}");
    assert!(t.held_off > 100 && t.deaths > 10, "{t:?}");
    assert!(
        t.crashes > 100 && t.partitions > 100 && t.suspends > 100,
        "{t:?}"
    );
    assert!(t.reconfigurations > 50 && t.handoffs > 50, "{t:?}");
    // Handoffs go through the destination's real machine, and some are
    // given up between their certificate and their commit point.
    assert!(
        t.handoffs_prepared >= t.handoffs && t.handoffs_abandoned > 10,
        "{t:?}"
    );
}

#[test]
#[ignore = "long: SIM_SEEDS=20000 cargo test -p meshnode --lib failover_simulation_many_seeds -- --ignored --nocapture"]
fn failover_simulation_many_seeds() {
    let t = sweep(seeds(20_000));
    eprintln!("failover simulation: {t:?}");
}

/// `SIM_SEED=N` (with `SIM_BUGS=Name,Name` for a seed that failed with
/// deliberate bugs) replays one seed, twice, and fails with its trace if it
/// breaks an invariant.
#[test]
fn failover_simulation_replays_one_seed() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let bugs_on = parse_bugs(&std::env::var("SIM_BUGS").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let a = run_seed(seed, &bugs_on);
    let b = run_seed(seed, &bugs_on);
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "a seed replays exactly");
    if let Err(e) = a {
        panic!("{e}");
    }
}

/// The first seed of `seeds` on which `bugs_on` breaks an invariant that
/// the same seed keeps without them.
fn caught(bugs_on: &[Bug], seeds: std::ops::Range<u64>) -> Option<(u64, String)> {
    seeds.into_iter().find_map(|seed| {
        let with = run_seed(seed, bugs_on).err()?;
        assert!(
            run_seed(seed, &[]).is_ok(),
            "seed {seed} fails without the bugs too"
        );
        Some((seed, with))
    })
}

fn assert_caught(bugs_on: &[Bug], limit: u64) {
    assert_caught_in(bugs_on, 0..limit)
}

fn assert_caught_in(bugs_on: &[Bug], seeds: std::ops::Range<u64>) {
    let (seed, why) = caught(bugs_on, seeds.clone())
        .unwrap_or_else(|| panic!("{bugs_on:?} not caught in seeds {seeds:?}"));
    eprintln!(
        "{bugs_on:?} caught at seed {seed}: {}",
        why.lines().next().unwrap_or("")
    );
}

#[test]
fn failover_simulation_catches_a_holder_that_counts_from_the_grant() {
    assert_caught(&[Bug::HolderCountsFromGrant], 300);
}

#[test]
fn failover_simulation_catches_a_takeover_before_the_grant_ran_out() {
    assert_caught(&[Bug::TakeoverBeforeGrantRanOut], 300);
}

/// The host's clock must be slow, the voters' fast, rho large, and the
/// host cut off cleanly while it runs.
#[test]
fn failover_simulation_catches_lease_lengths_that_ignore_clock_drift() {
    assert_caught(&[Bug::IgnoreClockRate], 400);
}

#[test]
fn failover_simulation_catches_a_voter_that_forgets_its_promise() {
    assert_caught(&[Bug::VoterForgetsPromise], 300);
}

/// A voter of the host's majority must restart at once while a voter cut
/// off from the host waits for its vote: rare (4 of 1,200 seeds since
/// handoffs go through the destination's machine, the first at seed 516),
/// so searched for from seed 500 to keep the default run short.
#[test]
fn failover_simulation_catches_a_voter_without_a_boot_wait() {
    assert_caught_in(&[Bug::NoBootWait], 500..600);
}

/// A voter that forgets it signed a change signs a takeover that follows
/// the old set.
#[test]
fn failover_simulation_catches_a_voter_that_forgets_its_change_of_voters() {
    assert_caught(&[Bug::ForgetReconfiguration], 300);
}

/// A destination that restarts with a `Prepared` record of a handoff and
/// runs it under the certificate kept beside it, without the commit, runs
/// a handoff's epoch whose source never passed its commit point. Rare (3
/// of 2,000 seeds, the first 982: a failed handoff's abort undoes the
/// `Prepared` record unless it is lost and the destination then
/// restarts), so searched for from seed 980.
#[test]
fn failover_simulation_catches_a_destination_that_resumes_a_prepared_handoff() {
    assert_caught_in(&[Bug::ResumePreparedUnderHandoff], 980..1_000);
}

/// For the table in docs/protocol.md: for each lease bug, the first seed
/// that catches it and how many of the first `SIM_SEEDS` seeds do.
#[test]
#[ignore = "long: SIM_SEEDS=2000 [SIM_BUGS=Name] cargo test -p meshnode --lib failover_simulation_survey -- --ignored --nocapture"]
fn failover_simulation_survey() {
    let limit = seeds(2_000);
    let only = parse_bugs(&std::env::var("SIM_BUGS").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let bugs: Vec<Bug> = match only.is_empty() {
        true => Bug::LEASE.to_vec(),
        false => only,
    };
    for bug in bugs {
        let failed: Vec<u64> = (0..limit)
            .filter(|seed| run_seed(*seed, &[bug]).is_err())
            .collect();
        let first = failed.first().map_or("-".into(), |seed| {
            let e = run_seed(*seed, &[bug]).unwrap_err();
            let why = e.lines().next().unwrap_or("").to_string();
            format!("seed {seed}: {}", why.rsplit("]): ").next().unwrap_or(&why))
        });
        eprintln!(
            "survey {bug:?}: {} of {limit} seeds; first {first}",
            failed.len()
        );
    }
}
