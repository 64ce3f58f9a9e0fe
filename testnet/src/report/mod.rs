//! The run's outputs: `report.md` (here, one function per section),
//! `timeline.svg` (`svg.rs`) and `samples.csv`; and `testnet check`'s plan
//! (`plan.rs`).

mod plan;
pub mod stall;
mod svg;

use std::fmt::Write as _;

pub use plan::plan;
pub use svg::svg;

use crate::checks::{window_words, Verdict};
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::record::{median, percentile, Mark, MarkKind, Sample};
use crate::scenario::{secs, Discovery};
use crate::traffic::kb_words;

/// Up to this many nodes the report lists every direction of every link;
/// beyond, only those that changed or dropped packets (100 nodes have
/// 9,900 directions), and links.csv has them all.
const LINK_ROWS_ALL_UP_TO: usize = 16;

pub fn write(ctx: &Ctx, outcome: &Outcome) -> std::io::Result<()> {
    let samples = ctx.rec.samples();
    let marks = ctx.rec.marks();
    std::fs::write(
        ctx.out.join("report.md"),
        markdown(ctx, outcome, &samples, &marks),
    )?;
    std::fs::write(
        ctx.out.join("timeline.svg"),
        svg(
            &ctx.sc.name,
            ctx.sc.duration.as_secs_f64(),
            &samples,
            &marks,
        ),
    )?;
    let mut csv = String::from("t_s,series,value_ms\n");
    for s in &samples {
        let _ = writeln!(csv, "{:.4},{},{:.3}", s.t, s.series, s.value);
    }
    std::fs::write(ctx.out.join("samples.csv"), csv)?;
    std::fs::write(ctx.out.join("links.csv"), links_csv(ctx))?;
    let mut csv = String::from("node,bytes_in,bytes_out,packets_in,packets_out\n");
    for (n, t) in ctx.sc.nodes.iter().zip(ctx.router.node_traffic()) {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            n.name, t.bytes_in, t.bytes_out, t.packets_in, t.packets_out
        );
    }
    std::fs::write(ctx.out.join("traffic.csv"), csv)?;
    Ok(())
}

/// Every direction of every link: its configured and final parameters and
/// what the router did.
fn links_csv(ctx: &Ctx) -> String {
    let mut csv = String::from(
        "from,to,latency_ms,jitter_ms,latency_ms_end,packets,bytes,delivered,lost,partitioned,queue_drops\n",
    );
    for (i, row) in ctx.router.link_stats().iter().enumerate() {
        for (j, s) in row.iter().enumerate().filter(|(j, _)| *j != i) {
            let p = &ctx.sc.links[i][j];
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{}",
                ctx.sc.nodes[i].name,
                ctx.sc.nodes[j].name,
                p.latency_ms,
                p.jitter_ms,
                ctx.router.params(i, j).latency_ms,
                s.packets,
                s.bytes,
                s.delivered,
                s.lost,
                s.blocked,
                s.queue_drops
            );
        }
    }
    csv
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn markdown(ctx: &Ctx, outcome: &Outcome, samples: &[Sample], marks: &[Mark]) -> String {
    let mut m = String::new();
    header(&mut m, ctx, outcome);
    assertions(&mut m, ctx);
    nodes(&mut m, ctx);
    traffic(&mut m, ctx);
    links(&mut m, ctx);
    timeline(&mut m, ctx, marks);
    rtts(&mut m, samples);
    clients(&mut m, ctx);
    stall::section(&mut m, &stall::stalls(ctx));
    vessels(&mut m, ctx);
    m
}

