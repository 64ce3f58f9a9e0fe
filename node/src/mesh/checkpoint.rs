//! The periodic checkpoints of the vessels this node runs (issue 13): a
//! thin async driver around `vessel::checkpoint`, which does the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::vessel::VesselId;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::vessels::Migrator;

use crate::sync::lock;
use crate::vessel::checkpoint::{finish, CheckpointError, Durable, CHECKPOINT_SPACING_FACTOR};
use crate::vessel::runner::AtPointRefused;
use crate::vessel::{Host, Record};

/// How long a checkpoint waits for its vessel to reach a migration point
/// (every loop has one, and a call that waits gives up its wait at once, so
/// only a vessel whose host is overloaded comes near it).
pub const CHECKPOINT_POINT_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a checkpoint asked for while another is being written asks
/// again (one takes a few milliseconds).
const BUSY_RETRY: Duration = Duration::from_millis(5);

/// How often the node looks for vessels whose checkpoint is due: a
/// checkpoint starts at most this late, a twentieth of the default interval.
const DUE_TICK: Duration = Duration::from_millis(50);

/// Takes one checkpoint of a vessel now, and returns once it is durable
/// and the vessel's record points at it.
pub async fn take(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<Durable, CheckpointError> {
    let result = take_inner(host, id).await;
    if let Err(e) = &result {
        lock(host).checkpoint_failed(id, e);
    }
    result
}

/// [`take`], then the durable checkpoint queued for the vessel's replicas
/// (`mesh::replicate`; it returns at once: shipping never lengthens a
/// pause nor waits for a replica).
pub async fn take_and_replicate(mesh: &Migrator, id: VesselId) -> Result<Durable, CheckpointError> {
    let durable = take(&mesh.host, id).await?;
    super::replicate::after_checkpoint(mesh, id, durable.image);
    Ok(durable)
}

async fn take_inner(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<Durable, CheckpointError> {
    presize_baseline(host, id).await;
    // One asked for by hand while a periodic one is being written waits
    // for it: it must show the vessel as it is now, not as it was then.
    let since = Instant::now();
    let rx = loop {
        match lock(host).begin_checkpoint(id) {
            Err(CheckpointError::Busy) if since.elapsed() < CHECKPOINT_POINT_TIMEOUT => {}
            other => break other?,
        }
        tokio::time::sleep(BUSY_RETRY).await;
    };
    let taken = match tokio::time::timeout(CHECKPOINT_POINT_TIMEOUT, rx).await {
        Err(_) => return Err(CheckpointError::Timeout(CHECKPOINT_POINT_TIMEOUT)),
        Ok(Err(_)) => return Err(CheckpointError::NotRunning("it ended".into())),
        Ok(Ok(Err(AtPointRefused::Pausing))) => return Err(CheckpointError::Moving),
        Ok(Ok(Err(AtPointRefused::Ended(exit)))) => return Err(CheckpointError::NotRunning(exit)),
        Ok(Ok(Err(why @ AtPointRefused::Capture(_)))) => {
            return Err(CheckpointError::Capture(why.to_string()))
        }
        Ok(Ok(Ok(taken))) => taken,
    };
    let host = host.clone();
    tokio::task::spawn_blocking(move || finish(&host, id, taken))
        .await
        .map_err(|e| CheckpointError::Capture(format!("its task failed: {e}")))?
}

/// Sizes the vessel's baseline copy to its memory, off the async runtime
/// and before the pause (a no-op once it is that large).
async fn presize_baseline(host: &Arc<Mutex<Host>>, id: VesselId) {
    let found = lock(host).vessels.get(&id).and_then(|l| {
        let bytes = l.runner.as_ref()?.memory_bytes() as usize;
        Some((l.checkpoints.baseline.clone(), bytes))
    });
    if let Some((baseline, bytes)) = found {
        let _ = tokio::task::spawn_blocking(move || lock(&baseline).presize(bytes)).await;
    }
}

/// Runs for as long as the node: checkpoints each vessel running here once
/// per its interval (`default_every` unless its deployment says; `None`:
/// only those whose deployment asks), and collects the store's garbage when
/// enough was written since the last collection.
pub async fn periodic(mesh: Migrator, default_every: Option<Duration>) {
    let host = mesh.host.clone();
    // The replica copies held here are held in the store again before the
    // first collection, and the shipper of checkpoints to replicas starts.
    super::replica_serve::load_held(&mesh);
    tokio::spawn(super::replicate::ship_queued(mesh.clone()));
    let mut tick = tokio::time::interval(DUE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `--durability sync` vessels have a driver each, on their own interval.
    let mut sync_drivers = HashMap::new();
    loop {
        tick.tick().await;
        start_sync_drivers(&mesh, &mut sync_drivers);
        let due = lock(&host).checkpoints_due(Instant::now(), default_every);
        for id in due {
            let mesh = mesh.clone();
            tokio::spawn(async move {
                match take_and_replicate(&mesh, id).await {
                    Ok(d) => {
                        collect_if_due(&mesh);
                        debug!(
                            vessel = %id,
                            image = %d.image,
                            pause_us = d.pause.as_micros() as u64,
                            changed_chunks = d.changed_chunks,
                            compared_chunks = d.compared_chunks,
                            "checkpoint durable"
                        )
                    }
                    Err(e) if e.is_expected() => debug!(vessel = %id, "checkpoint dropped: {e}"),
                    Err(e) => warn!(vessel = %id, "checkpoint skipped: {e}"),
                }
            });
        }
    }
}

/// Runs a collection of the store's garbage (old checkpoints) when one is
/// due, off the async runtime. Decided only while no migration is in
/// flight: an arriving one's chunks are in no image yet (what is stored
/// after the decision is pinned by the collection itself).
fn collect_if_due(mesh: &Migrator) {
    let collection = {
        let mut h = lock(&mesh.host);
        let moving = h.vessels.values().any(|l| l.migrating);
        if moving || !lock(&mesh.incoming).is_empty() {
            return;
        }
        h.collection_if_due()
    };
    let Some(collection) = collection else {
        return;
    };
    tokio::task::spawn_blocking(move || match collection.run() {
        Ok(c) => info!(
            chunks_removed = c.chunks_removed,
            bytes_before = c.bytes_before,
            bytes_after = c.bytes_after,
            took_ms = c.took.as_millis() as u64,
            "collected old checkpoints from the chunk store"
        ),
        Err(e) => warn!("cannot collect the chunk store's garbage: {e}"),
    });
}

// ---------------------------------------------------------------------------
// `--durability sync` vessels (issue 15; `mesh::output_commit` releases
// their output once every replica holds a checkpoint).

/// The sync interval of `id` if it is a sync vessel that runs here (owned,
/// its thread alive, not stopped).
fn sync_interval_here(h: &Host, id: VesselId) -> Option<Duration> {
    let l = h.vessels.get(&id)?;
    let runs = matches!(l.record, Record::Owned { .. })
        && !l.stopped
        && l.runner.as_ref().is_some_and(|r| r.exit().is_none());
    let ms = l.deployment.body.sync_interval_ms()?;
    runs.then(|| Duration::from_millis(ms))
}

/// Starts a [`drive_sync`] for every sync vessel that runs here and has none;
/// forgets the drivers that ended. Called on every tick of the periodic
/// checkpoints.
fn start_sync_drivers(mesh: &Migrator, drivers: &mut HashMap<VesselId, JoinHandle<()>>) {
    drivers.retain(|_, d| !d.is_finished());
    let due: Vec<VesselId> = {
        let h = lock(&mesh.host);
        h.vessels
            .keys()
            .filter(|id| !drivers.contains_key(id) && sync_interval_here(&h, **id).is_some())
            .copied()
            .collect()
    };
    for id in due {
        drivers.insert(id, tokio::spawn(drive_sync(mesh.clone(), id)));
    }
}

/// Checkpoints a sync vessel every sync interval for as long as it runs
/// here, and queues each for its replicas. A checkpoint whose pause took
/// P is followed no sooner than `CHECKPOINT_SPACING_FACTOR`·P later, as
/// periodic ones are, so that a vessel with a deep stack still runs.
async fn drive_sync(mesh: Migrator, id: VesselId) {
    debug!(vessel = %id, "sync checkpoints start");
    loop {
        let Some(interval) = sync_interval_here(&lock(&mesh.host), id) else {
            debug!(vessel = %id, "sync checkpoints stop: it no longer runs here");
            return;
        };
        let started = Instant::now();
        let spacing = match take_and_replicate(&mesh, id).await {
            Ok(d) => {
                collect_if_due(&mesh);
                d.pause * CHECKPOINT_SPACING_FACTOR
            }
            Err(CheckpointError::Busy) => {
                // Another is in flight (one asked for by hand): output
                // waits for this one, so it asks again soon.
                tokio::time::sleep(BUSY_RETRY).await;
                continue;
            }
            Err(e) if e.is_expected() => Duration::ZERO,
            Err(e) => {
                // Its output waits until one succeeds; `ps` shows why.
                warn!(vessel = %id, "sync checkpoint failed, its output waits: {e}");
                Duration::ZERO
            }
        };
        tokio::time::sleep_until((started + interval.max(spacing)).into()).await;
    }
}
