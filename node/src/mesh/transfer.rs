//! What a migration's source sends: signed offers, and the chunks the
//! destination lacks, a few batches in flight. The steps the source's
//! driver (`migrate.rs`) performs when the migration layer's source
//! machine asks for them; they decide nothing themselves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use libp2p::PeerId;
use protocol::control::PeerIdBytes;
use protocol::limits::{MAX_CHUNKS_PER_BATCH, MAX_PUSHED_CHUNKS, MAX_PUSHED_PATCHES};
use protocol::membership::Nonce;
use protocol::migrate::{
    ChunkBytes, ChunkPatch, FinalPush, MigrationRequest, MigrationResponse, NamedChunk, Offer,
    OfferBody, OfferKind, PEER_PROTOCOL_VERSION,
};
use protocol::snapshot::{ChunkedImage, Hash, CHUNK_SIZE_BYTES};
use protocol::vessel::VesselId;
use tracing::warn;

use super::link::RequestError;
use super::vessels::Migrator;
use super::vessels::CHUNK_BATCHES_IN_FLIGHT;
use crate::migration::ErrorKind;
use crate::sync::lock;

/// What an offer is for.
#[derive(Debug, Clone, Copy)]
pub(super) struct OfferSpec {
    pub to: PeerId,
    pub kind: OfferKind,
    pub id: VesselId,
    pub epoch: u64,
}

/// The destination's answer to an offer.
pub(super) struct OfferAnswer {
    /// The chunks of the image it lacks (after those pushed with it).
    pub lacking: Vec<Hash>,
    /// Its nonce for the next offer.
    pub next_nonce: Nonce,
    /// It prepared the final image already (the offer asked it to).
    pub prepared: bool,
}

/// Offers `image` once, under `nonce` (spent by this offer whatever
/// happens), with `push` (a final offer's delta): returns what the
/// destination answered. Never retried here: the source machine decides.
pub(super) async fn offer_once(
    mesh: &Migrator,
    spec: OfferSpec,
    image: Vec<u8>,
    nonce: Nonce,
    push: Option<FinalPush>,
    lease: Option<Box<protocol::lease::Certificate>>,
) -> Result<OfferAnswer, RequestError> {
    let body = OfferBody {
        version: PEER_PROTOCOL_VERSION,
        kind: spec.kind,
        vessel: spec.id,
        epoch: spec.epoch,
        image: Hash::of(&image),
        source: PeerIdBytes(mesh.me.to_bytes()),
        destination: PeerIdBytes(spec.to.to_bytes()),
        nonce,
    };
    let offer = Offer::sign(&mesh.signing, body);
    match mesh
        .link
        .migration_once(
            spec.to,
            MigrationRequest::Offer {
                offer,
                image,
                push,
                lease,
            },
        )
        .await?
    {
        MigrationResponse::Lacking {
            chunks,
            next_nonce,
            prepared,
        } => Ok(OfferAnswer {
            lacking: chunks,
            next_nonce,
            prepared,
        }),
        other => Err(RequestError::unexpected(spec.to, &other)),
    }
}

/// Asks `to` for a nonce for the next offer.
pub(super) async fn ask_nonce(mesh: &Migrator, to: PeerId) -> Result<Nonce, RequestError> {
    match mesh.link.migration(to, MigrationRequest::Nonce).await? {
        MigrationResponse::Nonce(n) => Ok(n),
        other => Err(RequestError::unexpected(to, &other)),
    }
}

/// Sends the chunks `lacking` names (from `fresh` when it holds them, else
/// read from the store), a few batches in flight. Returns bytes sent.
pub(super) async fn send_chunks(
    mesh: &Migrator,
    spec: OfferSpec,
    lacking: Vec<Hash>,
    fresh: Option<&Fresh>,
) -> Result<u64, ErrorKind> {
    let store = lock(&mesh.host).store.clone();
    mesh.set_report(spec.id, |r| {
        r.step_chunks = lacking.len() as u64;
        r.step_chunks_sent = 0;
    });
    let batches: Vec<Vec<Hash>> = lacking
        .chunks(MAX_CHUNKS_PER_BATCH)
        .map(|c| c.to_vec())
        .collect();
    let mut sends = futures::stream::iter(batches.into_iter().map(|batch| {
        let (store, mesh, fresh) = (store.clone(), mesh.clone(), fresh.cloned());
        async move {
            let chunks = tokio::task::spawn_blocking(move || read_batch(&store, &batch, fresh))
                .await
                .map_err(|e| ErrorKind::Local(e.to_string()))??;
            let bytes: u64 = chunks.iter().map(|c| c.bytes.0.len() as u64).sum();
            let n = chunks.len() as u64;
            let request = MigrationRequest::Chunks {
                vessel: spec.id,
                epoch: spec.epoch,
                chunks,
            };
            mesh.link
                .migration(spec.to, request)
                .await
                .map_err(error_kind)?;
            mesh.set_report(spec.id, |r| {
                r.bytes_sent += bytes;
                r.chunks_sent += n;
                r.step_chunks_sent += n;
                if spec.kind == OfferKind::Final {
                    r.final_chunks_sent += n;
                }
            });
            Ok::<u64, ErrorKind>(bytes)
        }
    }))
    .buffer_unordered(CHUNK_BATCHES_IN_FLIGHT);
    let mut total = 0;
    while let Some(r) = sends.next().await {
        total += r?;
    }
    Ok(total)
}

