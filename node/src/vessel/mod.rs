//! The vessels a node hosts, and what it keeps on disk about each.
//!
//! Main types:
//! - [`Host`]: every vessel this node runs, has run, sent away or is
//!   receiving; it owns the chunk store and the per-vessel records.
//! - [`Record`]: the one durable fact about a vessel on this node, written
//!   atomically (`vessels/<id>/record.cbor`): it runs here under an epoch
//!   from an image; it left for another node at an epoch (the source's
//!   commit point); it was prepared here but not committed yet; it ended.
//! - [`runner`]: the thread that runs one vessel in fuel slices and takes
//!   commands (copy memory for a pre-copy round, pause at the next
//!   migration point, stop) between slices, or at once from inside a host
//!   call that waits.
//! - [`image`]: turning a paused vessel into a [`VesselImage`] (snapshot,
//!   volumes, log) and back.
//! - [`log`]: the ordered stdout/stderr log, by absolute offset.
//!
//! Recovery: a node that restarts resumes each vessel it owns from the last
//! image it holds durably (the deployment itself, or the image it received
//! in a migration), with the volumes and the log of that same instant. What
//! the vessel did after that image is done again; a deterministic program
//! writes the same records at the same log offsets, so `logs` shows each
//! once.

pub mod certificate;
pub mod checkpoint;
pub mod image;
pub mod journal;
pub mod lease_gate;
pub mod log;
pub mod log_times;
pub mod restart;
pub mod retention;
pub mod runner;
pub mod tombstones;
pub mod volume_read;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::control::VesselInfo;
use protocol::limits::{MAX_DEPARTED_IMAGES, MAX_DEPLOY_MODULE_BYTES, MAX_VESSELS_PER_NODE};
use protocol::migrate::ChunkBytes;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::Hash;
use protocol::vessel::{Deployment, LogImage, Resume, VesselId, VesselImage, VESSEL_VERSION};
use tracing::{info, warn};
use wasmi::Engine;

use crate::dock::services::ingress::IngressHub;
use crate::dock::{DockConfig, Mode, VesselModule};
use crate::store::{ChunkStore, StoreError};
use lease_gate::LeaseGate;
use log::VesselLog;
use runner::Runner;

/// Held while a module is rewritten and compiled off the host's lock: the
/// rewriter and the compiler each hold a few times the module's size, and
/// concurrent deploys and migrations must not multiply that. One at a time
/// bounds it to one module of at most `MAX_DEPLOY_MODULE_BYTES`.
static PREPARE_SLOT: Mutex<()> = Mutex::new(());

