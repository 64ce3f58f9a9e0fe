//! The on-disk chunk store: content-addressed chunks, manifests and vessel
//! images.
//!
//! Layout under the store's root: `packs/00000001.pack`, … — append-only
//! pack files of records (a chunk, named by its BLAKE3 hash; a CBOR
//! manifest or vessel image, named by the hash of its encoding), described
//! in [`pack`] and in docs/snapshot-format.md. The index of what is where is
//! kept in memory, rebuilt from the packs' headers at open.
//!
//! Every read is verified against its name, so a corrupted or tampered
//! record is a [`StoreError::CorruptRecord`] naming it, never data. A batch
//! is made durable by one `fdatasync` of the pack written to
//! ([`ChunkStore::sync`]); a manifest or image stored durably is appended
//! after the chunks it names and synced with them, and since a crash can
//! only cut a pack's tail, a manifest that survives never names a chunk the
//! crash lost. A data directory of the earlier one-file-per-chunk layout is
//! converted at open ([`legacy`]).

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod hold_tests;
mod legacy;
pub mod pack;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::snapshot::{ChunkedImage, Hash, Manifest, ManifestError, CHUNK_SIZE_BYTES};

use pack::{Kind, Packs, Probe};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the store at {root} is open in another process (a node, or a run or resume with this --snapshot-dir); stop it first")]
    InUse { root: PathBuf },
    #[error("chunk {hash} is not in the store at {root}")]
    MissingChunk { hash: Hash, root: PathBuf },
    #[error("snapshot {hash} is not in the store at {root}")]
    MissingManifest { hash: Hash, root: PathBuf },
    #[error("{kind} {hash} in {pack} at offset {offset}: its content hashes to {found}: the record is corrupt or was tampered with")]
    CorruptRecord {
        kind: &'static str,
        hash: Hash,
        pack: PathBuf,
        offset: u64,
        found: Hash,
    },
    #[error(
        "a {kind} of {size_bytes} bytes is over the store's limit of {limit_bytes} bytes for it"
    )]
    TooLarge {
        kind: &'static str,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error("{path}: content hashes to {found}, not to its name {expected}: the file is corrupt or was tampered with")]
    Corrupt {
        path: PathBuf,
        expected: Hash,
        found: Hash,
    },
    #[error("snapshot {hash}: cannot decode its manifest: {source}")]
    Decode {
        hash: Hash,
        source: protocol::cbor::DecodeError,
    },
    #[error("snapshot {hash}: {source}")]
    Manifest { hash: Hash, source: ManifestError },
    #[error("image of {size_bytes} bytes does not match its {chunks} chunks")]
    ImageShape { size_bytes: u64, chunks: usize },
    /// A write found the disk (or the quota) full. It was undone: the pack
    /// ends at a whole record, everything durable is intact, and writing
    /// works again once there is room.
    #[error("{path}: the disk is full ({source}); the write was undone, nothing stored before it was lost")]
    DiskFull { path: PathBuf, source: io::Error },
    /// A write failed for another reason; undone like [`StoreError::DiskFull`].
    #[error("{path}: a write failed ({source}); it was undone, nothing stored before it was lost")]
    WriteFailed { path: PathBuf, source: io::Error },
    /// An `fdatasync` failed (what it covered may or may not be on disk,
    /// and a retry could claim success for data that is gone), or a failed
    /// write could not be undone: the store refuses writes until it is
    /// reopened, which verifies what is on disk. Reads go on.
    #[error("the store at {root} takes no more writes until the node restarts, after: {cause}")]
    WritesStopped {
        root: PathBuf,
        cause: String,
        disk_full: bool,
    },
}

