//! The releases this node keeps: published here by `upgrade publish`, or
//! installed by `upgrade roll`. Each is a file under `releases/` in the
//! data directory (the signed release, as CBOR, named by its id), and its
//! binaries' chunks are held in the chunk store against garbage
//! collection, so that members can fetch them from here.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use protocol::ids::ChunkBytes;
use protocol::peer::PeerResponse;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::release::{
    ReleaseRequest, ReleaseResponse, SignedRelease, MAX_RELEASE_BINARIES,
    MAX_RELEASE_BINARY_CHUNKS, MAX_SIGNED_RELEASE_BYTES,
};
use protocol::snapshot::Hash;
use tracing::warn;

use crate::mesh::link::NodeCommand;
use crate::mesh::state::NodeState;
use crate::store::ChunkStore;
use crate::sync::lock;

/// Most releases a node keeps: the one it runs, the one before (for a
/// rollback) and two published for rolls to come. Keeping one more evicts
/// the oldest by publication time, and its chunks with it.
pub const MAX_KEPT_RELEASES: usize = 4;

/// Most chunks `upgrade publish` may upload before it publishes the
/// release that names them: a full release's worth.
pub const MAX_UPLOAD_CHUNKS: usize = MAX_RELEASE_BINARIES * MAX_RELEASE_BINARY_CHUNKS;

/// The directory under the data directory that holds them.
const RELEASES_DIR: &str = "releases";

/// The store holder of the chunks uploaded for a release not published yet.
const UPLOAD_HOLDER: &str = "release-upload";

pub struct Releases {
    dir: PathBuf,
    store: ChunkStore,
    kept: Mutex<BTreeMap<Hash, SignedRelease>>,
    upload: Mutex<HashSet<Hash>>,
}

fn holder(id: &Hash) -> String {
    format!("release:{id}")
}

fn all_chunks(r: &SignedRelease) -> HashSet<Hash> {
    r.body
        .binaries
        .iter()
        .flat_map(|b| b.chunks.iter().copied())
        .collect()
}

impl Releases {
    /// Reads the kept releases (a file that does not decode or verify is
    /// skipped with a warning) and holds their chunks.
    pub fn open(data_root: &Path, store: ChunkStore) -> Releases {
        let dir = data_root.join(RELEASES_DIR);
        let releases = Releases {
            dir,
            store,
            kept: Mutex::new(BTreeMap::new()),
            upload: Mutex::new(HashSet::new()),
        };
        for r in releases.read_dir() {
            releases.store.hold_chunks(&holder(&r.id()), all_chunks(&r));
            lock(&releases.kept).insert(r.id(), r);
        }
        releases
    }