/// Two changed runs of a chunk closer than this are sent as one run (a
/// run costs its offset and length on the wire).
const PATCH_GAP_BYTES: usize = 16;

/// A changed chunk goes as a patch when the patch carries at most this many
/// bytes (a quarter of a chunk), else whole.
const MAX_PATCH_BYTES: usize = CHUNK_SIZE_BYTES as usize / 4;

/// The memory of a final offer: the chunks of the last pre-copy round
/// (`before`, which the destination has: that round's offer named them and
/// its lacking chunks were sent) and of the pause (`after`), by index.
pub(super) struct MemoryDelta {
    pub before: Vec<Option<Hash>>,
    pub after: Vec<Option<Hash>>,
}

/// What a final offer carries (`FinalPush`): each memory chunk that changed
/// in the pause, as a patch against the chunk the last round named at its
/// index when that is small, else whole; then `more` (volumes and log)
/// whole. Only chunks this migration has not sent, at most
/// [`MAX_PUSHED_PATCHES`] patches and [`MAX_PUSHED_CHUNKS`] whole chunks
/// (the rest go after the offer's answer, as without a push).
pub(super) async fn final_delta(
    mesh: &Migrator,
    delta: MemoryDelta,
    more: Vec<Hash>,
    sent: &HashSet<Hash>,
    fresh: &Fresh,
) -> Result<(Vec<NamedChunk>, Vec<ChunkPatch>), ErrorKind> {
    let store = lock(&mesh.host).store.clone();
    let (sent, fresh) = (sent.clone(), fresh.clone());
    tokio::task::spawn_blocking(move || {
        let mut picked: HashSet<Hash> = HashSet::new();
        let (mut whole, mut patches) = (Vec::new(), Vec::new());
        for (i, now) in delta.after.iter().enumerate() {
            let Some(h) = now else { continue };
            let base = delta.before.get(i).copied().flatten();
            if base == Some(*h) || sent.contains(h) || picked.contains(h) {
                continue;
            }
            let Some(bytes) = fresh.get(h) else { continue };
            let base_bytes = match base {
                None => Some(Vec::new()),
                Some(b) => store.get_chunk(&b).ok(),
            };
            let runs = base_bytes.and_then(|b| {
                ChunkPatch::runs_between(&b, bytes, PATCH_GAP_BYTES, MAX_PATCH_BYTES)
            });
            match runs {
                Some(runs) if patches.len() < MAX_PUSHED_PATCHES => patches.push(ChunkPatch {
                    hash: *h,
                    base,
                    len: bytes.len() as u32,
                    runs,
                }),
                _ if whole.len() < MAX_PUSHED_CHUNKS => whole.push(*h),
                _ => continue,
            }
            picked.insert(*h);
        }
        for h in more {
            if whole.len() == MAX_PUSHED_CHUNKS {
                break;
            }
            if !sent.contains(&h) && picked.insert(h) {
                whole.push(h);
            }
        }
        let chunks = read_batch(&store, &whole, Some(fresh))?;
        Ok((chunks, patches))
    })
    .await
    .map_err(|e| ErrorKind::Local(e.to_string()))?
}

/// One batch's chunks: those hashed in the pause from the bytes in
/// `fresh`, the rest from the store.
fn read_batch(
    store: &crate::store::ChunkStore,
    batch: &[Hash],
    fresh: Option<Fresh>,
) -> Result<Vec<NamedChunk>, ErrorKind> {
    batch
        .iter()
        .map(|h| {
            let bytes = match fresh.as_ref().and_then(|f| f.get(h)) {
                Some(bytes) => bytes.clone(),
                None => store
                    .get_chunk(h)
                    .map_err(|e| ErrorKind::Local(e.to_string()))?,
            };
            Ok(NamedChunk {
                hash: *h,
                bytes: ChunkBytes(bytes),
            })
        })
        .collect()
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

/// A failed request as the migration layer sees it: refused (with its
/// code), the destination did not answer, or it answered nonsense.
pub(super) fn error_kind(e: RequestError) -> ErrorKind {
    match e {
        RequestError::Refused { refusal, .. } => ErrorKind::Refused(refusal),
        RequestError::Transport { .. } | RequestError::Failed { .. } => {
            ErrorKind::Unreachable(e.to_string())
        }
        RequestError::Unexpected { .. } | RequestError::Stopping => ErrorKind::Local(e.to_string()),
    }
}