/// The verdict, the seed and how to replay, the binaries and the settings.
fn header(m: &mut String, ctx: &Ctx, outcome: &Outcome) {
    let sc = &ctx.sc;
    let verdict = match outcome.reason() {
        Some(why) => format!("{}: {why}", outcome.word()),
        None => outcome.word().to_string(),
    };
    let _ = writeln!(m, "# testnet: {}\n", sc.name);
    if !sc.description.is_empty() {
        let _ = writeln!(m, "{}\n", sc.description.trim());
    }
    let _ = writeln!(m, "**{verdict}**\n");
    let _ = writeln!(m, "- scenario: `{}`", sc.file.display());
    let _ = writeln!(
        m,
        "- seed: {} (replay: `testnet run {} --seed {}`)",
        sc.seed,
        sc.file.display(),
        sc.seed
    );
    let _ = writeln!(m, "- meshnode: `{}`", ctx.bins.meshnode.display());
    for (arch, q, b) in &ctx.bins.foreign {
        let args = arch.foreign().map_or(String::new(), |f| {
            f.qemu_args.iter().map(|a| format!("{a} ")).collect()
        });
        let _ = writeln!(
            m,
            "- {} nodes: `{} {args}{}`",
            arch.name(),
            q.display(),
            b.display()
        );
    }
    if let Some(frozen) = &ctx.bins.frozen {
        let _ = writeln!(m, "- frozen build nodes: `{}`", frozen.display());
    }
    let _ = writeln!(
        m,
        "- setup: {:.1} s until {}; then {} of scenario time",
        *ctx.setup_secs.lock().unwrap(),
        if sc.wait_for_mesh {
            "every node saw every other"
        } else {
            "every node had started (wait_for_mesh = false)"
        },
        secs(sc.duration)
    );
    let _ = writeln!(
        m,
        "- discovery: {}; ping every {}, status every {}",
        match sc.discovery {
            Discovery::Peer => "--peer (first node), no mDNS",
            Discovery::Mdns => "mDNS only (forwarded multicast)",
            Discovery::Both => "--peer (first node) and mDNS",
        },
        secs(sc.ping_interval),
        secs(sc.status_interval)
    );
    let _ = writeln!(m, "- timeline: [timeline.svg](timeline.svg); raw samples: samples.csv; every link: links.csv; per-node totals: traffic.csv; progress: progress.log; node logs: nodes/NAME/node.log\n");
}

fn assertions(m: &mut String, ctx: &Ctx) {
    let sc = &ctx.sc;
    let results = ctx.results.lock().unwrap();
    let _ = writeln!(m, "## Assertions\n");
    let _ = writeln!(
        m,
        "| # | result | at | check | detail |\n|---|---|---|---|---|"
    );
    for (i, (a, r)) in sc.asserts.iter().zip(results.iter()).enumerate() {
        let v = match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "**FAIL**",
            Verdict::Pending => "pending",
            Verdict::NotRun => "not run",
        };
        let _ = writeln!(
            m,
            "| {i} | {v} | {} | {} | {} |",
            r.t.map(|t| format!("{t:.1}s")).unwrap_or_default(),
            sc.describe(a).replace('|', "\\|"),
            r.detail.replace('|', "\\|")
        );
    }
}

fn nodes(m: &mut String, ctx: &Ctx) {
    let _ = writeln!(m, "\n## Nodes\n");
    let _ = writeln!(
        m,
        "| node | arch | region | address | peer id | environment (at the start) |\n|---|---|---|---|---|---|"
    );
    for (n, spec) in ctx.nodes.iter().zip(&ctx.sc.nodes) {
        let region = match (&ctx.sc.wan, spec.region) {
            (Some(w), Some(r)) => w.regions[r].name.as_str(),
            _ => "",
        };
        let _ = writeln!(
            m,
            "| {} | {} | {region} | {} | `{}` | {} |",
            n.name,
            n.build_words(),
            n.addr,
            n.peer_id.get().map(String::as_str).unwrap_or("?"),
            plan::env_words(&spec.env)
        );
    }
}

/// Up to this many nodes the traffic section lists every node; beyond,
/// the busiest TRAFFIC_ROWS.
const TRAFFIC_ROWS: usize = 16;

