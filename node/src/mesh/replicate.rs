//! The host side of replicas (issue 15, item 1): each durable checkpoint
//! of a replicated vessel is shipped to the R member nodes placement
//! chooses, sending only the chunks each lacks (docs/protocol.md,
//! "Replicas"). The replica side is `replica_serve`; the state both keep is
//! `replica_book`.
//!
//! Shipping never touches the vessel: `mesh::checkpoint` queues a
//! checkpoint once it is durable (newest wins, one per vessel) and returns,
//! and one task per shipment reads the image from the store. A slow or
//! dead replica delays only the next shipment of that vessel.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;
use protocol::control::{PeerIdBytes, VesselInfo};
use protocol::limits::MAX_CHUNKS_PER_BATCH;
use protocol::membership::Nonce;
use protocol::migrate::{ChunkBytes, NamedChunk};
use protocol::replica::{
    replicas_of, ReplicaOffer, ReplicaOfferBody, ReplicaRequest, ReplicaResponse, REPLICA_VERSION,
};
use protocol::snapshot::{Hash, Manifest};
use protocol::vessel::{Resume, VesselId, VesselImage};
use tracing::{debug, info, warn};

use super::link::RequestError;
use super::replica_book::{shipping_key, Queued, Replication, Shipping, Slot};
use super::vessels::{Migrator, CHUNK_BATCHES_IN_FLIGHT};
use crate::placement::{replica_targets, VesselView};
use crate::store::ChunkStore;
use crate::sync::lock;
use crate::vessel::Record;

/// How long one shipment to one replica may take before it counts as
/// failed (a whole image of a large vessel over a slow link takes long;
/// a hung replica must not hold the vessel's next shipment for ever).
pub const SHIPMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the shipper looks for vessels that ended or arrived here
/// when no checkpoint wakes it.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Queues the vessel's newest durable checkpoint (its record's image) for
/// its replicas, if its deployment asks for any. Called once a checkpoint
/// is durable; returns at once.
pub fn after_checkpoint(mesh: &Migrator, id: VesselId, image: Hash) {
    let queued = {
        let h = lock(&mesh.host);
        let Some(l) = h.vessels.get(&id) else { return };
        let Record::Owned { epoch, .. } = l.record else {
            return;
        };
        Queued {
            image,
            epoch,
            taken_at: l
                .checkpoints
                .last_durable
                .map_or_else(Instant::now, |(at, _)| at),
            wanted: replicas_of(l.deployment.body.replicas),
            sync: l.deployment.body.sync_interval_ms().is_some(),
        }
    };
    mesh.replication.enqueue(id, queued);
}

/// Runs for as long as the node: starts a shipment for each queued
/// checkpoint whose vessel has none under way.
pub async fn ship_queued(mesh: Migrator) {
    let replication = mesh.replication.clone();
    loop {
        let _ = tokio::time::timeout(SWEEP_EVERY, replication.wake.notified()).await;
        forget_departed(&mesh);
        let due: Vec<(VesselId, Queued)> = {
            let mut b = replication.book();
            let ready: Vec<VesselId> = b
                .queue
                .keys()
                .filter(|id| !b.shipping.get(id).is_some_and(|s| s.in_flight))
                .copied()
                .collect();
            ready
                .into_iter()
                .filter_map(|id| {
                    let q = b.queue.remove(&id)?;
                    b.shipping.entry(id).or_default().in_flight = true;
                    Some((id, q))
                })
                .collect()
        };
        for (id, q) in due {
            let mesh = mesh.clone();
            tokio::spawn(async move {
                ship(&mesh, id, q).await;
                if let Some(s) = mesh.replication.book().shipping.get_mut(&id) {
                    s.in_flight = false;
                }
                mesh.replication.wake.notify_one();
            });
        }
    }
}

