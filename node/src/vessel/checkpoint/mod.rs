//! Periodic checkpoints of a running vessel: a crash or a power cut costs
//! at most one interval of its work (issue 13).
//!
//! A checkpoint is a whole [`VesselImage`], like the one a migration
//! sends, made incrementally:
//!
//! 1. **In the pause** (on the vessel's thread, [`Command::AtPoint`]): the
//!    vessel unwinds at its next migration point (or from inside a call
//!    that waits), its state is captured, the memory is compared with the
//!    last checkpoint's copy ([`Baseline::take_changes`]: only the chunks
//!    that differ are copied), the volumes' files and the service hub are
//!    taken, and the log's end is noted. Then the vessel rewinds in place
//!    and runs on: nothing is rebuilt.
//! 2. **After it** ([`finish`]): the changed chunks are hashed and stored,
//!    the manifest and the image are written, and one `fdatasync` makes
//!    them durable. Only then does the vessel's record point at the new
//!    image, so a torn checkpoint is never used.
//!
//! The record is written only while the vessel is still owned here under
//! the same epoch and no migration of it has begun; otherwise the
//! checkpoint is dropped ("no checkpoint after a migration's final pause
//! has begun", docs/protocol.md).
//!
//! The stages live in sibling files: [`baseline`] (the memory copy the
//! pause compares with), [`log_chunks`] (the log, packed from an anchor),
//! `pause` (what the pause takes, on the vessel's thread) and `write`
//! (after it: the image, the sync, the record).

mod baseline;
mod log_chunks;
mod pause;
mod write;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::snapshot::{Hash, CHUNK_SIZE_BYTES};
use protocol::vessel::{VesselId, VolumeImage};
use tokio::sync::oneshot;

pub use baseline::Baseline;
pub use log_chunks::LogChunks;
pub use pause::Taken;
use pause::{in_the_pause, Volumes};
pub use write::finish;

use super::image;
use super::retention::BudgetExceeded;
use super::runner::{AtPoint, AtPointRefused, Command};
use super::{Host, Record};
use crate::store::StoreError;
use crate::sync::lock;

/// Why a checkpoint was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("it is not on this node")]
    NotHere,
    #[error("it is not running here ({0})")]
    NotRunning(String),
    #[error("it is migrating")]
    Moving,
    #[error("a checkpoint of it is being taken")]
    Busy,
    #[error("it cannot be checkpointed: {0}")]
    Capture(String),
    #[error("the chunk store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot write its record: {0}")]
    Record(String),
    #[error("it did not reach a migration point within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("it moved, ended or was checkpointed otherwise meanwhile; this one is dropped")]
    Superseded,
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
}

impl CheckpointError {
    /// A checkpoint dropped because the vessel moved, ended or was busy:
    /// normal around a move or an end, and nothing to warn about.
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            CheckpointError::NotHere
                | CheckpointError::NotRunning(_)
                | CheckpointError::Moving
                | CheckpointError::Busy
                | CheckpointError::Superseded
        )
    }
}

/// A checkpoint that took D (from its request to its record: reaching a
/// migration point, the unwind, the pause, the writes) is followed by the
/// next no sooner than 20·D after it, whatever the interval. A vessel
/// with a very deep stack unwinds and rewinds it at every checkpoint, and
/// on a slow board that can take longer than the interval: without this it
/// would spend all its time being checkpointed and never run. With it,
/// checkpoints (and the rewind after each, which costs about what the
/// unwind did) take at most about a tenth of its time.
pub const CHECKPOINT_SPACING_FACTOR: u32 = 20;

