//! The source side of a migration: the driver that performs what the
//! migration layer's source machine decides, with the vessel's runner, the
//! chunk store and the link to the destination.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;
use protocol::control::{MigrationPhase, MigrationReport, PeerIdBytes};
use protocol::limits::MAX_CHUNKS_PER_BATCH;
use protocol::membership::Nonce;
use protocol::migrate::{
    ChunkBytes, Decision, DecisionBody, MigrationRequest, MigrationResponse, NamedChunk, Offer,
    OfferBody, OfferKind, PEER_PROTOCOL_VERSION,
};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::{ChunkedImage, Hash, Manifest};
use protocol::vessel::{Resume, VesselId, VesselImage, VesselPlacement, VESSEL_VERSION};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::faults::{fault_active, fault_point};
use super::link::{RequestError, TRANSPORT_RETRIES};
use super::vessels::{
    Migrator, CHUNK_BATCHES_IN_FLIGHT, MAX_DEPARTED_IMAGES_BEFORE_EVICT, WARM_COPY_WAIT,
};
use crate::migration::record::check_may_migrate;
use crate::migration::source::{
    Input, Output, Source, MAX_WARM_ROUNDS, NONCE_RETRIES, WARM_CONVERGED_CHUNKS,
};
use crate::migration::ErrorKind;
use crate::sync::lock;
use crate::vessel::image::{self, MemoryTracker};
use crate::vessel::runner::{self, Command as RunnerCmd};
use crate::vessel::Record;

// ---------------------------------------------------------------------------
// The source side.

pub(super) fn set_report(mesh: &Migrator, id: VesselId, f: impl FnOnce(&mut MigrationReport)) {
    if let Some(r) = lock(&mesh.migrations).get_mut(&id) {
        f(r);
    }
}

/// A placement note as it travels: one line, bounded.
pub(super) fn note(why: &str) -> String {
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

/// The note of a move a user asked for.
pub(super) fn by_hand(mesh: &Migrator) -> String {
    format!("migrated here by hand from {}", mesh.me)
}

/// Starts moving a vessel that runs here to `to`, in a task. `why` travels
/// with it: the destination's `ps` shows it as how the vessel got there.
pub fn start_migration(
    mesh: &Migrator,
    id: VesselId,
    to: PeerId,
    why: &str,
) -> Result<(), Refusal> {
    {
        let mut h = lock(&mesh.host);
        let l = h.vessels.get_mut(&id);
        let record = l.as_ref().map(|l| &l.record);
        let running = l
            .as_ref()
            .is_some_and(|l| l.ended().is_none() && l.runner.is_some());
        let migrating = l.as_ref().is_some_and(|l| l.migrating);
        check_may_migrate(record, id, running, migrating)?;
        let l = l.expect("checked: the vessel is here");
        l.migrating = true;
    }
    lock(&mesh.migrations).insert(
        id,
        MigrationReport {
            vessel: id,
            from: mesh.me.to_string(),
            to: to.to_string(),
            phase: MigrationPhase::Warming,
            rounds: 0,
            bytes_sent: 0,
            chunks_sent: 0,
            chunks_skipped: 0,
            downtime_us: None,
            total_ms: 0,
            error: None,
        },
    );
    let mesh = mesh.clone();
    let why = why.to_string();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = migrate(&mesh, id, to, &why).await;
        let total_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                set_report(&mesh, id, |r| {
                    r.phase = MigrationPhase::Done;
                    r.total_ms = total_ms;
                });
                info!(vessel = %id, %to, total_ms, "migration done");
            }
            Err(e) => {
                warn!(vessel = %id, %to, "migration aborted: {e}");
                set_report(&mesh, id, |r| {
                    r.phase = MigrationPhase::Aborted;
                    r.error = Some(e);
                    r.total_ms = total_ms;
                });
            }
        }
        if let Some(l) = lock(&mesh.host).vessels.get_mut(&id) {
            l.migrating = false;
        }
    });
    Ok(())
}

