//! The replica side of replicas (issue 15, item 1): a node keeps the
//! newest checkpoint of each vessel it is a replica of, durably, with its
//! chunks held against garbage collection and eviction, and never runs it.
//! Its record is a file of its own, `vessels/ID/replica.cbor`
//! ([`ReplicaRecord`]), never an ownership `Record`: a replica must never
//! look like an owner (docs/protocol.md, "Replicas").
//!
//! Checks on the event loop, in order, before any work: the request's own
//! limits, the offer's version, its signature by the connection's own key
//! (domain `replica-offer`), that it names the sender as the host and this
//! node as the replica, the nonce (issued by this node to that peer, once),
//! the image's hash. Then, off the loop: the image decodes and checks, its
//! deployer is trusted, its epoch is not below what this node knows of the
//! vessel, and there is room.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use protocol::control::PeerIdBytes;
use protocol::limits::{MAX_INCOMING_REPLICA_TRANSFERS, MAX_REPLICATED_VESSELS};
use protocol::membership::Nonce;
use protocol::migrate::NamedChunk;
use protocol::peer::PeerResponse;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::replica::{
    ReplicaOffer, ReplicaRecord, ReplicaRequest, ReplicaResponse, REPLICA_VERSION,
};
use protocol::snapshot::{Hash, Manifest, CHUNK_SIZE_BYTES};
use protocol::vessel::{Resume, VesselId, VesselImage};
use tracing::{info, warn};

use super::behaviour::NodeBehaviour;
use super::link::NodeCommand;
use super::replica_book::{arriving_key, durable_key, held_key, Transfer};
use super::state::NodeState;
use super::vessels::{refuse, Migrator};
use crate::identity::peer_public_key;
use crate::sync::lock;
use crate::vessel::{image, Record};

/// An offered transfer whose chunks stopped coming is dropped after this
/// (and its chunks are collected unless the next offer names them).
pub const REPLICA_TRANSFER_TTL: Duration = Duration::from_secs(120);

/// The replica's record of vessel `id`, beside its (absent) ownership
/// record.
pub const REPLICA_RECORD_FILE: &str = "replica.cbor";

/// Answers one replica request from a member.
pub fn serve(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: ReplicaRequest,
    channel: ResponseChannel<PeerResponse>,
) {
    let request = match on_the_loop(state, peer, request) {
        Ok(later) => later,
        Err(answered) => {
            let response = *answered;
            if let PeerResponse::Refused(r) = &response {
                warn!(%peer, "replica request refused: {r}");
            }
            let _ = swarm
                .behaviour_mut()
                .vessel
                .send_response(channel, response);
            return;
        }
    };
    let mesh = state.migrator();
    let tx = state.link.tx.clone();
    tokio::task::spawn_blocking(move || {
        let answer = match request {
            Offered::Offer(offer, image, nonce) => accept(&mesh, peer, offer, image, nonce),
            Offered::Other(r) => serve_blocking(&mesh, peer, r),
        };
        let response = match answer {
            Ok(r) => r.into(),
            Err(refusal) => {
                warn!(%peer, "replica request refused: {refusal}");
                PeerResponse::Refused(refusal)
            }
        };
        let _ = tx.blocking_send(NodeCommand::RespondPeer { channel, response });
    });
}

/// What the event loop answers itself (`Err`: a nonce, or a refusal), or
/// hands to a task.
fn on_the_loop(
    state: &mut NodeState,
    peer: PeerId,
    request: ReplicaRequest,
) -> Result<Offered, Box<PeerResponse>> {
    let answered = |r: PeerResponse| Box::new(r);
    request
        .check()
        .map_err(|e| answered(refuse(e.code(), format!("replica request: {e}")).into()))?;
    match request {
        ReplicaRequest::Nonce => Err(answered(
            ReplicaResponse::Nonce(state.migration.issue(peer)).into(),
        )),
        ReplicaRequest::Offer { offer, image } => {
            check_offer(state, peer, &offer, &image).map_err(|r| answered(r.into()))?;
            let next_nonce = state.migration.issue(peer);
            Ok(Offered::Offer(offer, image, next_nonce))
        }
        other => Ok(Offered::Other(other)),
    }
}

/// A request past the event loop's checks.
enum Offered {
    Offer(ReplicaOffer, Vec<u8>, Nonce),
    Other(ReplicaRequest),
}