/// Forgets the host side of vessels that no longer run here, releasing
/// the replicas of those that ended (one that moved on keeps them: its new
/// host ships to the replicas it chooses, and a release of an older epoch
/// or from another host is ignored), and lets go of the replica copies of
/// vessels that now run here (a vessel that moved to one of its replicas:
/// its own record and checkpoints keep it now).
fn forget_departed(mesh: &Migrator) {
    let (owned, left): (HashSet<VesselId>, HashSet<VesselId>) = {
        let h = lock(&mesh.host);
        let of = |f: fn(&Record) -> bool| {
            h.vessels
                .iter()
                .filter(|(_, l)| f(&l.record))
                .map(|(id, _)| *id)
                .collect()
        };
        (
            of(|r| matches!(r, Record::Owned { .. })),
            of(|r| matches!(r, Record::Left { .. } | Record::Prepared { .. })),
        )
    };
    let gone = mesh.replication.retain_shipping(|id| owned.contains(id));
    for (id, shipping) in gone.into_iter().filter(|(id, _)| !left.contains(id)) {
        for r in shipping.replicas {
            let (mesh, epoch) = (mesh.clone(), shipping.epoch);
            tokio::spawn(async move { release(&mesh, r.peer, id, epoch).await });
        }
    }
    for id in owned {
        super::replica_serve::drop_held(mesh, id, u64::MAX);
    }
}

/// Ships one checkpoint to each of the vessel's replicas (chosen now), at
/// once, and notes how each went.
async fn ship(mesh: &Migrator, id: VesselId, q: Queued) {
    let Some(view) = vessel_view(mesh, id) else {
        return;
    };
    let (targets, released) = choose(&mesh.replication, id, &view, &q);
    for (peer, epoch) in released {
        let mesh = mesh.clone();
        tokio::spawn(async move { release(&mesh, peer, id, epoch).await });
    }
    let store = lock(&mesh.host).store.clone();
    // Kept from collection while it travels (retention keeps only the
    // newest few checkpoints, and another may be taken meanwhile).
    store.hold(&shipping_key(id), Some(q.image));
    let image = match store.get_image_doc(&q.image) {
        Ok(bytes) => Arc::new(bytes),
        Err(e) => {
            warn!(vessel = %id, "cannot read checkpoint {} to replicate it: {e}", q.image);
            store.hold(&shipping_key(id), None);
            return;
        }
    };
    let sends = targets.into_iter().map(|(peer, nonce)| {
        let image = image.clone();
        async move {
            let shipped =
                tokio::time::timeout(SHIPMENT_TIMEOUT, ship_to(mesh, peer, nonce, id, &q, image))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} s", SHIPMENT_TIMEOUT.as_secs()))
                    });
            (peer, shipped)
        }
    });
    let results = futures::future::join_all(sends).await;
    store.hold(&shipping_key(id), None);
    // Output commit: released only once *every* replica holds it (with
    // none to be had, the host's own durable copy is all there is).
    if q.sync && results.iter().all(|(_, r)| r.is_ok()) {
        super::output_commit::release(mesh, id, q.epoch, &image);
    }
    let now = Instant::now();
    if results.iter().all(|(_, r)| r.is_ok()) {
        note_replica_lag(mesh, id, q.epoch, now - q.taken_at);
    }
    let mut b = mesh.replication.book();
    let Some(s) = b.shipping.get_mut(&id) else {
        return;
    };
    for (peer, result) in results {
        let Some(slot) = s.replicas.iter_mut().find(|r| r.peer == peer) else {
            continue;
        };
        match result {
            Ok(next_nonce) => {
                slot.holds = Some((q.image, q.taken_at));
                slot.nonce = next_nonce;
                slot.failing_since = None;
                slot.problem = None;
            }
            Err(why) => {
                debug!(vessel = %id, %peer, "replica shipment failed: {why}");
                slot.nonce = None;
                slot.failing_since.get_or_insert(now);
                slot.problem = Some(why);
            }
        }
    }
}

/// Notes how long a checkpoint of `id` took from its pause to being held
/// by every replica: the next is asked for that much earlier
/// (`vessel::checkpoint::next_checkpoint_at`).
fn note_replica_lag(mesh: &Migrator, id: VesselId, epoch: u64, lag: Duration) {
    let mut h = lock(&mesh.host);
    if let Some(l) = h.vessels.get_mut(&id) {
        if matches!(l.record, Record::Owned { epoch: e, .. } if e == epoch) {
            l.checkpoints.replica_lag = Some(lag);
        }
    }
}

/// The vessel as placement sees it, if it still runs here under the
/// queued epoch.
fn vessel_view(mesh: &Migrator, id: VesselId) -> Option<VesselView> {
    let h = lock(&mesh.host);
    let l = h.vessels.get(&id)?;
    if !matches!(l.record, Record::Owned { .. }) || l.migrating {
        return None;
    }
    let view = VesselView {
        id,
        pinned: l.pinned,
        memory_bytes: l.runner.as_ref().map_or(0, |r| r.memory_bytes()),
        last_move: l.last_move,
        reason: l.reason.clone(),
        entries: h.traffic.entries(id, Instant::now()),
    };
    Some(view)
}

