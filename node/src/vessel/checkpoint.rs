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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::ingress::HubImage;
use protocol::limits::MAX_LOG_BYTES;
use protocol::snapshot::{ChunkedImage, Hash, CHUNK_SIZE_BYTES};
use protocol::vessel::{
    log_records, LogImage, Resume, VesselId, VesselImage, VolumeImage, LOG_RECORD_HEADER_BYTES,
    VESSEL_VERSION,
};
use tokio::sync::oneshot;

use super::image::{self, changed_chunks};
use super::log::VesselLog;
use super::retention::BudgetExceeded;
use super::runner::{AtPoint, AtPointRefused, Command};
use super::{Host, PreparedModule, Record};
use crate::migration::record::may_checkpoint;
use crate::store::{ChunkStore, Pin, StoreError};
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

/// The last checkpoint's memory, chunk by chunk: what the next one
/// compares with. Kept on the node (a copy as large as the memory), so that
/// the pause compares and copies rather than hashes.
#[derive(Default)]
pub struct Baseline {
    last: Vec<u8>,
    chunks: Vec<Option<Hash>>,
    /// The copy no longer matches the hashes: the next checkpoint takes
    /// every chunk (into the buffer it already has).
    stale: bool,
}

impl Baseline {
    /// In the pause: which chunks of `memory` changed since the last
    /// checkpoint. Brings the copy up to `memory` (copying only those); their
    /// hashes wait for [`store_changes`](Self::store_changes).
    pub fn take_changes(&mut self, memory: &[u8]) -> Vec<usize> {
        let cs = CHUNK_SIZE_BYTES as usize;
        // Linear memory only grows; new pages compare with zeros, which is
        // what an unknown (`None`) chunk means. The buffer is sized ahead
        // (`presize`), so this allocates only if the memory grew since.
        self.last.resize(memory.len(), 0);
        self.chunks.resize(memory.len().div_ceil(cs), None);
        let changed = if std::mem::take(&mut self.stale) {
            (0..self.chunks.len()).collect()
        } else {
            changed_chunks(&self.last, &self.chunks, memory)
        };
        for &i in &changed {
            let range = i * cs..((i + 1) * cs).min(memory.len());
            self.last[range.clone()].copy_from_slice(&memory[range]);
        }
        changed
    }

    /// After the pause: hashes and stores the chunks `take_changes` found,
    /// and returns the memory's image.
    pub fn store_changes(
        &mut self,
        store: &ChunkStore,
        changed: &[usize],
    ) -> Result<ChunkedImage, StoreError> {
        let cs = CHUNK_SIZE_BYTES as usize;
        for &i in changed {
            let bytes = &self.last[i * cs..((i + 1) * cs).min(self.last.len())];
            self.chunks[i] = if bytes.iter().all(|&b| b == 0) {
                None
            } else {
                Some(store.put_chunk(bytes)?)
            };
        }
        Ok(ChunkedImage {
            size_bytes: self.last.len() as u64,
            chunks: self.chunks.clone(),
        })
    }

    /// Before a pause, off the vessel's thread: makes the copy as large as
    /// the memory, so that the pause does not allocate and zero it (for a
    /// vessel's first checkpoint here, tens of milliseconds at 64 MiB).
    pub fn presize(&mut self, memory_bytes: usize) {
        if self.last.len() < memory_bytes {
            self.last.resize(memory_bytes, 0);
        }
    }

    /// The copy no longer matches the hashes (a checkpoint failed between
    /// its pause and its store): the next one takes every chunk, which
    /// makes it whole. The buffer stays, for the next pause.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }
}

/// The log as the last checkpoint stored it. A checkpoint's log starts at
/// an anchor, a record boundary that stays put from one checkpoint to the
/// next: the log only grows at its end, so every whole chunk after the
/// anchor is the same bytes as last time, and only the tail is hashed and
/// written. When the log's bound drops records past the anchor, a new
/// anchor is taken half the bound before the end: the checkpoint's log then
/// keeps at least the newest half of the bound, and the next re-anchoring
/// comes after as much new output again (so a vessel that prints a lot
/// rewrites its log at most once per half bound it prints).
#[derive(Default)]
pub struct LogChunks {
    anchor: u64,
    /// The whole chunks from the anchor.
    chunks: Vec<Option<Hash>>,
}