/// The checks an offer passes on the event loop, in order.
fn check_offer(
    state: &mut NodeState,
    peer: PeerId,
    offer: &ReplicaOffer,
    image: &[u8],
) -> Result<(), Refusal> {
    let b = &offer.body;
    if b.version != REPLICA_VERSION {
        return Err(refuse(
            RefusalCode::Version,
            format!(
                "replica offer version {}, this node speaks {REPLICA_VERSION}",
                b.version
            ),
        ));
    }
    let key = peer_public_key(&peer).ok_or_else(|| {
        refuse(
            RefusalCode::Forged,
            "the host's PeerId is not an ed25519 key",
        )
    })?;
    offer
        .verify(&key)
        .map_err(|e| refuse(RefusalCode::Forged, format!("forged replica offer: {e}")))?;
    if b.host.0 != peer.to_bytes() {
        return Err(refuse(
            RefusalCode::Forged,
            "forged replica offer: it names another node as the host",
        ));
    }
    if b.replica.0 != state.identity.peer_id.to_bytes() {
        return Err(refuse(
            RefusalCode::Misdirected,
            "misdirected replica offer: it names another node as the replica",
        ));
    }
    state.migration.redeem(&b.nonce, &peer)?;
    if Hash::of(image) != b.image {
        return Err(refuse(
            RefusalCode::Tampered,
            "the image does not hash to what the replica offer names",
        ));
    }
    Ok(())
}

/// Decodes and checks an offered image, stores its document (held, so the
/// chunks found here stay), and answers the chunks this node lacks.
fn accept(
    mesh: &Migrator,
    peer: PeerId,
    offer: ReplicaOffer,
    bytes: Vec<u8>,
    next_nonce: Nonce,
) -> Result<ReplicaResponse, Refusal> {
    let (id, epoch) = (offer.body.vessel, offer.body.epoch);
    let (img, manifest) = decode_checked(mesh, id, epoch, &bytes)?;
    check_room(mesh, id, epoch)?;
    check_owner(mesh, peer, id, epoch)?;
    let store = lock(&mesh.host).store.clone();
    let internal = |e: crate::store::StoreError| refuse(RefusalCode::Internal, e.to_string());
    store.put_image_doc(&bytes, false).map_err(internal)?;
    store.hold(&arriving_key(id), Some(offer.body.image));
    let lacking = image::lacking(&store, &img, manifest.as_ref(), &HashSet::new());
    // What it would add counts against the node's disk budget, as its own
    // checkpoints do: a member cannot make it store more than that.
    let adds = lacking.len() as u64 * (u64::from(CHUNK_SIZE_BYTES) + 64);
    if let Err(e) = lock(&mesh.host).checkpoint_allowed(adds) {
        store.hold(&arriving_key(id), None);
        return Err(refuse(
            RefusalCode::Full,
            format!("a replica of vessel {id} would exceed this node's disk budget: {e}"),
        ));
    }
    mesh.replication.book().transfers.insert(
        id,
        Transfer {
            from: peer,
            epoch,
            image: offer.body.image,
            lacking: lacking.iter().copied().collect(),
            started: Instant::now(),
        },
    );
    Ok(ReplicaResponse::Lacking {
        chunks: lacking,
        next_nonce,
    })
}

/// Whether `peer` owns `id` at `epoch` as far as this node's voter for
/// the vessel knows (issue 15: a peer accepts epoch E+1 only with its
/// certificate). A voter learns the certificate of every epoch from the
/// owner's lease requests, which come before its checkpoints: an epoch
/// above the one it knows is refused until it learnt it (the host offers
/// again at its next checkpoint), and another owner at the epoch it knows
/// is refused outright. A node that votes for no epoch of the vessel (not
/// leased, or not yet a voter) checks the offer's signature only, as
/// before.
fn check_owner(mesh: &Migrator, peer: PeerId, id: VesselId, epoch: u64) -> Result<(), Refusal> {
    let Some(known) = lock(&mesh.leases.book).known(id) else {
        return Ok(());
    };
    let k = &known.body;
    if epoch < k.epoch {
        let detail = format!(
            "stale replica offer: epoch {epoch}, this node's voter knows the certificate of epoch {} of vessel {id}",
            k.epoch
        );
        return Err(refuse(RefusalCode::StaleEpoch, detail).with_known_epoch(k.epoch));
    }
    if epoch > k.epoch {
        return Err(refuse(
            RefusalCode::Busy,
            format!(
                "replica offer at epoch {epoch} of vessel {id}: this node's voter knows the certificate of epoch {} only",
                k.epoch
            ),
        ));
    }
    if epoch == k.epoch && k.owner.0 != peer.to_bytes() {
        return Err(refuse(
            RefusalCode::Forged,
            format!("replica offer at epoch {epoch} of vessel {id} from a node its certificate does not name as owner"),
        ));
    }
    Ok(())
}