/// The replicas of one shipment, each with its nonce for the offer.
type Targets = Vec<(PeerId, Option<Nonce>)>;

/// The replicas dropped from a vessel, with the epoch to release.
type Released = Vec<(PeerId, u64)>;

/// Decides the vessel's replicas for this shipment: those it has stay
/// while they are members with room and have not failed for
/// `REPLACE_FAILING_AFTER`; the rest come from placement. Returns each
/// replica with its nonce, and the replicas dropped (to release).
fn choose(
    replication: &Replication,
    id: VesselId,
    view: &VesselView,
    q: &Queued,
) -> (Targets, Released) {
    let (now, wanted) = (Instant::now(), q.wanted);
    let mut b = replication.book();
    let mesh_view = b.view.clone();
    let s: &mut Shipping = b.shipping.entry(id).or_default();
    s.wanted = wanted;
    s.epoch = q.epoch;
    let Some(mv) = mesh_view else {
        s.shortfall = Some("the mesh is not known yet".into());
        return (Vec::new(), Vec::new());
    };
    let keep: Vec<PeerId> = s
        .replicas
        .iter()
        .filter(|r| !r.gone(now) && mv.members.contains(&r.peer))
        .map(|r| r.peer)
        .collect();
    let chosen = replica_targets(
        view,
        &mv.rtts,
        &mv.rooms,
        mv.here_load_per_cpu,
        &mv.params,
        &keep,
        wanted as usize,
    );
    let mut released = Vec::new();
    s.replicas.retain(|r| {
        let stays = chosen.contains(&r.peer);
        if !stays {
            info!(vessel = %id, replica = %r.peer, "replica replaced: {}",
                r.problem.as_deref().unwrap_or("no longer a member with room"));
            released.push((r.peer, q.epoch));
        }
        stays
    });
    for p in &chosen {
        if !s.replicas.iter().any(|r| r.peer == *p) {
            info!(vessel = %id, replica = %p, "replica chosen");
            s.replicas.push(Slot::new(*p));
        }
    }
    s.shortfall = (chosen.len() < wanted as usize).then(|| {
        let others = mv.rooms.iter().filter(|n| n.peer != mv.rtts.me).count();
        format!(
            "{} of {wanted} replicas: only {others} other member{} with room",
            chosen.len(),
            if others == 1 { "" } else { "s" }
        )
    });
    let targets = s.replicas.iter().map(|r| (r.peer, r.nonce)).collect();
    (targets, released)
}

/// One shipment to one replica: offer, the chunks it lacks, store.
/// Returns the replica's nonce for the next offer.
async fn ship_to(
    mesh: &Migrator,
    peer: PeerId,
    nonce: Option<Nonce>,
    id: VesselId,
    q: &Queued,
    image: Arc<Vec<u8>>,
) -> Result<Option<Nonce>, String> {
    let nonce = match nonce {
        Some(n) => n,
        None => match ask(mesh, peer, ReplicaRequest::Nonce, false).await? {
            ReplicaResponse::Nonce(n) => n,
            other => return Err(format!("answered {other:?} to a nonce request")),
        },
    };
    let body = ReplicaOfferBody {
        version: REPLICA_VERSION,
        vessel: id,
        epoch: q.epoch,
        image: q.image,
        host: PeerIdBytes(mesh.me.to_bytes()),
        replica: PeerIdBytes(peer.to_bytes()),
        nonce,
    };
    let offer = ReplicaOffer::sign(&mesh.signing, body);
    let request = ReplicaRequest::Offer {
        offer,
        image: (*image).clone(),
    };
    let (lacking, next_nonce) = match ask(mesh, peer, request, true).await? {
        ReplicaResponse::Lacking { chunks, next_nonce } => (chunks, next_nonce),
        other => return Err(format!("answered {other:?} to an offer")),
    };
    let manifest = manifest_chunks(&image);
    send_chunks(mesh, peer, id, q.image, lacking, manifest).await?;
    let store = ReplicaRequest::Store {
        vessel: id,
        epoch: q.epoch,
        image: q.image,
    };
    match ask(mesh, peer, store, false).await? {
        ReplicaResponse::Held { image, .. } if image == q.image => Ok(Some(next_nonce)),
        other => Err(format!("answered {other:?} to store")),
    }
}

