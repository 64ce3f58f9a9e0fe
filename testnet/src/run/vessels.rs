//! The scenario's vessels through the real CLI: `deploy` at their time,
//! `migrate` events, and a watcher that polls `ps` and marks every move on
//! the timeline.

use std::time::{Duration, Instant};

use crate::ctx::{Ctx, SeenMove};
use crate::record::MarkKind;
use crate::view::View;

/// How long deploy and migrate may take.
const SLOW_CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the vessel watcher asks `ps`.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How much of a vessel id the progress shows.
const SHORT_ID: usize = 12;

/// `meshnode deploy` of vessel `v` on its node.
pub fn deploy(ctx: &Ctx, v: usize) {
    let spec = &ctx.sc.vessels[v];
    if let Some(p) = &spec.pending {
        ctx.rec
            .say(format!("vessel {}: pending ({p}); not deployed", spec.name));
        return;
    }
    let on = &ctx.nodes[spec.on];
    let wasm = ctx.wasm[spec.program].clone().expect("built");
    let id = on.peer_id.get().cloned().unwrap_or_default();
    let port = spec.port.map(|p| p.to_string());
    let wasm_s = wasm.to_string_lossy().into_owned();
    let mut rest: Vec<&str> = vec!["--json", "--name", &spec.name, "--on", &id];
    if let Some(p) = &port {
        rest.extend(["--port", p]);
    }
    if spec.pin {
        rest.push("--pin");
    }
    let replicas = spec.replicas.map(|r| r.to_string());
    if let Some(r) = &replicas {
        rest.extend(["--replicas", r]);
    }
    if spec.sync {
        rest.extend(["--durability", "sync"]);
    }
    rest.push(&wasm_s);
    rest.extend(spec.args.iter().map(String::as_str));
    match ctx.cli(on, "deploy", &rest, SLOW_CLI_TIMEOUT) {
        Ok(out) => {
            let j: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            let vid = j["vessel"].as_str().unwrap_or("?").to_string();
            ctx.rec.say(format!(
                "deployed vessel {} on {} (id {})",
                spec.name,
                on.name,
                &vid[..vid.len().min(SHORT_ID)]
            ));
            ctx.rec.mark(
                MarkKind::Event,
                format!("deploy {} on {}", spec.name, on.name),
            );
            ctx.vessels.lock().unwrap()[v].id = Some(vid);
        }
        Err(e) => {
            ctx.rec.say(format!("deploy {} failed: {e}", spec.name));
            ctx.rec.mark(
                MarkKind::ClientError,
                format!("deploy {} failed", spec.name),
            );
        }
    }
}

/// `meshnode migrate` of a vessel to node `to` (a `migrate` event).
pub fn migrate(ctx: &Ctx, vessel: usize, to: usize) {
    let spec = &ctx.sc.vessels[vessel];
    // Asked of the node the vessel was last seen on, as its user would
    // (during a partition it is the one that can follow the move), else
    // of any node that is up.
    let host = ctx.vessels.lock().unwrap()[vessel].node.clone();
    let Some(via) = ctx
        .nodes
        .iter()
        .find(|n| n.is_up() && host.as_ref() == Some(&n.name))
        .or_else(|| ctx.any_up())
    else {
        ctx.rec.say(format!("migrate {}: no node is up", spec.name));
        return;
    };
    let to_id = ctx.nodes[to].peer_id.get().cloned().unwrap_or_default();
    let started = Instant::now();
    let args = ["--json", "--to", &to_id, &spec.name];
    let r = ctx.cli(via, "migrate", &args, SLOW_CLI_TIMEOUT);
    let to = &ctx.nodes[to].name;
    let line = match r {
        Ok(out) => {
            let j: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            format!(
                "migrate {} → {to}: {} in {:.0} ms, downtime {} ms, {} bytes, {} chunks sent, {} skipped",
                spec.name,
                j["phase"].as_str().unwrap_or("?"),
                started.elapsed().as_secs_f64() * 1000.0,
                j["downtime_ms"].as_f64().map(|d| format!("{d:.1}")).unwrap_or("?".into()),
                j["bytes_sent"],
                j["chunks_sent"],
                j["chunks_skipped"]
            )
        }
        Err(e) => format!("migrate {} → {to} failed: {}", spec.name, last_line(&e)),
    };
    ctx.rec.say(&line);
    ctx.migrations
        .lock()
        .unwrap()
        .push(format!("t={:.2}s {line}", ctx.rec.t()));
}

