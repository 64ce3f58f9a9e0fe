//! A vessel image ([`VesselImage`]): turning a paused vessel into one, and
//! one back into a vessel ready to run.
//!
//! Memory is the bulk. [`MemoryTracker`] keeps a copy of what was last sent
//! and its chunk hashes, so a later round (and the final one, during the
//! pause) compares bytes and hashes only the chunks that changed, instead of
//! rehashing the whole memory while the vessel waits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protocol::limits::{MAX_LOG_BYTES, MAX_MODULE_BYTES, MAX_VOLUME_BYTES};
use protocol::snapshot::{ChunkedImage, Hash, Manifest, CHUNK_SIZE_BYTES};
use protocol::vessel::{LogImage, Resume, VesselImage, VolumeEntry, VolumeImage};

use super::log::VesselLog;
use super::{Host, HostError, PreparedModule};
use crate::dock::services::ingress::IngressHub;
use crate::dock::snapshot::capture_from_manifest;
use crate::dock::wasi::{
    DirMapping, InputSource, OutputSink, Services, Stdio, WasiCtx, WasiOptions,
};
use crate::dock::{Capture, Vessel};
use crate::store::{get_image, put_image, ChunkStore};

/// A vessel re-created from an image, not running yet.
pub struct Ready {
    pub vessel: Vessel,
    pub log: Arc<Mutex<VesselLog>>,
    pub module: Arc<PreparedModule>,
    /// The hub of a service vessel (`deploy --port`): its clients' bytes.
    pub ingress: Option<Arc<IngressHub>>,
}

fn chunk_size() -> usize {
    CHUNK_SIZE_BYTES as usize
}

/// What was last sent of a vessel's memory, chunk by chunk.
#[derive(Default)]
pub struct MemoryTracker {
    last: Vec<u8>,
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
        let n = self.diff(store, memory)?;
        self.last.clear();
        self.last.extend_from_slice(memory);
        Ok(n)
    }

    /// [`update`](Self::update) for the last round: no copy is kept (the
    /// pause does not pay for copying the whole memory once more).
    pub fn update_final(
        &mut self,
        store: &ChunkStore,
        memory: &[u8],
    ) -> Result<usize, crate::store::StoreError> {
        self.diff(store, memory)
    }

    fn diff(
        &mut self,
        store: &ChunkStore,
        memory: &[u8],
    ) -> Result<usize, crate::store::StoreError> {
        let cs = chunk_size();
        let count = memory.len().div_ceil(cs);
        self.image.chunks.resize(count, None);
        let mut changed = 0;
        for i in 0..count {
            let start = i * cs;
            let end = (start + cs).min(memory.len());
            let now = &memory[start..end];
            let same = end <= self.last.len() && self.last[start..end] == *now;
            if same && !(self.image.chunks[i].is_none() && now.iter().any(|&b| b != 0)) {
                continue;
            }
            changed += 1;
            self.image.chunks[i] = if now.iter().all(|&b| b == 0) {
                None
            } else {
                Some(store.put_chunk(now)?)
            };
        }
        self.image.size_bytes = memory.len() as u64;
        Ok(changed)
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

/// Packs a volume directory into an image (files chunked into the store),
/// in sorted order so the same files give the same image.
pub fn pack_volume(store: &ChunkStore, dir: &Path, guest: &str) -> Result<VolumeImage, String> {
    let mut entries = Vec::new();
    let mut total = 0u64;
    let mut store = store.clone();
    fn walk(
        store: &mut ChunkStore,
        root: &Path,
        rel: &str,
        entries: &mut Vec<VolumeEntry>,
        total: &mut u64,
    ) -> Result<(), String> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let name = name
                .to_str()
                .ok_or_else(|| format!("{}: a file name that is not UTF-8", dir.display()))?
                .to_string();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let full = root.join(&path);
            let meta =
                std::fs::symlink_metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&full).map_err(|e| format!("{}: {e}", full.display()))?;
                entries.push(VolumeEntry::Symlink {
                    path,
                    target: target.to_string_lossy().to_string(),
                });
            } else if meta.is_dir() {
                entries.push(VolumeEntry::Dir { path: path.clone() });
                walk(store, root, &path, entries, total)?;
            } else if meta.is_file() {
                *total += meta.len();
                if *total > MAX_VOLUME_BYTES {
                    return Err(format!(
                        "{}: the volume holds more than {MAX_VOLUME_BYTES} bytes",
                        root.display()
                    ));
                }
                let bytes = std::fs::read(&full).map_err(|e| format!("{}: {e}", full.display()))?;
                let content = put_image(store, &bytes).map_err(|e| e.to_string())?;
                entries.push(VolumeEntry::File { path, content });
            }
        }
        Ok(())
    }
    walk(&mut store, dir, "", &mut entries, &mut total)?;
    Ok(VolumeImage {
        guest: guest.to_string(),
        entries,
    })
}

