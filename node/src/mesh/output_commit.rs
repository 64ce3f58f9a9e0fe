//! Output commit for `deploy --durability sync` (issue 15, item 3; docs/
//! protocol.md, "Output commit"), as Remus does for VMs: the host
//! checkpoints the vessel every sync interval (`mesh::checkpoint`) and ships each
//! checkpoint to every replica (`mesh::replicate`); once all of them hold
//! one, [`release`] lets out the vessel's client bytes, its confirmations of
//! client bytes and its log lines up to what that checkpoint contains. The
//! rule itself is `dock::services::released`; this module only feeds it.

use protocol::vessel::{VesselId, VesselImage};
use tracing::warn;

use super::vessels::Migrator;
use crate::dock::services::released::ReleasedMarks;
use crate::sync::lock;
use crate::vessel::{Host, Record};

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