/// Whether this node may take a copy of `id` at `epoch`: it does not run
/// it, knows no later epoch of it, and has room for another copy and
/// another transfer (transfers whose chunks stopped coming are dropped
/// first, and their images let go).
fn check_room(mesh: &Migrator, id: VesselId, epoch: u64) -> Result<(), Refusal> {
    let (store, known, owned) = {
        let h = lock(&mesh.host);
        let owned = h
            .vessels
            .get(&id)
            .is_some_and(|l| matches!(l.record, Record::Owned { .. }));
        (h.store.clone(), h.known_epoch(id), owned)
    };
    if owned {
        return Err(refuse(
            RefusalCode::BadArgument,
            format!("vessel {id} runs on this node: it cannot be its replica"),
        ));
    }
    let mut b = mesh.replication.book();
    let held = b.held.get(&id).map_or(0, |r| r.epoch);
    let above = known.max(held);
    if epoch < above {
        let detail = format!(
            "stale replica offer: epoch {epoch}, this node knows epoch {above} of vessel {id}"
        );
        return Err(refuse(RefusalCode::StaleEpoch, detail).with_known_epoch(above));
    }
    if !b.held.contains_key(&id) && b.held.len() >= MAX_REPLICATED_VESSELS {
        return Err(refuse(
            RefusalCode::Full,
            format!("this node holds replicas of {MAX_REPLICATED_VESSELS} vessels"),
        ));
    }
    let now = Instant::now();
    b.transfers.retain(|v, t| {
        let live = now.duration_since(t.started) < REPLICA_TRANSFER_TTL;
        if !live {
            store.hold(&arriving_key(*v), None);
        }
        live
    });
    if !b.transfers.contains_key(&id) && b.transfers.len() >= MAX_INCOMING_REPLICA_TRANSFERS {
        return Err(refuse(
            RefusalCode::Busy,
            format!("{MAX_INCOMING_REPLICA_TRANSFERS} replica transfers are arriving"),
        ));
    }
    Ok(())
}

/// The offered image, decoded and checked as a migration's final image is
/// (shape, limits, the deployer's signature and trust), with its manifest.
fn decode_checked(
    mesh: &Migrator,
    id: VesselId,
    epoch: u64,
    bytes: &[u8],
) -> Result<(VesselImage, Option<Manifest>), Refusal> {
    let img: VesselImage = protocol::cbor::decode(bytes)
        .map_err(|e| refuse(RefusalCode::Invalid, format!("replica image: {e}")))?;
    img.check()
        .map_err(|e| refuse(e.code(), format!("replica image: {e}")))?;
    if img.vessel() != id || img.epoch != epoch {
        return Err(refuse(
            RefusalCode::Invalid,
            "the replica image names another vessel or epoch than the offer",
        ));
    }
    img.deployment
        .verify()
        .map_err(|e| refuse(e.code(), format!("vessel {id}: {e}")))?;
    if !mesh.trusted.contains(&img.deployment.user_key) {
        return Err(refuse(
            RefusalCode::Untrusted,
            format!(
                "untrusted deployer: vessel {id} was deployed by user key {}, which this node does not trust",
                img.deployment.user_key
            ),
        ));
    }
    let manifest = match &img.resume {
        Resume::Fresh => None,
        Resume::Snapshot(h) => {
            if Hash::of(&img.manifest) != *h {
                return Err(refuse(
                    RefusalCode::Tampered,
                    "the replica image's manifest does not hash to its name",
                ));
            }
            let m: Manifest = protocol::cbor::decode(&img.manifest)
                .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
            m.check()
                .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
            Some(m)
        }
    };
    Ok((img, manifest))
}

/// Chunks, store and release, off the event loop.
fn serve_blocking(
    mesh: &Migrator,
    peer: PeerId,
    request: ReplicaRequest,
) -> Result<ReplicaResponse, Refusal> {
    match request {
        ReplicaRequest::Chunks {
            vessel,
            image,
            chunks,
        } => take_chunks(mesh, peer, vessel, image, chunks),
        ReplicaRequest::Store {
            vessel,
            epoch,
            image,
        } => store(mesh, peer, vessel, epoch, image),
        ReplicaRequest::Release { vessel, epoch } => {
            let from_host = mesh
                .replication
                .book()
                .held
                .get(&vessel)
                .is_some_and(|r| r.host.0 == peer.to_bytes());
            if from_host {
                drop_held(mesh, vessel, epoch);
            }
            Ok(ReplicaResponse::Released)
        }
        ReplicaRequest::Nonce | ReplicaRequest::Offer { .. } => {
            Err(refuse(RefusalCode::Internal, "handled by the event loop"))
        }
    }
}