/// One vessel's checkpoints, as its node keeps them.
#[derive(Default)]
pub struct Checkpoints {
    pub baseline: Arc<Mutex<Baseline>>,
    /// A checkpoint is between its request and its record.
    pub in_flight: bool,
    /// When the last one was asked for.
    pub last_attempt: Option<Instant>,
    /// When the last one ended (durable or not), and how long it took from
    /// its request: the next is due an interval later, or later still when
    /// checkpoints of this vessel are slow ([`CHECKPOINT_SPACING_FACTOR`]).
    pub last_done: Option<(Instant, Duration)>,
    /// When the newest durable one was taken (its pause), and its image.
    pub last_durable: Option<(Instant, Hash)>,
    /// For a vessel with replicas: how long the last checkpoint every
    /// replica took took from its pause to being held by all of them. A
    /// failover loses what the vessel did since the replicas' newest
    /// checkpoint was taken, so the next one is asked for this much before
    /// the interval is over ([`next_checkpoint_at`]).
    pub replica_lag: Option<Duration>,
    /// How long the last pause took.
    pub last_pause: Option<Duration>,
    /// Why the last one was skipped or failed, until one succeeds (`ps`).
    pub problem: Option<String>,
    /// How many were made durable since the vessel started here.
    pub taken: u64,
    /// How many chunks of memory the last durable one changed.
    pub last_changed: usize,
    /// What every checkpoint of this stay copies from the image the vessel
    /// started from here, read once.
    pub(super) base: Option<Arc<write::StayBase>>,
    /// The log's chunks as the last checkpoint stored them.
    pub(super) log_chunks: Arc<Mutex<LogChunks>>,
    /// The volumes as the last checkpoint packed them: the next re-packs
    /// only the paths the WASI layer saw change since (`None`: it packs
    /// every file, as the first one does).
    pub(super) volumes: Arc<Mutex<Option<Vec<VolumeImage>>>>,
}

impl Checkpoints {
    /// What the next checkpoint may add to the store, for the disk budget:
    /// as many chunks as the last one changed (the whole memory for the
    /// first), and room for its documents and the log's tail.
    fn estimate_bytes(&self, memory_bytes: u64) -> u64 {
        const DOCUMENTS_BYTES: u64 = 1 << 20;
        let memory = match self.last_durable {
            None => memory_bytes,
            Some(_) => self.last_changed as u64 * (u64::from(CHUNK_SIZE_BYTES) + 64),
        };
        memory + DOCUMENTS_BYTES
    }

    pub(super) fn note_done(&mut self) {
        let now = Instant::now();
        let took = self.last_attempt.map_or(Duration::ZERO, |t| now - t);
        self.last_done = Some((now, took));
    }
}

/// How much earlier than its interval a replicated vessel's checkpoint is
/// asked for, in tenths of what the last one took to reach its replicas:
/// half as much again, because the next shipment may be slower than the
/// last (measured: the work lost overshot the interval by 4 % under load
/// with the last lag alone).
pub const REPLICA_LEAD_TENTHS_OF_LAG: u32 = 15;

/// The most a replicated vessel's checkpoint is asked for early, as a
/// divisor of its interval: half of it, so that a slow shipment cannot
/// turn the interval into back-to-back checkpoints.
pub const REPLICA_LEAD_MAX_INTERVAL_DIVISOR: u32 = 2;

/// When a vessel's next checkpoint is due, `every` apart: an interval
/// after the last one ended, or later when its checkpoints are slow
/// ([`CHECKPOINT_SPACING_FACTOR`]). A replicated vessel's is asked for
/// earlier by [`REPLICA_LEAD_TENTHS_OF_LAG`] of what the last one took to
/// reach its replicas (at most [`REPLICA_LEAD_MAX_INTERVAL_DIVISOR`]), so
/// that the replicas' newest checkpoint is never more than an interval
/// old: the work a failover loses (issue 15's gate, missed under load
/// before, docs/benchmarks.md).
pub fn next_checkpoint_at(c: &Checkpoints, every: Duration, now: Instant) -> Instant {
    match (c.last_done, c.last_attempt, c.replica_lag) {
        (Some((done, took)), Some(asked), Some(lag)) => {
            let lead = (lag * REPLICA_LEAD_TENTHS_OF_LAG / 10)
                .min(every / REPLICA_LEAD_MAX_INTERVAL_DIVISOR);
            (asked + every - lead).max(done + took * CHECKPOINT_SPACING_FACTOR)
        }
        (Some((done, took)), _, _) => done + every.max(took * CHECKPOINT_SPACING_FACTOR),
        (None, asked, _) => asked.map_or(now, |t| t + every),
    }
}

/// A durable checkpoint.
#[derive(Debug, Clone)]
pub struct Durable {
    pub image: Hash,
    pub pause: Duration,
    /// Chunks of memory that changed since the one before.
    pub changed_chunks: usize,
    /// Chunks the pause compared to find them.
    pub compared_chunks: usize,
}

