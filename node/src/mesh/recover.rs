//! Start-up recovery from the durable records, and the checkpoint of every
//! vessel at a clean stop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::PeerIdBytes;
use protocol::migrate::{Decision, DecisionBody, PEER_PROTOCOL_VERSION};
use protocol::vessel::{Resume, VesselId, VesselImage, VesselPlacement, VESSEL_VERSION};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::migrate::send_commit;
use super::state::NodeState;
use super::vessels::Migrator;
use crate::migration::record::{recovery_of, Recovery};
use crate::sync::lock;
use crate::vessel::image::{self, MemoryTracker};
use crate::vessel::runner::Command as RunnerCmd;
use crate::vessel::{Host, Record};

/// At start-up: resume every vessel this node owns from its last durable
/// image, list the ones that ended here, and finish commits that were
/// decided but not confirmed (the destination resumes the vessel when it
/// hears the commit, however late).
pub fn recover(state: &NodeState) {
    let mesh = state.migrator();
    let records = lock(&mesh.host).read_records();
    for (id, record) in records {
        let recovery = recovery_of(&record);
        // A committed move is finished first, image or not: the
        // destination holds everything it needs.
        if let Recovery::FinishCommit { to } = &recovery {
            finish_commit(&mesh, id, &record, to);
        }
        // A prepared vessel waits for its source's commit (see
        // `serve::commit`), and never runs alone.
        if recovery == Recovery::AwaitCommit {
            continue;
        }
        let mut h = lock(&mesh.host);
        let Some(image) = image_of(&h, id, &record) else {
            continue;
        };
        match recovery {
            Recovery::Resume => {
                let reason = "resumed after a restart".to_string();
                match h.start_from_image(image, record.clone(), reason, None) {
                    Ok(()) => {
                        info!(vessel = %id, epoch = record.epoch(), "resumed after a restart")
                    }
                    Err(e) => warn!(vessel = %id, "cannot resume: {e}"),
                }
            }
            Recovery::FinishCommit { .. } | Recovery::Remember => {
                remember(&mut h, id, record, image)
            }
            Recovery::AwaitCommit => {}
        }
    }
}

/// Sends, until the destination confirms, the commit this node decided
/// before it stopped (its `Left` record).
fn finish_commit(mesh: &Migrator, id: VesselId, record: &Record, to: &[u8]) {
    let Ok(to) = PeerId::from_bytes(to) else {
        warn!(vessel = %id, "its Left record names no node; the commit cannot be sent");
        return;
    };
    let decision = Decision::sign(
        &mesh.signing,
        DecisionBody {
            version: PEER_PROTOCOL_VERSION,
            vessel: id,
            epoch: record.epoch(),
            image: record.image(),
            source: PeerIdBytes(mesh.me.to_bytes()),
            destination: PeerIdBytes(to.to_bytes()),
            commit: true,
        },
    );
    info!(vessel = %id, %to, "finishing a commit decided before the restart");
    let m = mesh.clone();
    tokio::spawn(async move {
        send_commit(&m, id, to, decision).await;
    });
}

/// The image a record names, if this node has it whole.
fn image_of(h: &Host, id: VesselId, record: &Record) -> Option<VesselImage> {
    match h.store.get_image_doc(&record.image()) {
        Ok(bytes) => match protocol::cbor::decode::<VesselImage>(&bytes) {
            Ok(i) => Some(i),
            Err(e) => {
                warn!(vessel = %id, "its image does not decode: {e}");
                None
            }
        },
        Err(e) => {
            // A vessel that left may have had its image evicted here.
            if !matches!(record, Record::Left { .. }) {
                warn!(vessel = %id, "its image is missing: {e}");
            }
            None
        }
    }
}

/// History, for `ps` and `logs`: a vessel that left or ended here, listed
/// with its log and never run.
fn remember(h: &mut Host, id: VesselId, record: Record, image: VesselImage) {
    let log = match crate::store::get_image(
        &h.store,
        &image.log.content,
        protocol::limits::MAX_LOG_BYTES,
    ) {
        // With the generations a crash here left (`logs --generation`).
        Ok(bytes) => {
            crate::vessel::journal::listed(&h.vessel_dir(id), image.log.start_offset, bytes)
        }
        Err(_) => Default::default(),
    };
    let left = matches!(&record, Record::Left { .. });
    h.vessels.insert(
        id,
        crate::vessel::Local {
            deployment: image.deployment.clone(),
            stopped: matches!(&record, Record::Ended { exit, .. } if exit == "stopped"),
            record: record.clone(),
            log: Arc::new(Mutex::new(log)),
            runner: None,
            migrations: image.migrations,
            run_ms_before: image.run_ms,
            started: Instant::now(),
            reason: "known from before a restart".into(),
            migrating: false,
            pinned: image.placement.pinned,
            last_move: None,
            why: String::new(),
            checkpoints: Default::default(),
            gate: crate::vessel::lease_gate::LeaseGate::open(),
            restarting: None,
            restarts: 0,
            restarts_in_a_row: 0,
        },
    );
    if left {
        h.remember_departed(id, record.image());
    }
}