fn no_transfer(id: VesselId) -> Refusal {
    refuse(
        RefusalCode::NoMigration,
        format!("no replica offer of this image of vessel {id} is open from this node"),
    )
}

/// Stores the chunks of an open transfer that it lacks, each checked.
fn take_chunks(
    mesh: &Migrator,
    peer: PeerId,
    id: VesselId,
    image: Hash,
    chunks: Vec<NamedChunk>,
) -> Result<ReplicaResponse, Refusal> {
    let store = lock(&mesh.host).store.clone();
    {
        let b = mesh.replication.book();
        let t = b
            .transfers
            .get(&id)
            .filter(|t| t.from == peer && t.image == image);
        let t = t.ok_or_else(|| no_transfer(id))?;
        if let Some(c) = chunks.iter().find(|c| !t.lacking.contains(&c.hash)) {
            return Err(refuse(
                RefusalCode::UnexpectedChunk,
                format!(
                    "chunk {} was not asked for by this replica transfer",
                    c.hash
                ),
            ));
        }
    }
    for c in &chunks {
        store
            .put_chunk_expecting(&c.hash, &c.bytes.0)
            .map_err(|_| {
                refuse(
                    RefusalCode::Tampered,
                    format!(
                        "tampered chunk: its content does not hash to its name {}",
                        c.hash
                    ),
                )
            })?;
    }
    if let Some(t) = mesh.replication.book().transfers.get_mut(&id) {
        for c in &chunks {
            t.lacking.remove(&c.hash);
        }
    }
    Ok(ReplicaResponse::Stored {
        count: chunks.len() as u32,
    })
}