/// Packs the log up to `end` (a record boundary noted in the pause) from
/// its anchor, hashing and storing only what is new since the last time.
fn pack_log_since(
    store: &ChunkStore,
    cache: &mut LogChunks,
    log: &Mutex<VesselLog>,
    end: u64,
) -> Result<LogImage, StoreError> {
    let cs = CHUNK_SIZE_BYTES as usize;
    let (anchor, tail, end) = {
        let log = lock(log);
        let end = end.clamp(log.start, log.end());
        if cache.anchor < log.start || cache.anchor > end {
            let wanted = log.start.max(end.saturating_sub(MAX_LOG_BYTES / 2));
            cache.anchor = boundary_at_or_after(&log, wanted).min(end);
            cache.chunks.clear();
        }
        let from = cache.anchor + (cache.chunks.len() * cs) as u64;
        let from = from.min(end);
        let tail = log.bytes[(from - log.start) as usize..(end - log.start) as usize].to_vec();
        (cache.anchor, tail, end)
    };
    let mut chunks = cache.chunks.clone();
    for piece in tail.chunks(cs) {
        let h = if piece.iter().all(|&b| b == 0) {
            None
        } else {
            Some(store.put_chunk(piece)?)
        };
        chunks.push(h);
        if piece.len() == cs {
            cache.chunks.push(h);
        }
    }
    Ok(LogImage {
        start_offset: anchor,
        content: ChunkedImage {
            size_bytes: end - anchor,
            chunks,
        },
    })
}

/// The first record boundary of `log` at or after the absolute `offset`.
fn boundary_at_or_after(log: &VesselLog, offset: u64) -> u64 {
    let mut at = log.start;
    for (_, rec) in log_records(&log.bytes) {
        if at >= offset {
            break;
        }
        at += (LOG_RECORD_HEADER_BYTES + rec.len()) as u64;
    }
    at
}

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
    /// How long the last pause took.
    pub last_pause: Option<Duration>,
    /// Why the last one was skipped or failed, until one succeeds (`ps`).
    pub problem: Option<String>,
    /// How many were made durable since the vessel started here.
    pub taken: u64,
    /// How many chunks of memory the last durable one changed.
    pub last_changed: usize,
    /// The prepared module and its image, read once.
    module: Option<(Arc<PreparedModule>, ChunkedImage)>,
    /// The log's chunks as the last checkpoint stored them.
    log_chunks: Arc<Mutex<LogChunks>>,
    /// The volumes as the last checkpoint packed them: the next re-packs
    /// only the paths the WASI layer saw change since (`None`: it packs
    /// every file, as the first one does).
    volumes: Arc<Mutex<Option<Vec<VolumeImage>>>>,
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

    fn note_done(&mut self) {
        let now = Instant::now();
        let took = self.last_attempt.map_or(Duration::ZERO, |t| now - t);
        self.last_done = Some((now, took));
    }
}

/// What the pause hands over.
pub struct Taken {
    capture: crate::dock::Capture,
    changed: Vec<usize>,
    volumes: Result<Vec<VolumeImage>, String>,
    hub: Option<HubImage>,
    log_end: u64,
    at: Instant,
    pause: Duration,
    /// Keeps what this checkpoint stores from a collection until its
    /// record is written and noted ([`Host::note_checkpoint`]).
    _pin: Pin,
}

/// A durable checkpoint.
#[derive(Debug, Clone)]
pub struct Durable {
    pub image: Hash,
    pub pause: Duration,
    /// Chunks of memory that changed since the one before.
    pub changed_chunks: usize,
}

