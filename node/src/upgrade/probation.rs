//! After a restart into a new binary: the upgrade is on probation until
//! the node has been healthy (`meshnode status`'s definition,
//! docs/guide.md) for [`PROBATION`]. A node that is not healthy within
//! [`HEALTH_DEADLINE`], or whose new binary has started [`MAX_STARTS`]
//! times without passing (it crashes and systemd restarts it), makes the
//! previous binary current again and restarts into it.
//!
//! The record (`bin/probation.cbor`) is written before the restart, so
//! the new binary knows it is on probation, and a start counts itself in
//! it before anything else can fail.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use protocol::refusal::{Refusal, RefusalCode};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::bins::BinDir;
use super::releases::refuse;
use crate::mesh::state::NodeState;
use crate::sync::lock;

/// How long the node must stay healthy after the restart before the
/// upgrade is done: long enough to reconnect to its members and gossip.
pub const PROBATION: Duration = Duration::from_secs(10);

/// How long a new binary has to become healthy before the previous one is
/// put back: a board reconnecting over a slow link does it in seconds.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(120);

/// Starts of the new binary that may end without passing probation (it
/// crashed, and systemd started it again) before the previous binary is
/// put back.
pub const MAX_STARTS: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub from_version: String,
    pub to_version: String,
    pub starts: u32,
}

/// The probation of this run, if it is on one.
struct Running {
    record: Record,
    started: Instant,
    healthy_since: Option<Instant>,
}

fn running() -> &'static Mutex<Option<Running>> {
    static RUNNING: OnceLock<Mutex<Option<Running>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(None))
}

fn path(data_root: &Path) -> PathBuf {
    data_root.join("bin").join("probation.cbor")
}

/// Written before the restart into `to_version`.
pub fn begin(data_root: &Path, from_version: &str, to_version: &str) -> Result<(), Refusal> {
    let record = Record {
        from_version: from_version.into(),
        to_version: to_version.into(),
        starts: 0,
    };
    write(data_root, &record)
}

fn write(data_root: &Path, record: &Record) -> Result<(), Refusal> {
    crate::daemon::datadir::write_atomic(&path(data_root), &protocol::cbor::encode(record))
        .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))
}

/// Ends the probation (passed, or given up by a rollback).
pub fn clear(data_root: &Path) {
    let _ = std::fs::remove_file(path(data_root));
    *lock(running()) = None;
}

/// What `meshnode start` does first: counts this start in the record.
/// Returns the binary to exec instead when the new one has used up its
/// starts (the record is cleared and the previous binary made current).
pub fn at_start(data_root: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(path(data_root)).ok()?;
    let Ok(mut record) = protocol::cbor::decode::<Record>(&bytes) else {
        warn!(
            "{}: not a probation record; removed",
            path(data_root).display()
        );
        clear(data_root);
        return None;
    };
    if record.to_version != super::running_version() {
        // The previous binary runs: rolled back, or started by hand.
        info!(to = %record.to_version, "the upgrade's probation ends: this node runs {}", super::running_version());
        clear(data_root);
        return None;
    }
    record.starts += 1;
    if record.starts > MAX_STARTS {
        warn!(to = %record.to_version, starts = record.starts - 1, "the new binary started {MAX_STARTS} times without passing its probation: rolling back");
        return roll_back(data_root);
    }
    if let Err(e) = write(data_root, &record) {
        warn!("cannot count this start in the probation record: {e}");
    }
    info!(from = %record.from_version, to = %record.to_version, start = record.starts, "upgraded: on probation until healthy for {PROBATION:?}");
    *lock(running()) = Some(Running {
        record,
        started: Instant::now(),
        healthy_since: None,
    });
    None
}

fn roll_back(data_root: &Path) -> Option<PathBuf> {
    clear(data_root);
    match BinDir::new(data_root).roll_back() {
        Ok(previous) => Some(previous),
        Err(e) => {
            warn!("cannot roll back: {e}");
            None
        }
    }
}

/// One line for `status` while on probation.
pub fn status_line() -> Option<String> {
    let r = lock(running());
    let r = r.as_ref()?;
    let healthy = r.healthy_since.map_or(0, |t| t.elapsed().as_secs());
    Some(format!(
        "upgraded from {} to {}: on probation, healthy for {healthy} s of {} s (rollback after {} s)",
        r.record.from_version,
        r.record.to_version,
        PROBATION.as_secs(),
        HEALTH_DEADLINE.as_secs()
    ))
}

/// Called on every ops tick: passes the probation once the node has been
/// healthy long enough, or rolls back after the deadline.
pub fn tick(state: &NodeState) {
    if lock(running()).is_none() {
        return;
    }
    let healthy = crate::ops::status::report(state).unhealthy.is_empty();
    let root = &state.data_dir.root;
    let mut guard = lock(running());
    let Some(r) = guard.as_mut() else { return };
    let now = Instant::now();
    r.healthy_since = if healthy {
        Some(r.healthy_since.unwrap_or(now))
    } else {
        None
    };
    if r.healthy_since
        .is_some_and(|t| now.duration_since(t) >= PROBATION)
    {
        info!(to = %r.record.to_version, "the upgrade passed its probation");
        drop(guard);
        clear(root);
        return;
    }
    if now.duration_since(r.started) >= HEALTH_DEADLINE {
        warn!(to = %r.record.to_version, "not healthy within {HEALTH_DEADLINE:?} of the upgrade: rolling back");
        drop(guard);
        if let Some(previous) = roll_back(root) {
            super::restart::request(previous);
        }
    }
}

/// Whether this run is on probation (another upgrade waits for it).
pub fn is_on_probation() -> bool {
    lock(running()).is_some()
}
