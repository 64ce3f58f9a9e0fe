//! The on-disk chunk store: content-addressed chunks and manifests.
//!
//! Layout under the store's root:
//! - `chunks/ab/abcdef…` — one file per chunk, named by its BLAKE3 hash;
//! - `manifests/abcdef…` — one CBOR manifest per snapshot, named by the hash
//!   of its encoding;
//! - `images/abcdef…` — one CBOR vessel image (`protocol::vessel`) per
//!   instant a vessel was captured or received, named likewise.
//!
//! Every read is verified against its name, so a corrupted or tampered file
//! is an error, never silently resumed. Writes go to a temporary file and are
//! renamed into place; [`ChunkStore::put_manifest`] makes everything written
//! so far durable before the manifest appears, so a manifest that exists
//! never names a chunk that a crash lost.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocol::snapshot::{ChunkedImage, Hash, Manifest, ManifestError, CHUNK_SIZE_BYTES};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("chunk {hash} is not in the store at {root}")]
    MissingChunk { hash: Hash, root: PathBuf },
    #[error("snapshot {hash} is not in the store at {root}")]
    MissingManifest { hash: Hash, root: PathBuf },
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

/// Fsyncs each path (a file, or a directory for the entries renamed into
/// it), a few at once. A file removed since it was written (evicted) needs
/// nothing.
fn fsync_all(paths: &[PathBuf]) -> Result<(), StoreError> {
    let fsync = |p: &PathBuf| -> Result<(), StoreError> {
        match std::fs::File::open(p) {
            Ok(f) => f.sync_all().map_err(io_err(p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                path: p.clone(),
                source: e,
            }),
        }
    };
    if paths.len() <= 1 {
        return paths.iter().try_for_each(fsync);
    }
    let per = paths.len().div_ceil(FSYNC_THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().try_for_each(fsync)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(StoreError::Io {
                    path: PathBuf::from("(fsync thread)"),
                    source: io::Error::other("an fsync thread panicked"),
                })
            })
        })
    })
}

/// A content-addressed store in one directory.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
    /// Files written without an fsync (shared by every clone): what
    /// [`ChunkStore::sync_written`] makes durable. Every other file of the
    /// store is durable (the store makes everything durable when it opens).
    unsynced: Arc<Mutex<Unsynced>>,
}

/// At most this many files written and not yet synced are tracked one by
/// one; past it, only a `syncfs` covers them.
pub const MAX_TRACKED_UNSYNCED: usize = 4096;

/// Threads that fsync files at once: concurrent fsyncs share journal
/// commits.
const FSYNC_THREADS: usize = 8;

/// Files written without an fsync, each with the generation it was written
/// in, so a sync removes only what was written before it began.
#[derive(Debug, Default)]
struct Unsynced {
    files: HashMap<PathBuf, u64>,
    generation: u64,
    /// Files of generations up to this one were written and are no longer
    /// tracked one by one: only a `syncfs` that begins later covers them.
    overflow: Option<u64>,
}

impl Unsynced {
    fn record(&mut self, path: &Path) {
        self.generation += 1;
        if self.files.len() >= MAX_TRACKED_UNSYNCED {
            self.files.clear();
            self.overflow = Some(self.generation);
            return;
        }
        self.files.insert(path.to_path_buf(), self.generation);
    }

    /// Forgets what was written up to generation `upto` (now durable).
    fn synced(&mut self, upto: u64) {
        self.files.retain(|_, g| *g > upto);
        if self.overflow.is_some_and(|g| g <= upto) {
            self.overflow = None;
        }
    }
}