/// Why the host could not do what was asked. Each names the vessel.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("vessel {vessel}: {source}")]
    Store {
        vessel: VesselId,
        source: StoreError,
    },
    #[error("vessel {vessel}: {reason}")]
    Refused {
        vessel: VesselId,
        code: RefusalCode,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HostError {
    pub fn refused(vessel: VesselId, code: RefusalCode, reason: impl Into<String>) -> HostError {
        HostError::Refused {
            vessel,
            code,
            reason: reason.into(),
        }
    }

    /// The refusal code a node answers this error with: a disk error is
    /// this node's failure, not the request's.
    pub fn code(&self) -> RefusalCode {
        match self {
            HostError::Refused { code, .. } => *code,
            HostError::Store { .. } | HostError::Io { .. } => RefusalCode::Internal,
        }
    }
}

impl From<HostError> for Refusal {
    fn from(e: HostError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub use crate::migration::record::Record;

/// A module ready to instantiate, shared by every vessel that runs it.
pub struct PreparedModule {
    pub engine: Engine,
    pub config: DockConfig,
    pub vm: VesselModule,
}

/// One vessel this node knows.
pub struct Local {
    pub deployment: Deployment,
    pub record: Record,
    pub log: Arc<Mutex<VesselLog>>,
    pub runner: Option<Runner>,
    pub migrations: u32,
    pub run_ms_before: u64,
    pub started: Instant,
    /// Why it is here.
    pub reason: String,
    /// A migration of it is in progress (from here).
    pub migrating: bool,
    /// Stopped by a user: not restarted.
    pub stopped: bool,
    /// Placement never moves it (travels in its image; see [`Host::set_pinned`]).
    pub pinned: bool,
    /// When it last arrived here by a move (placement's cool-down).
    pub last_move: Option<Instant>,
    /// Why it is here now, as placement last judged it (empty: not judged
    /// yet; `ps` shows `reason` then).
    pub why: String,
    /// Its periodic checkpoints here.
    pub checkpoints: checkpoint::Checkpoints,
    /// Whether its lease lets it run (open for a vessel without replicas).
    pub gate: Arc<LeaseGate>,
    /// It ended and its `--restart` policy runs it again ([`restart`]).
    pub restarting: Option<restart::Restarting>,
    /// How many times this host ran it again, and how many of those in a
    /// row without a healthy run between (the back-off's exponent).
    pub restarts: u32,
    pub restarts_in_a_row: u32,
}

impl Local {
    pub fn run_ms(&self) -> u64 {
        match &self.runner {
            Some(r) => self.run_ms_before + r.run_ms(),
            None => self.run_ms_before,
        }
    }

    /// The exit, once the runner has ended.
    pub fn ended(&self) -> Option<(String, Option<i32>)> {
        match &self.record {
            Record::Ended { exit, code, .. } => Some((exit.clone(), *code)),
            _ => self.runner.as_ref().and_then(|r| r.exit()),
        }
    }
}

/// Every vessel this node knows, and its store.
pub struct Host {
    pub root: PathBuf,
    pub store: ChunkStore,
    pub dock: DockConfig,
    pub vessels: BTreeMap<VesselId, Local>,
    /// Images of vessels that left, newest last: kept so that a return trip
    /// finds its chunks ([`MAX_DEPARTED_IMAGES`]).
    pub departed: VecDeque<(VesselId, Hash)>,
    /// Node-local directories that `--mount GUEST=NAME` can name.
    pub mounts: BTreeMap<String, PathBuf>,
    modules: HashMap<(Hash, bool), Arc<PreparedModule>>,
    /// This node's PeerId, for `ps`.
    pub node: String,
    /// The hubs of the service vessels that run here (`deploy --port`): the
    /// mesh's ingress feeds them. A hub is here only while its vessel runs
    /// here under a committed epoch, so no client byte is confirmed by a
    /// node that may yet lose the vessel.
    pub hubs: HashMap<VesselId, Arc<IngressHub>>,
    /// Told of every hub that starts, so that the mesh pumps its bytes.
    pub hub_started: Option<tokio::sync::mpsc::UnboundedSender<(VesselId, Arc<IngressHub>)>>,
    /// Told the id of every vessel that starts running here (as its owner):
    /// the lease driver keeps each one's lease (`mesh::lease::keep`).
    pub vessel_started: Option<tokio::sync::mpsc::UnboundedSender<VesselId>>,
    /// Where each vessel's client traffic enters the mesh (placement's
    /// input). The ingress records every client frame a vessel hosted here
    /// takes; it has a lock of its own, so a caller may clone the `Arc` and
    /// record without holding the host's lock.
    pub traffic: Arc<crate::placement::TrafficBook>,
    /// Which checkpoints are kept, the disk budget, and when the store is
    /// collected next ([`retention`]).
    pub retention: retention::Retention,
    /// What status, `/metrics` and the dashboard read (issue 16): events,
    /// counters, the latest snapshot. Shared by every owner of the host.
    pub ops: Arc<crate::ops::OpsBook>,
    /// The vessels removed by `meshnode rm`, and the epoch each was
    /// removed under ([`tombstones`]).
    pub tombstones: tombstones::TombstoneBook,
}

impl Host {
    /// Opens the host's directories under a node's data directory.
    pub fn open(
        data_root: &Path,
        node: String,
        dock: DockConfig,
        mounts: BTreeMap<String, PathBuf>,
    ) -> Result<Host, HostError> {
        let root = data_root.join("vessels");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        let store =
            ChunkStore::open(&data_root.join("store")).map_err(|source| HostError::Store {
                vessel: VesselId([0; 8]),
                source,
            })?;
        Ok(Host {
            root,
            store,
            dock,
            vessels: BTreeMap::new(),
            departed: VecDeque::new(),
            mounts,
            modules: HashMap::new(),
            node,
            hubs: HashMap::new(),
            hub_started: None,
            vessel_started: None,
            traffic: Arc::new(crate::placement::TrafficBook::default()),
            retention: retention::Retention::default(),
            ops: Arc::new(crate::ops::OpsBook::default()),
            tombstones: tombstones::TombstoneBook::load(data_root),
        })
    }

    pub fn vessel_dir(&self, id: VesselId) -> PathBuf {
        self.root.join(id.to_hex())
    }

    /// The lease certificate kept beside the vessel's record, if any.
    pub fn certificate(&self, id: VesselId) -> Option<protocol::lease::Certificate> {
        certificate::read(&self.vessel_dir(id))
    }

    fn record_path(&self, id: VesselId) -> PathBuf {
        self.vessel_dir(id).join("record.cbor")
    }

    /// Writes a vessel's record durably (temporary file, fsync, rename,
    /// fsync of the directory): what the record says has happened.
    pub fn write_record(&self, id: VesselId, record: &Record) -> Result<(), HostError> {
        let dir = self.vessel_dir(id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = self.record_path(id);
        crate::daemon::datadir::write_atomic(&path, &protocol::cbor::encode(record)).map_err(
            |e| HostError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(())
    }

    /// Reads every record under `vessels/`, for recovery at start-up.
    pub fn read_records(&self) -> Vec<(VesselId, Record)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(id) = VesselId::from_hex(&name) else {
                continue;
            };
            let path = self.record_path(id);
            match std::fs::read(&path) {
                Ok(bytes) => match protocol::cbor::decode::<Record>(&bytes) {
                    Ok(r) if self.tombstones.buries(id, r.epoch()) => {
                        // Removed while this node was away: a stale copy,
                        // never resumed nor listed.
                        info!(vessel = %id, epoch = r.epoch(), "removed (tombstone): its record goes");
                        self.delete_vessel_dir(id);
                    }
                    Ok(r) => out.push((id, r)),
                    Err(err) => warn!(vessel = %id, "{}: unreadable record: {err}", path.display()),
                },
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => warn!(vessel = %id, "{}: {err}", path.display()),
            }
        }
        out
    }

    /// The highest epoch this node knows for a vessel (0: never heard of
    /// it): its record's, or the epoch it was removed under.
    pub fn known_epoch(&self, id: VesselId) -> u64 {
        self.vessels
            .get(&id)
            .map_or(0, |l| l.record.epoch())
            .max(self.tombstones.epoch_of(id))
    }

    /// Deletes a vessel's directory (record, log, certificate, volumes),
    /// said in the log if it cannot.
    pub fn delete_vessel_dir(&self, id: VesselId) {
        let dir = self.vessel_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(vessel = %id, "cannot delete {}: {e}", dir.display());
            }
        }
    }

    /// Forgets every copy of a removed vessel below the tombstone's epoch
    /// (already verified and trusted): a runner of a stale copy is stopped,
    /// its record, log and volumes deleted, its images let go (collected
    /// with the store's next collection). A copy at or above the epoch is
    /// kept (it is no stale one). Returns whether a copy was here.
    pub fn bury(&mut self, t: &protocol::vessel::Tombstone) -> bool {
        let id = t.vessel();
        self.tombstones.insert(t.clone());
        let on_disk = std::fs::read(self.record_path(id))
            .ok()
            .and_then(|b| protocol::cbor::decode::<Record>(&b).ok());
        let known = self
            .vessels
            .get(&id)
            .map(|l| &l.record)
            .or(on_disk.as_ref());
        if known.is_some_and(|r| r.epoch() >= t.epoch()) {
            return false;
        }
        let here = known.is_some();
        if let Some(l) = self.vessels.remove(&id) {
            if let Some(r) = &l.runner {
                let _ = r.send(runner::Command::Stop);
            }
        }
        self.hubs.remove(&id);
        self.departed.retain(|(v, _)| *v != id);
        self.delete_vessel_dir(id);
        info!(vessel = %id, epoch = t.epoch(), "removed: its record, log and volumes are deleted");
        here
    }

    /// The module of a deployment, instrumented, from the cache or the store.
    pub fn module(&mut self, original: Vec<u8>, name: &str) -> Result<Arc<PreparedModule>, String> {
        let h = Hash::of(&original);
        if let Some(m) = self.modules.get(&(h, false)) {
            return Ok(m.clone());
        }
        let (engine, config, vm) = VesselModule::prepare_with_engine(
            &self.dock,
            Path::new(name),
            original,
            Mode::Migratable { countdown: false },
        )
        .map_err(|e| e.to_string())?;
        let m = Arc::new(PreparedModule { engine, config, vm });
        // Bounded: a node runs a handful of distinct modules.
        if self.modules.len() >= 32 {
            self.modules.clear();
        }
        self.modules.insert((h, false), m.clone());
        Ok(m)
    }

    /// Instruments and compiles a module into the cache without holding the
    /// host's lock while it works: a destination does this during the
    /// pre-copy rounds, so that the pause does not pay for it.
    /// Returns the prepared module (None if it does not prepare).
    pub fn prewarm_module(host: &Mutex<Host>, original: Vec<u8>) -> Option<Arc<PreparedModule>> {
        Self::prepare_module_unlocked(host, original, "prewarm").ok()
    }

    /// Checks, instruments and compiles a module into the cache without
    /// holding the host's lock while it works, so that a large module's
    /// deploy does not stall `peers`, `ps` and every other command (issue
    /// 14, item 12). A module over this node's limits (its size, then the
    /// dock's declared-table and memory limits) is refused before any work
    /// starts. One module is prepared at a time ([`PREPARE_SLOT`]).
    pub fn prepare_module_unlocked(
        host: &Mutex<Host>,
        original: Vec<u8>,
        name: &str,
    ) -> Result<Arc<PreparedModule>, (RefusalCode, String)> {
        if original.len() > MAX_DEPLOY_MODULE_BYTES {
            return Err((
                RefusalCode::Limit,
                format!(
                    "module of {} bytes, over the limit of {MAX_DEPLOY_MODULE_BYTES} bytes",
                    original.len()
                ),
            ));
        }
        let h = Hash::of(&original);
        let dock = {
            let guard = host.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = guard.modules.get(&(h, false)) {
                return Ok(m.clone());
            }
            guard.dock.clone()
        };
        crate::dock::limits::check_declared(Path::new(name), &original, dock.memory_limit())
            .map_err(|e| (RefusalCode::Limit, e.to_string()))?;
        let (engine, config, vm) = {
            let _slot = PREPARE_SLOT.lock().unwrap_or_else(|p| p.into_inner());
            VesselModule::prepare_with_engine(
                &dock,
                Path::new(name),
                original,
                Mode::Migratable { countdown: false },
            )
            .map_err(|e| (RefusalCode::Invalid, e.to_string()))?
        };
        let mut guard = host.lock().unwrap_or_else(|p| p.into_inner());
        if guard.modules.len() >= 32 {
            guard.modules.clear();
        }
        Ok(guard
            .modules
            .entry((h, false))
            .or_insert_with(|| Arc::new(PreparedModule { engine, config, vm }))
            .clone())
    }

    /// Remembers that a vessel's image now lives elsewhere, keeping the last
    /// [`MAX_DEPARTED_IMAGES`], and evicts chunks no kept image names.
    pub fn remember_departed(&mut self, vessel: VesselId, image: Hash) {
        // One image per vessel: the one it left with last time is what a
        // return trip shares most with.
        self.departed.retain(|(v, _)| *v != vessel);
        self.departed.push_back((vessel, image));
        while self.departed.len() > MAX_DEPARTED_IMAGES {
            self.departed.pop_front();
        }
    }

    /// Every image that must keep its chunks: vessels here (running,
    /// prepared, ended), the newest checkpoints of those that run here
    /// ([`Host::note_checkpoint`]), and the departed LRU.
    pub fn live_images(&self) -> Vec<Hash> {
        // A vessel that left keeps its chunks only while the departed LRU
        // remembers it.
        let mut keep: Vec<Hash> = self
            .vessels
            .values()
            .filter(|l| !matches!(l.record, Record::Left { .. }))
            .map(|l| l.record.image())
            .collect();
        keep.extend(self.kept_checkpoint_images());
        keep.extend(self.departed.iter().map(|(_, h)| *h));
        keep
    }

    /// The images of the vessels prepared here, from their records on disk.
    fn prepared_images(&self) -> impl Iterator<Item = Hash> {
        self.read_records()
            .into_iter()
            .filter(|(_, r)| matches!(r, Record::Prepared { .. }))
            .map(|(_, r)| r.image())
    }

    /// Removes chunks, manifests and images that no kept image names: the
    /// vessels here, the prepared ones on disk, and the departed LRU. Call
    /// only while no migration is arriving (its chunks are named by no
    /// image yet) unless every batch is written under a pin (see
    /// [`Host::collection_if_due`]).
    pub fn evict(&self) -> usize {
        let mut keep = self.live_images();
        keep.extend(self.prepared_images());
        match self.store.retain_images(&keep) {
            Ok(n) => n,
            Err(e) => {
                warn!("cannot evict from the chunk store: {e}");
                0
            }
        }
    }

    /// `ps` rows for the vessels this node runs or knows the end of.
    pub fn list(&self) -> Vec<VesselInfo> {
        self.vessels
            .iter()
            .map(|(id, l)| {
                let (state, exit_code) = if l.migrating {
                    ("migrating".to_string(), None)
                } else if l.stopped {
                    ("stopped".to_string(), None)
                } else if let Some(r) = &l.restarting {
                    (restart::state_of(r, Instant::now()), None)
                } else {
                    match (&l.record, l.ended()) {
                        (Record::Left { acked: true, .. }, _) => ("left".to_string(), None),
                        (Record::Left { acked: false, .. }, _) => ("waiting".to_string(), None),
                        (Record::Prepared { .. }, _) => ("prepared".to_string(), None),
                        (Record::Fenced { .. }, _) => ("fenced".to_string(), None),
                        (_, None) if l.runner.as_ref().is_some_and(|r| r.held()) => {
                            ("held".to_string(), None)
                        }
                        (_, Some((exit, code))) => (
                            if code.is_some() {
                                "exited".to_string()
                            } else {
                                format!("failed: {exit}")
                            },
                            code,
                        ),
                        _ => ("running".to_string(), None),
                    }
                };
                let why = if let Some(r) = l.restarting.as_ref().filter(|_| !l.stopped) {
                    format!("its last run ended: {}", r.exit)
                } else if l.pinned && state == "running" {
                    crate::placement::Why::Pinned.to_string()
                } else if l.why.is_empty() || state != "running" {
                    l.reason.clone()
                } else {
                    l.why.clone()
                };
                let replicas_wanted = (state == "running")
                    .then(|| protocol::replica::replicas_of(l.deployment.body.replicas));
                let checkpoint_age_ms = l
                    .checkpoints
                    .last_durable
                    .filter(|_| state == "running")
                    .map(|(at, _)| at.elapsed().as_millis() as u64);
                VesselInfo {
                    id: *id,
                    name: l.deployment.body.name.clone(),
                    node: self.node.clone(),
                    state,
                    epoch: l.record.epoch(),
                    run_ms: l.run_ms(),
                    migrations: l.migrations,
                    exit_code,
                    reason: l.reason.clone(),
                    why,
                    pinned: l.pinned,
                    checkpoint_age_ms,
                    checkpoint_problem: l.checkpoints.problem.clone(),
                    lease: None,
                    // The replicas are the mesh's (`mesh::replicate`), which
                    // fills them in for the vessels it ships.
                    replicas_wanted,
                    replicas: Vec::new(),
                    replica_age_ms: None,
                    replication_problem: None,
                    replica_bytes_sent: 0,
                    replica_chunks_sent: 0,
                    durability: l
                        .deployment
                        .body
                        .sync_interval_ms()
                        .map(|ms| format!("sync {ms}ms")),
                    ports: l.deployment.body.ports.clone(),
                    max_memory_bytes: l.deployment.body.max_memory_bytes,
                    restart: l.deployment.body.restart.map(|p| p.name().to_string()),
                    restarts: l.restarts,
                }
            })
            .collect()
    }

    pub fn running_count(&self) -> usize {
        self.vessels
            .values()
            .filter(|l| l.runner.as_ref().is_some_and(|r| r.exit().is_none()))
            .count()
    }

    /// Refuses a deployment or migration that would exceed this node's
    /// vessel limit.
    pub fn check_capacity(&self, id: VesselId) -> Result<(), HostError> {
        if self.running_count() >= MAX_VESSELS_PER_NODE {
            return Err(HostError::refused(
                id,
                RefusalCode::Full,
                format!("this node runs {MAX_VESSELS_PER_NODE} vessels already"),
            ));
        }
        Ok(())
    }

    /// Accepts a deployment (signature and trust checked by the caller):
    /// stores module and volume chunks, writes the first image and record
    /// durably, and starts the vessel.
    pub fn deploy(
        &mut self,
        deployment: Deployment,
        module: Vec<u8>,
        volume_chunks: Vec<ChunkBytes>,
        reason: String,
        pinned: bool,
    ) -> Result<VesselId, HostError> {
        let id = deployment.body.vessel;
        if self.vessels.contains_key(&id) {
            return Err(HostError::refused(
                id,
                RefusalCode::Exists,
                "a vessel with this id exists already",
            ));
        }
        self.check_capacity(id)?;
        if module.len() > MAX_DEPLOY_MODULE_BYTES {
            return Err(HostError::refused(
                id,
                RefusalCode::Limit,
                format!(
                    "module of {} bytes, over the limit of {MAX_DEPLOY_MODULE_BYTES} bytes",
                    module.len()
                ),
            ));
        }
        if Hash::of(&module) != deployment.body.module_hash {
            return Err(HostError::refused(
                id,
                RefusalCode::Tampered,
                "the module does not hash to what the deployment names",
            ));
        }
        let store_err = |source| HostError::Store { vessel: id, source };
        for c in &volume_chunks {
            self.store.put_chunk(&c.0).map_err(store_err)?;
        }
        for v in &deployment.body.volumes {
            for h in v.chunks() {
                if !self.store.has_chunk(&h) {
                    return Err(HostError::refused(
                        id,
                        RefusalCode::MissingChunks,
                        format!("volume {}: chunk {h} was not uploaded", v.guest),
                    ));
                }
            }
        }
        for (guest, name) in &deployment.body.mounts {
            if !self.mounts.contains_key(name) {
                return Err(HostError::refused(
                    id,
                    RefusalCode::MissingMount,
                    format!("mount {guest}={name}: this node maps no directory named `{name}` (add it under [mounts] in its config.toml)"),
                ));
            }
        }
        // Refuse what the rewriter cannot make migratable before anything
        // is written.
        self.module(module.clone(), &deployment.body.name)
            .map_err(|e| HostError::refused(id, RefusalCode::Invalid, e))?;
        let module_image = crate::store::put_image(&mut self.store, &module).map_err(store_err)?;
        let image = VesselImage {
            module: module_image,
            version: VESSEL_VERSION,
            volumes: deployment.body.volumes.clone(),
            deployment,
            epoch: 1,
            resume: Resume::Fresh,
            manifest: Vec::new(),
            log: LogImage::default(),
            migrations: 0,
            run_ms: 0,
            placement: protocol::vessel::VesselPlacement {
                pinned,
                last_move: String::new(),
            },
            hub: Default::default(),
        };
        let (bytes, h) = image.encode_and_hash();
        self.store.put_image_doc(&bytes, true).map_err(store_err)?;
        let record = Record::Owned { epoch: 1, image: h };
        self.write_record(id, &record)?;
        self.start_from_image(image, record, reason, None)?;
        info!(vessel = %id, "deployed");
        Ok(id)
    }

    /// Starts (or restarts) a vessel from an image this node holds. With
    /// `prepared`, the vessel was already re-created (a migration's prepare
    /// step) and only needs its thread.
    pub fn start_from_image(
        &mut self,
        image: VesselImage,
        record: Record,
        reason: String,
        prepared: Option<image::Ready>,
    ) -> Result<(), HostError> {
        let id = image.vessel();
        let ready = match prepared {
            Some(r) => r,
            None => image::ready(self, &image)?,
        };
        let checkpoints = checkpoint::Checkpoints::default();
        if let Some(image) = &ready.memory_image {
            seed_baseline(&checkpoints, &ready.vessel, image);
        }
        // A vessel with a certificate for the epoch it starts at runs only
        // under its lease: shut until the first grant (a restart wins the
        // lease back before the vessel runs again).
        let leased = match &record {
            Record::Owned { epoch, .. } => {
                self.certificate(id).is_some_and(|c| c.body.epoch == *epoch)
            }
            _ => false,
        };
        let gate = if leased {
            LeaseGate::shut()
        } else {
            LeaseGate::open()
        };
        if image.deployment.body.sync_interval_ms().is_some() {
            // Output commit (`mesh::output_commit`): a sync vessel starting
            // here releases nothing until every replica holds a checkpoint
            // of its own: what it starts from may be newer than they hold.
            crate::sync::lock(&ready.log).released_end = Some(0);
            if let Some(hub) = &ready.ingress {
                hub.hold_output();
            }
        }
        let runner = runner::spawn(
            id,
            ready.vessel,
            self.vessel_dir(id),
            ready.log.clone(),
            gate.clone(),
        )
        .map_err(|e| {
            HostError::refused(
                id,
                RefusalCode::Internal,
                format!("cannot start its thread: {e}"),
            )
        })?;
        if let Some(old) = self.hubs.remove(&id) {
            old.stop();
        }
        if let Some(hub) = ready.ingress {
            self.hubs.insert(id, hub.clone());
            if let Some(tx) = &self.hub_started {
                let _ = tx.send((id, hub));
            }
        }
        self.vessels.insert(
            id,
            Local {
                deployment: image.deployment.clone(),
                record,
                log: ready.log,
                runner: Some(runner),
                migrations: image.migrations,
                run_ms_before: image.run_ms,
                started: Instant::now(),
                reason,
                migrating: false,
                stopped: false,
                pinned: image.placement.pinned,
                last_move: None,
                why: String::new(),
                checkpoints,
                gate,
                restarting: None,
                restarts: 0,
                restarts_in_a_row: 0,
            },
        );
        if let Some(tx) = &self.vessel_started {
            let _ = tx.send(id);
        }
        Ok(())
    }

    /// Pins (or unpins) a vessel that runs here. The pin is written into a
    /// copy of the image the vessel restarts from (same chunks, one small
    /// document) and the record is pointed at it, durably: so it holds
    /// after a restart here, and every later image (a move, a clean stop)
    /// carries it on.
    pub fn set_pinned(&mut self, id: VesselId, pinned: bool) -> Result<(), HostError> {
        let l = self.vessels.get(&id).ok_or_else(|| {
            HostError::refused(id, RefusalCode::UnknownVessel, "it is not on this node")
        })?;
        if l.migrating {
            return Err(HostError::refused(
                id,
                RefusalCode::Busy,
                "it is migrating; pin it once it has arrived",
            ));
        }
        let Record::Owned { epoch, image } = l.record.clone() else {
            return Err(HostError::refused(
                id,
                RefusalCode::NotOwner,
                "it does not run on this node",
            ));
        };
        if l.pinned == pinned {
            return Ok(());
        }
        let store_err = |source| HostError::Store { vessel: id, source };
        let bytes = self.store.get_image_doc(&image).map_err(store_err)?;
        let mut img: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| {
            HostError::refused(id, RefusalCode::Internal, format!("its image: {e}"))
        })?;
        img.placement.pinned = pinned;
        let (bytes, h) = img.encode_and_hash();
        self.store.put_image_doc(&bytes, true).map_err(store_err)?;
        let record = Record::Owned { epoch, image: h };
        self.write_record(id, &record)?;
        let l = self.vessels.get_mut(&id).expect("looked up above");
        l.record = record;
        l.pinned = pinned;
        l.why.clear();
        info!(vessel = %id, pinned, "pin changed by a user");
        Ok(())
    }

    /// Finds a vessel by id, id prefix or name, among those here.
    pub fn find(&self, reference: &str) -> Option<VesselId> {
        find_in(
            self.vessels
                .iter()
                .map(|(id, l)| (*id, l.deployment.body.name.as_str())),
            reference,
        )
    }

    /// Records what became of each runner that ended since the last call.
    pub fn reap(&mut self) {
        self.restart_due();
        let ids: Vec<VesselId> = self.vessels.keys().copied().collect();
        for id in ids {
            let l = self.vessels.get(&id).expect("listed");
            let (Record::Owned { epoch, image }, Some((exit, code))) =
                (l.record.clone(), l.runner.as_ref().and_then(|r| r.exit()))
            else {
                continue;
            };
            if l.migrating || self.plan_restart(id, &exit, code) {
                continue;
            }
            let record = Record::Ended {
                epoch,
                image,
                exit: exit.clone(),
                code,
            };
            if let Err(e) = self.write_record(id, &record) {
                warn!(vessel = %id, "cannot record its end: {e}");
                continue;
            }
            if let Some(l) = self.vessels.get_mut(&id) {
                info!(vessel = %id, "ended: {exit}");
                l.record = record;
            }
        }
    }
}

