//! A vessel image ([`VesselImage`]): turning a paused vessel into one, and
//! one back into a vessel ready to run.
//!
//! Memory is the bulk. [`MemoryTracker`] keeps a copy of what was last sent
//! and its chunk hashes, so a later round (and the final one, during the
//! pause) compares bytes and hashes only the chunks that changed, instead of
//! rehashing the whole memory while the vessel waits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocol::limits::{MAX_LOG_BYTES, MAX_MODULE_BYTES};
use protocol::snapshot::{ChunkedImage, Hash, Manifest, CHUNK_SIZE_BYTES};
use protocol::vessel::{LogImage, Resume, VesselImage};

use super::log::VesselLog;
use super::{Host, HostError, PreparedModule};
use crate::dock::services::ingress::IngressHub;
use crate::dock::wasi::{
    DirMapping, InputSource, OutputSink, Services, Stdio, WasiCtx, WasiOptions,
};
use crate::dock::{Capture, Vessel};
use crate::store::{get_image, put_image, ChunkStore};

mod volume;
pub use volume::{pack_volume, pack_volume_changed, unpack_volume};

/// A vessel re-created from an image, not running yet.
pub struct Ready {
    pub vessel: Vessel,
    pub log: Arc<Mutex<VesselLog>>,
    pub module: Arc<PreparedModule>,
    /// The hub of a service vessel (`deploy --port`): its clients' bytes.
    pub ingress: Option<Arc<IngressHub>>,
    /// The memory image the vessel was resumed from (None for a fresh
    /// start): its memory holds exactly these chunks, so its first
    /// checkpoint here compares only what it writes from now on
    /// (`Baseline::seed`).
    pub memory_image: Option<ChunkedImage>,
}

fn chunk_size() -> usize {
    CHUNK_SIZE_BYTES as usize
}

/// What was last sent of a vessel's memory, chunk by chunk.
#[derive(Default)]
pub struct MemoryTracker {
    last: Vec<u8>,
    /// When `last` was copied, as the vessel's write tracking counts.
    mark: Option<crate::dock::dirty::WriteMark>,
    pub image: ChunkedImage,
}

impl MemoryTracker {
    /// Brings the image up to `memory`: compares with the last copy and
    /// hashes (and stores) only the chunks that differ. Returns how many
    /// chunks changed.
    pub fn update(
        &mut self,
        store: &ChunkStore,
        memory: &[u8],
    ) -> Result<usize, crate::store::StoreError> {
        let n = self.diff(memory, None, |bytes| store.put_chunk(bytes))?;
        self.last.clear();
        self.last.extend_from_slice(memory);
        Ok(n)
    }

    /// [`update`](Self::update) from a copy taken with its write mark: the
    /// final pause then compares only the chunks written since.
    pub fn update_copy(
        &mut self,
        store: &ChunkStore,
        copy: &crate::vessel::runner::MemoryCopy,
    ) -> Result<usize, crate::store::StoreError> {
        let n = self.update(store, &copy.bytes)?;
        self.mark = Some(copy.mark);
        Ok(n)
    }

    /// [`update`](Self::update) for the last round: no copy is kept (the
    /// pause does not pay for copying the whole memory once more).
    pub fn update_final(
        &mut self,
        store: &ChunkStore,
        memory: &[u8],
    ) -> Result<usize, crate::store::StoreError> {
        self.diff(memory, None, |bytes| store.put_chunk(bytes))
    }