impl Host {
    /// The vessels whose next checkpoint is due at `now`: running here,
    /// owned, not moving, none in flight, and their interval (their
    /// deployment's, else `default_every`) passed since the last one.
    pub fn checkpoints_due(&self, now: Instant, default_every: Option<Duration>) -> Vec<VesselId> {
        self.vessels
            .iter()
            .filter(|(_, l)| {
                let every = match l.deployment.body.checkpoint_every_ms {
                    Some(0) => return false,
                    Some(ms) => Duration::from_millis(ms),
                    None => match default_every {
                        Some(e) => e,
                        None => return false,
                    },
                };
                let next = match l.checkpoints.last_done {
                    Some((done, took)) => done + every.max(took * CHECKPOINT_SPACING_FACTOR),
                    None => l.checkpoints.last_attempt.map_or(now, |t| t + every),
                };
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

/// A vessel's volumes, for the pause: where each lives here (with its
/// guest path), and how the last checkpoint packed them.
struct Volumes<'a> {
    dirs: &'a [(PathBuf, String)],
    last: &'a Mutex<Option<Vec<VolumeImage>>>,
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
fn in_the_pause(
    p: AtPoint<'_>,
    baseline: &Mutex<Baseline>,
    store: &ChunkStore,
    volumes: Volumes<'_>,
    log: &Mutex<VesselLog>,
    hub: Option<Arc<crate::dock::services::ingress::IngressHub>>,
    pin: Pin,
) -> Taken {
    let changed = lock(baseline).take_changes(p.memory);
    let volumes = volumes.pack(store, p.wasi);
    let log_end = lock(log).end();
    Taken {
        capture: p.capture,
        changed,
        volumes,
        hub: hub.map(|h| h.export()),
        log_end,
        at: p.at,
        pause: p.at.elapsed(),
        _pin: pin,
    }
}

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

#[cfg(test)]
mod tests {
    use protocol::fuzzing::SplitMix64;

    use super::*;
    use crate::store::{get_image, put_image};

    fn store() -> (tempfile::TempDir, ChunkStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// The oracle: every checkpoint's memory image is what chunking the
    /// whole memory afresh gives, however the memory changed and grew.
    #[test]
    fn incremental_memory_images_equal_whole_ones() {
        let (_dir, store) = store();
        let mut rng = SplitMix64(13);
        let cs = CHUNK_SIZE_BYTES as usize;
        let mut memory = vec![0u8; 8 * cs];
        let mut baseline = Baseline::default();
        for round in 0..40 {
            for _ in 0..rng.below(6) {
                let at = rng.below(memory.len() as u64) as usize;
                memory[at] = rng.below(256) as u8;
            }
            if round % 13 == 5 {
                // A page zeroed again, and the memory grows.
                memory[cs..2 * cs].fill(0);
                memory.resize(memory.len() + 3 * cs, 0);
                let end = memory.len() - 1;
                memory[end] = 7;
            }
            let changed = baseline.take_changes(&memory);
            let got = baseline.store_changes(&store, &changed).unwrap();
            let mut s = store.clone();
            assert_eq!(got, put_image(&mut s, &memory).unwrap(), "round {round}");
            let again = baseline.take_changes(&memory);
            assert!(again.is_empty(), "unchanged memory reported {again:?}");
        }
        baseline.invalidate();
        let changed = baseline.take_changes(&memory);
        let got = baseline.store_changes(&store, &changed).unwrap();
        let mut s = store.clone();
        assert_eq!(got, put_image(&mut s, &memory).unwrap(), "after invalidate");
    }

    /// Every checkpoint's log is the log's bytes from its anchor to the
    /// noted end, whole records; the anchor holds while the log keeps it,
    /// so the chunks before the tail are the ones stored last time.
    #[test]
    fn the_log_is_packed_from_a_stable_anchor_across_the_bound() {
        let (_dir, store) = store();
        let log = Mutex::new(VesselLog::default());
        let mut cache = LogChunks::default();
        let line = vec![b'x'; 40_000];
        let mut anchors = Vec::new();
        for i in 0..400u32 {
            lock(&log).append(1 + (i % 2) as u8, &line);
            if i % 7 != 0 {
                continue;
            }
            let end = lock(&log).end();
            let before = cache.chunks.clone();
            let img = pack_log_since(&store, &mut cache, &log, end).unwrap();
            let l = lock(&log);
            assert!(
                img.start_offset >= l.start && img.start_offset + img.content.size_bytes == end
            );
            let bytes = get_image(&store, &img.content, MAX_LOG_BYTES).unwrap();
            let from = (img.start_offset - l.start) as usize;
            assert_eq!(bytes, l.bytes[from..], "checkpoint {i}");
            assert!(
                log_records(&bytes)
                    .iter()
                    .map(|(_, r)| r.len() + LOG_RECORD_HEADER_BYTES)
                    .sum::<usize>()
                    == bytes.len(),
                "not whole records"
            );
            if anchors.last() == Some(&img.start_offset) {
                assert_eq!(
                    img.content.chunks[..before.len()],
                    before[..],
                    "reused chunks changed"
                );
            }
            anchors.push(img.start_offset);
            assert!(
                l.end() - img.start_offset >= MAX_LOG_BYTES / 2 - line.len() as u64
                    || img.start_offset == 0
            );
        }
        anchors.dedup();
        // 16 MB printed through an 8 MiB bound: re-anchored a few times,
        // not at every checkpoint.
        assert!(anchors.len() >= 2 && anchors.len() <= 6, "{anchors:?}");
    }
}
