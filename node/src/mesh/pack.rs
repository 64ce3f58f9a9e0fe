//! Packing a paused vessel into its final image: the last memory delta
//! (compared in place, sent from memory), the WASI state, volumes, log,
//! service hub and placement. A step of the source's driver
//! (`migrate.rs`); between the pause and the final offer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use protocol::snapshot::{ChunkedImage, Hash};
use protocol::vessel::{Resume, VesselId, VesselImage, VesselPlacement, VESSEL_VERSION};

use super::faults::fault_active;
use super::transfer::{store_fresh, Fresh};
use super::vessels::Migrator;
use crate::migration::ErrorKind;
use crate::sync::lock;
use crate::vessel::image::{self, MemoryTracker};
use crate::vessel::log::VesselLog;
use crate::vessel::runner;
use crate::vessel::PreparedModule;

/// What a migration needs of the vessel it moves, read once at its start.
pub(super) struct Outgoing {
    pub module: Arc<PreparedModule>,
    pub module_image: ChunkedImage,
    /// The guest paths of its volumes, in order.
    pub guests: Vec<String>,
    pub log: Arc<Mutex<VesselLog>>,
    pub vessel_dir: PathBuf,
}

/// The final image, the paused instance it was packed from, and the
/// chunks that changed since the last pre-copy round.
pub(super) struct Packed {
    pub image: VesselImage,
    pub bytes: Vec<u8>,
    pub hash: Hash,
    pub paused: runner::Paused,
    pub fresh: Fresh,
    /// Storing `fresh` in this node's store, beside the offer (an abort
    /// resumes the vessel from the store, and a return trip deduplicates
    /// against it). Taken by whoever waits for it.
    pub stored: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// Packs the paused vessel `id` for the move at `epoch`. On failure the
/// paused instance is gone with it: the vessel can only run on from its
/// last durable image.
pub(super) async fn pack(
    mesh: &Migrator,
    id: VesselId,
    (epoch, why): (u64, &str),
    vessel: &Outgoing,
    tracker: &Arc<Mutex<MemoryTracker>>,
    paused: runner::Paused,
) -> Result<Packed, ErrorKind> {
    let local = |e: String| ErrorKind::Local(e);
    let header = image_header(mesh, id, why).ok_or(ErrorKind::VesselEnded)?;
    // The vessel is paused: its hub takes no more client bytes (entries
    // keep them and send them to wherever the vessel runs next).
    let hub = lock(&mesh.host)
        .hubs
        .get(&id)
        .map(|h| h.freeze_and_export())
        .unwrap_or_default();
    let store = lock(&mesh.host).store.clone();
    let (t, s) = (tracker.clone(), store.clone());
    let module = vessel.module.clone();
    let module_image = vessel.module_image.clone();
    let guests = vessel.guests.clone();
    let log = vessel.log.clone();
    let dirs = image::volume_dirs(&vessel.vessel_dir, guests.len());
    let (image, paused, fresh) = tokio::task::spawn_blocking(move || {
        if fault_active("pack-fails") {
            return Err("fault injection: packing the paused vessel failed".to_string());
        }
        let mut t = lock(&t);
        // The paused instance's own memory, compared in place with what
        // was last sent: no copy of the whole memory here. The changed
        // chunks are sent from memory and stored meanwhile.
        let fresh = Arc::new(
            t.update_final_unstored(paused.vessel.memory(), paused.vessel.write_tracker()),
        );
        let manifest =
            image::manifest_of(&module, &module_image, &paused.capture, t.image.clone())?;
        let (mbytes, mh) = manifest.encode_and_hash();
        let volumes = guests
            .iter()
            .zip(&dirs)
            .map(|(g, d)| image::pack_volume(&s, d, g))
            .collect::<Result<Vec<_>, _>>()?;
        let log = image::pack_log(&s, &lock(&log))?;
        let image = VesselImage {
            version: VESSEL_VERSION,
            deployment: header.deployment,
            epoch,
            resume: Resume::Snapshot(mh),
            module: module_image,
            manifest: mbytes,
            volumes,
            log,
            migrations: header.migrations + 1,
            run_ms: header.run_ms,
            placement: header.placement,
            hub,
        };
        Ok((image, paused, fresh))
    })
    .await
    .map_err(|e| local(e.to_string()))?
    .map_err(local)?;
    let stored = {
        let (s, fresh) = (store.clone(), fresh.clone());
        tokio::task::spawn_blocking(move || store_fresh(&s, &fresh))
    };
    let (bytes, hash) = image.encode_and_hash();
    // Kept (not synced) so `ps` and `logs` still know the vessel after a
    // restart; the commit needs only the record.
    if let Err(e) = store.put_image_doc(&bytes, false) {
        tracing::warn!(vessel = %id, "cannot keep its image: {e}");
    }
    Ok(Packed {
        image,
        bytes,
        hash,
        paused,
        fresh,
        stored: Some(stored),
    })
}

/// What the image carries from the vessel's bookkeeping here.
struct Header {
    deployment: protocol::vessel::Deployment,
    migrations: u32,
    run_ms: u64,
    placement: VesselPlacement,
}

fn image_header(mesh: &Migrator, id: VesselId, why: &str) -> Option<Header> {
    let h = lock(&mesh.host);
    let l = h.vessels.get(&id)?;
    Some(Header {
        deployment: l.deployment.clone(),
        migrations: l.migrations,
        run_ms: l.run_ms(),
        placement: VesselPlacement {
            pinned: l.pinned,
            last_move: note(why),
        },
    })
}

/// A placement note as it travels: one line, bounded.
fn note(why: &str) -> String {
    let mut n: String = why.lines().next().unwrap_or("").to_string();
    if n.len() > protocol::limits::MAX_PLACEMENT_NOTE_BYTES {
        let mut cut = protocol::limits::MAX_PLACEMENT_NOTE_BYTES;
        while !n.is_char_boundary(cut) {
            cut -= 1;
        }
        n.truncate(cut);
    }
    n
}