    /// [`update_final`](Self::update_final) that stores nothing: returns
    /// the changed chunks (named, not all zero) for the caller to send and
    /// store, so that the pause does not wait for their files.
    ///
    /// `writes` (the paused vessel's write tracking) names the chunks
    /// written since the last copy; only those are compared, unless it
    /// cannot say.
    pub fn update_final_unstored(
        &mut self,
        memory: &[u8],
        writes: &crate::dock::dirty::WriteTracker,
    ) -> HashMap<Hash, Vec<u8>> {
        let candidates = match writes.look(memory, self.mark.take()) {
            (crate::dock::dirty::Written::Chunks(c), _) => Some(c),
            (crate::dock::dirty::Written::All, _) => None,
        };
        let mut fresh = HashMap::new();
        let _ = self.diff(memory, candidates, |bytes| {
            let h = Hash::of(bytes);
            fresh.entry(h).or_insert_with(|| bytes.to_vec());
            Ok::<_, std::convert::Infallible>(h)
        });
        fresh
    }

    /// Hashes (and `put`s) the chunks of `memory` that differ from the last
    /// copy: among `candidates` if given (the others are known unchanged),
    /// else all of them.
    fn diff<E>(
        &mut self,
        memory: &[u8],
        candidates: Option<Vec<usize>>,
        mut put: impl FnMut(&[u8]) -> Result<Hash, E>,
    ) -> Result<usize, E> {
        let cs = chunk_size();
        let count = memory.len().div_ceil(cs);
        self.image.chunks.resize(count, None);
        let changed = match candidates {
            None => changed_chunks(&self.last, &self.image.chunks, memory),
            Some(c) => changed_among(&self.last, &self.image.chunks, memory, c),
        };
        for &i in &changed {
            let now = &memory[i * cs..((i + 1) * cs).min(memory.len())];
            self.image.chunks[i] = if now.iter().all(|&b| b == 0) {
                None
            } else {
                Some(put(now)?)
            };
        }
        self.image.size_bytes = memory.len() as u64;
        Ok(changed.len())
    }
}

/// Whether chunk `i` of `memory` differs from `last` (or lies past its
/// end), or `known` names it as all zero and it is not.
pub(crate) fn chunk_changed(last: &[u8], known: &[Option<Hash>], memory: &[u8], i: usize) -> bool {
    let cs = chunk_size();
    let start = i * cs;
    let end = (start + cs).min(memory.len());
    let now = &memory[start..end];
    let same = end <= last.len() && last[start..end] == *now;
    !same || (known[i].is_none() && now.iter().any(|&b| b != 0))
}

/// The chunks among `candidates` that changed ([`chunk_changed`]).
pub(crate) fn changed_among(
    last: &[u8],
    known: &[Option<Hash>],
    memory: &[u8],
    candidates: Vec<usize>,
) -> Vec<usize> {
    candidates
        .into_iter()
        .filter(|&i| chunk_changed(last, known, memory, i))
        .collect()
}

/// Memories at least this large are compared on several threads.
const PARALLEL_DIFF_BYTES: usize = 8 << 20;

/// The indices of the chunks of `memory` that differ from `last` (or lie
/// past its end), or that `known` names as all zero and are not. The
/// compare reads the whole memory, so a large one is split across the
/// cores (in the final round the vessel is paused and leaves its core
/// free).
pub(crate) fn changed_chunks(last: &[u8], known: &[Option<Hash>], memory: &[u8]) -> Vec<usize> {
    let cs = chunk_size();
    let count = memory.len().div_ceil(cs);
    let scan = |range: std::ops::Range<usize>| -> Vec<usize> {
        range
            .filter(|&i| chunk_changed(last, known, memory, i))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2 || memory.len() < PARALLEL_DIFF_BYTES {
        return scan(0..count);
    }
    let per = count.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (1..threads)
            .map(|t| {
                let range = (t * per).min(count)..((t + 1) * per).min(count);
                s.spawn(move || scan(range))
            })
            .collect();
        let mut changed = scan(0..per.min(count));
        for p in parts {
            changed.extend(p.join().expect("a diff thread panicked"));
        }
        changed
    })
}

