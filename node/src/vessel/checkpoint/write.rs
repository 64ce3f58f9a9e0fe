//! After a checkpoint's pause: the changed chunks hashed and stored, the
//! image written and synced, then the record moved, if the rule allows.

use std::sync::{Arc, Mutex};

use protocol::snapshot::{ChunkedImage, Hash};
use protocol::vessel::{Resume, VesselId, VesselImage, VESSEL_VERSION};

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
    let baseline = match lock(host).vessels.get(&id) {
        Some(l) => l.checkpoints.baseline.clone(),
        None => return Err(CheckpointError::NotHere),
    };
    let (log_chunks, volumes) = match lock(host).vessels.get(&id) {
        Some(l) => (
            l.checkpoints.log_chunks.clone(),
            l.checkpoints.volumes.clone(),
        ),
        None => return Err(CheckpointError::NotHere),
    };
    let result = write_image(host, id, &baseline, &taken).and_then(|(image, epoch)| {
        commit(host, id, epoch, image, &taken)?;
        Ok(Durable {
            image,
            pause: taken.pause,
            changed_chunks: taken.changed.len(),
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
    taken: &Taken,
) -> Result<(Hash, u64), CheckpointError> {
    let (store, epoch, old, module, log, log_chunks, run_ms, pinned) = {
        let mut h = lock(host);
        let store = h.store.clone();
        let l = h.vessels.get(&id).ok_or(CheckpointError::NotHere)?;
        let epoch = l.record.epoch();
        let (run_ms, pinned) = (l.run_ms(), l.pinned);
        let old = store.get_image_doc(&l.record.image())?;
        let old: VesselImage = protocol::cbor::decode(&old)
            .map_err(|e| CheckpointError::Capture(format!("its last image: {e}")))?;
        let log = l.log.clone();
        let log_chunks = l.checkpoints.log_chunks.clone();
        let module = module_of(&mut h, id, &old)?;
        (store, epoch, old, module, log, log_chunks, run_ms, pinned)
    };
    let memory = lock(baseline).store_changes(&store, &taken.changed)?;
    let manifest = image::manifest_of(&module.0, &module.1, &taken.capture, memory)
        .map_err(CheckpointError::Capture)?;
    let (manifest_bytes, manifest_hash) = manifest.encode_and_hash();
    let volumes = taken.volumes.clone().map_err(CheckpointError::Capture)?;
    // Only what was printed before the pause: the vessel ran on since.
    let log = pack_log_since(&store, &mut lock(&log_chunks), &log, taken.log_end)?;
    let img = VesselImage {
        version: VESSEL_VERSION,
        deployment: old.deployment.clone(),
        epoch,
        resume: Resume::Snapshot(manifest_hash),
        module: old.module.clone(),
        manifest: manifest_bytes,
        volumes,
        log,
        migrations: old.migrations,
        run_ms,
        placement: protocol::vessel::VesselPlacement {
            pinned,
            last_move: old.placement.last_move.clone(),
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

/// The vessel's prepared module and the module's image, read from the store
/// once per stay.
fn module_of(
    h: &mut Host,
    id: VesselId,
    old: &VesselImage,
) -> Result<(Arc<PreparedModule>, ChunkedImage), CheckpointError> {
    if let Some(m) = h
        .vessels
        .get(&id)
        .and_then(|l| l.checkpoints.module.clone())
    {
        return Ok(m);
    }
    let bytes = crate::store::get_image(&h.store, &old.module, protocol::limits::MAX_MODULE_BYTES)?;
    let module = h
        .module(bytes, &old.deployment.body.name)
        .map_err(CheckpointError::Capture)?;
    let m = (module, old.module.clone());
    if let Some(l) = h.vessels.get_mut(&id) {
        l.checkpoints.module = Some(m.clone());
    }
    Ok(m)
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
        .map_err(|e| CheckpointError::Capture(format!("its record: {e}")))?;
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