impl ChunkStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let existed = root.join("chunks").exists();
        for sub in ["chunks", "manifests", "images", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let store = ChunkStore {
            root: root.to_path_buf(),
            unsynced: Default::default(),
        };
        // What an earlier process wrote and did not sync may still be only
        // in the page cache: make it durable now, so that every file this
        // store does not list as unsynced is durable. (A new store holds
        // nothing to sync.)
        if existed {
            store.sync()?;
        }
        Ok(store)
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, Unsynced> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chunk_path(&self, h: &Hash) -> PathBuf {
        let hex = h.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    fn manifest_path(&self, h: &Hash) -> PathBuf {
        self.root.join("manifests").join(h.to_hex())
    }

    pub fn has_chunk(&self, h: &Hash) -> bool {
        self.chunk_path(h).exists()
    }

    /// Writes `bytes` to `path` through a temporary file and a rename, so a
    /// reader never sees a half-written file. With `sync`, the file and
    /// its directory entry are durable on return; without, the file is
    /// tracked as unsynced (see [`ChunkStore::sync_written`]).
    fn write_atomic(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        if sync {
            tmp.as_file().sync_all().map_err(io_err(path))?;
        }
        tmp.persist(path).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        if sync {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        } else {
            self.unsynced().record(path);
        }
        Ok(())
    }

    /// Stores one chunk (if it is not there yet) and returns its name.
    pub fn put_chunk(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        let path = self.chunk_path(&h);
        if !path.exists() {
            // Not synced one by one: `put_manifest` syncs the filesystem once
            // before the manifest that names these chunks appears.
            self.write_atomic(&path, bytes, false)?;
        }
        Ok(h)
    }

    /// Reads a chunk and checks it against its name.
    pub fn get_chunk(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        self.read_verified(&self.chunk_path(h), h, || StoreError::MissingChunk {
            hash: *h,
            root: self.root.clone(),
        })
    }

    /// Reads a file named by the hash of its content and checks that it
    /// still hashes to that name.
    fn read_verified(
        &self,
        path: &Path,
        h: &Hash,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<Vec<u8>, StoreError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        let found = Hash::of(&bytes);
        if found != *h {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                expected: *h,
                found,
            });
        }
        Ok(bytes)
    }

    /// Makes every chunk written so far durable, then writes the manifest
    /// durably. Returns the snapshot's name.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<Hash, StoreError> {
        let (bytes, h) = manifest.encode_and_hash();
        let chunks = self.root.join("chunks");
        let dir = std::fs::File::open(&chunks).map_err(io_err(&chunks))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::Io {
            path: chunks.clone(),
            source: e.into(),
        })?;
        let path = self.manifest_path(&h);
        self.write_atomic(&path, &bytes, true)?;
        Ok(h)
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
        let path = self.chunk_path(expected);
        if !path.exists() {
            self.write_atomic(&path, bytes, false)?;
        }
        Ok(())
    }

    /// Makes every file written so far durable (one `syncfs`, which also
    /// flushes whatever else on the filesystem is dirty: other programs'
    /// files too, so it can take long on a busy disk; keep it out of a
    /// migration's pause).
    pub fn sync(&self) -> Result<(), StoreError> {
        let upto = self.unsynced().generation;
        let chunks = self.root.join("chunks");
        let dir = std::fs::File::open(&chunks).map_err(io_err(&chunks))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::Io {
            path: chunks.clone(),
            source: e.into(),
        })?;
        self.unsynced().synced(upto);
        Ok(())
    }

    /// Makes every file this store wrote without syncing durable, like
    /// [`sync`](Self::sync), but by an fsync of each such file and then of
    /// each directory they were renamed into (and its parents up to the
    /// store's root, which a new chunk directory needs), so that it does not wait
    /// for the rest of the disk's dirty pages (a `syncfs` on a disk shared
    /// with builds took 0.1–0.7 s). Falls back to `syncfs` when more files
    /// were written than the store tracks one by one. Two calls at once
    /// are safe: each returns once everything written before it began is
    /// durable.
    pub fn sync_written(&self) -> Result<(), StoreError> {
        let (upto, files) = {
            let u = self.unsynced();
            if u.overflow.is_some() {
                drop(u);
                return self.sync();
            }
            let files: Vec<PathBuf> = u.files.keys().cloned().collect();
            (u.generation, files)
        };
        // The directories the files were renamed into, and theirs up to
        // the store's root: a chunk's `chunks/ab/` may be new too (an
        // unchanged directory's fsync returns at once).
        let mut dirs: Vec<PathBuf> = Vec::new();
        for f in &files {
            let mut d = f.parent();
            while let Some(p) = d {
                dirs.push(p.to_path_buf());
                if p == self.root || !p.starts_with(&self.root) {
                    break;
                }
                d = p.parent();
            }
        }
        dirs.sort();
        dirs.dedup();
        fsync_all(&files)?;
        fsync_all(&dirs)?;
        self.unsynced().synced(upto);
        Ok(())
    }

    /// How many written files are not known to be durable (tests).
    pub fn unsynced_count(&self) -> usize {
        self.unsynced().files.len()
    }

    /// Stores an encoded manifest as it arrived, under its hash, durably
    /// (after every chunk written so far).
    pub fn put_manifest_bytes(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.sync()?;
        self.write_atomic(&self.manifest_path(&h), bytes, true)?;
        Ok(h)
    }

    /// Stores an encoded manifest as it arrived, under its hash, without
    /// syncing: the caller makes it durable with [`ChunkStore::sync`].
    pub fn put_manifest_bytes_unsynced(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        self.write_atomic(&self.manifest_path(&h), bytes, false)?;
        Ok(h)
    }

    /// Stores an encoded vessel image, durably, after every chunk written so
    /// far; returns its name.
    pub fn put_image_doc(&self, bytes: &[u8], durable: bool) -> Result<Hash, StoreError> {
        let h = Hash::of(bytes);
        if durable {
            self.sync()?;
        }
        let path = self.root.join("images").join(h.to_hex());
        self.write_atomic(&path, bytes, durable)?;
        Ok(h)
    }

    /// Reads an encoded vessel image, verified against its name.
    pub fn get_image_doc(&self, h: &Hash) -> Result<Vec<u8>, StoreError> {
        let path = self.root.join("images").join(h.to_hex());
        self.read_verified(&path, h, || StoreError::MissingManifest {
            hash: *h,
            root: self.root.clone(),
        })
    }

    /// Removes chunks and images that no image in `keep` names (with the
    /// manifests those images hold). Returns how many chunks went.
    pub fn retain_images(&self, keep: &[Hash]) -> Result<usize, StoreError> {
        let mut live = std::collections::HashSet::new();
        let mut live_manifests = std::collections::HashSet::new();
        for h in keep {
            let Ok(bytes) = self.get_image_doc(h) else {
                continue;
            };
            let Ok(img) = protocol::cbor::decode::<protocol::vessel::VesselImage>(&bytes) else {
                continue;
            };
            live.extend(img.own_chunks());
            if let protocol::vessel::Resume::Snapshot(m) = img.resume {
                live_manifests.insert(m);
                // The image carries its manifest (a source never stores it
                // on its own); the stored copy, where there is one, is the
                // same bytes.
                let man = protocol::cbor::decode::<Manifest>(&img.manifest)
                    .ok()
                    .filter(|_| Hash::of(&img.manifest) == m)
                    .or_else(|| self.get_manifest(&m).ok());
                if let Some(man) = man {
                    live.extend(man.memory.chunks.iter().flatten().copied());
                    live.extend(man.module.original.chunks.iter().flatten().copied());
                }
            }
        }
        let keep_names: std::collections::HashSet<String> =
            keep.iter().map(|h| h.to_hex()).collect();
        let mut removed = 0;
        let images = self.root.join("images");
        if let Ok(rd) = std::fs::read_dir(&images) {
            for e in rd.flatten() {
                if !keep_names.contains(&e.file_name().to_string_lossy().to_string()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let manifests = self.root.join("manifests");
        if let Ok(rd) = std::fs::read_dir(&manifests) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !Hash::from_hex(&name).is_some_and(|h| live_manifests.contains(&h)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let chunks = self.root.join("chunks");
        if let Ok(rd) = std::fs::read_dir(&chunks) {
            for sub in rd.flatten() {
                let Ok(files) = std::fs::read_dir(sub.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if !Hash::from_hex(&name).is_some_and(|h| live.contains(&h)) {
                        let _ = std::fs::remove_file(f.path());
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Reads a manifest, checks it against its name, decodes it with limits
    /// and checks its structure.
    pub fn get_manifest(&self, h: &Hash) -> Result<Manifest, StoreError> {
        let bytes =
            self.read_verified(&self.manifest_path(h), h, || StoreError::MissingManifest {
                hash: *h,
                root: self.root.clone(),
            })?;
        let m: Manifest = protocol::cbor::decode(&bytes)
            .map_err(|source| StoreError::Decode { hash: *h, source })?;
        m.check()
            .map_err(|source| StoreError::Manifest { hash: *h, source })?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32) -> Vec<u8> {
        let mut b = vec![1u8; 1000];
        b[..4].copy_from_slice(&i.to_le_bytes());
        b
    }

    /// Files written without a sync are tracked until a sync covers them;
    /// `sync_written` syncs them one by one (an evicted one needs nothing)
    /// and forgets them, and so does a `syncfs`.
    #[test]
    fn unsynced_writes_are_tracked_until_a_sync_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(store.unsynced_count(), 0);
        let hashes: Vec<Hash> = (0..10)
            .map(|i| store.put_chunk(&chunk(i)).unwrap())
            .collect();
        // Stored once: the same chunk again writes nothing.
        store.put_chunk(&chunk(0)).unwrap();
        store.put_image_doc(b"an image", false).unwrap();
        assert_eq!(store.unsynced_count(), 11);
        std::fs::remove_file(store.chunk_path(&hashes[3])).unwrap();
        store.sync_written().unwrap();
        assert_eq!(store.unsynced_count(), 0);

        store.put_chunk(&chunk(100)).unwrap();
        assert_eq!(store.unsynced_count(), 1);
        store.sync().unwrap();
        assert_eq!(store.unsynced_count(), 0);

        // A durable write is not tracked.
        store.put_image_doc(b"a durable image", true).unwrap();
        assert_eq!(store.unsynced_count(), 0);
    }

    /// Past what it tracks one by one, the store falls back to `syncfs`
    /// and still ends with nothing unsynced.
    #[test]
    fn too_many_unsynced_writes_fall_back_to_syncfs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let mut u = Unsynced::default();
        for i in 0..MAX_TRACKED_UNSYNCED + 3 {
            u.record(Path::new(&format!("f{i}")));
        }
        assert!(u.overflow.is_some());
        assert_eq!(u.files.len(), 2);
        *store.unsynced() = u;
        store.sync_written().unwrap();
        let u = store.unsynced();
        assert!(u.overflow.is_none() && u.files.is_empty());
    }
}
