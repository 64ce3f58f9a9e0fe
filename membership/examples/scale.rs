//! Runs the seeded membership simulation at one fleet size and prints its
//! report (docs/benchmarks.md, "Membership at scale (simulation)"):
//!
//!   cargo run --release -p meshnode-membership --example scale -- --nodes 1000 --seed 1
//!
//! Options: --nodes N, --seed S, --loss P (datagram loss, 0..1), --kill F
//! (share killed at once, default 0.1), --partition F (cut F of the fleet
//! off for 20 s), --flap MS (one link flaps with this period),
//! --steady MS (the traffic window), --drain-limit MS (the longest wait for
//! the cold start's gossip to drain before it; default 600,000).
//! Prints the simulated time to stderr every simulated minute.

use std::time::Instant;

use membership::sim::{run, Config};

/// What one message costs on the wire beyond its own bytes, as an
/// estimate: IPv4 and UDP headers (28 B), a QUIC short header and its
/// AEAD tag (about 25 B) and a stream frame (about 10 B); rounded up.
const TRANSPORT_OVERHEAD_BYTES: u64 = 70;

fn main() {
    let mut cfg = Config::new(100, 1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        let parse = |what: &str| -> f64 {
            value.parse().unwrap_or_else(|_| {
                eprintln!("scale: {what} needs a number, got {value:?}");
                std::process::exit(2)
            })
        };
        match pair[0].as_str() {
            "--nodes" => cfg.nodes = parse("--nodes") as usize,
            "--seed" => cfg.seed = parse("--seed") as u64,
            "--loss" => cfg.loss = parse("--loss"),
            "--kill" => cfg.faults.kill = Some((parse("--kill"), 0)),
            "--partition" => cfg.faults.partition = Some((parse("--partition"), 0, 20_000)),
            "--flap" => cfg.faults.flap_period_ms = Some(parse("--flap") as u64),
            "--steady" => cfg.steady_ms = parse("--steady") as u64,
            "--drain-limit" => cfg.drain_limit_ms = parse("--drain-limit") as u64,
            other => {
                eprintln!("scale: unknown option {other:?} (see the example's header)");
                std::process::exit(2)
            }
        }
    }
    if cfg.nodes < 2 || cfg.nodes > membership::limits::MAX_MEMBERS - 1 {
        eprintln!(
            "scale: --nodes must be 2 to {}",
            membership::limits::MAX_MEMBERS - 1
        );
        std::process::exit(2)
    }
    cfg.progress = true;
    let started = Instant::now();
    let r = run(&cfg);
    let ms = |v: Option<u64>| v.map_or("never".to_string(), |v| format!("{:.1} s", v as f64 / 1e3));
    println!("nodes {} seed {} loss {}", r.nodes, r.seed, cfg.loss);
    println!("cold-start convergence   {}", ms(r.converged_ms));
    println!(
        "queues drained after     {}  (cold start: {:.0} KB sent per node)",
        ms(r.drained_ms),
        r.cold_start_sent_mean_bytes as f64 / 1e3
    );
    println!(
        "sent bytes/s per node    mean {:.0}  max {:.0}",
        r.sent_mean_bps, r.sent_max_bps
    );
    println!("  in {:.2} messages/s; with {TRANSPORT_OVERHEAD_BYTES} B of transport headers each: {:.0} B/s",
        r.sent_messages_per_s, r.sent_mean_bps + r.sent_messages_per_s * TRANSPORT_OVERHEAD_BYTES as f64);
    let k = r.sent_by_kind_bps;
    println!(
        "  of which ping {:.0}  ack {:.0}  ping-req {:.0}  sync-req {:.0}  sync-page {:.0}",
        k[0], k[1], k[2], k[3], k[4]
    );
    println!(
        "received bytes/s per node mean {:.0}  max {:.0}",
        r.received_mean_bps, r.received_max_bps
    );
    println!("late join known by all   {}", ms(r.late_join_ms));
    println!("killed {} detected by all {}", r.killed, ms(r.detection_ms));
    if cfg.faults.partition.is_some() {
        println!(
            "re-converged after heal  {}  (downs of alive members once partitioned: {})",
            ms(r.heal_converged_ms),
            r.partition_downs
        );
    }
    println!(
        "false downs {}  false suspicions {}",
        r.false_downs, r.false_suspicions
    );
    println!(
        "messages {}  decode errors {}  simulated {:.0} s  wall {:.1} s",
        r.messages,
        r.decode_errors,
        r.simulated_ms as f64 / 1e3,
        started.elapsed().as_secs_f64()
    );
}
