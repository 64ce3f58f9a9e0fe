//! The run's outputs: `report.md`, `timeline.svg` and `samples.csv`.

use std::fmt::Write as _;

use crate::record::{median, percentile, Mark, MarkKind, Sample};
use crate::run::{Ctx, Outcome, Verdict};
use crate::scenario::{secs, Arch, ClientKind, Discovery, Scenario};

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
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn markdown(ctx: &Ctx, outcome: &Outcome, samples: &[Sample], marks: &[Mark]) -> String {
    let sc = &ctx.sc;
    let mut m = String::new();
    let verdict = match outcome {
        Outcome::Passed => "PASSED".to_string(),
        Outcome::Failed => "FAILED".to_string(),
        Outcome::Interrupted => "INTERRUPTED".to_string(),
        Outcome::Error(e) => format!("ERROR: {e}"),
        Outcome::Skipped(s) => format!("SKIPPED: {s}"),
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
    if let Some((q, b)) = &ctx.bins.aarch64 {
        let _ = writeln!(m, "- aarch64 nodes: `{} {}`", q.display(), b.display());
    }
    let _ = writeln!(
        m,
        "- setup: {:.1} s until every node saw every other; then {} of scenario time",
        *ctx.setup_secs.lock().unwrap(),
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
    let _ = writeln!(m, "- timeline: [timeline.svg](timeline.svg); raw samples: samples.csv; progress: progress.log; node logs: nodes/NAME/node.log\n");

    // Assertions.
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
    drop(results);

    // Nodes.
    let _ = writeln!(m, "\n## Nodes\n");
    let _ = writeln!(
        m,
        "| node | arch | address | peer id | environment (at the start) |\n|---|---|---|---|---|"
    );
    for (n, spec) in ctx.nodes.iter().zip(&sc.nodes) {
        let _ = writeln!(
            m,
            "| {} | {} | {} | `{}` | {} |",
            n.name,
            if n.arch == Arch::Aarch64 {
                "aarch64 (qemu)"
            } else {
                "native"
            },
            n.addr,
            n.peer_id.get().map(String::as_str).unwrap_or("?"),
            env_words(&spec.env)
        );
    }

    // Links.
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
    let stats = ctx.router.link_stats();
    for (i, row) in stats.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            if i == j {
                continue;
            }
            let p = &sc.links[i][j];
            let now = ctx.router.params(i, j);
            let changed = |a: f64, b: f64| {
                if a == b {
                    format!("{a}")
                } else {
                    format!("{a} → {b}")
                }
            };
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

    // Events.
    let _ = writeln!(m, "\n## Timeline\n");
    let events: Vec<&Mark> = marks
        .iter()
        .filter(|k| matches!(k.kind, MarkKind::Event | MarkKind::Migration))
        .collect();
    if events.is_empty() {
        let _ = writeln!(m, "No events.");
    }
    for e in events {
        let _ = writeln!(
            m,
            "- {:.2}s {}{}",
            e.t,
            if e.kind == MarkKind::Migration {
                "vessel moved: "
            } else {
                ""
            },
            e.label
        );
    }
    let migs = ctx.migrations.lock().unwrap();
    if !migs.is_empty() {
        let _ = writeln!(m, "\nMigrations asked for by the scenario:\n");
        for l in migs.iter() {
            let _ = writeln!(m, "- {l}");
        }
    }

    // RTT series.
    let mut series: Vec<&str> = samples.iter().map(|s| s.series.as_str()).collect();
    series.sort();
    series.dedup();
    let rtts: Vec<&str> = series
        .iter()
        .copied()
        .filter(|s| s.starts_with("rtt "))
        .collect();
    if !rtts.is_empty() {
        let _ = writeln!(m, "\n## Measured RTT (rtt-probe clients)\n");
        let _ = writeln!(
            m,
            "The nodes' smoothed ping RTT, as `meshnode peers --json` reports it.\n"
        );
        let _ = writeln!(
            m,
            "| pair | samples | median ms | min ms | max ms |\n|---|---|---|---|---|"
        );
        for s in rtts {
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

    // Clients.
    if !sc.clients.is_empty() {
        let _ = writeln!(m, "\n## Clients\n");
        let _ = writeln!(
            m,
            "| client | kind | at | requests | ok | failed | lost | resets | failed connects | median ms | p95 ms | max ms | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (i, c) in sc.clients.iter().enumerate() {
            let st = ctx.clients[i].stats.lock().unwrap();
            let v: Vec<f64> = st.latencies.iter().map(|x| x.1).collect();
            let kind = match &c.kind {
                ClientKind::RttProbe => "rtt-probe".to_string(),
                ClientKind::Kv { .. } => "kv".to_string(),
            };
            let note = match (&c.pending, &st.last_error) {
                (Some(p), _) => format!("pending: {p}"),
                (None, Some(e)) => format!("last error: {e}"),
                _ => String::new(),
            };
            if matches!(c.kind, ClientKind::RttProbe) {
                let _ = writeln!(
                    m,
                    "| {} | {kind} | {} | | | | | | | | | | {note} |",
                    c.name, sc.nodes[c.at].name
                );
                continue;
            }
            let _ = writeln!(
                m,
                "| {} | {kind} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.name,
                sc.nodes[c.at].name,
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

    // Vessels.
    if !sc.vessels.is_empty() {
        let _ = writeln!(m, "\n## Vessels\n");
        let seen = ctx.vessels.lock().unwrap();
        for (i, v) in sc.vessels.iter().enumerate() {
            match &v.pending {
                Some(p) => {
                    let _ = writeln!(m, "- {}: pending ({p})", v.name);
                }
                None => {
                    let s = &seen[i];
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
        }
    }
    m
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f",
    "#ff7f0e", "#393b79",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of every series over time, with events (grey dashed),
/// migrations (orange), client errors (red ticks) and assertion verdicts
/// (green/red triangles) marked.
pub fn svg(name: &str, duration: f64, samples: &[Sample], marks: &[Mark]) -> String {
    let (w, h) = (1100.0, 560.0);
    let (l, r, t, b) = (60.0, 230.0, 40.0, 190.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let xmax = duration.max(1.0);
    let mut values: Vec<f64> = samples
        .iter()
        .map(|s| s.value)
        .filter(|v| *v > 0.0)
        .collect();
    let p50 = percentile(&mut values, 0.5).unwrap_or(1.0);
    let vmax = values.iter().copied().fold(1.0, f64::max);
    let vmin = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(vmax);
    // A spike (a ping that waited out a partition) would flatten everything
    // else on a linear scale: use a logarithmic one when the range is wide.
    let log = vmax / p50.max(1e-9) > 8.0;
    let (lo, hi) = if log {
        (floor_125(vmin.max(0.1) / 1.2), vmax * 1.3)
    } else {
        (0.0, vmax * 1.15)
    };
    let x = |tv: f64| l + (tv.clamp(0.0, xmax) / xmax) * pw;
    let y = |v: f64| {
        let f = if log {
            (v.max(lo) / lo).ln() / (hi / lo).ln()
        } else {
            v / hi
        };
        t + ph - f.clamp(0.0, 1.0) * ph
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="22" font-size="14">testnet {}: measured RTT and client request latency (ms{}) over scenario time (s)</text>"#,
        esc(name),
        if log { ", log scale" } else { "" }
    );
    // Axes and grid.
    let ticks: Vec<f64> = if log {
        let mut v = Vec::new();
        let mut dec = 10f64.powf(lo.log10().floor());
        while dec <= hi {
            for m in [1.0, 2.0, 5.0] {
                let tv = m * dec;
                if tv >= lo && tv <= hi {
                    v.push(tv);
                }
            }
            dec *= 10.0;
        }
        v
    } else {
        let step = nice_step(hi / 5.0);
        (0..)
            .map(|k| k as f64 * step)
            .take_while(|v| *v <= hi)
            .collect()
    };
    for v in ticks {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            l + pw,
            l - 6.0,
            yy + 4.0,
            trim_num(v)
        );
    }
    let xstep = nice_step(xmax / 10.0);
    let mut tv = 0.0;
    while tv <= xmax + 1e-9 {
        let xx = x(tv);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{:.1}" stroke="#f4f4f4"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            t + ph,
            t + ph + 14.0,
            trim_num(tv)
        );
        tv += xstep;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    // Events and migrations; their labels go below the plot, rotated, and
    // pushed right when they would overlap the previous one.
    let mut last_label_x = f64::NEG_INFINITY;
    for mk in marks {
        let xx = x(mk.t);
        let (color, dash, width) = match mk.kind {
            MarkKind::Event => ("#888", "4,3", 1.0),
            MarkKind::Migration => ("#ff7f0e", "", 2.0),
            _ => continue,
        };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{:.1}" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#,
            t + ph
        );
        let lx = xx.max(last_label_x + 24.0);
        last_label_x = lx;
        let ly = t + ph + 24.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(40 {lx:.1} {ly:.1})" fill="{color}">{}</text>"#,
            esc(&truncate(&mk.label, 30))
        );
    }
    // Series.
    let mut series: Vec<&str> = samples.iter().map(|s| s.series.as_str()).collect();
    series.sort();
    series.dedup();
    for (k, name) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = samples
            .iter()
            .filter(|p| p.series == *name)
            .map(|p| format!("{:.1},{:.1}", x(p.t), y(p.value)))
            .collect();
        let dash = if name.starts_with("client ") {
            ""
        } else {
            "5,2"
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = t + 10.0 + k as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            l + pw + 12.0,
            l + pw + 34.0,
            l + pw + 40.0,
            ly + 4.0,
            esc(name)
        );
    }
    // Client errors and verdicts along the bottom edge.
    for mk in marks {
        let xx = x(mk.t);
        let yy = t + ph;
        match mk.kind {
            MarkKind::ClientError => {
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{yy:.1}" stroke="red" stroke-width="2"><title>{}</title></line>"#,
                    yy - 10.0,
                    esc(&mk.label)
                );
            }
            MarkKind::Pass | MarkKind::Fail => {
                let c = if mk.kind == MarkKind::Pass {
                    "#2ca02c"
                } else {
                    "#d62728"
                };
                let _ = writeln!(
                    s,
                    r#"<path d="M{xx:.1},{:.1} l-4,-7 l8,0 z" fill="{c}"><title>{} {}</title></path>"#,
                    yy - 1.0,
                    if mk.kind == MarkKind::Pass {
                        "PASS"
                    } else {
                        "FAIL"
                    },
                    esc(&mk.label)
                );
            }
            _ => {}
        }
    }
    let ly = t + 10.0 + series.len() as f64 * 16.0 + 10.0;
    let legend = [
        ("#888", "event"),
        ("#ff7f0e", "vessel moved"),
        ("red", "client error"),
        ("#2ca02c", "assertion passed"),
        ("#d62728", "assertion failed"),
    ];
    for (k, (c, what)) in legend.iter().enumerate() {
        let yy = ly + k as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{:.1}">{what}</text>"#,
            l + pw + 12.0,
            yy - 5.0,
            l + pw + 40.0,
            yy + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The largest 1, 2 or 5 × 10^k at or below `v`.
fn floor_125(v: f64) -> f64 {
    let dec = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * dec)
        .find(|c| *c <= v)
        .unwrap_or(dec)
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn trim_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Used by `testnet check`: what a scenario will do, without running it.
/// `K=V K2=V2`, or nothing.
fn env_words(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn plan(sc: &Scenario) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "{}: {} nodes, {} links, {} clients, {} events, {} assertions ({} pending), seed {}, {} after setup",
        sc.name,
        sc.nodes.len(),
        sc.nodes.len() * (sc.nodes.len().saturating_sub(1)) / 2,
        sc.clients.len(),
        sc.events.len(),
        sc.asserts.len(),
        sc.asserts.iter().filter(|a| a.pending.is_some()).count(),
        sc.seed,
        secs(sc.duration)
    );
    for (i, n) in sc.nodes.iter().enumerate() {
        let _ = writeln!(
            m,
            "  node {} {} {}{}",
            n.name,
            Scenario::addr(i),
            if n.arch == Arch::Aarch64 {
                "aarch64"
            } else {
                "native"
            },
            if n.env.is_empty() {
                String::new()
            } else {
                format!(" with {}", env_words(&n.env))
            }
        );
    }
    for i in 0..sc.nodes.len() {
        for j in i + 1..sc.nodes.len() {
            let p = &sc.links[i][j];
            let _ = writeln!(
                m,
                "  link {}–{}: {} ms ± {} ms, loss {}, {}",
                sc.nodes[i].name,
                sc.nodes[j].name,
                p.latency_ms,
                p.jitter_ms,
                p.loss,
                if p.bandwidth_kbps > 0.0 {
                    format!("{} kbit/s", p.bandwidth_kbps)
                } else {
                    "unlimited".into()
                }
            );
        }
    }
    for a in &sc.asserts {
        let _ = writeln!(
            m,
            "  assert {}{}",
            sc.describe(a),
            a.pending
                .as_ref()
                .map(|p| format!(" [pending: {p}]"))
                .unwrap_or_default()
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_series_marks_and_escapes() {
        let samples = vec![
            Sample {
                t: 0.5,
                series: "rtt a→b".into(),
                value: 20.0,
            },
            Sample {
                t: 1.5,
                series: "rtt a→b".into(),
                value: 21.0,
            },
            Sample {
                t: 1.0,
                series: "client <k>".into(),
                value: 80.0,
            },
        ];
        let marks = vec![
            Mark {
                t: 1.0,
                kind: MarkKind::Event,
                label: "link a–b: latency 40 ms".into(),
            },
            Mark {
                t: 2.0,
                kind: MarkKind::Migration,
                label: "v: a → d".into(),
            },
            Mark {
                t: 2.5,
                kind: MarkKind::Fail,
                label: "assert[0]".into(),
            },
        ];
        let s = svg("t", 3.0, &samples, &marks);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("client &lt;k&gt;"));
        assert!(s.contains("stroke=\"#ff7f0e\""));
        assert_eq!(s.matches("<polyline").count(), 2);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(3.3), 5.0);
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(17.0), 20.0);
    }
}
