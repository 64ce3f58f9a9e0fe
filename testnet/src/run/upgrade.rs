//! The `upgrade` event: the operator's rolling upgrade, as a user runs it.
//! This run's meshnode is stripped (a debug build is too big to publish
//! whole; a release build is stripped already), published through a node
//! with `meshnode upgrade publish`, and rolled out with `meshnode upgrade
//! roll` through the same node, on a thread of its own: the roll drains,
//! restarts and checks one node at a time while the clients go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::vessels::last_line;
use crate::ctx::Ctx;
use crate::record::MarkKind;

/// How long publishing may take: the stripped debug binary is about
/// 40 MiB of chunks into one node.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the whole roll may take: per node, a drain (at most a minute),
/// a restart and the probation (10 s) within the roll's own health timeout.
const ROLL_TIMEOUT: Duration = Duration::from_secs(600);

/// Says and marks the event, and runs it on its own thread.
pub fn start(ctx: &Arc<Ctx>, via: usize) -> Option<JoinHandle<()>> {
    let label = format!(
        "upgrade: publish this build and roll it through {}",
        ctx.nodes[via].name
    );
    ctx.rec.say(format!("event: {label}"));
    ctx.rec.mark(MarkKind::Event, label);
    let cx = ctx.clone();
    Some(std::thread::spawn(move || {
        if let Err(e) = run(&cx, via) {
            cx.rec.say(format!("upgrade failed: {e}"));
            cx.migrations
                .lock()
                .unwrap()
                .push(format!("t={:.2}s upgrade failed: {e}", cx.rec.t()));
        }
    }))
}

fn run(ctx: &Ctx, via: usize) -> Result<(), String> {
    let node = &ctx.nodes[via];
    let binary = stripped(&ctx.bins.meshnode, &ctx.out.join("upgrade"))?;
    let started = Instant::now();
    let path = binary.to_string_lossy();
    let out = ctx
        .cli(node, "upgrade publish", &[&path], PUBLISH_TIMEOUT)
        .map_err(|e| last_line(&e))?;
    ctx.rec.say(format!(
        "upgrade publish through {} in {:.1} s: {}",
        node.name,
        started.elapsed().as_secs_f64(),
        last_line(&String::from_utf8_lossy(&out))
    ));
    let started = Instant::now();
    let out = ctx
        .cli(node, "upgrade roll", &["--json"], ROLL_TIMEOUT)
        .map_err(|e| last_line(&e))?;
    let rows: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| format!("upgrade roll --json printed no JSON: {e}"))?;
    for r in rows.as_array().map(Vec::as_slice).unwrap_or_default() {
        let line = row_words(r);
        ctx.rec.say(&line);
        ctx.migrations
            .lock()
            .unwrap()
            .push(format!("t={:.2}s {line}", ctx.rec.t()));
    }
    ctx.rec.say(format!(
        "upgrade roll through {} done in {:.1} s",
        node.name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// One node's row of `upgrade roll --json`, in words.
fn row_words(r: &serde_json::Value) -> String {
    format!(
        "upgrade {}: {} in {:.1} s (drain {:.1} s, restart until healthy {:.1} s), {} vessel(s) moved, longest pause {} ms, {} chunks fetched",
        r["node"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?"),
        r["total_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        r["drain_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        r["restart_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        r["vessels_moved"],
        r["max_vessel_pause_ms"].as_u64().map_or("-".into(), |p| p.to_string()),
        r["fetched_chunks"],
    )
}

/// `strip -o DIR/meshnode BIN`: the binary a user would publish.
fn stripped(bin: &Path, dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let to = dir.join("meshnode");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&to)
        .arg(bin)
        .status()
        .map_err(|e| format!("strip (binutils): {e}"))?;
    if !status.success() {
        return Err(format!(
            "strip -o {} {} failed",
            to.display(),
            bin.display()
        ));
    }
    Ok(to)
}