/// A blank vessel ([`Vessel::blank`]) whose memory a migration's
/// destination fills from the pre-copy rounds' chunks while the vessel
/// still runs at the source: the pause then writes only the chunks that
/// changed since, into memory already in place, and restores the rest of
/// the state ([`ready_with_memory`]).
pub struct Prebuilt {
    pub module: Arc<PreparedModule>,
    vessel: Vessel,
    /// The memory image its memory holds (None: not written yet; it holds
    /// the module's initial memory).
    image: Option<ChunkedImage>,
}

impl Prebuilt {
    /// Instantiates `module`, runs nothing.
    pub fn new(module: Arc<PreparedModule>) -> Result<Self, String> {
        let vessel =
            Vessel::blank(&module.engine, &module.vm, &module.config).map_err(|e| e.to_string())?;
        Ok(Prebuilt {
            module,
            vessel,
            image: None,
        })
    }

    /// What its memory holds.
    pub fn image(&self) -> Option<&ChunkedImage> {
        self.image.as_ref()
    }

    /// The memory, as it is now.
    pub fn memory(&self) -> &[u8] {
        self.vessel.memory()
    }

    /// Brings the memory to `to`, reading only the chunks whose names
    /// differ from what it holds; every chunk read is verified against its
    /// name. Returns how many chunks it wrote. After an error the memory
    /// holds something between the two images: drop it.
    pub fn patch(&mut self, store: &ChunkStore, to: &ChunkedImage) -> Result<usize, String> {
        if ChunkedImage::chunk_count(to.size_bytes) != to.chunks.len() as u64
            || to.size_bytes > protocol::limits::MAX_MEMORY_BYTES
        {
            return Err("memory image shape".into());
        }
        let cs = chunk_size();
        let from = self.image.take();
        let memory = self
            .vessel
            .memory_sized(to.size_bytes)
            .map_err(|e| e.to_string())?;
        let mut written = 0;
        for (i, c) in to.chunks.iter().enumerate() {
            let start = i * cs;
            let end = (start + cs).min(memory.len());
            if let Some(f) = &from {
                if f.chunks.get(i) == Some(c) && end as u64 <= f.size_bytes {
                    continue;
                }
            }
            let region = &mut memory[start..end];
            match c {
                // Grown memory is zero already; the initial memory may
                // hold data segments.
                None => {
                    if region.iter().any(|&b| b != 0) {
                        region.fill(0);
                        written += 1;
                    }
                }
                Some(h) => {
                    let bytes = store.get_chunk(h).map_err(|e| e.to_string())?;
                    if bytes.len() != end - start {
                        return Err("memory image shape".into());
                    }
                    region.copy_from_slice(&bytes);
                    written += 1;
                }
            }
        }
        self.image = Some(to.clone());
        Ok(written)
    }
}

/// Builds the snapshot manifest of a capture, with its memory image already
/// made by a [`MemoryTracker`].
pub fn manifest_of(
    module: &PreparedModule,
    module_image: &ChunkedImage,
    capture: &Capture,
    memory: ChunkedImage,
) -> Result<Manifest, String> {
    let manifest = crate::dock::snapshot::manifest_with(
        &module.vm,
        module_image.clone(),
        capture,
        memory,
        &module.config,
    )
    .map_err(|e| e.to_string())?;
    manifest.check().map_err(|e| e.to_string())?;
    Ok(manifest)
}

/// The log's bytes as an image (chunked into the store).
pub fn pack_log(store: &ChunkStore, log: &VesselLog) -> Result<LogImage, String> {
    let mut store = store.clone();
    Ok(LogImage {
        start_offset: log.start,
        content: put_image(&mut store, &log.bytes).map_err(|e| e.to_string())?,
    })
}

/// Where each of a vessel's volumes lives on this node.
pub fn volume_dirs(vessel_dir: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| vessel_dir.join(format!("vol{i}")))
        .collect()
}

/// Makes a vessel ready to run from an image in this node's store: module
/// (re-instrumented and checked against the snapshot), volumes unpacked,
/// log restored, WASI state rebuilt, frames validated. Nothing runs.
pub fn ready(host: &mut Host, image: &VesselImage) -> Result<Ready, HostError> {
    ready_with_memory(host, image, None)
}

