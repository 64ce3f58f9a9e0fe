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
            "  node {} {} {}{}{}{}",
            n.name,
            Scenario::addr(i),
            n.arch.name(),
            match (&sc.wan, n.region) {
                (Some(w), Some(r)) => format!(" in {}", w.regions[r].name),
                _ => String::new(),
            },
            if n.frozen { " (frozen build)" } else { "" },
            if n.env.is_empty() {
                String::new()
            } else {
                format!(" with {}", env_words(&n.env))
            }
        );
    }
    if sc.nodes.len() > PLAN_LINKS_UP_TO {
        region_pairs(&mut m, sc);
    } else {
        links(&mut m, sc);
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

/// Up to this many nodes `check` lists every link; beyond, the range of
/// latencies between each pair of regions (100 nodes have 4,950 links).
const PLAN_LINKS_UP_TO: usize = 16;

fn links(m: &mut String, sc: &Scenario) {
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
}

/// Per pair of regions (or all nodes, without regions): how many links,
/// and their lowest and highest latency.
fn region_pairs(m: &mut String, sc: &Scenario) {
    let n = sc.nodes.len();
    let key = |i: usize| sc.nodes[i].region;
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let k = (key(i).min(key(j)), key(i).max(key(j)));
            if !pairs.contains(&k) {
                pairs.push(k);
            }
        }
    }
    pairs.sort();
    let name = |r: Option<usize>| match (&sc.wan, r) {
        (Some(w), Some(r)) => w.regions[r].name.clone(),
        _ => "-".into(),
    };
    for (a, b) in pairs {
        let lat: Vec<f64> = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| (key(i).min(key(j)), key(i).max(key(j))) == (a, b))
            .map(|(i, j)| sc.links[i][j].latency_ms)
            .collect();
        let lo = lat.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = lat.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            m,
            "  links {}–{}: {} links, {lo} to {hi} ms one way",
            name(a),
            name(b),
            lat.len()
        );
    }
}