/// The node a `ps --json` row puts the vessel on, or None when the row is
/// a node's record that the vessel left it (`left`, or `waiting` for the
/// destination to confirm): `ps` shows such a row when the node that runs
/// the vessel does not answer (a partition, a restart), and the vessel is
/// not there.
pub fn where_it_is(row: &serde_json::Value) -> Option<&str> {
    match row["state"].as_str() {
        Some("left") | Some("waiting") => None,
        _ => row["node"].as_str(),
    }
}

/// The last line of a CLI error that printed its progress first, with the
/// command's name (`meshnode migrate on a: `) kept.
pub fn last_line(e: &str) -> String {
    let mut lines = e.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        None => first.to_string(),
        Some(last) => {
            let who = first.split_once(": ").map(|(w, _)| w).unwrap_or_default();
            format!("{who}: {}", last.trim_start_matches("meshnode: "))
        }
    }
}

/// Polls `ps --json` and marks every change of a vessel's node.
pub fn watch(ctx: &Ctx, t0: Instant) {
    let mut next = Duration::ZERO;
    while ctx.sleep_until(t0, next) {
        next += WATCH_EVERY;
        let Ok(rows) = ctx.ps(None) else { continue };
        for (i, spec) in ctx.sc.vessels.iter().enumerate() {
            if let Some(r) = rows.iter().find(|r| r["name"] == spec.name.as_str()) {
                seen(ctx, i, r);
            }
        }
    }
}

/// Notes what one `ps` row says of vessel `i`.
fn seen(ctx: &Ctx, i: usize, r: &serde_json::Value) {
    let name = &ctx.sc.vessels[i].name;
    let node = where_it_is(r).and_then(|p| ctx.name_of(p));
    let state = r["state"].as_str().unwrap_or("?").to_string();
    let t = ctx.rec.t();
    let mut seen = ctx.vessels.lock().unwrap();
    let s = &mut seen[i];
    if let Some(now) = node.as_ref().filter(|n| s.node.as_ref() != Some(n)) {
        let label = match &s.node {
            Some(old) => format!("{name}: {old} → {now}"),
            None => format!("{name} on {now}"),
        };
        if let Some(old) = &s.node {
            ctx.rec.mark(MarkKind::Migration, label.clone());
            if let Some(m) = seen_move(ctx, old, now, s.seen_t, t) {
                s.moves.push(m);
            }
        }
        ctx.rec.say(format!("vessel {label} ({state})"));
        s.node = node;
    }
    if s.node.is_some() && where_it_is(r).is_some() {
        s.seen_t = t;
    }
    s.state = state;
    s.id = r["id"].as_str().map(str::to_string);
    s.migrations = r["migrations"].as_u64().unwrap_or(0);
}

/// A move from node `old` to node `now` (names), seen on `old` at
/// `before` and on `now` at `after`, with the RTTs from `old` then.
fn seen_move(ctx: &Ctx, old: &str, now: &str, before: f64, after: f64) -> Option<SeenMove> {
    let index = |name: &str| ctx.nodes.iter().position(|n| n.name == name);
    let (from, to) = (index(old)?, index(now)?);
    let rtt_from_ms = (0..ctx.nodes.len())
        .map(|j| match j == from {
            true => 0.0,
            false => 2.0 * ctx.router.params(from, j).latency_ms,
        })
        .collect();
    Some(SeenMove {
        from,
        to,
        before,
        after,
        rtt_from_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_does_not_move_a_vessel_to_a_node_it_left() {
        // A partition hid the host: `ps` through a shows a's own record.
        let left = serde_json::json!({"name": "svc", "node": "A", "state": "left"});
        assert_eq!(where_it_is(&left), None);
        let waiting = serde_json::json!({"name": "svc", "node": "A", "state": "waiting"});
        assert_eq!(where_it_is(&waiting), None);
        for state in ["running", "migrating", "stopped", "exited"] {
            let r = serde_json::json!({"name": "svc", "node": "D", "state": state});
            assert_eq!(where_it_is(&r), Some("D"), "{state}");
        }
    }

    #[test]
    fn a_failed_migrate_is_one_line() {
        let e = "meshnode migrate on a: warming: round 0, 0.0 MiB sent\nfinal: round 0\nmeshnode: migration of 5acd aborted; it runs on at X: Y refused\n";
        assert_eq!(
            last_line(e),
            "meshnode migrate on a: migration of 5acd aborted; it runs on at X: Y refused"
        );
        assert_eq!(
            last_line("meshnode migrate on a: no vessel"),
            "meshnode migrate on a: no vessel"
        );
    }
}
