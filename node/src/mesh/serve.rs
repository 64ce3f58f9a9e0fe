//! The destination side of the vessel protocol: requests from peers,
//! checked (a member, a nonce this node issued to that very peer) before
//! anything else, and the driver of the migration layer's destination
//! decisions (offer, chunks, prepare, commit, abort).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use protocol::ingress::{IngressRequest, IngressResponse};
use protocol::limits::{MAX_PUSHED_CHUNKS, MAX_PUSHED_PATCHES};
use protocol::membership::Nonce;
use protocol::migrate::{
    ChunkPatch, DecisionBody, FinalPush, MigrationRequest, MigrationResponse, NamedChunk, Offer,
    OfferKind, PatchError, PEER_PROTOCOL_VERSION,
};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::{ChunkedImage, Hash, Manifest};
use protocol::vessel::{check_warm_images, Resume, VesselId, VesselImage};
use tracing::{info, warn};

use super::behaviour::NodeBehaviour;
use super::commands::{serve_forward, Control};
use super::faults::fault_point;
use super::link::NodeCommand;
use super::peers::Membership;
use super::state::NodeState;
use super::vessels::{refuse, Incoming, IncomingData, Migrator, PREWARM_WAIT};
use crate::identity::peer_public_key;
use crate::migration::destination::{nothing_prepared, warm_commit, CommitPlan, Session};
use crate::migration::record::{prepared_matches, AbortRecord};
use crate::sync::lock;
use crate::vessel::image::{self, Prebuilt, Ready};
use crate::vessel::{Host, Record};

// ---------------------------------------------------------------------------
// The destination side: requests from peers.