/// Matches a user's reference: a full id, a unique id prefix (at least 4
/// hex digits), or a unique name.
pub fn find_in<'a>(
    items: impl Iterator<Item = (VesselId, &'a str)>,
    reference: &str,
) -> Option<VesselId> {
    let reference = reference.trim();
    let items: Vec<(VesselId, &str)> = items.collect();
    if let Some(id) = VesselId::from_hex(reference) {
        return items.iter().find(|(i, _)| *i == id).map(|(i, _)| *i);
    }
    let by_name: Vec<VesselId> = items
        .iter()
        .filter(|(_, n)| *n == reference)
        .map(|(i, _)| *i)
        .collect();
    if by_name.len() == 1 {
        return Some(by_name[0]);
    }
    if reference.len() >= 4 {
        let by_prefix: Vec<VesselId> = items
            .iter()
            .filter(|(i, _)| i.to_hex().starts_with(reference))
            .map(|(i, _)| *i)
            .collect();
        if by_prefix.len() == 1 {
            return Some(by_prefix[0]);
        }
    }
    None
}

/// Seeds the checkpoint baseline of a vessel resumed from a memory image
/// (an arrival, a restart), before its thread runs it: write tracking is
/// armed now, so its first checkpoint here compares only what it writes
/// from now on (`Baseline::seed`).
fn seed_baseline(
    checkpoints: &checkpoint::Checkpoints,
    vessel: &crate::dock::Vessel,
    image: &protocol::snapshot::ChunkedImage,
) {
    if image.size_bytes != vessel.memory().len() as u64 {
        return;
    }
    let (_, mark) = vessel.write_tracker().look(vessel.memory(), None);
    crate::sync::lock(&checkpoints.baseline).seed(image, mark);
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::snapshot::ChunkedImage;
    use protocol::vessel::DeploymentBody;

    fn image(store: &ChunkStore, vessel: u8, content: &[u8]) -> Hash {
        let chunk = store.put_chunk(content).unwrap();
        let user = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let img = VesselImage {
            version: VESSEL_VERSION,
            deployment: Deployment::sign(
                &user,
                DeploymentBody {
                    version: VESSEL_VERSION,
                    vessel: VesselId([vessel; 8]),
                    name: "v".into(),
                    module_hash: Hash::of(content),
                    args: vec![],
                    env: vec![],
                    volumes: vec![],
                    mounts: vec![],
                    ports: vec![],
                    checkpoint_every_ms: None,
                    replicas: None,
                    durability: None,
                    max_memory_bytes: None,
                    restart: None,
                },
            ),
            epoch: 1,
            resume: Resume::Fresh,
            module: ChunkedImage {
                size_bytes: content.len() as u64,
                chunks: vec![Some(chunk)],
            },
            manifest: vec![],
            volumes: vec![],
            log: LogImage::default(),
            migrations: 0,
            run_ms: 0,
            placement: Default::default(),
            hub: Default::default(),
        };
        let (bytes, _) = img.encode_and_hash();
        store.put_image_doc(&bytes, false).unwrap()
    }

    /// Regression: eviction after a move out dropped the memory chunks of
    /// the image the vessel left with (the source never stores the manifest
    /// apart from the image), so a return trip sent everything again.
    #[test]
    fn eviction_keeps_the_memory_of_a_departed_image() {
        use protocol::snapshot::{Entry, Manifest, ModuleRef, VesselLimits, MANIFEST_VERSION};
        let dir = tempfile::tempdir().unwrap();
        let mut host = Host::open(
            dir.path(),
            "n".into(),
            DockConfig::default(),
            BTreeMap::new(),
        )
        .unwrap();
        let mem = host.store.put_chunk(b"memory chunk").unwrap();
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            module: ModuleRef {
                original_hash: Hash::of(b"m"),
                original: ChunkedImage::default(),
                rewriter_version: "x".into(),
                countdown: false,
                instrumented_hash: Hash::of(b"i"),
            },
            memory: ChunkedImage {
                size_bytes: 12,
                chunks: vec![Some(mem)],
            },
            globals: vec![],
            data_dropped: 0,
            entry: Entry::Main,
            frames: vec![],
            wasi: crate::dock::wasi::WasiCtx::new(Default::default())
                .unwrap()
                .capture_state()
                .unwrap(),
            limits: VesselLimits {
                max_memory_bytes: 1 << 20,
                max_call_depth: 100,
            },
            points_passed: 0,
        };
        let (mbytes, mh) = manifest.encode_and_hash();
        let h = image(&host.store, 3, b"module");
        let mut img: VesselImage =
            protocol::cbor::decode(&host.store.get_image_doc(&h).unwrap()).unwrap();
        img.resume = Resume::Snapshot(mh);
        img.manifest = mbytes;
        let (bytes, ih) = img.encode_and_hash();
        host.store.put_image_doc(&bytes, false).unwrap();
        host.remember_departed(VesselId([3; 8]), ih);
        host.evict();
        assert!(
            host.store.has_chunk(&mem),
            "the departed image's memory was evicted"
        );
    }

    /// The store stays bounded: a vessel that left keeps its last image
    /// (and chunks) while the LRU remembers it; older images of it, and
    /// vessels the LRU forgot, are evicted.
    #[test]
    fn departed_images_are_bounded_and_the_rest_is_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = Host::open(
            dir.path(),
            "n".into(),
            DockConfig::default(),
            BTreeMap::new(),
        )
        .unwrap();
        let first = image(&host.store, 0, b"first visit");
        let again = image(&host.store, 0, b"second visit");
        host.remember_departed(VesselId([0; 8]), first);
        host.remember_departed(VesselId([0; 8]), again);
        assert_eq!(host.departed.len(), 1, "one image per vessel");
        let mut others = Vec::new();
        for v in 1..=(MAX_DEPARTED_IMAGES as u8 + 1) {
            let h = image(&host.store, v, &[v; 100]);
            host.remember_departed(VesselId([v; 8]), h);
            others.push(h);
        }
        assert_eq!(host.departed.len(), MAX_DEPARTED_IMAGES);
        assert!(host.evict() > 0);
        assert!(!host.store.has_chunk(&Hash::of(b"first visit")));
        // Vessel 0 and vessel 1 were the oldest: forgotten, evicted.
        assert!(!host.store.has_chunk(&Hash::of(b"second visit")));
        assert!(!host.store.has_chunk(&Hash::of(&[1u8; 100])));
        assert!(host.store.get_image_doc(&others[0]).is_err());
        // The newest are all there.
        let last = MAX_DEPARTED_IMAGES as u8 + 1;
        assert!(host.store.has_chunk(&Hash::of(&[last; 100])));
        assert!(host.store.get_image_doc(others.last().unwrap()).is_ok());
    }
}