/// [`ready`], with the snapshot's memory already in a blank instance (by a
/// migration's pre-copy rounds and its final patch, from verified chunks):
/// used when it holds exactly the manifest's memory image and runs the
/// same prepared module; otherwise the memory is read from the store.
pub fn ready_with_memory(
    host: &mut Host,
    image: &VesselImage,
    memory: Option<Prebuilt>,
) -> Result<Ready, HostError> {
    let id = image.vessel();
    // A received image that cannot be made ready is a malformed one.
    let refuse = |r: String| HostError::refused(id, protocol::refusal::RefusalCode::Invalid, r);
    image.check().map_err(|e| refuse(e.to_string()))?;
    let module_bytes = get_image(&host.store, &image.module, MAX_MODULE_BYTES)
        .map_err(|e| refuse(e.to_string()))?;
    if Hash::of(&module_bytes) != image.deployment.body.module_hash {
        return Err(refuse(
            "the image's module does not hash to what the deployment names".into(),
        ));
    }
    let module = host
        .module(module_bytes, &image.deployment.body.name)
        .map_err(refuse)?;

    let vdir = host.vessel_dir(id);
    let dirs = volume_dirs(&vdir, image.volumes.len());
    for (vol, dir) in image.volumes.iter().zip(&dirs) {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                HostError::refused(
                    id,
                    protocol::refusal::RefusalCode::Internal,
                    format!("{}: {e}", dir.display()),
                )
            })?;
        }
        unpack_volume(&host.store, vol, dir).map_err(refuse)?;
    }
    let mut mappings: Vec<DirMapping> = image
        .volumes
        .iter()
        .zip(&dirs)
        .map(|(v, d)| DirMapping {
            host: d.clone(),
            guest: v.guest.clone(),
        })
        .collect();
    for (guest, name) in &image.deployment.body.mounts {
        let host_dir = host.mounts.get(name).ok_or_else(|| {
            HostError::refused(
                id,
                protocol::refusal::RefusalCode::MissingMount,
                format!("mount {guest}={name}: this node maps no directory named `{name}`"),
            )
        })?;
        mappings.push(DirMapping {
            host: host_dir.clone(),
            guest: guest.clone(),
        });
    }

    let log_bytes = get_image(&host.store, &image.log.content, MAX_LOG_BYTES)
        .map_err(|e| refuse(e.to_string()))?;
    // The journal tells a crash's rollback from an arrival (issue 13).
    let log = Arc::new(Mutex::new(super::journal::restore(
        &vdir,
        image.epoch,
        image.log.start_offset,
        log_bytes,
    )));
    let sink = |stream: u8| {
        let log = log.clone();
        OutputSink::Record(Arc::new(move |data: &[u8]| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(stream, data)
        }))
    };
    let stdio = Stdio {
        stdin: InputSource::Empty,
        stdout: sink(1),
        stderr: sink(2),
    };

    let ports = &image.deployment.body.ports;
    let ingress = (!ports.is_empty()).then(|| {
        Arc::new(match &image.resume {
            Resume::Fresh => IngressHub::new(ports),
            Resume::Snapshot(_) => IngressHub::from_image(&image.hub),
        })
    });
    let (vessel, memory_image) = match &image.resume {
        Resume::Fresh => {
            let body = &image.deployment.body;
            let mut args = vec![body.name.as_bytes().to_vec()];
            args.extend(body.args.iter().map(|a| a.as_bytes().to_vec()));
            let services = ingress.as_ref().map(|i| Services {
                hub: i.hub(),
                ports: ports.iter().map(|p| p.to_string()).collect(),
            });
            let wasi = WasiCtx::new_with_services(
                WasiOptions {
                    args,
                    env: body.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
                    dirs: mappings,
                    stdio,
                },
                services,
            )
            .map_err(|e| refuse(e.to_string()))?;
            let vessel = Vessel::new(&module.engine, &module.vm, wasi, &module.config)
                .map_err(|e| refuse(e.to_string()))?;
            (vessel, None)
        }
        Resume::Snapshot(h) => {
            // The image carries its manifest (a checkpoint stores it only
            // there); the store's copy, where there is one, is the same.
            let carried = (Hash::of(&image.manifest) == *h)
                .then(|| {
                    protocol::cbor::decode::<protocol::snapshot::Manifest>(&image.manifest).ok()
                })
                .flatten();
            let manifest = match carried {
                Some(m) => {
                    m.check()
                        .map_err(|e| refuse(format!("manifest {h}: {e}")))?;
                    m
                }
                None => host
                    .store
                    .get_manifest(h)
                    .map_err(|e| refuse(e.to_string()))?,
            };
            // This node's limits, whatever the snapshot ran under.
            crate::dock::snapshot::check_limits(&manifest, &module.config)
                .map_err(|e| refuse(format!("snapshot {h}: {e}")))?;
            let instrumented = module.vm.instrumented.as_ref().map(|i| i.hash);
            if instrumented != Some(manifest.module.instrumented_hash)
                || manifest.module.rewriter_version != wasm_rewriter::REWRITER_VERSION
            {
                return Err(refuse(format!(
                    "this node's rewriter ({}) does not reproduce the snapshot's module ({}, {})",
                    wasm_rewriter::REWRITER_VERSION,
                    manifest.module.rewriter_version,
                    manifest.module.instrumented_hash
                )));
            }
            let hub = ingress
                .as_ref()
                .map(|i| i.hub() as Arc<dyn crate::dock::services::ServiceHub>);
            let wasi = WasiCtx::rebuild_with_hub(manifest.wasi.clone(), &mappings, stdio, hub)
                .map_err(|e| refuse(e.to_string()))?;
            let vessel = match memory {
                Some(p)
                    if Arc::ptr_eq(&p.module, &module)
                        && p.image.as_ref() == Some(&manifest.memory)
                        && p.vessel.memory().len() as u64 == manifest.memory.size_bytes =>
                {
                    let capture = crate::dock::Capture {
                        memory: Vec::new(),
                        globals: manifest.globals.clone(),
                        data_dropped: manifest.data_dropped,
                        entry: manifest.entry,
                        frames: manifest.frames.clone(),
                        wasi: manifest.wasi.clone(),
                        points_passed: manifest.points_passed,
                    };
                    p.vessel
                        .resume_blank(
                            &module.vm,
                            &capture,
                            manifest.memory.size_bytes,
                            wasi,
                            &module.config,
                        )
                        .map_err(|e| refuse(e.to_string()))?
                }
                // The memory is written in place, only its non-zero chunks,
                // after a check against this node's limit.
                _ => crate::dock::snapshot::resume_from_manifest(
                    &module.engine,
                    &module.vm,
                    &host.store,
                    &manifest,
                    wasi,
                    &module.config,
                )
                .map_err(|e| refuse(e.to_string()))?,
            };
            (vessel, Some(manifest.memory))
        }
    };
    let mut vessel = vessel;
    if let Some(max) = image.deployment.body.max_memory_bytes {
        // `deploy --max-memory`: wherever it runs, from any image. A module
        // that starts with more memory than that could never run within it.
        let memory_bytes = vessel.memory().len() as u64;
        if memory_bytes > max {
            return Err(refuse(format!(
                "its memory is {memory_bytes} bytes from the start, more than its --max-memory of {max} bytes"
            )));
        }
        vessel.limit_memory(max);
    }
    Ok(Ready {
        vessel,
        log,
        module,
        ingress,
        memory_image,
    })
}