/// Makes the transfer's image this node's copy of the vessel, durably:
/// every chunk and the image synced, then the record written (a new file,
/// synced, renamed), then the older copy let go.
fn store(
    mesh: &Migrator,
    peer: PeerId,
    id: VesselId,
    epoch: u64,
    image: Hash,
) -> Result<ReplicaResponse, Refusal> {
    let (store, dir) = {
        let h = lock(&mesh.host);
        (h.store.clone(), h.vessel_dir(id))
    };
    {
        let b = mesh.replication.book();
        let t = b.transfers.get(&id);
        let t = t
            .filter(|t| t.from == peer && t.image == image && t.epoch == epoch)
            .ok_or_else(|| no_transfer(id))?;
        if !t.lacking.is_empty() {
            return Err(refuse(
                RefusalCode::MissingChunks,
                format!("{} chunks of the image have not arrived", t.lacking.len()),
            ));
        }
    }
    let internal = |e: String| refuse(RefusalCode::Internal, e);
    // A chunk found here at the offer may have been collected since (it
    // was garbage then): checked again, and the host offers anew.
    let doc = store
        .get_image_doc(&image)
        .map_err(|e| internal(e.to_string()))?;
    let img: VesselImage = protocol::cbor::decode(&doc).map_err(|e| internal(e.to_string()))?;
    let manifest = protocol::cbor::decode::<Manifest>(&img.manifest).ok();
    let missing = image::lacking(&store, &img, manifest.as_ref(), &HashSet::new());
    if !missing.is_empty() {
        mesh.replication.book().transfers.remove(&id);
        return Err(refuse(
            RefusalCode::MissingChunks,
            format!(
                "{} chunks of the image went meanwhile; offer it again",
                missing.len()
            ),
        ));
    }
    // A sync vessel's output waits for this answer: it is given once the
    // copy is here in memory (the store's files, not yet synced), and the
    // copy is made durable after it (`flush`), as Remus does: an SD card's
    // fsync is slower than the sync interval. Others are durable first.
    let from_memory = img.deployment.body.sync_interval_ms().is_some();
    if !from_memory {
        store.sync().map_err(|e| internal(e.to_string()))?;
    }
    let record = ReplicaRecord {
        version: REPLICA_VERSION,
        vessel: id,
        epoch,
        image,
        host: PeerIdBytes(peer.to_bytes()),
        received_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    if !from_memory {
        write_record(&dir, &record).map_err(internal)?;
    }
    let mut b = mesh.replication.book();
    if !from_memory {
        b.durable.insert(id, image);
    } else if let Some(durable) = b.durable.get(&id) {
        // Kept until the newer copy is durable (`flush`).
        store.hold(&durable_key(id), Some(*durable));
    }
    store.hold(&held_key(id), Some(image));
    store.hold(&arriving_key(id), None);
    b.transfers.remove(&id);
    if b.held.insert(id, record).is_none() {
        info!(vessel = %id, host = %peer, epoch, "now a replica of this vessel");
    }
    let start_flush = from_memory && b.flushing.insert(id);
    drop(b);
    if start_flush {
        let mesh = mesh.clone();
        tokio::task::spawn_blocking(move || flush(&mesh, id));
    }
    Ok(ReplicaResponse::Held {
        vessel: id,
        epoch,
        image,
    })
}

/// Makes the newest copy of a sync vessel held here durable (its chunks
/// synced, then its record written), until the newest is durable: each
/// pass takes the newest copy, so a flush never writes an older record
/// over a newer one, and copies that came meanwhile cost one pass.
fn flush(mesh: &Migrator, id: VesselId) {
    let (store, dir) = {
        let h = lock(&mesh.host);
        (h.store.clone(), h.vessel_dir(id))
    };
    loop {
        let record = {
            let mut b = mesh.replication.book();
            let newest = b.held.get(&id).cloned();
            match newest {
                Some(r) if b.durable.get(&id) != Some(&r.image) => r,
                _ => {
                    b.flushing.remove(&id);
                    return;
                }
            }
        };
        let written = store
            .sync()
            .map_err(|e| e.to_string())
            .and_then(|()| write_record(&dir, &record));
        let mut b = mesh.replication.book();
        if let Err(e) = written {
            warn!(vessel = %id, "replica copy not made durable: {e}");
            b.flushing.remove(&id);
            return;
        }
        b.durable.insert(id, record.image);
        store.hold(&durable_key(id), None);
        if !b.held.contains_key(&id) {
            // Let go meanwhile: its record must not outlive it.
            let _ = std::fs::remove_file(dir.join(REPLICA_RECORD_FILE));
            b.durable.remove(&id);
            b.flushing.remove(&id);
            return;
        }
    }
}

/// Writes a replica record atomically and durably.
fn write_record(dir: &std::path::Path, record: &ReplicaRecord) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(REPLICA_RECORD_FILE);
    crate::daemon::datadir::write_atomic(&path, &protocol::cbor::encode(record))
        .map_err(|e| e.to_string())?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Lets go of this node's copy of `id` if its epoch is at most `epoch`:
/// its record goes, and its chunks at the next collection.
pub fn drop_held(mesh: &Migrator, id: VesselId, epoch: u64) {
    let mut b = mesh.replication.book();
    if b.held.get(&id).is_none_or(|r| r.epoch > epoch) {
        return;
    }
    b.held.remove(&id);
    b.durable.remove(&id);
    drop(b);
    let (store, dir) = {
        let h = lock(&mesh.host);
        (h.store.clone(), h.vessel_dir(id))
    };
    let path = dir.join(REPLICA_RECORD_FILE);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(vessel = %id, "cannot remove {}: {e}", path.display());
        }
    }
    store.hold(&held_key(id), None);
    store.hold(&durable_key(id), None);
    info!(vessel = %id, "no longer a replica of this vessel");
}

/// At start-up: the copies this node holds, from their records, held in
/// the store again before any collection.
pub fn load_held(mesh: &Migrator) {
    let (store, root) = {
        let h = lock(&mesh.host);
        (h.store.clone(), h.root.clone())
    };
    let Ok(dir) = std::fs::read_dir(&root) else {
        return;
    };
    let mut b = mesh.replication.book();
    for e in dir.flatten() {
        let Some(id) = VesselId::from_hex(&e.file_name().to_string_lossy()) else {
            continue;
        };
        let path = e.path().join(REPLICA_RECORD_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match protocol::cbor::decode::<ReplicaRecord>(&bytes) {
            Ok(r) if r.vessel == id => {
                store.hold(&held_key(id), Some(r.image));
                b.durable.insert(id, r.image);
                b.held.insert(id, r);
            }
            Ok(_) => warn!("{}: names another vessel; ignored", path.display()),
            Err(e) => warn!("{}: unreadable replica record: {e}", path.display()),
        }
    }
}