/// Offers an image and returns the chunks the destination lacks. `nonce`
/// holds the nonce the destination gave with its last answer (used once,
/// then replaced by the one this answer brings); without one, it asks.
/// What an offer is for.
#[derive(Debug, Clone, Copy)]
pub(super) struct OfferSpec {
    to: PeerId,
    kind: OfferKind,
    id: VesselId,
    epoch: u64,
}

pub(super) async fn offer(
    mesh: &Migrator,
    to: PeerId,
    kind: OfferKind,
    id: VesselId,
    epoch: u64,
    image: Vec<u8>,
    nonce: &mut Option<Nonce>,
) -> Result<Vec<Hash>, RequestError> {
    let cached = nonce.take();
    let had_cached = cached.is_some();
    let spec = OfferSpec {
        to,
        kind,
        id,
        epoch,
    };
    match offer_attempt(mesh, spec, image.clone(), 0, cached).await {
        Ok((chunks, next)) => {
            *nonce = Some(next);
            Ok(chunks)
        }
        // A kept nonce may have expired (a long round): ask for a new one.
        Err(e)
            if had_cached
                && matches!(
                    e.refusal_code(),
                    Some(RefusalCode::NonceExpired | RefusalCode::Replayed)
                ) =>
        {
            let (chunks, next) = offer_attempt(mesh, spec, image, 0, None).await?;
            *nonce = Some(next);
            Ok(chunks)
        }
        Err(e) => Err(e),
    }
}