/// The chunks an image needs that `store` lacks: its own (module, volumes,
/// log) and, for a snapshot, its manifest's memory. Chunks in `known` are
/// known to be in the store (the store is not asked about them).
pub fn lacking(
    store: &ChunkStore,
    image: &VesselImage,
    manifest: Option<&Manifest>,
    known: &std::collections::HashSet<Hash>,
) -> Vec<Hash> {
    let mut all = image.own_chunks();
    if let Some(m) = manifest {
        all.extend(m.memory.chunks.iter().flatten().copied());
        all.extend(m.module.original.chunks.iter().flatten().copied());
    }
    all.sort();
    all.dedup();
    all.retain(|h| !known.contains(h) && !store.has_chunk(h));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dock::{DockConfig, Mode, VesselModule};
    use crate::store::put_image;

    /// A migratable module with one page of memory that starts with a
    /// data segment.
    fn module() -> Arc<PreparedModule> {
        let wasm = wat::parse_str(
            r#"(module
                 (memory (export "memory") 1)
                 (data (i32.const 0) "data segment bytes")
                 (func (export "_start") (local i32)
                   (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                         (br_if 0 (i32.lt_u (local.get 0) (i32.const 10))))))"#,
        )
        .unwrap();
        let (engine, config, vm) = VesselModule::prepare_with_engine(
            &DockConfig::default(),
            Path::new("test.wasm"),
            wasm,
            Mode::Migratable { countdown: false },
        )
        .unwrap();
        Arc::new(PreparedModule { engine, config, vm })
    }

    fn store() -> (tempfile::TempDir, ChunkStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Memory built ahead of a migration's pause is patched from image to
    /// image (growing as the vessel did), and writes only the chunks whose
    /// names changed.
    #[test]
    fn prebuilt_memory_patches_from_image_to_image() {
        let (_dir, store) = store();
        let mut p = Prebuilt::new(module()).unwrap();
        let page = 65536;
        let a: Vec<u8> = (0..3 * page).map(|i| (i % 251) as u8 + 1).collect();
        let ia = put_image(&mut store.clone(), &a).unwrap();
        assert_eq!(p.patch(&store, &ia).unwrap(), 3);
        assert_eq!(p.memory(), &a[..]);
        assert_eq!(p.image(), Some(&ia));

        let mut b = a.clone();
        b[2 * page + 7] ^= 0xff;
        b.resize(5 * page, 0);
        b[4 * page] = 1;
        let ib = put_image(&mut store.clone(), &b).unwrap();
        // Chunk 2 changed, chunk 4 is new; chunk 3 is new and zero: grown
        // memory is zero already.
        assert_eq!(p.patch(&store, &ib).unwrap(), 2);
        assert_eq!(p.memory(), &b[..]);

        // Memory does not shrink: a smaller image is refused.
        assert!(p.patch(&store, &ia).is_err());
    }

    /// The final round compares a large memory on several threads: every
    /// changed chunk is found, in order, wherever the split falls, and the
    /// image names exactly the new content.
    #[test]
    fn the_memory_tracker_finds_every_changed_chunk_of_a_large_memory() {
        let (_dir, store) = store();
        let cs = chunk_size();
        let mut memory: Vec<u8> = (0..PARALLEL_DIFF_BYTES + 3 * cs)
            .map(|i| (i % 241) as u8 + 1)
            .collect();
        let mut t = MemoryTracker::default();
        let count = memory.len() / cs;
        assert_eq!(t.update(&store, &memory).unwrap(), count);
        assert_eq!(t.update(&store, &memory).unwrap(), 0);
        let touched = [
            0,
            count / 4,
            count / 2 - 1,
            count / 2,
            count / 3 + 1,
            count - 1,
        ];
        for &i in &touched {
            memory[i * cs + 9] ^= 0x5a;
        }
        // A chunk that became all zero.
        memory[cs..2 * cs].fill(0);
        assert_eq!(t.update_final(&store, &memory).unwrap(), touched.len() + 1);
        assert_eq!(t.image.chunks[1], None);
        assert_eq!(t.image, put_image(&mut store.clone(), &memory).unwrap());
    }

    /// A migration's final pause compares only the chunks written since the
    /// last pre-copy round's copy (write tracking), and still finds every
    /// change: the image equals one made from the whole memory.
    #[test]
    fn the_final_round_compares_only_chunks_written_since_the_last_copy() {
        let (_dir, store) = store();
        let cs = chunk_size();
        let mut memory: Vec<u8> = (0..64 * cs).map(|i| (i % 239) as u8 + 1).collect();
        // Declared after the memory: dropped (and unprotected) before it.
        let writes = crate::dock::dirty::WriteTracker::default();
        let (_, mark) = writes.look(&memory, None);
        let copy = crate::vessel::runner::MemoryCopy {
            bytes: memory.clone(),
            mark,
        };
        let mut t = MemoryTracker::default();
        t.update_copy(&store, &copy).unwrap();
        for i in [3, 17, 40] {
            memory[i * cs + 5] ^= 0x33;
        }
        // A chunk nobody wrote, made to differ from the copy behind the
        // tracker's back: only a compare of every chunk would see it.
        t.last[30 * cs] ^= 1;
        let fresh = t.update_final_unstored(&memory, &writes);
        let named: Vec<usize> = (0..64)
            .filter(|&i| fresh.contains_key(&Hash::of(&memory[i * cs..(i + 1) * cs])))
            .collect();
        assert!(writes.is_armed(), "tracking was not armed");
        assert_eq!(named, vec![3, 17, 40], "compared beyond what was written");
        assert_eq!(t.image, put_image(&mut store.clone(), &memory).unwrap());
    }

    /// Regression (a blank instance is not zeroed memory): it holds the
    /// module's data segments, so a chunk that the snapshot names as all
    /// zero must be written as zeros, not skipped.
    #[test]
    fn prebuilt_memory_clears_data_segments_the_snapshot_zeroed() {
        let (_dir, store) = store();
        let mut p = Prebuilt::new(module()).unwrap();
        assert!(p.memory().starts_with(b"data segment bytes"));
        let zero = vec![0u8; 2 * 65536];
        let image = put_image(&mut store.clone(), &zero).unwrap();
        assert!(image.chunks.iter().all(Option::is_none));
        assert_eq!(p.patch(&store, &image).unwrap(), 1);
        assert_eq!(p.memory(), &zero[..]);
    }

    /// A blank instance resumes only the module it was made from: the
    /// frames are validated against that module's layouts.
    #[test]
    fn a_blank_instance_of_another_module_is_refused() {
        let f = crate::dock::fuzzing::SnapshotFixture::new();
        let p = Prebuilt::new(module()).unwrap();
        let capture = crate::dock::snapshot::capture_from_manifest(
            &f.chunks,
            &f.manifest,
            f.config.max_memory_bytes as u64,
        )
        .unwrap();
        let wasi = WasiCtx::rebuild(f.manifest.wasi.clone(), &[], Default::default()).unwrap();
        let size = p.memory().len() as u64;
        let err = p
            .vessel
            .resume_blank(&f.vm, &capture, size, wasi, &f.config)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("another module"), "{err}");
    }

    /// A chunk whose bytes no longer hash to its name is refused, not
    /// written into the memory as good.
    #[test]
    fn prebuilt_memory_refuses_a_corrupt_chunk() {
        let (dir, store) = store();
        let mut p = Prebuilt::new(module()).unwrap();
        let a: Vec<u8> = (0..65536).map(|i| (i % 13) as u8 + 1).collect();
        let ia = put_image(&mut store.clone(), &a).unwrap();
        assert!(ia.chunks[0].is_some());
        // Overwrite the chunk's bytes where they sit in the store's pack.
        let pack = dir.path().join("packs").join("00000001.pack");
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = bytes.windows(a.len()).position(|w| w == a).unwrap();
        bytes[at..at + a.len()].fill(7);
        std::fs::write(&pack, &bytes).unwrap();
        let err = p.patch(&store, &ia).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }
}