/// How long a clean stop waits for one vessel to reach a migration point.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// At a clean stop (Ctrl-C, SIGTERM): every vessel running here is paused
/// at its next migration point and written down as a durable image, so the
/// next start resumes it exactly there. One that cannot be paused in time
/// resumes from its last durable image instead, as after a crash.
pub async fn checkpoint_all(host: &Arc<Mutex<Host>>) {
    let ids: Vec<VesselId> = lock(host)
        .vessels
        .iter()
        .filter(|(_, l)| {
            matches!(l.record, Record::Owned { .. })
                && !l.migrating
                && l.runner.as_ref().is_some_and(|r| r.exit().is_none())
        })
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        match tokio::time::timeout(CHECKPOINT_TIMEOUT, checkpoint(host, id)).await {
            Ok(Ok(())) => info!(vessel = %id, "checkpointed: the next start continues it here"),
            Ok(Err(e)) => {
                warn!(vessel = %id, "cannot checkpoint it ({e}); the next start resumes it from its last image")
            }
            Err(_) => warn!(
                vessel = %id,
                "it did not reach a migration point within {} s; the next start resumes it from its last image",
                CHECKPOINT_TIMEOUT.as_secs()
            ),
        }
    }
}

pub(super) async fn checkpoint(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    {
        let h = lock(host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        l.runner
            .as_ref()
            .ok_or("not running")?
            .send(RunnerCmd::Pause(tx))?;
    }
    let paused = rx
        .await
        .map_err(|_| "the vessel ended first".to_string())??;
    let host = host.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut h = lock(&host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        let epoch = l.record.epoch();
        let deployment = l.deployment.clone();
        let (migrations, run_ms) = (l.migrations, l.run_ms());
        let pinned = l.pinned;
        let log = l.log.clone();
        let old = h
            .store
            .get_image_doc(&l.record.image())
            .map_err(|e| e.to_string())?;
        let old: VesselImage = protocol::cbor::decode(&old).map_err(|e| e.to_string())?;
        let module_bytes =
            crate::store::get_image(&h.store, &old.module, protocol::limits::MAX_MODULE_BYTES)
                .map_err(|e| e.to_string())?;
        let module = h.module(module_bytes, &deployment.body.name)?;
        let store = h.store.clone();
        let mut tracker = MemoryTracker::default();
        tracker
            .update_final(&store, paused.vessel.memory())
            .map_err(|e| e.to_string())?;
        let manifest = image::manifest_of(&module, &old.module, &paused.capture, tracker.image)?;
        let (mbytes, mh) = manifest.encode_and_hash();
        let dirs = image::volume_dirs(&h.vessel_dir(id), deployment.body.volumes.len());
        let volumes = deployment
            .body
            .volumes
            .iter()
            .zip(&dirs)
            .map(|(v, d)| image::pack_volume(&store, d, &v.guest))
            .collect::<Result<Vec<_>, _>>()?;
        let log = image::pack_log(&store, &lock(&log))?;
        let hub = h
            .hubs
            .get(&id)
            .map(|h| h.freeze_and_export())
            .unwrap_or_default();
        let img = VesselImage {
            version: VESSEL_VERSION,
            deployment,
            epoch,
            resume: Resume::Snapshot(mh),
            module: old.module,
            manifest: mbytes.clone(),
            volumes,
            log,
            migrations,
            run_ms,
            placement: VesselPlacement {
                pinned,
                last_move: old.placement.last_move.clone(),
            },
            hub,
        };
        let (bytes, ih) = img.encode_and_hash();
        store
            .put_manifest_bytes_unsynced(&mbytes)
            .map_err(|e| e.to_string())?;
        store
            .put_image_doc(&bytes, false)
            .map_err(|e| e.to_string())?;
        store.sync().map_err(|e| e.to_string())?;
        h.write_record(id, &Record::Owned { epoch, image: ih })
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}