pub(super) async fn offer_attempt(
    mesh: &Migrator,
    spec: OfferSpec,
    image: Vec<u8>,
    attempt: u32,
    cached: Option<Nonce>,
) -> Result<(Vec<Hash>, Nonce), RequestError> {
    let OfferSpec {
        to,
        kind,
        id,
        epoch,
    } = spec;
    // The first request of a round may hit a connection that died with a
    // restarted peer (closed within the QUIC idle timeout): try again on
    // another before giving up. Nothing has happened yet, so a retry is
    // safe.
    let mut tries = 0;
    let nonce = loop {
        if let Some(n) = cached {
            break n;
        }
        match mesh.link.migration(to, MigrationRequest::Nonce).await {
            Ok(MigrationResponse::Nonce(n)) => break n,
            Ok(other) => return Err(RequestError::unexpected(to, &other)),
            // A refusal is final; anything else (a connection that died
            // with a restarted peer) is worth another try.
            Err(e) if tries < NONCE_RETRIES && e.refusal_code().is_none() => {
                tries += 1;
                warn!(vessel = %id, %to, "no nonce yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let body = OfferBody {
        version: PEER_PROTOCOL_VERSION,
        kind,
        vessel: id,
        epoch,
        image: Hash::of(&image),
        source: PeerIdBytes(mesh.me.to_bytes()),
        destination: PeerIdBytes(to.to_bytes()),
        nonce,
    };
    let offer = Offer::sign(&mesh.signing, body);
    match mesh
        .link
        .migration_once(
            to,
            MigrationRequest::Offer {
                offer,
                image: image.clone(),
            },
        )
        .await
    {
        Ok(MigrationResponse::Lacking { chunks, next_nonce }) => Ok((chunks, next_nonce)),
        Ok(other) => Err(RequestError::unexpected(to, &other)),
        // The offer may or may not have arrived; a new nonce makes a new
        // offer, which replaces the old one at the destination.
        Err(e) if e.is_transport() && attempt < TRANSPORT_RETRIES && !mesh.link.fail_fast => {
            warn!(vessel = %id, %to, "offer lost ({e}); offering again");
            tokio::time::sleep(Duration::from_millis(300)).await;
            Box::pin(offer_attempt(mesh, spec, image, attempt + 1, None)).await
        }
        Err(e) => Err(e),
    }
}

/// Sends the chunks `lacking` names (read from the store), a few batches in
/// flight. Returns bytes sent.
pub(super) async fn send_chunks(
    mesh: &Migrator,
    to: PeerId,
    id: VesselId,
    epoch: u64,
    lacking: Vec<Hash>,
    fresh: Option<&Fresh>,
) -> Result<u64, String> {
    let store = lock(&mesh.host).store.clone();
    let fresh = fresh.cloned();
    let batches: Vec<Vec<Hash>> = lacking
        .chunks(MAX_CHUNKS_PER_BATCH)
        .map(|c| c.to_vec())
        .collect();
    let mut sends = futures::stream::iter(batches.into_iter().map(|batch| {
        let store = store.clone();
        let mesh = mesh.clone();
        let fresh = fresh.clone();
        async move {
            let chunks = tokio::task::spawn_blocking(move || {
                batch
                    .iter()
                    .map(|h| {
                        // Hashed from these very bytes in the pause.
                        if let Some(bytes) = fresh.as_ref().and_then(|f| f.get(h)) {
                            return Ok(NamedChunk {
                                hash: *h,
                                bytes: ChunkBytes(bytes.clone()),
                            });
                        }
                        store.get_chunk(h).map(|bytes| NamedChunk {
                            hash: *h,
                            bytes: ChunkBytes(bytes),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let bytes: u64 = chunks.iter().map(|c| c.bytes.0.len() as u64).sum();
            let n = chunks.len() as u64;
            mesh.link
                .migration(
                    to,
                    MigrationRequest::Chunks {
                        vessel: id,
                        epoch,
                        chunks,
                    },
                )
                .await?;
            set_report(&mesh, id, |r| {
                r.bytes_sent += bytes;
                r.chunks_sent += n;
            });
            Ok::<u64, String>(bytes)
        }
    }))
    .buffer_unordered(CHUNK_BATCHES_IN_FLIGHT);
    let mut total = 0;
    while let Some(r) = sends.next().await {
        total += r?;
    }
    Ok(total)
}

/// The chunks of a final round that are sent from memory (and stored
/// beside the sending).
pub(super) type Fresh = Arc<HashMap<Hash, Vec<u8>>>;

pub(super) fn store_fresh(store: &crate::store::ChunkStore, fresh: &Fresh) -> Result<(), String> {
    for bytes in fresh.values() {
        store.put_chunk(bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits for the final round's chunks to be stored; if that failed, tries
/// once more (an abort resumes the vessel from them).
pub(super) async fn finish_storing(
    store: &crate::store::ChunkStore,
    stored: tokio::task::JoinHandle<Result<(), String>>,
    fresh: &Fresh,
) {
    if matches!(stored.await, Ok(Ok(()))) {
        return;
    }
    let (s, fresh) = (store.clone(), fresh.clone());
    let again = tokio::task::spawn_blocking(move || store_fresh(&s, &fresh)).await;
    if !matches!(again, Ok(Ok(()))) {
        warn!("cannot store the final round's chunks: {again:?}");
    }
}

/// Every chunk the images name, but those sent already in this migration
/// (the no-deduplication baseline).
pub(super) fn all_chunks(
    images: &[&ChunkedImage],
    more: &[Hash],
    sent: &HashSet<Hash>,
) -> Vec<Hash> {
    let mut all: Vec<Hash> = images
        .iter()
        .flat_map(|i| i.chunks.iter().flatten().copied())
        .chain(more.iter().copied())
        .filter(|h| !sent.contains(h))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Moves vessel `id` to `to`: pre-copy rounds while it runs, then the final
/// round while it is paused, then the commit. Any failure before the commit
/// resumes the vessel here.
pub(super) async fn migrate(
    mesh: &Migrator,
    id: VesselId,
    to: PeerId,
    why: &str,
) -> Result<(), String> {
    let (epoch, module, module_image, guests, log, vdir, runner_ok) = {
        let mut h = lock(&mesh.host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        let epoch = l.record.epoch();
        let image_hash = l.record.image();
        let guests: Vec<String> = l
            .deployment
            .body
            .volumes
            .iter()
            .map(|v| v.guest.clone())
            .collect();
        let log = l.log.clone();
        let runner_ok = l.runner.is_some();
        let bytes = h
            .store
            .get_image_doc(&image_hash)
            .map_err(|e| e.to_string())?;
        let img: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
        let module_bytes =
            crate::store::get_image(&h.store, &img.module, protocol::limits::MAX_MODULE_BYTES)
                .map_err(|e| e.to_string())?;
        let module = h.module(module_bytes, &img.deployment.body.name)?;
        (
            epoch,
            module,
            img.module,
            guests,
            log,
            h.vessel_dir(id),
            runner_ok,
        )
    };
    if !runner_ok {
        return Err("the vessel is not running".into());
    }
    let store = lock(&mesh.host).store.clone();
    let send_cmd = |cmd: RunnerCmd| -> Result<(), String> {
        let h = lock(&mesh.host);
        let l = h.vessels.get(&id).ok_or("vessel gone")?;
        l.runner.as_ref().ok_or("not running")?.send(cmd)
    };
    let new_epoch = epoch + 1;
    let tracker = Arc::new(Mutex::new(MemoryTracker::default()));
    // Every chunk sent during this migration.
    let mut sent: HashSet<Hash> = HashSet::new();
    // The destination's nonce for our next offer.
    let mut nonce: Option<Nonce> = None;

    // Pre-copy: the vessel keeps running.
    for round in 0..mesh.policy.warm_rounds.min(MAX_WARM_ROUNDS) {
        let (tx, rx) = oneshot::channel();
        send_cmd(RunnerCmd::CopyMemory(tx))?;
        // A vessel that waits in a blocking call (a sleep, a socket) does
        // not reach the end of its slice: its memory does not change while
        // it waits, so go straight to the final round, which interrupts the
        // wait.
        let memory = match tokio::time::timeout(WARM_COPY_WAIT, rx).await {
            Ok(m) => m.map_err(|_| "the vessel ended before it could move")?,
            Err(_) => break,
        };
        let (t, s) = (tracker.clone(), store.clone());
        let changed = tokio::task::spawn_blocking(move || lock(&t).update(&s, &memory))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mem_image = lock(&tracker).image.clone();
        let warm = protocol::cbor::encode(&vec![mem_image.clone(), module_image.clone()]);
        let mut lacking = offer(mesh, to, OfferKind::Warm, id, new_epoch, warm, &mut nonce).await?;
        if !mesh.policy.dedup {
            lacking = all_chunks(&[&mem_image, &module_image], &[], &sent);
        }
        sent.extend(lacking.iter().copied());
        send_chunks(mesh, to, id, new_epoch, lacking, None).await?;
        set_report(mesh, id, |r| r.rounds = round + 1);
        if round > 0 && changed <= WARM_CONVERGED_CHUNKS {
            break;
        }
    }

    // Final round: pause at the next migration point.
    set_report(mesh, id, |r| r.phase = MigrationPhase::Final);
    let (tx, rx) = oneshot::channel();
    send_cmd(RunnerCmd::Pause(tx))?;
    let paused = rx
        .await
        .map_err(|_| "the vessel ended before it could move".to_string())??;
    let paused_at = paused.at;
    let final_image = {
        let (t, s) = (tracker.clone(), store.clone());
        let module = module.clone();
        let module_image = module_image.clone();
        let guests = guests.clone();
        let log = log.clone();
        let vdir = vdir.clone();
        let deployment = lock(&mesh.host).vessels.get(&id).map(|l| {
            (
                l.deployment.clone(),
                l.migrations,
                l.run_ms(),
                VesselPlacement {
                    pinned: l.pinned,
                    last_move: note(why),
                },
            )
        });
        let (deployment, migrations, run_ms, placement) = deployment.ok_or("vessel gone")?;
        // The vessel is paused: its hub takes no more client bytes (entries
        // keep them and send them to wherever the vessel runs next).
        let hub = lock(&mesh.host)
            .hubs
            .get(&id)
            .map(|h| h.freeze_and_export())
            .unwrap_or_default();
        type Packed = (VesselImage, runner::Paused, Fresh);
        tokio::task::spawn_blocking(move || -> Result<Packed, String> {
            if fault_active("pack-fails") {
                return Err("fault injection: packing the paused vessel failed".into());
            }
            let mut t = lock(&t);
            // The paused instance's own memory, compared in place with
            // what was last sent: no copy of the whole memory here. The
            // changed chunks are sent from memory and stored meanwhile.
            let fresh = Arc::new(t.update_final_unstored(paused.vessel.memory()));
            let manifest =
                image::manifest_of(&module, &module_image, &paused.capture, t.image.clone())?;
            let (mbytes, mh) = manifest.encode_and_hash();
            let dirs = image::volume_dirs(&vdir, guests.len());
            let volumes = guests
                .iter()
                .zip(&dirs)
                .map(|(g, d)| image::pack_volume(&s, d, g))
                .collect::<Result<Vec<_>, _>>()?;
            let log = image::pack_log(&s, &lock(&log))?;
            Ok((
                VesselImage {
                    version: VESSEL_VERSION,
                    deployment,
                    epoch: new_epoch,
                    resume: Resume::Snapshot(mh),
                    module: module_image,
                    manifest: mbytes,
                    volumes,
                    log,
                    migrations: migrations + 1,
                    run_ms,
                    placement,
                    hub,
                },
                paused,
                fresh,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let (final_image, paused, fresh) = match final_image {
        Ok(v) => v,
        Err(e) => {
            // Before the commit point, so the vessel must run on here. Its
            // paused instance went with the failed packing (a disk error):
            // it continues from its last durable image, as after a crash.
            warn!(vessel = %id, "cannot pack the paused vessel ({e}); it continues from its last image here");
            restart_from_record(mesh, id)?;
            return Err(e);
        }
    };
    // The final round's changed chunks go to this node's store while the
    // offer is on its way (an abort resumes the vessel from the store, and
    // a return trip deduplicates against it).
    let stored = {
        let (s, fresh) = (store.clone(), fresh.clone());
        tokio::task::spawn_blocking(move || store_fresh(&s, &fresh))
    };
    let (image_bytes, image_hash) = final_image.encode_and_hash();
    // Pair assertion with the destination's check of the same hash.
    debug_assert_eq!(Hash::of(&image_bytes), image_hash);
    // Kept (not synced) so `ps` and `logs` still know the vessel after a
    // restart; the commit needs only the record.
    if let Err(e) = store.put_image_doc(&image_bytes, false) {
        warn!(vessel = %id, "cannot keep its image: {e}");
    }

    let t_packed = paused_at.elapsed();
    let mut t_offered = Duration::ZERO;
    let mut t_sent = Duration::ZERO;
    // From here to the commit point the vessel is stopped: a request that
    // fails aborts the move rather than retrying a peer that may be dead.
    let paused_mesh = mesh.failing_fast();
    let sent: Result<(), String> = async {
        let mesh = &paused_mesh;
        let lacking = offer(
            mesh,
            to,
            OfferKind::Final,
            id,
            new_epoch,
            image_bytes.clone(),
            &mut nonce,
        )
        .await?;
        t_offered = paused_at.elapsed();
        let manifest: Manifest =
            protocol::cbor::decode(&final_image.manifest).map_err(|e| e.to_string())?;
        let lacking = if mesh.policy.dedup {
            lacking
        } else {
            all_chunks(
                &[&manifest.memory, &module_image],
                &final_image.own_chunks(),
                &sent,
            )
        };
        sent.extend(lacking.iter().copied());
        send_chunks(mesh, to, id, new_epoch, lacking, Some(&fresh)).await?;
        t_sent = paused_at.elapsed();
        // Skipped: chunks of the image that the destination had before this
        // migration began (earlier visits, other vessels, the same module).
        let mut needed: HashSet<Hash> = final_image.own_chunks().into_iter().collect();
        needed.extend(manifest.memory.chunks.iter().flatten().copied());
        let skipped = needed.iter().filter(|h| !sent.contains(h)).count() as u64;
        set_report(mesh, id, |r| r.chunks_skipped = skipped);
        match mesh
            .link
            .migration(
                to,
                MigrationRequest::Prepare {
                    vessel: id,
                    epoch: new_epoch,
                    image: image_hash,
                },
            )
            .await?
        {
            MigrationResponse::Prepared => Ok(()),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
    .await;
    let decision = |commit: bool| {
        Decision::sign(
            &mesh.signing,
            DecisionBody {
                version: PEER_PROTOCOL_VERSION,
                vessel: id,
                epoch: new_epoch,
                image: image_hash,
                source: PeerIdBytes(mesh.me.to_bytes()),
                destination: PeerIdBytes(to.to_bytes()),
                commit,
            },
        )
    };
    if let Err(e) = sent {
        // Before the commit point: the vessel stays here, and runs again
        // before the destination hears of the abort (it never runs a
        // prepared vessel without the commit, which will not come now).
        finish_storing(&store, stored, &fresh).await;
        resume_here(mesh, id, final_image)?;
        let (m, abort) = (mesh.clone(), MigrationRequest::Abort(decision(false)));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), m.link.migration(to, abort)).await;
        });
        return Err(e);
    }

    // The commit point.
    let t_prepared = paused_at.elapsed();
    fault_point("before-commit");
    let committed: Result<(), String> = {
        let mut h = lock(&mesh.host);
        let record = Record::Left {
            epoch: new_epoch,
            image: image_hash,
            to: to.to_bytes(),
            acked: false,
        };
        match h.write_record(id, &record) {
            Err(e) => Err(format!("cannot write the commit record: {e}")),
            Ok(()) => {
                // Its clients' bytes go to the destination from now on.
                if let Some(hub) = h.hubs.remove(&id) {
                    hub.stop();
                }
                if let Some(l) = h.vessels.get_mut(&id) {
                    l.record = record;
                    l.runner = None;
                    l.run_ms_before = final_image.run_ms;
                    l.migrations = final_image.migrations;
                }
                h.remember_departed(id, image_hash);
                Ok(())
            }
        }
    };
    if let Err(e) = committed {
        let _ = mesh
            .link
            .migration(to, MigrationRequest::Abort(decision(false)))
            .await;
        finish_storing(&store, stored, &fresh).await;
        resume_here(mesh, id, final_image)?;
        return Err(e);
    }
    set_report(mesh, id, |r| r.phase = MigrationPhase::Committed);
    fault_point("after-commit-record");
    // Its traffic now enters towards the new host, which keeps its own book.
    lock(&mesh.host).traffic.forget(id);
    let t_recorded = paused_at.elapsed();
    // Downtime ends when the destination says the vessel runs there (its
    // thread has started); the source's own bookkeeping after that is not
    // downtime.
    let acked_at = send_commit(mesh, id, to, decision(true)).await;
    let downtime = acked_at.duration_since(paused_at);
    // Freeing the spent instance's memory takes milliseconds: after the
    // pause, off the async runtime. The chunks this migration stored here
    // are made durable now too, so that if the vessel comes back, the
    // pause of that migration does not have to sync them.
    finish_storing(&store, stored, &fresh).await;
    let memory_bytes = paused.vessel.memory().len() as u64;
    tokio::task::spawn_blocking(move || {
        drop(paused);
        if let Err(e) = store.sync_written() {
            warn!(vessel = %id, "cannot sync the store: {e}");
        }
    });
    tracing::debug!(
        vessel = %id,
        memory_bytes = memory_bytes,
        packed_us = t_packed.as_micros() as u64,
        offered_us = t_offered.as_micros() as u64,
        sent_us = t_sent.as_micros() as u64,
        prepared_us = t_prepared.as_micros() as u64,
        recorded_us = t_recorded.as_micros() as u64,
        committed_us = downtime.as_micros() as u64,
        "pause phases (from the pause)"
    );
    set_report(mesh, id, |r| {
        r.downtime_us = Some(downtime.as_micros() as u64)
    });
    Ok(())
}

/// Sends the commit until the destination confirms, then records that.
/// Returns when the confirmation arrived.
pub async fn send_commit(mesh: &Migrator, id: VesselId, to: PeerId, decision: Decision) -> Instant {
    let acked_at = drive_commit(mesh, id, to, &decision).await;
    let mut h = lock(&mesh.host);
    if h.departed.len() >= MAX_DEPARTED_IMAGES_BEFORE_EVICT {
        // Bounded: evict what the LRU no longer keeps (never while a
        // migration is arriving: its chunks are not in an image yet).
        let busy = h.vessels.iter().any(|(v, l)| *v != id && l.migrating);
        if !busy && lock(&mesh.incoming).is_empty() {
            let n = h.evict();
            if n > 0 {
                info!("evicted {n} chunks that no kept image names");
            }
        }
    }
    let Some(l) = h.vessels.get_mut(&id) else {
        return acked_at;
    };
    if let Record::Left {
        epoch, image, to, ..
    } = l.record.clone()
    {
        if epoch == decision.body.epoch {
            let record = Record::Left {
                epoch,
                image,
                to,
                acked: true,
            };
            l.record = record.clone();
            let _ = h.write_record(id, &record);
        }
    }
    acked_at
}

/// An aborted migration: the vessel runs on here, from the image of the
/// capture taken for it (its memory chunks are in the store already; no
/// step of the program is lost or repeated).
pub(super) fn resume_here(mesh: &Migrator, id: VesselId, image: VesselImage) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let record = l.record.clone();
    let reason = l.reason.clone();
    // The image's manifest must be in the local store to resume from it.
    h.store
        .put_manifest_bytes(&image.manifest)
        .map_err(|e| e.to_string())?;
    let mut image = image;
    // Still the old epoch: nothing was committed.
    image.epoch = record.epoch();
    image.migrations = image.migrations.saturating_sub(1);
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())?;
    info!(vessel = %id, "migration aborted: the vessel runs on here");
    Ok(())
}

/// Runs a vessel again from the image its record names (as a restart of
/// the node would), when the instance it ran in is gone.
pub(super) fn restart_from_record(mesh: &Migrator, id: VesselId) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let (record, reason) = (l.record.clone(), l.reason.clone());
    let bytes = h
        .store
        .get_image_doc(&record.image())
        .map_err(|e| e.to_string())?;
    let image: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())
}

/// Drives the migration layer's source machine past the commit point: the
/// commit is sent until the destination confirms (or tells that the vessel
/// ran under it and moved on: a stale-epoch refusal), and nothing resumes
/// the vessel here meanwhile. Returns when the confirmation came.
async fn drive_commit(mesh: &Migrator, id: VesselId, to: PeerId, decision: &Decision) -> Instant {
    let (mut machine, mut outputs) = Source::finish_commit();
    let mut acked_at = Instant::now();
    loop {
        let mut input = None;
        for output in outputs {
            match output {
                Output::SendCommit => {
                    let commit = MigrationRequest::Commit(decision.clone());
                    let answer = match mesh.link.migration(to, commit).await {
                        Ok(MigrationResponse::Committed) => Input::Committed,
                        Ok(other) => Input::Failed(ErrorKind::Local(format!("answered {other:?}"))),
                        Err(e) => Input::Failed(error_kind(e)),
                    };
                    if let Input::Failed(why) = &answer {
                        warn!(vessel = %id, %to, "commit not confirmed yet ({why:?})");
                    }
                    acked_at = Instant::now();
                    input = Some(answer);
                }
                Output::RetryAfter(wait) => {
                    tokio::time::sleep(wait).await;
                    input = Some(Input::RetryDue);
                }
                Output::Finished(_) => return acked_at,
                _ => {}
            }
        }
        let Some(input) = input else {
            return acked_at;
        };
        outputs = machine.handle(input);
    }
}

/// A failed request as the migration layer sees it: refused (with its
/// code), or the destination did not answer.
pub(super) fn error_kind(e: RequestError) -> ErrorKind {
    match e {
        RequestError::Refused { refusal, .. } => ErrorKind::Refused(refusal),
        other => ErrorKind::Unreachable(other.to_string()),
    }
}