impl Host {
    /// The vessels whose next checkpoint is due at `now`: running here,
    /// owned, not moving, none in flight, and their interval (their
    /// deployment's, else `default_every`) passed since the last one.
    pub fn checkpoints_due(&self, now: Instant, default_every: Option<Duration>) -> Vec<VesselId> {
        self.vessels
            .iter()
            .filter(|(_, l)| {
                if l.deployment.body.sync_interval_ms().is_some() {
                    // Checkpointed every sync interval by its own driver
                    // (`mesh::output_commit`).
                    return false;
                }
                let every = match l.deployment.body.checkpoint_every_ms {
                    Some(0) => return false,
                    Some(ms) => Duration::from_millis(ms),
                    None => match default_every {
                        Some(e) => e,
                        None => return false,
                    },
                };
                let next = next_checkpoint_at(&l.checkpoints, every, now);
                matches!(l.record, Record::Owned { .. })
                    && !l.migrating
                    && !l.checkpoints.in_flight
                    && l.runner.as_ref().is_some_and(|r| r.exit().is_none())
                    && now >= next
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Asks the vessel for a checkpoint at its next migration point. The
    /// receiver gets what its pause took.
    pub fn begin_checkpoint(
        &mut self,
        id: VesselId,
    ) -> Result<oneshot::Receiver<Result<Taken, AtPointRefused>>, CheckpointError> {
        let vessel_dir = self.vessel_dir(id);
        let store = self.store.clone();
        let hub = self.hubs.get(&id).cloned();
        let l = self.vessels.get_mut(&id).ok_or(CheckpointError::NotHere)?;
        if l.migrating {
            return Err(CheckpointError::Moving);
        }
        if !matches!(l.record, Record::Owned { .. }) {
            return Err(CheckpointError::NotRunning("not owned here".into()));
        }
        if l.checkpoints.in_flight {
            return Err(CheckpointError::Busy);
        }
        let runner = l
            .runner
            .as_ref()
            .ok_or_else(|| CheckpointError::NotRunning("no thread".into()))?;
        if let Some((exit, _)) = runner.exit() {
            return Err(CheckpointError::NotRunning(exit));
        }
        let estimate = l.checkpoints.estimate_bytes(runner.memory_bytes());
        self.checkpoint_allowed(estimate)?;
        let l = self.vessels.get_mut(&id).ok_or(CheckpointError::NotHere)?;
        let runner = l
            .runner
            .as_ref()
            .ok_or_else(|| CheckpointError::NotRunning("no thread".into()))?;
        let volumes: Vec<(PathBuf, String)> =
            image::volume_dirs(&vessel_dir, l.deployment.body.volumes.len())
                .into_iter()
                .zip(l.deployment.body.volumes.iter().map(|v| v.guest.clone()))
                .collect();
        let (tx, rx) = oneshot::channel();
        let baseline = l.checkpoints.baseline.clone();
        let last_volumes = l.checkpoints.volumes.clone();
        let last_volumes_after = last_volumes.clone();
        let log = l.log.clone();
        // Before the pause: the volumes' chunks are stored in it.
        let pin = store.pin();
        let at_point = move |p: Result<AtPoint<'_>, AtPointRefused>| {
            let vols = Volumes {
                dirs: &volumes,
                last: &last_volumes,
            };
            let taken = p.map(|p| in_the_pause(p, &baseline, &store, vols, &log, hub, pin));
            if let Err(Ok(_)) = tx.send(taken) {
                // Nobody waits for it any more: its chunks will never be
                // hashed, so the copy no longer matches, and the volumes'
                // chunks it stored are in no image.
                lock(&baseline).invalidate();
                *lock(&last_volumes_after) = None;
            }
        };
        runner
            .send(Command::AtPoint(Box::new(at_point)))
            .map_err(CheckpointError::NotRunning)?;
        l.checkpoints.in_flight = true;
        l.checkpoints.last_attempt = Some(Instant::now());
        Ok(rx)
    }

    /// A checkpoint ended without a record (`Err`): noted for `ps`, and
    /// the next one may start.
    pub fn checkpoint_failed(&mut self, id: VesselId, why: &CheckpointError) {
        if let Some(l) = self.vessels.get_mut(&id) {
            if !matches!(why, CheckpointError::Busy) {
                l.checkpoints.in_flight = false;
                l.checkpoints.note_done();
            }
            if !why.is_expected() {
                l.checkpoints.problem = Some(why.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests;