/// Each node's traffic through the router over the scenario's
/// `traffic_window`: the mean and max over nodes, then the busiest nodes.
fn traffic(m: &mut String, ctx: &Ctx) {
    let w = ctx.sc.traffic_window;
    let _ = writeln!(m, "\n## Per-node traffic\n");
    let Some(r) = ctx.traffic.rates(w.0.as_secs_f64(), w.1.as_secs_f64()) else {
        let _ = writeln!(m, "No traffic snapshots in {}.", window_words(&w));
        return;
    };
    let (top, max) = r.max().unwrap_or((0, 0.0));
    let _ = writeln!(
        m,
        "Bytes in + out of each node through the router (IP packets, headers included; KB = 1000 bytes), \
         {:.1}–{:.1}s (`traffic_window` {}): mean {} per node, max {} ({}).\n",
        r.from_s,
        r.to_s,
        window_words(&w),
        kb_words(r.mean()),
        kb_words(max),
        ctx.sc.nodes[top].name
    );
    let mut order: Vec<usize> = (0..r.nodes.len()).collect();
    order.sort_by(|a, b| r.nodes[*b].total().total_cmp(&r.nodes[*a].total()));
    let _ = writeln!(
        m,
        "| node | in KB/s | out KB/s | in + out KB/s | packets/s |\n|---|---|---|---|---|"
    );
    for &i in order.iter().take(TRAFFIC_ROWS) {
        let n = &r.nodes[i];
        let _ = writeln!(
            m,
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            ctx.sc.nodes[i].name,
            n.in_bytes_per_s / 1000.0,
            n.out_bytes_per_s / 1000.0,
            n.total() / 1000.0,
            n.packets_per_s
        );
    }
    if order.len() > TRAFFIC_ROWS {
        let _ = writeln!(
            m,
            "\nThe {} busiest of {} nodes; every node's totals are in traffic.csv.",
            TRAFFIC_ROWS,
            order.len()
        );
    }
}

/// Per direction of each link: configured (start → end) and what the
/// router did; then the router's own lateness.
fn links(m: &mut String, ctx: &Ctx) {
    let sc = &ctx.sc;
    let _ = writeln!(m, "\n## Links\n");
    let _ = writeln!(
        m,
        "Configured (at the start → at the end, one-way; an RTT is twice the latency), and what the router did, per direction. \
         \"added delay\" is the mean time a delivered packet spent in the router.\n"
    );
    let _ = writeln!(
        m,
        "| link | latency ms | jitter ms | loss | kbit/s (0: unlimited) | packets | delivered | lost | partitioned | queue drops | added delay ms |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let changed = |a: f64, b: f64| {
        if a == b {
            format!("{a}")
        } else {
            format!("{a} → {b}")
        }
    };
    let all = sc.nodes.len() <= LINK_ROWS_ALL_UP_TO;
    let mut left_out = 0usize;
    for (i, row) in ctx.router.link_stats().iter().enumerate() {
        for (j, s) in row.iter().enumerate().filter(|(j, _)| *j != i) {
            let p = &sc.links[i][j];
            let now = ctx.router.params(i, j);
            let eventful = *p != now || s.lost + s.blocked + s.queue_drops > 0;
            if !all && !eventful {
                left_out += 1;
                continue;
            }
            let _ = writeln!(
                m,
                "| {}→{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                sc.nodes[i].name,
                sc.nodes[j].name,
                changed(p.latency_ms, now.latency_ms),
                changed(p.jitter_ms, now.jitter_ms),
                changed(p.loss, now.loss),
                changed(p.bandwidth_kbps, now.bandwidth_kbps),
                s.packets,
                s.delivered,
                s.lost,
                s.blocked,
                s.queue_drops,
                if s.delivered > 0 {
                    format!("{:.2}", s.delay_sum / s.delivered as f64 * 1000.0)
                } else {
                    "–".into()
                }
            );
        }
    }
    if left_out > 0 {
        let _ = writeln!(
            m,
            "\n{left_out} more directions kept their configured parameters and dropped nothing: \
             with more than {LINK_ROWS_ALL_UP_TO} nodes only the others are listed (the whole \
             matrix is in links.csv)."
        );
    }
    let rs = ctx.router.stats();
    let _ = writeln!(
        m,
        "\nRouter: {} packets written; lateness against the schedule: mean {:.3} ms, max {:.2} ms, {} packets more than 1 ms late; {} to no node, {} not IPv4 (dropped), {} write errors; {}.",
        rs.delivered,
        if rs.delivered > 0 { rs.late_sum / rs.delivered as f64 * 1000.0 } else { 0.0 },
        rs.late_max * 1000.0,
        rs.late_over_1ms,
        rs.no_route,
        rs.not_ipv4,
        rs.write_errors,
        if rs.realtime { "SCHED_FIFO" } else { "normal scheduling (no SCHED_FIFO)" }
    );
}