    fn read_dir(&self) -> Vec<SignedRelease> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "cbor") {
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    if b.len() > MAX_SIGNED_RELEASE_BYTES {
                        return Err(format!("over {MAX_SIGNED_RELEASE_BYTES} bytes"));
                    }
                    let r: SignedRelease = protocol::cbor::decode(&b).map_err(|e| e.to_string())?;
                    r.verify().map_err(|e| e.to_string())?;
                    Ok(r)
                });
            match read {
                Ok(r) => out.push(r),
                Err(e) => warn!("skipping kept release {}: {e}", path.display()),
            }
        }
        out
    }

    /// Keeps `release` (written durably) and holds its chunks; the oldest
    /// beyond [`MAX_KEPT_RELEASES`] goes, unless it is `protect`ed (the
    /// release this node runs or rolls back to).
    pub fn keep(&self, release: &SignedRelease, protect: &[Hash]) -> Result<(), Refusal> {
        let id = release.id();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_refusal(&self.dir, e))?;
        let path = self.dir.join(format!("{id}.cbor"));
        crate::daemon::datadir::write_atomic(&path, &protocol::cbor::encode(release))
            .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?;
        self.store.hold_chunks(&holder(&id), all_chunks(release));
        let mut kept = lock(&self.kept);
        kept.insert(id, release.clone());
        while kept.len() > MAX_KEPT_RELEASES {
            let Some(oldest) = kept
                .iter()
                .filter(|(h, _)| **h != id && !protect.contains(h))
                .min_by_key(|(_, r)| r.body.published_unix_ms)
                .map(|(h, _)| *h)
            else {
                break;
            };
            kept.remove(&oldest);
            self.store.hold_chunks(&holder(&oldest), HashSet::new());
            let _ = std::fs::remove_file(self.dir.join(format!("{oldest}.cbor")));
        }
        Ok(())
    }

    /// The kept releases, newest version first.
    pub fn list(&self) -> Vec<SignedRelease> {
        let mut all: Vec<SignedRelease> = lock(&self.kept).values().cloned().collect();
        all.sort_by(|a, b| {
            let v = |r: &SignedRelease| protocol::release::Version::parse(&r.body.version).ok();
            v(b).cmp(&v(a))
        });
        all
    }

    /// Which of `hashes` the store lacks.
    pub fn lacking(&self, hashes: &[Hash]) -> Result<Vec<Hash>, Refusal> {
        if hashes.len() > MAX_UPLOAD_CHUNKS {
            return Err(refuse(
                RefusalCode::Limit,
                format!(
                    "{} chunks asked, more than the limit of {MAX_UPLOAD_CHUNKS}",
                    hashes.len()
                ),
            ));
        }
        Ok(hashes
            .iter()
            .filter(|h| !self.store.has_chunk(h))
            .copied()
            .collect())
    }

    /// Stores uploaded chunks, held until the release naming them is kept.
    pub fn upload(&self, chunks: &[ChunkBytes]) -> Result<(), Refusal> {
        let mut upload = lock(&self.upload);
        if upload.len() + chunks.len() > MAX_UPLOAD_CHUNKS {
            return Err(refuse(
                RefusalCode::Limit,
                format!("more than {MAX_UPLOAD_CHUNKS} chunks uploaded for one release"),
            ));
        }
        for c in chunks {
            if c.0.len() > protocol::snapshot::CHUNK_SIZE_BYTES as usize {
                return Err(refuse(RefusalCode::Limit, "a chunk over 64 KiB"));
            }
            let h = self
                .store
                .put_chunk(&c.0)
                .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?;
            upload.insert(h);
        }
        self.store
            .sync()
            .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?;
        self.store.hold_chunks(UPLOAD_HOLDER, upload.clone());
        Ok(())
    }

    /// Lets the uploaded chunks go (their release holds them now).
    pub fn end_upload(&self) {
        lock(&self.upload).clear();
        self.store.hold_chunks(UPLOAD_HOLDER, HashSet::new());
    }

    /// The chunks a member asked for, from a kept release that names them.
    pub fn chunks_for(&self, release: &Hash, hashes: &[Hash]) -> Result<Vec<ChunkBytes>, Refusal> {
        let kept = lock(&self.kept);
        let Some(r) = kept.get(release) else {
            return Err(refuse(
                RefusalCode::UnknownRelease,
                format!("release {release} is not kept on this node"),
            ));
        };
        let named = all_chunks(r);
        drop(kept);
        hashes
            .iter()
            .map(|h| {
                if !named.contains(h) {
                    return Err(refuse(
                        RefusalCode::BadArgument,
                        format!("chunk {h} is not in release {release}"),
                    ));
                }
                self.store
                    .get_chunk(h)
                    .map(ChunkBytes)
                    .map_err(|e| refuse(RefusalCode::MissingChunks, e.to_string()))
            })
            .collect()
    }

    pub fn store(&self) -> &ChunkStore {
        &self.store
    }
}

/// Serves a member's [`ReleaseRequest`] off the event loop.
pub fn serve(
    state: &NodeState,
    peer: PeerId,
    request: ReleaseRequest,
    channel: ResponseChannel<PeerResponse>,
) {
    let releases = state.releases.clone();
    let tx = state.link.tx.clone();
    tokio::task::spawn_blocking(move || {
        let response = match request
            .check()
            .map_err(|e| refuse(RefusalCode::Limit, e.to_string()))
            .and_then(|()| match &request {
                ReleaseRequest::Chunks { release, hashes } => releases.chunks_for(release, hashes),
            }) {
            Ok(chunks) => PeerResponse::Release(ReleaseResponse::Chunks(chunks)),
            Err(refusal) => {
                warn!(%peer, "release request refused: {refusal}");
                PeerResponse::Refused(refusal)
            }
        };
        let _ = tx.blocking_send(NodeCommand::RespondPeer { channel, response });
    });
}

pub(crate) fn refuse(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail.into())
}

fn io_refusal(path: &Path, e: std::io::Error) -> Refusal {
    refuse(RefusalCode::Internal, format!("{}: {e}", path.display()))
}
