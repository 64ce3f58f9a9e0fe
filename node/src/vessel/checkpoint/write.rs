//! After a checkpoint's pause: the changed chunks hashed and stored, the
//! image written and synced, then the record moved, if the rule allows.

use std::sync::{Arc, Mutex};

use protocol::snapshot::{ChunkedImage, Hash};
use protocol::vessel::{
    Deployment, Resume, VesselId, VesselImage, VesselPlacement, VESSEL_VERSION,
};

use super::log_chunks::{pack_log_since, LogChunks};
use super::{Baseline, CheckpointError, Durable, Taken};
use crate::migration::record::may_checkpoint;
use crate::sync::lock;
use crate::vessel::{image, Host, PreparedModule, Record};

/// After the pause (blocking: run it off the async runtime): stores what
/// changed, writes the image, makes it durable, then points the record at
/// it. On any failure the baseline is invalidated and the record keeps the
/// previous checkpoint.
pub fn finish(host: &Mutex<Host>, id: VesselId, taken: Taken) -> Result<Durable, CheckpointError> {
    let (baseline, log_chunks, volumes) = match lock(host).vessels.get(&id) {
        Some(l) => (
            l.checkpoints.baseline.clone(),
            l.checkpoints.log_chunks.clone(),
            l.checkpoints.volumes.clone(),
        ),
        None => return Err(CheckpointError::NotHere),
    };
    let result =
        write_image(host, id, &baseline, &log_chunks, &taken).and_then(|(image, epoch)| {
            commit(host, id, epoch, image, &taken)?;
            Ok(Durable {
                image,
                pause: taken.pause,
                changed_chunks: taken.changed.len(),
                compared_chunks: taken.compared,
            })
        });
    if result.is_err() {
        // What they remember may name chunks that never became durable.
        lock(&baseline).invalidate();
        *lock(&log_chunks) = LogChunks::default();
        *lock(&volumes) = None;
    }
    result
}

/// Stores the checkpoint's chunks, manifest and image, durably. Returns
/// the image's hash and the epoch it was taken under.
fn write_image(
    host: &Mutex<Host>,
    id: VesselId,
    baseline: &Mutex<Baseline>,
    log_chunks: &Mutex<LogChunks>,
    taken: &Taken,
) -> Result<(Hash, u64), CheckpointError> {
    let base = stay_base(host, id)?;
    let (store, epoch, log, run_ms, pinned) = {
        let h = lock(host);
        let l = h.vessels.get(&id).ok_or(CheckpointError::NotHere)?;
        (
            h.store.clone(),
            l.record.epoch(),
            l.log.clone(),
            l.run_ms(),
            l.pinned,
        )
    };
    let memory = lock(baseline).store_changes(&store, &taken.changed)?;
    let manifest = image::manifest_of(&base.module, &base.module_image, &taken.capture, memory)
        .map_err(CheckpointError::Capture)?;
    let (manifest_bytes, manifest_hash) = manifest.encode_and_hash();
    let volumes = taken.volumes.clone().map_err(CheckpointError::Capture)?;
    // Only what was printed before the pause: the vessel ran on since.
    let log = pack_log_since(&store, &mut lock(log_chunks), &log, taken.log_end)?;
    let img = VesselImage {
        version: VESSEL_VERSION,
        deployment: base.deployment.clone(),
        epoch,
        resume: Resume::Snapshot(manifest_hash),
        module: base.module_image.clone(),
        manifest: manifest_bytes,
        volumes,
        log,
        migrations: base.migrations,
        run_ms,
        placement: VesselPlacement {
            pinned,
            last_move: base.last_move.clone(),
        },
        hub: taken.hub.clone().unwrap_or_default(),
    };
    let (bytes, image_hash) = img.encode_and_hash();
    // The image carries its manifest (`ready` reads it from there), so it
    // is not stored a second time on its own.
    store.put_image_doc(&bytes, false)?;
    store.sync()?;
    Ok((image_hash, epoch))
}

/// What every checkpoint of a stay copies from the image the vessel
/// started from here: none of it changes while the vessel stays (a move
/// or a restart makes a new stay).
pub struct StayBase {
    module: Arc<PreparedModule>,
    module_image: ChunkedImage,
    deployment: Deployment,
    migrations: u32,
    last_move: String,
}

/// The vessel's [`StayBase`], read from its record's image (and the module
/// prepared) the first time, outside the host's lock but for the module
/// cache; later checkpoints read nothing.
fn stay_base(host: &Mutex<Host>, id: VesselId) -> Result<Arc<StayBase>, CheckpointError> {
    let (store, image) = {
        let h = lock(host);
        let l = h.vessels.get(&id).ok_or(CheckpointError::NotHere)?;
        if let Some(base) = &l.checkpoints.base {
            return Ok(base.clone());
        }
        (h.store.clone(), l.record.image())
    };
    let old: VesselImage = protocol::cbor::decode(&store.get_image_doc(&image)?)
        .map_err(|e| CheckpointError::Capture(format!("its last image: {e}")))?;
    let bytes = crate::store::get_image(&store, &old.module, protocol::limits::MAX_MODULE_BYTES)?;
    let mut h = lock(host);
    let module = h
        .module(bytes, &old.deployment.body.name)
        .map_err(CheckpointError::Capture)?;
    let base = Arc::new(StayBase {
        module,
        module_image: old.module,
        deployment: old.deployment,
        migrations: old.migrations,
        last_move: old.placement.last_move,
    });
    let l = h.vessels.get_mut(&id).ok_or(CheckpointError::NotHere)?;
    l.checkpoints.base = Some(base.clone());
    Ok(base)
}

/// Points the vessel's record at the new image, if it is still owned here
/// under the epoch it was taken under and not moving.
fn commit(
    host: &Mutex<Host>,
    id: VesselId,
    epoch: u64,
    image: Hash,
    taken: &Taken,
) -> Result<(), CheckpointError> {
    let mut h = lock(host);
    let l = h.vessels.get(&id).ok_or(CheckpointError::NotHere)?;
    let still_ours = may_checkpoint(Some(&l.record), epoch, l.migrating)
        && l.runner.as_ref().is_some_and(|r| r.exit().is_none());
    if !still_ours {
        return Err(CheckpointError::Superseded);
    }
    let record = Record::Owned { epoch, image };
    h.write_record(id, &record)
        .map_err(|e| CheckpointError::Record(e.to_string()))?;
    // Noted before the pin goes (with `taken`): from here on retention
    // keeps it.
    h.note_checkpoint(id, image);
    let l = h.vessels.get_mut(&id).ok_or(CheckpointError::NotHere)?;
    l.record = record;
    l.checkpoints.last_changed = taken.changed.len();
    let c = &mut l.checkpoints;
    c.in_flight = false;
    c.note_done();
    c.last_durable = Some((taken.at, image));
    c.last_pause = Some(taken.pause);
    c.problem = None;
    c.taken += 1;
    Ok(())
}