/// Answers one request from a peer. Only members are served.
pub fn serve_peer(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: PeerRequest,
    channel: ResponseChannel<PeerResponse>,
) {
    let member = state
        .peers
        .get(&peer)
        .is_some_and(|e| matches!(e.membership, Membership::Member(_)));
    if !member {
        let refusal = refuse(
            RefusalCode::NotMember,
            "not a member of this mesh: this node serves vessels to members only",
        );
        warn!(%peer, "vessel request refused: {refusal}");
        let _ = swarm
            .behaviour_mut()
            .vessel
            .send_response(channel, PeerResponse::Refused(refusal));
        return;
    }
    // The user's authority first: nonces for the user, the user's signed
    // commands, and no vessel command on a member's word alone.
    let Some((request, channel)) =
        super::relay::serve_user_forward(swarm, state, peer, request, channel)
    else {
        return;
    };
    let send_now = |swarm: &mut Swarm<NodeBehaviour>, channel, response: PeerResponse| {
        if let PeerResponse::Refused(refusal) = &response {
            warn!(%peer, "vessel request refused: {refusal}");
        }
        let _ = swarm
            .behaviour_mut()
            .vessel
            .send_response(channel, response);
    };
    match request {
        PeerRequest::Migration(MigrationRequest::Nonce) => {
            let n = state.migration.issue(peer);
            send_now(swarm, channel, MigrationResponse::Nonce(n).into());
        }
        PeerRequest::Migration(MigrationRequest::Offer {
            offer,
            image,
            push,
            lease,
        }) => {
            // Checked here, in order, before any work: the signature (made
            // by the connection's own key), the addressee, the nonce.
            if let Err(refusal) = check_offer(state, peer, &offer, &image) {
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let mesh = state.migrator();
            let incoming = state.migration.incoming.clone();
            let tx = state.link.tx.clone();
            let next_nonce = state.migration.issue(peer);
            tokio::task::spawn_blocking(move || {
                let warm = (offer.body.kind == OfferKind::Warm)
                    .then(|| protocol::cbor::decode::<Vec<ChunkedImage>>(&image).ok())
                    .flatten();
                let (vessel, epoch) = (offer.body.vessel, offer.body.epoch);
                let (kind, t0) = (offer.body.kind, Instant::now());
                let response = match answer_offer(
                    &mesh,
                    &incoming,
                    peer,
                    (offer, image, push, lease),
                    next_nonce,
                ) {
                    Ok(r) => PeerResponse::Migration(r),
                    Err(refusal) => {
                        warn!(%peer, "offer refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let accepted = matches!(
                    response,
                    PeerResponse::Migration(MigrationResponse::Lacking { .. })
                );
                tracing::debug!(
                    vessel = %vessel,
                    ?kind,
                    accept_us = t0.elapsed().as_micros() as u64,
                    "offer checked"
                );
                let _ = tx.blocking_send(NodeCommand::RespondPeer { channel, response });
                // While the chunks arrive, get the module ready, so the
                // pause does not pay for instrumenting and compiling it.
                if let (true, Some(images)) = (accepted, warm) {
                    let module = images.get(1).and_then(|m| prewarm(&mesh.host, m));
                    if let (Some(mem), Some(module)) = (images.first(), module) {
                        prebuild_memory(&mesh.host, &incoming, peer, vessel, epoch, mem, module);
                    }
                }
            });
        }
        PeerRequest::Ingress(IngressRequest::Ingress(frame)) => {
            if let Err(e) = frame.check() {
                let refusal = refuse(e.code(), format!("ingress frame: {e}"));
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let host = state.host.clone();
            let tx = state.link.tx.clone();
            tokio::task::spawn_blocking(move || {
                let reply = super::ingress::host_take(&host, peer, &frame);
                let _ = tx.blocking_send(NodeCommand::RespondPeer {
                    channel,
                    response: IngressResponse::Ingress(reply).into(),
                });
            });
        }
        PeerRequest::Replica(r) => super::replica_serve::serve(swarm, state, peer, r, channel),
        PeerRequest::Release(r) => crate::upgrade::releases::serve(state, peer, r, channel),
        PeerRequest::Ingress(IngressRequest::Egress(frame)) => {
            if let Err(e) = frame.check() {
                let refusal = refuse(e.code(), format!("egress frame: {e}"));
                send_now(swarm, channel, PeerResponse::Refused(refusal));
                return;
            }
            let ingress = state.ingress.clone();
            let tx = state.link.tx.clone();
            tokio::spawn(async move {
                let response = match super::ingress::entry_write(&ingress, peer, frame).await {
                    Ok(r) => IngressResponse::Egress(r).into(),
                    Err(refusal) => {
                        warn!(%peer, "egress refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let _ = tx
                    .send(NodeCommand::RespondPeer { channel, response })
                    .await;
            });
        }
        other => {
            let control = Control::of(state);
            let incoming = state.migration.incoming.clone();
            let tx = state.link.tx.clone();
            tokio::spawn(async move {
                let response = match serve_async(&control, &incoming, peer, other).await {
                    Ok(r) => r,
                    Err(refusal) => {
                        warn!(%peer, "vessel request refused: {refusal}");
                        PeerResponse::Refused(refusal)
                    }
                };
                let _ = tx
                    .send(NodeCommand::RespondPeer { channel, response })
                    .await;
            });
        }
    }
}

/// Waits (bounded) for a module's chunks to arrive, then prepares it.
pub(super) fn prewarm(
    host: &Arc<Mutex<Host>>,
    module: &ChunkedImage,
) -> Option<Arc<crate::vessel::PreparedModule>> {
    let store = lock(host).store.clone();
    let deadline = Instant::now() + PREWARM_WAIT;
    while module.chunks.iter().flatten().any(|h| !store.has_chunk(h)) {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let bytes = crate::store::get_image(&store, module, protocol::limits::MAX_MODULE_BYTES).ok()?;
    Host::prewarm_module(host, bytes)
}

/// Writes a pre-copy round's memory image into the migration's blank
/// instance (made on the first round) once its chunks are here, off the
/// pause: only the chunks whose names changed since the last round.
pub(super) fn prebuild_memory(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    vessel: VesselId,
    epoch: u64,
    image: &ChunkedImage,
    module: Arc<crate::vessel::PreparedModule>,
) {
    let store = lock(host).store.clone();
    let deadline = Instant::now() + PREWARM_WAIT;
    while image.chunks.iter().flatten().any(|h| !store.has_chunk(h)) {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(slot) = lock(incoming)
        .session(vessel, &peer, epoch)
        .map(|s| s.data.memory.clone())
    else {
        return;
    };
    let mut prebuilt = lock(&slot);
    if prebuilt
        .as_ref()
        .is_none_or(|p| !Arc::ptr_eq(&p.module, &module))
    {
        *prebuilt = Prebuilt::new(module).ok();
    }
    if let Some(p) = prebuilt.as_mut() {
        if let Err(e) = p.patch(&store, image) {
            warn!(vessel = %vessel, "cannot build the incoming memory ahead: {e}");
            *prebuilt = None;
        }
    }
    drop(prebuilt);
    // This round's chunks made durable now, while the vessel still runs at
    // the source, so that `prepare`, in the pause, syncs only what came
    // after.
    if let Err(e) = store.sync_written() {
        warn!(vessel = %vessel, "cannot sync the store: {e}");
    }
}

pub(super) fn check_offer(
    state: &mut NodeState,
    peer: PeerId,
    offer: &Offer,
    image: &[u8],
) -> Result<(), Refusal> {
    let b = &offer.body;
    if b.version != PEER_PROTOCOL_VERSION {
        return Err(refuse(
            RefusalCode::Version,
            format!(
                "offer version {}, this node speaks {PEER_PROTOCOL_VERSION}",
                b.version
            ),
        ));
    }
    let key = peer_public_key(&peer).ok_or_else(|| {
        refuse(
            RefusalCode::Forged,
            "the source's PeerId is not an ed25519 key",
        )
    })?;
    offer
        .verify(&key)
        .map_err(|e| refuse(RefusalCode::Forged, format!("forged offer: {e}")))?;
    if b.source.0 != peer.to_bytes() {
        return Err(refuse(
            RefusalCode::Forged,
            "forged offer: it names another node as its source",
        ));
    }
    if b.destination.0 != state.identity.peer_id.to_bytes() {
        return Err(refuse(
            RefusalCode::Misdirected,
            "misdirected offer: it names another node as its destination",
        ));
    }
    state.migration.redeem(&b.nonce, &peer)?;
    if Hash::of(image) != b.image {
        return Err(refuse(
            RefusalCode::Tampered,
            "the image does not hash to what the offer names",
        ));
    }
    Ok(())
}

/// Answers an offer: accepts it (with the chunks a final offer pushed),
/// then, when a final offer asked for it and nothing is lacking, prepares
/// its image at once, exactly as a `Prepare` naming it would (the same
/// checks, in the same order, with nothing between them). A prepare that
/// fails here is not an error of the offer: the answer says not prepared,
/// and the source's `Prepare` hears the refusal.
pub(super) fn answer_offer(
    mesh: &Migrator,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    (offer, image_bytes, push, lease): OfferParts,
    next_nonce: Nonce,
) -> Result<MigrationResponse, Refusal> {
    let (vessel, epoch, image) = (offer.body.vessel, offer.body.epoch, offer.body.image);
    let final_offer = offer.body.kind == OfferKind::Final;
    let prepare_now = final_offer && push.as_ref().is_some_and(|p| p.prepare);
    let pushed = match (offer.body.kind, push) {
        (OfferKind::Final, Some(p)) => (p.chunks, p.patches),
        _ => Default::default(),
    };
    let lease = match lease.filter(|_| final_offer) {
        Some(cert) => Some(check_handoff(*cert, vessel, epoch, &mesh.me)?),
        None => None,
    };
    let answer = accept_offer(mesh, incoming, peer, offer, image_bytes, pushed, next_nonce)?;
    if let Some(cert) = lease {
        if let Some(s) = lock(incoming).session_mut(vessel, &peer, epoch) {
            s.data.lease = Some(cert);
        }
    }
    let MigrationResponse::Lacking {
        chunks, next_nonce, ..
    } = answer
    else {
        return Ok(answer);
    };
    let prepared = prepare_now
        && chunks.is_empty()
        && prepare(&mesh.host, incoming, peer, (vessel, epoch, image))
            .inspect_err(
                |r| warn!(%peer, %vessel, "the final offer could not be prepared at once: {r}"),
            )
            .is_ok();
    Ok(MigrationResponse::Lacking {
        chunks,
        next_nonce,
        prepared,
    })
}

/// An offer as it arrives: the signed offer, its image, a final offer's
/// push and a leased vessel's handoff certificate.
pub(super) type OfferParts = (
    Offer,
    Vec<u8>,
    Option<FinalPush>,
    Option<Box<protocol::lease::Certificate>>,
);

/// A final offer's handoff certificate (issue 15), checked: it verifies
/// (a majority of its signers signed it), and it hands exactly the offered
/// epoch of the offered vessel to this node. The vessel then runs here
/// only under its lease, from that certificate.
fn check_handoff(
    cert: protocol::lease::Certificate,
    vessel: VesselId,
    epoch: u64,
    me: &PeerId,
) -> Result<protocol::lease::Certificate, Refusal> {
    let invalid = |why: String| refuse(RefusalCode::Invalid, format!("handoff certificate: {why}"));
    crate::failover::cert::check_certificate(&cert, None).map_err(|e| invalid(e.to_string()))?;
    let b = &cert.body;
    if b.vessel != vessel || b.epoch != epoch {
        return Err(invalid(format!(
            "it names vessel {} at epoch {}, the offer {vessel} at {epoch}",
            b.vessel, b.epoch
        )));
    }
    if b.owner.0 != me.to_bytes() || b.kind != protocol::lease::AssignmentKind::Handoff {
        return Err(invalid("it does not hand the vessel to this node".into()));
    }
    Ok(cert)
}

/// Stores the pushed chunks that `lacking` names (each checked against its
/// name) and returns what is still lacking; pushed chunks the image does
/// not need from the source are ignored, as a `Chunks` batch's would be
/// refused, so a source can make this node store nothing but its image.
fn store_pushed(
    store: &crate::store::ChunkStore,
    mut lacking: Vec<Hash>,
    (chunks, patches): (Vec<NamedChunk>, Vec<ChunkPatch>),
) -> Result<Vec<Hash>, Refusal> {
    for (what, n, limit) in [
        ("chunks", chunks.len(), MAX_PUSHED_CHUNKS),
        ("chunk patches", patches.len(), MAX_PUSHED_PATCHES),
    ] {
        if n > limit {
            return Err(refuse(
                RefusalCode::Limit,
                format!("{n} {what} pushed with an offer, over the limit of {limit}"),
            ));
        }
    }
    let tampered = |h: &Hash| {
        refuse(
            RefusalCode::Tampered,
            format!("tampered chunk: its content does not hash to its name {h}"),
        )
    };
    let wanted: HashSet<Hash> = lacking.iter().copied().collect();
    let mut stored = HashSet::new();
    for c in chunks.iter().filter(|c| wanted.contains(&c.hash)) {
        store
            .put_chunk_expecting(&c.hash, &c.bytes.0)
            .map_err(|_| tampered(&c.hash))?;
        stored.insert(c.hash);
    }
    for p in patches.iter().filter(|p| wanted.contains(&p.hash)) {
        // A base this node does not have leaves the chunk lacking: the
        // source sends it after the answer, as without a push.
        let base = match &p.base {
            None => Vec::new(),
            Some(b) => match store.get_chunk(b) {
                Ok(bytes) => bytes,
                Err(_) => continue,
            },
        };
        let bytes = p.apply(&base).map_err(|e| match e {
            PatchError::Mismatch => tampered(&p.hash),
            PatchError::OutOfBounds => refuse(
                RefusalCode::Invalid,
                format!("a patch of chunk {} writes outside a chunk", p.hash),
            ),
        })?;
        store
            .put_chunk_expecting(&p.hash, &bytes)
            .map_err(|_| tampered(&p.hash))?;
        stored.insert(p.hash);
    }
    lacking.retain(|h| !stored.contains(h));
    Ok(lacking)
}

/// Decodes and checks an offered image and answers the chunks this node
/// lacks (after storing those pushed with it). Runs off the event loop
/// (hashing, store lookups).
pub(super) fn accept_offer(
    mesh: &Migrator,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    offer: Offer,
    image_bytes: Vec<u8>,
    pushed: (Vec<NamedChunk>, Vec<ChunkPatch>),
    next_nonce: Nonce,
) -> Result<MigrationResponse, Refusal> {
    let b = offer.body;
    let id = b.vessel;
    // The durable record, as every destination rule judges by: a vessel
    // prepared here and not committed has its `Prepared` record on disk
    // only; judged by the in-memory one, an offer at the epoch of a stale
    // `Prepared` record was let in, and the equal-epoch rule did not hold.
    let known = record_on_disk(&lock(&mesh.host), id);
    // The destination's rules: room for another migration, and the epoch.
    // A later round of the same migration keeps what earlier ones built.
    let (known_chunks, memory, earlier_warm) = {
        let mut inc = lock(incoming);
        match inc.check_offer(&peer, id, b.epoch, known.as_ref(), Instant::now())? {
            Some(s) if s.expected.is_empty() => {
                let mut k = (*s.data.known).clone();
                k.extend(s.data.named.iter().copied());
                (Arc::new(k), s.data.memory.clone(), s.warm_chunks)
            }
            Some(s) => (s.data.known.clone(), s.data.memory.clone(), s.warm_chunks),
            None => Default::default(),
        }
    };
    let mut warm_chunks = earlier_warm;
    let host = lock(&mesh.host);
    let (lacking, image, manifest, named) = match b.kind {
        OfferKind::Warm => {
            let images: Vec<ChunkedImage> = protocol::cbor::decode(&image_bytes)
                .map_err(|e| refuse(RefusalCode::Invalid, format!("warm image: {e}")))?;
            check_warm_images(&images).map_err(|e| refuse(e.code(), format!("warm image: {e}")))?;
            let mut all: Vec<Hash> = images
                .iter()
                .flat_map(|i| i.chunks.iter().flatten().copied())
                .collect();
            all.sort();
            all.dedup();
            let named: HashSet<Hash> = all.iter().copied().collect();
            all.retain(|h| !known_chunks.contains(h) && !host.store.has_chunk(h));
            warm_chunks = lock(incoming).check_warm_budget(&peer, id, b.epoch, all.len() as u64)?;
            (all, None, None, named)
        }
        OfferKind::Final => {
            let image: VesselImage = protocol::cbor::decode(&image_bytes)
                .map_err(|e| refuse(RefusalCode::Invalid, format!("image: {e}")))?;
            image
                .check()
                .map_err(|e| refuse(e.code(), format!("image: {e}")))?;
            if image.vessel() != id || image.epoch != b.epoch {
                return Err(refuse(
                    RefusalCode::Invalid,
                    "the image names another vessel or epoch than the offer",
                ));
            }
            image
                .deployment
                .verify()
                .map_err(|e| refuse(e.code(), format!("vessel {id}: {e}")))?;
            if !mesh.trusted.contains(&image.deployment.user_key) {
                return Err(refuse(RefusalCode::Untrusted, format!(
                    "untrusted deployer: vessel {id} was deployed by user key {}, which this node does not trust",
                    image.deployment.user_key
                )));
            }
            host.check_capacity(id)?;
            let manifest = match &image.resume {
                Resume::Snapshot(h) => {
                    if Hash::of(&image.manifest) != *h {
                        return Err(refuse(
                            RefusalCode::Tampered,
                            "the image's manifest does not hash to its name",
                        ));
                    }
                    let m: Manifest = protocol::cbor::decode(&image.manifest)
                        .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
                    m.check()
                        .map_err(|e| refuse(RefusalCode::Invalid, format!("manifest: {e}")))?;
                    // This node's limits (lower on 32-bit), before any chunk moves.
                    crate::dock::snapshot::check_limits(&m, &host.dock)
                        .map_err(|e| refuse(RefusalCode::Limit, format!("vessel {id}: {e}")))?;
                    Some(m)
                }
                Resume::Fresh => None,
            };
            let lacking = image::lacking(&host.store, &image, manifest.as_ref(), &known_chunks);
            let lacking = store_pushed(&host.store, lacking, pushed)?;
            (lacking, Some(image), manifest, HashSet::new())
        }
    };
    drop(host);
    lock(incoming).accept(
        id,
        Session {
            from: peer,
            kind: b.kind,
            epoch: b.epoch,
            image: b.image,
            expected: lacking.iter().copied().collect(),
            started: Instant::now(),
            prepared: false,
            warm_chunks,
            data: IncomingData {
                image,
                manifest,
                ready: None,
                known: known_chunks,
                named: Arc::new(named),
                memory,
                lease: None,
            },
        },
    );
    Ok(MigrationResponse::Lacking {
        chunks: lacking,
        next_nonce,
        prepared: false,
    })
}

/// Answers a request that is not the event loop's to answer, off the loop.
pub(super) async fn serve_async(
    control: &Control,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    request: PeerRequest,
) -> Result<PeerResponse, Refusal> {
    match request {
        PeerRequest::Migration(m) => Ok(serve_migration(&control.migrator, incoming, peer, m)
            .await?
            .into()),
        PeerRequest::Forward(f) => Ok(serve_forward(control, peer, f).await?.into()),
        PeerRequest::Ingress(_) | PeerRequest::Replica(_) | PeerRequest::Release(_) => {
            Err(refuse(RefusalCode::Internal, "handled by the event loop"))
        }
        PeerRequest::Lease(protocol::lease::LeaseRequest::Proof { vessel, epoch }) => {
            let m = &control.migrator;
            Ok(super::lease::serve::proof(&m.leases, &m.host, vessel, epoch)?.into())
        }
        // The lease protocol's rules are in `failover` (issue 15).
        PeerRequest::Lease(l) => {
            let m = &control.migrator;
            Ok(super::lease::serve::serve(&m.leases, &m.signing, peer, l)
                .await?
                .into())
        }
    }
}

/// The destination side of a migration: chunks, prepare, commit, abort.
pub(super) async fn serve_migration(
    mesh: &Migrator,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    request: MigrationRequest,
) -> Result<MigrationResponse, Refusal> {
    let key = peer_public_key(&peer).ok_or_else(|| {
        refuse(
            RefusalCode::Forged,
            "the peer's PeerId is not an ed25519 key",
        )
    })?;
    match request {
        MigrationRequest::Chunks {
            vessel,
            epoch,
            chunks,
        } => {
            let incoming = incoming.clone();
            let store = lock(&mesh.host).store.clone();
            tokio::task::spawn_blocking(move || {
                // A batch sent again (its answer was lost) finds its chunks
                // stored already: nothing to do for those.
                let wanted: HashSet<Hash> = lock(&incoming)
                    .check_chunks(&peer, vessel, epoch, chunks.iter().map(|c| c.hash), |h| {
                        store.has_chunk(h)
                    })?
                    .into_iter()
                    .collect();
                for c in chunks.iter().filter(|c| wanted.contains(&c.hash)) {
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
                lock(&incoming).stored(vessel, chunks.iter().map(|c| c.hash));
                Ok(MigrationResponse::Stored {
                    count: chunks.len() as u32,
                })
            })
            .await
            .map_err(Refusal::internal)?
        }
        MigrationRequest::Prepare {
            vessel,
            epoch,
            image,
        } => {
            let incoming = incoming.clone();
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || {
                prepare(&host, &incoming, peer, (vessel, epoch, image))
            })
            .await
            .map_err(Refusal::internal)?
        }
        MigrationRequest::Commit(decision) => {
            decision
                .verify(&key)
                .map_err(|e| refuse(RefusalCode::Forged, format!("forged commit: {e}")))?;
            let d = &decision.body;
            if d.source.0 != peer.to_bytes() || d.destination.0 != mesh.me.to_bytes() || !d.commit {
                return Err(refuse(
                    RefusalCode::Forged,
                    "forged commit: wrong source, destination or decision",
                ));
            }
            let incoming = incoming.clone();
            let host = mesh.host.clone();
            let body = decision.body.clone();
            let (answer, entries) =
                tokio::task::spawn_blocking(move || commit(&host, &incoming, peer, &body))
                    .await
                    .map_err(Refusal::internal)??;
            let (vessel, epoch) = (decision.body.vessel, decision.body.epoch);
            super::ingress::announce_arrival(&mesh.link, mesh.me, vessel, epoch, entries);
            Ok(answer)
        }
        MigrationRequest::Abort(decision) => {
            decision
                .verify(&key)
                .map_err(|e| refuse(RefusalCode::Forged, format!("forged abort: {e}")))?;
            let d = &decision.body;
            if d.source.0 != peer.to_bytes() || d.commit {
                return Err(refuse(
                    RefusalCode::Forged,
                    "forged abort: wrong source or decision",
                ));
            }
            abort(mesh, incoming, peer, &decision.body)?;
            info!(vessel = %d.vessel, epoch = d.epoch, "migration aborted by its source");
            Ok(MigrationResponse::Aborted)
        }
        MigrationRequest::Nonce | MigrationRequest::Offer { .. } => {
            Err(refuse(RefusalCode::Internal, "handled by the event loop"))
        }
    }
}

/// Everything is here: write the image durably, re-create the vessel (not
/// running), and record `Prepared`.
pub(super) fn prepare(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    (vessel, epoch, image_named): (VesselId, u64, Hash),
) -> Result<MigrationResponse, Refusal> {
    fault_point("dest-prepare");
    let t0 = Instant::now();
    let (image, manifest, image_hash, warm_memory, lease) = {
        let inc = lock(incoming);
        let s = inc.check_prepare(&peer, vessel, epoch, image_named)?;
        // `check_prepare` takes final sessions only, which always hold
        // their image; a refusal, not a panic under the lock, if not.
        let image = s.data.image.clone().ok_or_else(|| {
            refuse(
                RefusalCode::NoMigration,
                "the session to prepare has no final image",
            )
        })?;
        (
            image,
            s.data.manifest.is_some(),
            s.image,
            s.data.memory.clone(),
            s.data.lease.clone(),
        )
    };
    // Waits for a pre-copy round still being written into it.
    let prebuilt = lock(&warm_memory).take();
    let mut h = lock(host);
    // Pair assertion with the offer: every chunk the image names is here
    // (those known to be here since the pre-copy rounds are not asked
    // again).
    let still = {
        let inc = lock(incoming);
        let s = inc.session(vessel, &peer, epoch);
        image::lacking(
            &h.store,
            &image,
            s.and_then(|s| s.data.manifest.as_ref()),
            s.map_or(&HashSet::new(), |s| &*s.data.known),
        )
    };
    if !still.is_empty() {
        return Err(refuse(
            RefusalCode::MissingChunks,
            format!("{} chunks are missing from the store", still.len()),
        ));
    }
    let t_checked = t0.elapsed();
    // Manifest and image written, then made durable with every chunk this
    // migration stored and no sync covered yet (the pre-copy rounds' chunks
    // were synced during those rounds, off the pause): one `fdatasync` of
    // the store's current pack file, not a `syncfs`, which would wait for
    // every dirty page of the disk (docs/protocol.md, "What is durable
    // before `Prepared`").
    if manifest {
        h.store
            .put_manifest_bytes_unsynced(&image.manifest)
            .map_err(Refusal::internal)?;
    }
    let (bytes, found) = image.encode_and_hash();
    debug_assert_eq!(found, image_hash);
    h.store
        .put_image_doc(&bytes, false)
        .map_err(Refusal::internal)?;
    let t_written = t0.elapsed();
    let unsynced = h.store.unsynced_count();
    // The fsyncs run beside the rest of `prepare` (memory, vessel, the
    // `Prepared` record), so that the disk's waits overlap. A `Prepared`
    // record that reaches the disk before the chunks do is harmless: this
    // node answers `Prepared` only once both are durable, and the source
    // never commits without that answer (a lone `Prepared` record is never
    // run, and is dropped on `Abort` or a newer offer).
    let sync_store = h.store.clone();
    let (synced, rest) = std::thread::scope(|scope| {
        let sync = scope.spawn(move || (sync_store.sync_written(), t0.elapsed()));
        let rest = (|| -> Result<(Ready, bool, Duration, Duration), Refusal> {
            // The memory the pre-copy rounds built, patched to the final
            // image: only the chunks that changed since are read and
            // written.
            let final_memory = lock(incoming)
                .session(vessel, &peer, epoch)
                .and_then(|s| s.data.manifest.as_ref().map(|m| m.memory.clone()));
            let memory = match (prebuilt, &final_memory) {
                (Some(mut p), Some(m)) => match p.patch(&h.store, m) {
                    Ok(_) => Some(p),
                    Err(e) => {
                        warn!(vessel = %vessel, "the memory built ahead does not patch: {e}");
                        None
                    }
                },
                _ => None,
            };
            let t_patched = t0.elapsed();
            // Pair assertion (debug builds): the patched memory is exactly
            // what the manifest names, chunk by chunk.
            #[cfg(debug_assertions)]
            if let (Some(p), Some(m)) = (&memory, &final_memory) {
                let mem = p.memory();
                assert_eq!(mem.len() as u64, m.size_bytes, "patched memory size");
                let cs = protocol::snapshot::CHUNK_SIZE_BYTES as usize;
                for (i, c) in m.chunks.iter().enumerate() {
                    let chunk = &mem[i * cs..((i + 1) * cs).min(mem.len())];
                    let want = c.unwrap_or_else(|| Hash::of(chunk));
                    let found = if c.is_none() && chunk.iter().all(|&b| b == 0) {
                        want
                    } else {
                        Hash::of(chunk)
                    };
                    assert_eq!(found, want, "patched memory differs at chunk {i}");
                }
            }
            let prebuilt = memory.is_some();
            let ready = image::ready_with_memory(&mut h, &image, memory)?;
            let t_ready = t0.elapsed();
            let known = record_on_disk(&h, vessel);
            // Never over a record at or above this epoch but this image's
            // own `Prepared` one (a repeat): an offer prepared at once can
            // be a late one of an earlier attempt, checked against the
            // record before a later attempt at the same epoch prepared.
            let above = known.as_ref().is_some_and(|k| k.epoch() >= epoch);
            if above && !prepared_matches(known.as_ref(), epoch, image_hash) {
                return Err(refuse(
                    RefusalCode::StaleEpoch,
                    format!(
                        "stale epoch {epoch} for vessel {vessel}: a record at or above it is here"
                    ),
                ));
            }
            // A leased vessel's certificate first: once `Prepared` is
            // answered the commit may start it, under its lease only.
            if let Some(cert) = &lease {
                crate::vessel::certificate::write(&h.vessel_dir(vessel), cert)
                    .map_err(|e| Refusal::internal(format!("its lease certificate: {e}")))?;
            }
            let prepared = Record::prepared(epoch, image_hash, peer.to_bytes(), known.as_ref());
            h.write_record(vessel, &prepared)?;
            Ok((ready, prebuilt, t_patched, t_ready))
        })();
        (sync.join(), rest)
    });
    let (synced, t_synced) = synced.map_err(|_| Refusal::internal("the sync thread panicked"))?;
    synced.map_err(Refusal::internal)?;
    let (ready, prebuilt, t_patched, t_ready) = rest?;
    tracing::debug!(
        vessel = %vessel,
        checked_us = t_checked.as_micros() as u64,
        written_us = t_written.as_micros() as u64,
        synced_us = t_synced.as_micros() as u64,
        patched_us = t_patched.as_micros() as u64,
        ready_us = t_ready.as_micros() as u64,
        recorded_us = t0.elapsed().as_micros() as u64,
        prebuilt,
        unsynced_files = unsynced,
        "prepare phases"
    );
    // Only now may a commit run the vessel from this session: the very
    // session prepared (a later offer at the same epoch may have replaced
    // it meanwhile, a warm one among them).
    if let Some(s) = lock(incoming)
        .session_mut(vessel, &peer, epoch)
        .filter(|s| s.image == image_hash && s.kind == OfferKind::Final)
    {
        s.prepared = true;
        s.data.ready = Some(ready);
    }
    Ok(MigrationResponse::Prepared)
}

/// The source committed: run the prepared vessel under the new epoch.
/// Idempotent: a repeated commit of what already runs answers `Committed`.
/// Returns, beside the answer, the entry nodes of the vessel's clients
/// (from its image), to tell of the arrival (none for a repeat).
pub(super) fn commit(
    host: &Arc<Mutex<Host>>,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    d: &DecisionBody,
) -> Result<(MigrationResponse, Vec<PeerId>), Refusal> {
    fault_point("dest-commit");
    let mut h = lock(host);
    // The rules judge by the durable record (after a restart, a prepared
    // vessel is on disk only).
    let known = record_on_disk(&h, d.vessel);
    let plan = lock(incoming).commit(&peer, d.vessel, d.epoch, d.image, known.as_ref());
    let (image, ready) = match plan {
        CommitPlan::AlreadyDone => return Ok((MigrationResponse::Committed, Vec::new())),
        CommitPlan::Refuse(r) => return Err(r),
        CommitPlan::FromSession(s) => match s.data.image {
            Some(image) => (image, s.data.ready),
            None => return Err(warm_commit(d.vessel, d.epoch)),
        },
        CommitPlan::FromDisk if prepared_matches(known.as_ref(), d.epoch, d.image) => {
            // This node restarted after it prepared: the image is on disk.
            let bytes = h.store.get_image_doc(&d.image).map_err(Refusal::internal)?;
            let img: VesselImage = protocol::cbor::decode(&bytes).map_err(Refusal::internal)?;
            (img, None)
        }
        CommitPlan::FromDisk => return Err(nothing_prepared(d.vessel, d.epoch)),
    };
    let record = Record::Owned {
        epoch: d.epoch,
        image: d.image,
    };
    h.write_record(d.vessel, &record)?;
    let reason = if image.placement.last_move.is_empty() {
        format!("migrated here from {peer}")
    } else {
        image.placement.last_move.clone()
    };
    let entries = image
        .hub
        .conns
        .iter()
        .filter_map(|c| PeerId::from_bytes(&c.entry.0).ok())
        .collect();
    h.start_from_image(image, record, reason, ready)?;
    if let Some(l) = h.vessels.get_mut(&d.vessel) {
        l.last_move = Some(Instant::now());
    }
    info!(vessel = %d.vessel, epoch = d.epoch, "migration committed: running here");
    Ok((MigrationResponse::Committed, entries))
}

/// The record this node has on disk for `vessel` (the durable fact, which
/// the rules judge by; an unreadable one counts as none).
/// A removed vessel's tombstone counts as an `Ended` record at its epoch,
/// above any record left of it: every stale offer or commit is refused.
pub(super) fn record_on_disk(h: &Host, vessel: VesselId) -> Option<Record> {
    let on_disk = std::fs::read(h.vessel_dir(vessel).join("record.cbor"))
        .ok()
        .and_then(|bytes| protocol::cbor::decode::<Record>(&bytes).ok());
    let removed = h.tombstones.epoch_of(vessel);
    match on_disk {
        Some(r) if r.epoch() >= removed => Some(r),
        _ if removed > 0 => Some(Record::Ended {
            epoch: removed,
            image: protocol::snapshot::Hash([0; 32]),
            exit: "removed (meshnode rm)".into(),
            code: None,
        }),
        r => r,
    }
}

/// The source gave up the move at `d.epoch` with image `d.image`: its
/// session ends, and the migration layer's abort rule says what becomes of
/// the record (only that very move's `Prepared` record goes, and the
/// settled record it stood over comes back).
fn abort(
    mesh: &Migrator,
    incoming: &Arc<Mutex<Incoming>>,
    peer: PeerId,
    d: &DecisionBody,
) -> Result<(), Refusal> {
    let mut h = lock(&mesh.host);
    let known = record_on_disk(&h, d.vessel);
    let plan = lock(incoming).abort(&peer, d.vessel, d.epoch, d.image, known.as_ref());
    match &plan.record {
        AbortRecord::Keep => return Ok(()),
        AbortRecord::Restore(before) => h.write_record(d.vessel, before)?,
        AbortRecord::Remove => {
            let path = h.vessel_dir(d.vessel).join("record.cbor");
            std::fs::remove_file(&path).map_err(Refusal::internal)?;
        }
    }
    let prepared_here = h
        .vessels
        .get(&d.vessel)
        .is_some_and(|l| matches!(l.record, Record::Prepared { epoch, .. } if epoch == d.epoch));
    if prepared_here {
        h.vessels.remove(&d.vessel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChunkStore;
    use protocol::migrate::ChunkBytes;
    use protocol::migrate::PatchRun;

    fn chunk(seed: u8) -> Vec<u8> {
        (0..4096u32).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    fn named(bytes: &[u8]) -> NamedChunk {
        NamedChunk {
            hash: Hash::of(bytes),
            bytes: ChunkBytes(bytes.to_vec()),
        }
    }

    #[test]
    fn pushed_chunks_and_patches_fill_only_what_the_image_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let (base, whole, other) = (chunk(3), chunk(5), chunk(7));
        store.put_chunk(&base).unwrap();
        let mut changed = base.clone();
        changed[100..104].copy_from_slice(b"SETx");
        let patch = ChunkPatch {
            hash: Hash::of(&changed),
            base: Some(Hash::of(&base)),
            len: changed.len() as u32,
            runs: vec![PatchRun {
                at: 100,
                bytes: ChunkBytes(b"SETx".to_vec()),
            }],
        };
        let not_sent = Hash::of(b"not pushed");
        let lacking = vec![Hash::of(&whole), Hash::of(&changed), not_sent];
        // `other` is pushed but not lacking: ignored, not stored.
        let pushed = (vec![named(&whole), named(&other)], vec![patch]);
        let left = store_pushed(&store, lacking, pushed).unwrap();
        assert_eq!(left, vec![not_sent]);
        assert_eq!(store.get_chunk(&Hash::of(&changed)).unwrap(), changed);
        assert!(store.has_chunk(&Hash::of(&whole)));
        assert!(!store.has_chunk(&Hash::of(&other)));
    }

    #[test]
    fn a_patch_without_its_base_leaves_the_chunk_lacking_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let (base, now) = (chunk(3), chunk(9));
        let runs = ChunkPatch::runs_between(&base, &now, 16, now.len()).unwrap();
        let patch = ChunkPatch {
            hash: Hash::of(&now),
            base: Some(Hash::of(&base)),
            len: now.len() as u32,
            runs,
        };
        let lacking = vec![Hash::of(&now)];
        let left = store_pushed(&store, lacking.clone(), (vec![], vec![patch.clone()])).unwrap();
        assert_eq!(left, lacking, "the base is not here: still lacking");
        store.put_chunk(&base).unwrap();
        let forged = ChunkPatch {
            runs: vec![PatchRun {
                at: 0,
                bytes: ChunkBytes(vec![1]),
            }],
            ..patch
        };
        let refusal = store_pushed(&store, lacking.clone(), (vec![], vec![forged])).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Tampered);
        let mut bad = named(&now);
        bad.bytes.0[0] ^= 1;
        let refusal = store_pushed(&store, lacking, (vec![bad], vec![])).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Tampered);
    }

    #[test]
    fn more_pushed_chunks_than_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let many: Vec<NamedChunk> = (0..=MAX_PUSHED_CHUNKS as u8).map(|i| named(&[i])).collect();
        let refusal = store_pushed(&store, vec![], (many, vec![])).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Limit);
    }
}