/// Every chunk the image names (for the check that only those are sent).
fn manifest_chunks(image: &[u8]) -> HashSet<Hash> {
    let Ok(img) = protocol::cbor::decode::<VesselImage>(image) else {
        return HashSet::new();
    };
    let mut all: HashSet<Hash> = img.own_chunks().into_iter().collect();
    if let Resume::Snapshot(_) = img.resume {
        if let Ok(m) = protocol::cbor::decode::<Manifest>(&img.manifest) {
            all.extend(m.memory.chunks.iter().flatten().copied());
            all.extend(m.module.original.chunks.iter().flatten().copied());
        }
    }
    all
}

/// Sends the chunks the replica lacks (only chunks the image names), a few
/// batches in flight, and counts them for `ps`.
async fn send_chunks(
    mesh: &Migrator,
    peer: PeerId,
    id: VesselId,
    image: Hash,
    lacking: Vec<Hash>,
    named: HashSet<Hash>,
) -> Result<(), String> {
    if let Some(h) = lacking.iter().find(|h| !named.contains(h)) {
        return Err(format!(
            "it asked for chunk {h}, which the image does not name"
        ));
    }
    let store = lock(&mesh.host).store.clone();
    let batches: Vec<Vec<Hash>> = lacking
        .chunks(MAX_CHUNKS_PER_BATCH)
        .map(|c| c.to_vec())
        .collect();
    let mut sends = futures::stream::iter(batches.into_iter().map(|batch| {
        let store = store.clone();
        async move {
            let chunks = tokio::task::spawn_blocking(move || read_batch(&store, &batch))
                .await
                .map_err(|e| e.to_string())??;
            let bytes: u64 = chunks.iter().map(|c| c.bytes.0.len() as u64).sum();
            let n = chunks.len() as u64;
            let request = ReplicaRequest::Chunks {
                vessel: id,
                image,
                chunks,
            };
            match ask(mesh, peer, request, false).await? {
                ReplicaResponse::Stored { .. } => {}
                other => return Err(format!("answered {other:?} to chunks")),
            }
            if let Some(s) = mesh.replication.book().shipping.get_mut(&id) {
                s.bytes_sent += bytes;
                s.chunks_sent += n;
            }
            Ok::<(), String>(())
        }
    }))
    .buffer_unordered(CHUNK_BATCHES_IN_FLIGHT);
    while let Some(r) = sends.next().await {
        r?;
    }
    Ok(())
}

fn read_batch(store: &ChunkStore, batch: &[Hash]) -> Result<Vec<NamedChunk>, String> {
    batch
        .iter()
        .map(|h| {
            let bytes = store.get_chunk(h).map_err(|e| e.to_string())?;
            Ok(NamedChunk {
                hash: *h,
                bytes: ChunkBytes(bytes),
            })
        })
        .collect()
}

/// One replica request; `once`: not retried on another connection (an
/// offer spends its nonce).
async fn ask(
    mesh: &Migrator,
    peer: PeerId,
    request: ReplicaRequest,
    once: bool,
) -> Result<ReplicaResponse, String> {
    let answer = match once {
        true => mesh.link.request_once(peer, request.into()).await,
        false => mesh.link.request(peer, request.into()).await,
    };
    match answer.map_err(|e: RequestError| e.to_string())? {
        protocol::peer::PeerResponse::Replica(r) => Ok(r),
        other => Err(format!("answered {other:?}")),
    }
}

/// Tells a replica that was replaced to let its copy go (best effort: one
/// that is gone keeps it until it hears, which costs it disk only).
async fn release(mesh: &Migrator, peer: PeerId, id: VesselId, epoch: u64) {
    let request = ReplicaRequest::Release { vessel: id, epoch };
    if let Err(e) = ask(mesh, peer, request, false).await {
        debug!(vessel = %id, %peer, "replica not released: {e}");
    }
}

/// Fills in the replica columns of `ps` rows of the vessels that run here.
pub fn annotate(replication: &Replication, rows: &mut [VesselInfo]) {
    let now = Instant::now();
    for row in rows.iter_mut().filter(|r| r.state == "running") {
        let Some(r) = replication.row(row.id, now) else {
            continue;
        };
        row.replicas_wanted = Some(r.wanted);
        row.replicas = r.replicas;
        row.replica_age_ms = r.age_ms;
        row.replication_problem = r.shortfall;
        row.replica_bytes_sent = r.bytes_sent;
        row.replica_chunks_sent = r.chunks_sent;
    }
}