impl StoreError {
    /// Whether the disk (or the quota) is full: the write was refused and
    /// nothing already stored was lost.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::WritesStopped { disk_full, .. } => *disk_full,
            _ => false,
        }
    }

    /// Whether this is a failure to write (a full disk, an I/O error, or a
    /// store that stopped taking writes), as opposed to bad input or
    /// damaged data: the caller skips what it was storing and goes on.
    pub fn is_write_failure(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull { .. }
                | StoreError::WriteFailed { .. }
                | StoreError::WritesStopped { .. }
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Somewhere chunks can be put and got back by hash: the on-disk
/// [`ChunkStore`], or [`MemChunks`] for captures that never touch the disk.
pub trait Chunks {
    fn put_chunk(&mut self, bytes: &[u8]) -> Result<Hash, StoreError>;
    /// Returns the chunk, verified against its name.
    fn get_chunk(&self, h: &Hash) -> Result<Vec<u8>, StoreError>;
}

/// Cuts `bytes` into chunks, stores the ones that are not all zero, and
/// returns the image's description.
pub fn put_image(store: &mut impl Chunks, bytes: &[u8]) -> Result<ChunkedImage, StoreError> {
    let mut chunks = Vec::with_capacity(bytes.len().div_ceil(CHUNK_SIZE_BYTES as usize));
    for chunk in bytes.chunks(CHUNK_SIZE_BYTES as usize) {
        if chunk.iter().all(|&b| b == 0) {
            chunks.push(None);
        } else {
            chunks.push(Some(store.put_chunk(chunk)?));
        }
    }
    Ok(ChunkedImage {
        size_bytes: bytes.len() as u64,
        chunks,
    })
}

/// Reassembles an image, verifying every chunk. `max_size_bytes` bounds the
/// allocation before any chunk is read.
pub fn get_image(
    store: &impl Chunks,
    img: &ChunkedImage,
    max_size_bytes: u64,
) -> Result<Vec<u8>, StoreError> {
    let shape_err = || StoreError::ImageShape {
        size_bytes: img.size_bytes,
        chunks: img.chunks.len(),
    };
    if ChunkedImage::chunk_count(img.size_bytes) != img.chunks.len() as u64
        || img.size_bytes > max_size_bytes
    {
        return Err(shape_err());
    }
    let size = usize::try_from(img.size_bytes).map_err(|_| shape_err())?;
    let mut out = vec![0u8; size];
    for (i, c) in img.chunks.iter().enumerate() {
        let Some(h) = c else { continue };
        let data = store.get_chunk(h)?;
        let start = i * CHUNK_SIZE_BYTES as usize;
        let end = (start + CHUNK_SIZE_BYTES as usize).min(size);
        if data.len() != end - start {
            return Err(shape_err());
        }
        out[start..end].copy_from_slice(&data);
    }
    Ok(out)
}

/// Chunks held in memory, keyed by hash: what storm mode serializes a
/// vessel into between two resumes.
#[derive(Debug, Default, Clone)]
pub struct MemChunks {
    pub chunks: std::collections::HashMap<Hash, Vec<u8>>,
}

impl Chunks for MemChunks {
    fn put_chunk(&mut self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.chunks.entry(h).or_insert_with(|| bytes.to_vec());
        Ok(h)
    }

    fn get_chunk(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        let bytes = self.chunks.get(h).ok_or_else(|| StoreError::MissingChunk {
            hash: *h,
            root: PathBuf::from("(memory)"),
        })?;
        let found = Hash::of(bytes);
        if found != *h {
            return Err(StoreError::Corrupt {
                path: PathBuf::from("(memory)"),
                expected: *h,
                found,
            });
        }
        Ok(bytes.clone())
    }
}

impl Chunks for ChunkStore {
    fn put_chunk(&mut self, bytes: &[u8]) -> Result<Hash, StoreError> {
        ChunkStore::put_chunk(self, bytes)
    }

    fn get_chunk(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        ChunkStore::get_chunk(self, h)
    }
}

/// Where the packs are, under the store's root.
const PACKS_DIR: &str = "packs";

/// A content-addressed store in one directory. Clones share it.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    state: Mutex<State>,
    /// Held by garbage collection, so that two never rewrite packs at once.
    gc: Mutex<()>,
}