/// Events and vessel moves in time order, then the migrations the
/// scenario asked for.
fn timeline(m: &mut String, ctx: &Ctx, marks: &[Mark]) {
    let _ = writeln!(m, "\n## Timeline\n");
    let events: Vec<&Mark> = marks
        .iter()
        .filter(|k| matches!(k.kind, MarkKind::Event | MarkKind::Migration))
        .collect();
    if events.is_empty() {
        let _ = writeln!(m, "No events.");
    }
    for e in events {
        let moved = if e.kind == MarkKind::Migration {
            "vessel moved: "
        } else {
            ""
        };
        let _ = writeln!(m, "- {:.2}s {moved}{}", e.t, e.label);
    }
    let migs = ctx.migrations.lock().unwrap();
    if !migs.is_empty() {
        let _ = writeln!(m, "\nMigrations asked for by the scenario:\n");
        for l in migs.iter() {
            let _ = writeln!(m, "- {l}");
        }
    }
}

/// Per RTT series (rtt-probe clients): samples, median, min and max.
fn rtts(m: &mut String, samples: &[Sample]) {
    let mut series: Vec<&str> = samples
        .iter()
        .map(|s| s.series.as_str())
        .filter(|s| s.starts_with("rtt "))
        .collect();
    series.sort();
    series.dedup();
    if series.is_empty() {
        return;
    }
    let _ = writeln!(m, "\n## Measured RTT (rtt-probe clients)\n");
    let _ = writeln!(
        m,
        "The nodes' smoothed ping RTT, as `meshnode peers --json` reports it.\n"
    );
    let _ = writeln!(
        m,
        "| pair | samples | median ms | min ms | max ms |\n|---|---|---|---|---|"
    );
    for s in series {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|x| x.series == s)
            .map(|x| x.value)
            .collect();
        let count = v.len();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            m,
            "| {} | {count} | {} | {min:.2} | {max:.2} |",
            &s[4..],
            fmt_ms(median(&mut v))
        );
    }
}

/// Per client: its counts and latencies (for clients that count requests).
fn clients(m: &mut String, ctx: &Ctx) {
    let sc = &ctx.sc;
    if sc.clients.is_empty() {
        return;
    }
    let _ = writeln!(m, "\n## Clients\n");
    let _ = writeln!(
        m,
        "| client | kind | at | requests | ok | failed | lost | resets | failed connects | median ms | p95 ms | max ms | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (i, c) in sc.clients.iter().enumerate() {
        let st = ctx.clients[i].stats.lock().unwrap();
        let kind = c.load.kind();
        let at = &sc.nodes[c.at].name;
        let note = match (&c.pending, &st.last_error) {
            (Some(p), _) => format!("pending: {p}"),
            (None, Some(e)) => format!("last error: {e}"),
            _ => String::new(),
        };
        if !c.load.counts_requests() {
            let _ = writeln!(
                m,
                "| {} | {kind} | {at} | | | | | | | | | | {note} |",
                c.name
            );
            continue;
        }
        let v: Vec<f64> = st.latencies.iter().map(|x| x.1).collect();
        let _ = writeln!(
            m,
            "| {} | {kind} | {at} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            st.requests,
            st.ok,
            st.failed,
            st.lost,
            st.resets,
            st.connect_failures,
            fmt_ms(median(&mut v.clone())),
            fmt_ms(percentile(&mut v.clone(), 0.95)),
            fmt_ms(v.iter().copied().reduce(f64::max)),
            note.replace('|', "\\|")
        );
    }
}

/// Per vessel: where it was deployed and where it was last seen.
fn vessels(m: &mut String, ctx: &Ctx) {
    let sc = &ctx.sc;
    if sc.vessels.is_empty() {
        return;
    }
    let _ = writeln!(m, "\n## Vessels\n");
    let seen = ctx.vessels.lock().unwrap();
    for (v, s) in sc.vessels.iter().zip(seen.iter()) {
        if let Some(p) = &v.pending {
            let _ = writeln!(m, "- {}: pending ({p})", v.name);
            continue;
        }
        let _ = writeln!(
            m,
            "- {}: deployed on {} at {}; last seen {} on {} after {} migrations",
            v.name,
            sc.nodes[v.on].name,
            secs(v.at),
            if s.state.is_empty() { "?" } else { &s.state },
            s.node.as_deref().unwrap_or("?"),
            s.migrations
        );
    }
}
