//! Output commit for `deploy --durability sync` (issue 15, item 3; docs/
//! protocol.md, "Output commit"), as Remus does for VMs: the host
//! checkpoints the vessel every sync interval ([`drive`]) and ships each
//! checkpoint to every replica (`mesh::replicate`); once all of them hold
//! one, [`release`] lets out the vessel's client bytes, its confirmations of
//! client bytes and its log lines up to what that checkpoint contains. The
//! rule itself is `dock::services::released`; this module only feeds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::vessel::{VesselId, VesselImage};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::checkpoint::{collect_if_due, take_and_replicate};
use super::vessels::Migrator;
use crate::dock::services::released::ReleasedMarks;
use crate::sync::lock;
use crate::vessel::checkpoint::{CheckpointError, CHECKPOINT_SPACING_FACTOR};
use crate::vessel::{Host, Record};

/// How soon a sync checkpoint that found another in flight (one asked for
/// by hand, or a migration's) tries again: a few milliseconds, since
/// output waits for it.
const BUSY_RETRY: Duration = Duration::from_millis(5);

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

/// Starts a [`drive`] for every sync vessel that runs here and has none;
/// forgets the drivers that ended. Called on every tick of the periodic
/// checkpoints.
pub fn start_drivers(mesh: &Migrator, drivers: &mut HashMap<VesselId, JoinHandle<()>>) {
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
        drivers.insert(id, tokio::spawn(drive(mesh.clone(), id)));
    }
}

/// Checkpoints a sync vessel every sync interval for as long as it runs
/// here, and queues each for its replicas. A checkpoint whose pause took
/// P is followed no sooner than `CHECKPOINT_SPACING_FACTOR`·P later, as
/// periodic ones are, so that a vessel with a deep stack still runs.
async fn drive(mesh: Migrator, id: VesselId) {
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

/// Every replica of `id` acknowledged the checkpoint `image` (its
/// document), taken at `epoch`: its output is released up to it, if it
/// still runs here under that epoch.
pub fn release(mesh: &Migrator, id: VesselId, epoch: u64, image: &[u8]) {
    let img: VesselImage = match protocol::cbor::decode(image) {
        Ok(img) => img,
        Err(e) => {
            warn!(vessel = %id, "an acknowledged checkpoint does not decode: {e}");
            return;
        }
    };
    let marks = ReleasedMarks::of_image(&img);
    let h = lock(&mesh.host);
    let Some(l) = h.vessels.get(&id) else { return };
    if !matches!(l.record, Record::Owned { epoch: e, .. } if e == epoch) {
        return;
    }
    {
        let mut log = lock(&l.log);
        if let Some(end) = log.released_end.as_mut() {
            *end = (*end).max(marks.log_end);
        }
    }
    if let Some(hub) = h.hubs.get(&id) {
        hub.release(marks);
    }
}

/// A sync vessel that ended or was stopped here releases what is left:
/// no checkpoint will hold more of it, and it will not run again here.
pub fn release_ended(h: &Host) {
    for (id, l) in &h.vessels {
        let over = l.stopped || l.ended().is_some();
        if !over || l.deployment.body.sync_interval_ms().is_none() {
            continue;
        }
        lock(&l.log).released_end = None;
        if let Some(hub) = h.hubs.get(id) {
            hub.release_all();
        }
    }
}
