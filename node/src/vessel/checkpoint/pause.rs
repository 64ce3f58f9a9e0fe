//! What a checkpoint's pause takes, on the vessel's thread: the state, the
//! changed chunks of memory, the changed files of the volumes, the hub and
//! the log's end. Everything slow waits for `write`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::ingress::HubImage;
use protocol::vessel::VolumeImage;

use super::Baseline;
use crate::store::{ChunkStore, Pin};
use crate::sync::lock;
use crate::vessel::image;
use crate::vessel::log::VesselLog;
use crate::vessel::runner::AtPoint;

/// What the pause hands over.
pub struct Taken {
    pub(super) capture: crate::dock::Capture,
    pub(super) changed: Vec<usize>,
    /// How many chunks the pause compared to find them.
    pub(super) compared: usize,
    pub(super) volumes: Result<Vec<VolumeImage>, String>,
    pub(super) hub: Option<HubImage>,
    pub(super) log_end: u64,
    pub(super) at: Instant,
    pub(super) pause: Duration,
    /// Keeps what this checkpoint stores from a collection until its
    /// record is written and noted ([`Host::note_checkpoint`]).
    pub(super) _pin: Pin,
}

/// A vessel's volumes, for the pause: where each lives here (with its
/// guest path), and how the last checkpoint packed them.
pub(super) struct Volumes<'a> {
    pub(super) dirs: &'a [(PathBuf, String)],
    pub(super) last: &'a Mutex<Option<Vec<VolumeImage>>>,
}

impl Volumes<'_> {
    /// Packs the volumes as they are in the pause: only the paths that
    /// changed since the last checkpoint are read (every file, the first
    /// time). The result is kept for the next, optimistically: a
    /// checkpoint that fails forgets it ([`finish`]).
    fn pack(
        &self,
        store: &ChunkStore,
        wasi: &mut crate::dock::wasi::WasiCtx,
    ) -> Result<Vec<VolumeImage>, String> {
        // Taken even when unused: what changed before this pause is in
        // this checkpoint, whichever way it packs.
        let changed = wasi.take_changed();
        let mut last = lock(self.last);
        let packed = match last.take() {
            Some(prev) if prev.len() == self.dirs.len() => self
                .dirs
                .iter()
                .zip(&prev)
                .map(|((dir, guest), p)| {
                    image::pack_volume_changed(store, dir, guest, p, changed.for_guest(guest))
                })
                .collect::<Result<Vec<_>, _>>(),
            _ => self
                .dirs
                .iter()
                .map(|(dir, guest)| image::pack_volume(store, dir, guest))
                .collect(),
        };
        *last = packed.as_ref().ok().cloned();
        packed
    }
}

/// What the pause takes, on the vessel's thread.
pub(super) fn in_the_pause(
    p: AtPoint<'_>,
    baseline: &Mutex<Baseline>,
    store: &ChunkStore,
    volumes: Volumes<'_>,
    log: &Mutex<VesselLog>,
    hub: Option<Arc<crate::dock::services::ingress::IngressHub>>,
    pin: Pin,
) -> Taken {
    let (changed, compared) = {
        let mut b = lock(baseline);
        let changed = b.take_changes(p.memory, p.writes);
        (changed, b.compared())
    };
    let volumes = volumes.pack(store, p.wasi);
    let log_end = lock(log).end();
    Taken {
        capture: p.capture,
        changed,
        compared,
        volumes,
        hub: hub.map(|h| h.export()),
        log_end,
        at: p.at,
        pause: p.at.elapsed(),
        _pin: pin,
    }
}
