//! `testnet check`: what a scenario will do, without running it.

use std::fmt::Write as _;

use crate::scenario::{secs, Scenario};

/// `K=V K2=V2`, or nothing.
pub fn env_words(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Used by `testnet check`: what a scenario will do, without running it.
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
            "  node {} {} {}{}{}",
            n.name,
            Scenario::addr(i),
            n.arch.name(),
            if n.frozen { " (frozen build)" } else { "" },
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