/// Re-creates a volume's files under `dir` (which must not exist): the
/// directories and files first, symlinks last, so no file is ever written
/// through a symlink that the image made.
pub fn unpack_volume(store: &ChunkStore, vol: &VolumeImage, dir: &Path) -> Result<(), String> {
    vol.check().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in &vol.entries {
        let path = dir.join(e.path());
        match e {
            VolumeEntry::Dir { .. } => {
                std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            VolumeEntry::File { content, .. } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                let bytes =
                    get_image(store, content, MAX_VOLUME_BYTES).map_err(|e| e.to_string())?;
                std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            VolumeEntry::Symlink { .. } => {}
        }
    }
    for e in &vol.entries {
        if let VolumeEntry::Symlink { path, target } = e {
            let full = dir.join(path);
            std::os::unix::fs::symlink(target, &full)
                .map_err(|e| format!("{}: {e}", full.display()))?;
        }
    }
    Ok(())
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

/// [`ready`], with the snapshot's memory already assembled (by a migration's
/// pre-copy rounds, from verified chunks): it must be exactly as long as
/// the manifest says.
pub fn ready_with_memory(
    host: &mut Host,
    image: &VesselImage,
    memory: Option<Vec<u8>>,
) -> Result<Ready, HostError> {
    let id = image.vessel();
    let refuse = |r: String| HostError::refused(id, r);
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
            std::fs::remove_dir_all(dir).map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
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
            refuse(format!(
                "mount {guest}={name}: this node maps no directory named `{name}`"
            ))
        })?;
        mappings.push(DirMapping {
            host: host_dir.clone(),
            guest: guest.clone(),
        });
    }

    let log_bytes = get_image(&host.store, &image.log.content, MAX_LOG_BYTES)
        .map_err(|e| refuse(e.to_string()))?;
    let log = Arc::new(Mutex::new(VesselLog {
        start: image.log.start_offset,
        bytes: log_bytes,
    }));
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
    let vessel = match &image.resume {
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
            Vessel::new(&module.engine, &module.vm, wasi, &module.config)
                .map_err(|e| refuse(e.to_string()))?
        }
        Resume::Snapshot(h) => {
            let manifest = host
                .store
                .get_manifest(h)
                .map_err(|e| refuse(e.to_string()))?;
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
            let capture = match memory {
                Some(memory)
                    if memory.len() as u64 == manifest.memory.size_bytes
                        && memory.len() <= module.config.max_memory_bytes =>
                {
                    crate::dock::Capture {
                        memory,
                        globals: manifest.globals.clone(),
                        data_dropped: manifest.data_dropped,
                        entry: manifest.entry,
                        frames: manifest.frames.clone(),
                        wasi: manifest.wasi.clone(),
                        points_passed: manifest.points_passed,
                    }
                }
                _ => capture_from_manifest(
                    &host.store,
                    &manifest,
                    module.config.max_memory_bytes as u64,
                )
                .map_err(|e| refuse(e.to_string()))?,
            };
            let hub = ingress
                .as_ref()
                .map(|i| i.hub() as Arc<dyn crate::dock::services::ServiceHub>);
            let wasi = WasiCtx::rebuild_with_hub(manifest.wasi.clone(), &mappings, stdio, hub)
                .map_err(|e| refuse(e.to_string()))?;
            Vessel::resume(&module.engine, &module.vm, &capture, wasi, &module.config)
                .map_err(|e| refuse(e.to_string()))?
        }
    };
    Ok(Ready {
        vessel,
        log,
        module,
        ingress,
    })
}

/// The chunks an image needs that `store` lacks: its own (module, volumes,
/// log) and, for a snapshot, its manifest's memory.
pub fn lacking(store: &ChunkStore, image: &VesselImage, manifest: Option<&Manifest>) -> Vec<Hash> {
    let mut all = image.own_chunks();
    if let Some(m) = manifest {
        all.extend(m.memory.chunks.iter().flatten().copied());
        all.extend(m.module.original.chunks.iter().flatten().copied());
    }
    all.sort();
    all.dedup();
    all.retain(|h| !store.has_chunk(h));
    all
}
