//! Fetching the chunks of this node's binary that it lacks, from the
//! members that keep the release, a batch at a time. Each chunk is
//! checked against its name as it is stored; the whole binary is checked
//! against the release's hash when it is installed (`bins::install`).

use std::collections::HashSet;

use libp2p::PeerId;
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::release::{
    ReleaseBinary, ReleaseRequest, ReleaseResponse, MAX_RELEASE_CHUNKS_PER_REQUEST,
};
use protocol::snapshot::Hash;

use super::releases::refuse;
use crate::mesh::link::Link;
use crate::store::ChunkStore;

/// What a fetch moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    pub fetched_chunks: u64,
    pub fetched_bytes: u64,
    pub had_chunks: u64,
}

/// Fetches the chunks of `binary` the store lacks from `sources`, in
/// order: a batch one source cannot give is asked of the next.
pub async fn fetch_binary(
    link: &Link,
    store: &ChunkStore,
    release: Hash,
    binary: &ReleaseBinary,
    sources: &[PeerId],
) -> Result<Fetched, Refusal> {
    let mut seen = HashSet::new();
    let unique: Vec<Hash> = binary
        .chunks
        .iter()
        .filter(|h| seen.insert(**h))
        .copied()
        .collect();
    let lacking: Vec<Hash> = unique
        .iter()
        .filter(|h| !store.has_chunk(h))
        .copied()
        .collect();
    let mut fetched = Fetched {
        had_chunks: (unique.len() - lacking.len()) as u64,
        ..Fetched::default()
    };
    if !lacking.is_empty() && sources.is_empty() {
        return Err(refuse(
            RefusalCode::MissingChunks,
            format!(
                "{} chunks of the {} binary are missing and no member was named to fetch them from",
                lacking.len(),
                binary.cpu
            ),
        ));
    }
    for batch in lacking.chunks(MAX_RELEASE_CHUNKS_PER_REQUEST) {
        let bytes = fetch_batch(link, store, release, batch, sources).await?;
        fetched.fetched_chunks += batch.len() as u64;
        fetched.fetched_bytes += bytes;
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.sync())
        .await
        .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?
        .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?;
    Ok(fetched)
}

/// One batch, from the first source that gives all of it; returns its
/// bytes.
async fn fetch_batch(
    link: &Link,
    store: &ChunkStore,
    release: Hash,
    batch: &[Hash],
    sources: &[PeerId],
) -> Result<u64, Refusal> {
    let mut why = Vec::new();
    for source in sources {
        let request = PeerRequest::Release(ReleaseRequest::Chunks {
            release,
            hashes: batch.to_vec(),
        });
        let chunks = match link.request(*source, request).await {
            Ok(PeerResponse::Release(ReleaseResponse::Chunks(c))) if c.len() == batch.len() => c,
            Ok(other) => {
                why.push(format!("{source}: answered {}", short(&other)));
                continue;
            }
            Err(e) => {
                why.push(format!("{source}: {e}"));
                continue;
            }
        };
        let (store, hashes) = (store.clone(), batch.to_vec());
        let stored = tokio::task::spawn_blocking(move || {
            let mut bytes = 0u64;
            for (h, c) in hashes.iter().zip(&chunks) {
                store
                    .put_chunk_expecting(h, &c.0)
                    .map_err(|e| e.to_string())?;
                bytes += c.0.len() as u64;
            }
            Ok::<u64, String>(bytes)
        })
        .await
        .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?;
        match stored {
            Ok(bytes) => return Ok(bytes),
            Err(e) => why.push(format!("{source}: {e}")),
        }
    }
    Err(refuse(
        RefusalCode::MissingChunks,
        format!(
            "no member gave {} chunks of the release ({})",
            batch.len(),
            why.join("; ")
        ),
    ))
}

fn short(r: &PeerResponse) -> String {
    let s = format!("{r:?}");
    s.chars().take(120).collect()
}