struct State {
    packs: Packs,
    /// Records appended so far, and how many of them a sync has covered.
    written: u64,
    synced: u64,
    /// Bytes appended by [`ChunkStore::put`] since open (what garbage
    /// collection's policy counts).
    appended_bytes: u64,
    /// What each live [`Pin`] has seen put: garbage collection keeps it.
    pins: HashMap<u64, HashSet<Hash>>,
    next_pin: u64,
    /// Images kept by name for a holder outside the host's retention (a
    /// replica's copy of another node's vessel, a checkpoint being shipped
    /// to replicas): garbage collection and eviction keep each, and all it
    /// names, whatever image list they are given ([`ChunkStore::hold`]).
    held: HashMap<String, Hash>,
    /// Chunks kept by name for a holder that keeps no image: the binaries
    /// of a release this node published or installed (`upgrade`).
    held_chunks: HashMap<String, Arc<HashSet<Hash>>>,
}

/// Keeps every record put (written, or found already stored) while it
/// lives from garbage collection: a batch that no kept image names yet (a
/// checkpoint being written, a migration arriving) holds one until the
/// image that names its records is kept. See [`ChunkStore::pin`].
pub struct Pin {
    store: ChunkStore,
    id: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.store.state().pins.remove(&self.id);
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin").field("id", &self.id).finish()
    }
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl ChunkStore {
    /// Opens (creating if needed) the store rooted at `root`: drops a torn
    /// tail of each pack, makes what survived durable, and converts a store
    /// of the earlier one-file-per-chunk layout.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with_probe(root, None)
    }

    /// [`ChunkStore::open`], telling `probe` of every file and directory it
    /// makes durable (the power-loss tests' simulated disk).
    #[doc(hidden)]
    pub fn open_with_probe(root: &Path, probe: Option<Probe>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let packs = Packs::open(&root.join(PACKS_DIR), probe)?;
        let store = ChunkStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                state: Mutex::new(State {
                    packs,
                    written: 0,
                    synced: 0,
                    appended_bytes: 0,
                    pins: HashMap::new(),
                    next_pin: 0,
                    held: HashMap::new(),
                    held_chunks: HashMap::new(),
                }),
                gc: Mutex::new(()),
            }),
        };
        if legacy::present(root) {
            legacy::convert(&store)?;
        }
        Ok(store)
    }

    /// Seals packs at `bytes` instead of [`pack::MAX_PACK_BYTES`], so that
    /// tests reach a pack's end quickly.
    #[cfg(test)]
    fn set_pack_limit(&self, bytes: u64) {
        self.state().packs.pack_limit_bytes = bytes;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether the chunk is stored whole (a record a crash cut short was
    /// dropped at open, and one being written is not indexed yet).
    pub fn has_chunk(&self, h: &Hash) -> bool {
        self.state().packs.index.contains_key(&(Kind::Chunk, *h))
    }

    /// Appends a record unless one of that kind and name is stored.
    fn put(&self, kind: Kind, h: &Hash, bytes: &[u8]) -> Result<(), StoreError> {
        let mut s = self.state();
        for seen in s.pins.values_mut() {
            seen.insert(*h);
        }
        if s.packs.index.contains_key(&(kind, *h)) {
            return Ok(());
        }
        s.packs.append(kind, h, bytes)?;
        s.written += 1;
        s.appended_bytes += pack::HEADER_BYTES + bytes.len() as u64;
        Ok(())
    }

    /// Keeps everything put from now until the pin is dropped from garbage
    /// collection (see [`Pin`]).
    pub fn pin(&self) -> Pin {
        self.new_pin(false)
    }

    /// A pin that also holds what every live pin has seen so far: a
    /// collection decided now keeps a batch whose own pin is dropped
    /// before the collection is done (its image noted after the decision).
    pub fn pin_with_live(&self) -> Pin {
        self.new_pin(true)
    }

    fn new_pin(&self, with_live: bool) -> Pin {
        let mut s = self.state();
        let id = s.next_pin;
        s.next_pin += 1;
        let seen: HashSet<Hash> = if with_live {
            s.pins.values().flatten().copied().collect()
        } else {
            HashSet::new()
        };
        s.pins.insert(id, seen);
        Pin {
            store: self.clone(),
            id,
        }
    }

    /// Keeps `image` (and everything it names) from garbage collection and
    /// eviction for `holder` until the holder holds another image or none
    /// (`None`): the image the holder held before is let go, and collected
    /// at the next collection unless something else keeps it. In memory: a
    /// holder re-holds what it keeps after a restart (a replica, from its
    /// record) before the first collection.
    pub fn hold(&self, holder: &str, image: Option<Hash>) {
        let mut s = self.state();
        match image {
            Some(h) => s.held.insert(holder.to_string(), h),
            None => s.held.remove(holder),
        };
    }

    /// Keeps `chunks` from garbage collection for `holder` until it holds
    /// others or none (empty): chunks that no image names, such as a
    /// release's binaries. In memory, like [`ChunkStore::hold`].
    pub fn hold_chunks(&self, holder: &str, chunks: HashSet<Hash>) {
        let mut s = self.state();
        if chunks.is_empty() {
            s.held_chunks.remove(holder);
        } else {
            s.held_chunks.insert(holder.to_string(), Arc::new(chunks));
        }
    }

    /// The image `holder` holds, if any.
    pub fn held(&self, holder: &str) -> Option<Hash> {
        self.state().held.get(holder).copied()
    }

    /// Bytes of the store's packs on disk, from what the store tracks (no
    /// walk of the directory): what a disk budget counts.
    pub fn disk_bytes(&self) -> u64 {
        self.state().packs.disk_bytes()
    }

    /// Bytes of records stored since the store was opened (records already
    /// present and garbage collection's own copies are not counted).
    pub fn appended_bytes(&self) -> u64 {
        self.state().appended_bytes
    }

    /// Reads a record and verifies it against its name, outside the lock.
    fn get(
        &self,
        kind: Kind,
        h: &Hash,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<Vec<u8>, StoreError> {
        let (file, path, loc) = {
            let s = self.state();
            let Some(loc) = s.packs.index.get(&(kind, *h)).copied() else {
                return Err(missing());
            };
            let pack = &s.packs.packs[&loc.pack];
            (pack.file.clone(), pack.path.clone(), loc)
        };
        pack::read_verified(&file, &path, kind, h, loc)
    }

    /// Stores one chunk (if it is not there yet) and returns its name. Not
    /// durable until the next [`ChunkStore::sync`] (or a durable manifest).
    pub fn put_chunk(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.put(Kind::Chunk, &h, bytes)?;
        Ok(h)
    }

    /// Reads a chunk and checks it against its name.
    pub fn get_chunk(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        self.get(Kind::Chunk, h, || StoreError::MissingChunk {
            hash: *h,
            root: self.inner.root.clone(),
        })
    }

    /// Stores a chunk that arrived from a peer under the name it was sent
    /// for: refused when the bytes do not hash to that name.
    pub fn put_chunk_expecting(&self, expected: &Hash, bytes: &[u8]) -> Result<(), StoreError> {
        let found = Hash::of(bytes);
        if found != *expected {
            return Err(StoreError::Corrupt {
                path: PathBuf::from("(received chunk)"),
                expected: *expected,
                found,
            });
        }
        self.put(Kind::Chunk, expected, bytes)
    }

    /// Writes the manifest after every chunk written so far and makes them
    /// durable together. Returns the snapshot's name.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<Hash, StoreError> {
        let (bytes, h) = manifest.encode_and_hash();
        self.put(Kind::Manifest, &h, &bytes)?;
        self.sync()?;
        Ok(h)
    }

    /// Makes every record written so far durable: one `fdatasync` of the
    /// pack being written (a pack that filled up was synced when it was
    /// sealed), then a commit record. Two calls at once are safe: each
    /// returns once everything written before it began is durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (id, end, file, path, upto, probe) = {
            let s = self.state();
            // After a failed sync nothing unsynced can be vouched for.
            s.packs.check_writable()?;
            if s.synced >= s.written {
                return Ok(());
            }
            let pack = &s.packs.packs[&s.packs.active];
            let probe = s.packs.probe.clone();
            let file = pack.file.clone();
            (
                pack.id,
                pack.size,
                file,
                pack.path.clone(),
                s.written,
                probe,
            )
        };
        if let Err(e) = pack::fdatasync(&file, &path, probe.as_ref()) {
            // What it covered may or may not be on disk, and a retry could
            // report success for pages the kernel has already dropped.
            return Err(self.state().packs.stop(e));
        }
        let mut s = self.state();
        s.packs.check_writable()?;
        s.packs.commit(id, end)?;
        s.synced = s.synced.max(upto);
        Ok(())
    }

    /// The same as [`ChunkStore::sync`]: one `fdatasync` of one file covers
    /// what the earlier store had to sync file by file.
    pub fn sync_written(&self) -> Result<(), StoreError> {
        self.sync()
    }

    /// How many records written are not known to be durable (tests).
    pub fn unsynced_count(&self) -> usize {
        let s = self.state();
        (s.written - s.synced) as usize
    }

    /// Stores an encoded manifest as it arrived, under its hash, durably
    /// (with every chunk written before it).
    pub fn put_manifest_bytes(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = self.put_manifest_bytes_unsynced(bytes)?;
        self.sync()?;
        Ok(h)
    }

    /// Stores an encoded manifest as it arrived, under its hash, without
    /// syncing: the caller makes it durable with [`ChunkStore::sync`].
    pub fn put_manifest_bytes_unsynced(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.put(Kind::Manifest, &h, bytes)?;
        Ok(h)
    }

    /// Stores an encoded vessel image after every chunk written so far
    /// (durably with them when `durable`); returns its name.
    pub fn put_image_doc(&self, bytes: &[u8], durable: bool) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.put(Kind::Image, &h, bytes)?;
        if durable {
            self.sync()?;
        }
        Ok(h)
    }

    /// Reads an encoded vessel image, verified against its name.
    pub fn get_image_doc(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        self.get(Kind::Image, h, || StoreError::MissingManifest {
            hash: *h,
            root: self.inner.root.clone(),
        })
    }

    /// Reads a manifest, checks it against its name, decodes it with limits
    /// and checks its structure.
    pub fn get_manifest(&self, h: &Hash) -> Result<Manifest, StoreError> {
        let bytes = self.get(Kind::Manifest, h, || StoreError::MissingManifest {
            hash: *h,
            root: self.inner.root.clone(),
        })?;
        let m: Manifest = protocol::cbor::decode(&bytes)
            .map_err(|source| StoreError::Decode { hash: *h, source })?;
        m.check()
            .map_err(|source| StoreError::Manifest { hash: *h, source })?;
        Ok(m)
    }

    /// What the images in `keep` name: their chunks (their own and their
    /// snapshot's) and their manifests. An image or manifest that is not
    /// stored names nothing; one that cannot be read (an I/O error, a
    /// corrupt record) fails the collection rather than let its chunks go.
    fn live_of(&self, keep: &[Hash]) -> Result<(HashSet<Hash>, HashSet<Hash>), StoreError> {
        let mut live = HashSet::new();
        let mut live_manifests = HashSet::new();
        for h in keep {
            let bytes = match self.get_image_doc(h) {
                Ok(b) => b,
                Err(StoreError::MissingManifest { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(img) = protocol::cbor::decode::<protocol::vessel::VesselImage>(&bytes) else {
                tracing::warn!(
                    "garbage collection: kept image {h} does not decode; it names nothing"
                );
                continue;
            };
            live.extend(img.own_chunks());
            if let protocol::vessel::Resume::Snapshot(m) = img.resume {
                live_manifests.insert(m);
                // The image carries its manifest (a source never stores it
                // on its own); the stored copy, where there is one, is the
                // same bytes.
                let carried = protocol::cbor::decode::<Manifest>(&img.manifest)
                    .ok()
                    .filter(|_| Hash::of(&img.manifest) == m);
                let man = match carried {
                    Some(man) => Some(man),
                    None => match self.get_manifest(&m) {
                        Ok(man) => Some(man),
                        Err(StoreError::MissingManifest { .. }) => None,
                        Err(e) => return Err(e),
                    },
                };
                if let Some(man) = man {
                    live.extend(man.memory.chunks.iter().flatten().copied());
                    live.extend(man.module.original.chunks.iter().flatten().copied());
                }
            }
        }
        Ok((live, live_manifests))
    }

    /// Removes chunks and images that no image in `keep` or held
    /// ([`ChunkStore::hold`]) names (with the
    /// manifests those images hold) and no live [`Pin`] has seen, then
    /// rewrites the packs that are at least half garbage. Returns how many
    /// chunks went.
    pub fn retain_images(&self, keep: &[Hash]) -> Result<usize, StoreError> {
        let _gc = self.inner.gc.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = keep.to_vec();
        keep.extend(self.state().held.values().copied());
        let keep = &keep[..];
        let (mut live, live_manifests) = self.live_of(keep)?;
        let held_chunks: Vec<Arc<HashSet<Hash>>> =
            self.state().held_chunks.values().cloned().collect();
        live.extend(held_chunks.iter().flat_map(|c| c.iter().copied()));
        let keep: HashSet<Hash> = keep.iter().copied().collect();
        let mut removed = 0;
        let candidates = {
            let mut s = self.state();
            // Decided under the lock that `put` takes, so a record put by a
            // pinned batch is either seen here or put after the decision.
            let pinned: HashSet<Hash> = s.pins.values().flatten().copied().collect();
            let dead: Vec<(Kind, Hash)> = s
                .packs
                .index
                .keys()
                .filter(|(_, h)| !pinned.contains(h))
                .filter(|(kind, h)| match kind {
                    Kind::Chunk => !live.contains(h),
                    Kind::Manifest => !live_manifests.contains(h),
                    Kind::Image => !keep.contains(h),
                    Kind::Commit | Kind::Forget => false,
                })
                .copied()
                .collect();
            for (kind, h) in dead {
                removed += usize::from(kind == Kind::Chunk);
                s.packs.forget(kind, &h)?;
            }
            // The tombstones are made durable with the copies, or by the
            // next batch.
            s.written += 1;
            let candidates = s.packs.compaction_candidates();
            if candidates.is_empty() {
                return Ok(removed);
            }
            candidates
        };
        self.copy_live(&candidates)?;
        // The copies must be durable before the packs they came from go.
        self.state().written += 1;
        self.sync()?;
        self.state().packs.remove_packs(&candidates)?;
        Ok(removed)
    }

    /// Copies what is live in packs `ids` to the active pack. Each record
    /// is read and verified without the store's lock, which is taken only
    /// to append it, so reads and writes go on while packs are rewritten
    /// (a rewrite measured 130-340 ms). Only garbage collection moves or
    /// forgets a stored record, and it holds `gc`, so a record is still
    /// where it was listed when its copy is appended; a record that does
    /// not verify is dropped with a warning.
    fn copy_live(&self, ids: &[u32]) -> Result<(), StoreError> {
        let moving = {
            let mut s = self.state();
            if ids.contains(&s.packs.active) {
                s.packs.seal_and_begin()?;
            }
            s.packs.live_in(ids)
        };
        for m in moving {
            let read = pack::read_verified(&m.file, &m.path, m.kind, &m.hash, m.loc);
            let mut s = self.state();
            if s.packs.index.get(&(m.kind, m.hash)) != Some(&m.loc) {
                continue;
            }
            match read {
                Ok(bytes) => s.packs.append(m.kind, &m.hash, &bytes)?,
                Err(e) => {
                    tracing::warn!("garbage collection drops a record it cannot read: {e}");
                    s.packs.forget(m.kind, &m.hash)?;
                }
            }
        }
        Ok(())
    }
}
