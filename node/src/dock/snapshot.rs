//! Turning a [`Capture`] into a snapshot (manifest + chunks) and back.
//!
//! Writing: memory and the original module are cut into chunks and put into
//! a [`Chunks`] store; the manifest names them. Reading: every chunk is
//! verified against its hash, the module is re-instrumented and must hash to
//! exactly what the manifest names, and the frames are checked against the
//! rewriter's layouts (by [`Vessel::resume`]) before anything runs.

use std::path::Path;

use protocol::limits::MAX_MODULE_BYTES;
use protocol::snapshot::{
    ChunkedImage, Hash, Manifest, ModuleRef, VesselLimits, CHUNK_SIZE_BYTES, MANIFEST_VERSION,
};
use wasmi::Engine;

use super::limits::Limit;
use super::wasi::WasiCtx;
use super::{Capture, DockConfig, DockError, Mode, Vessel, VesselModule};
use crate::store::{get_image, put_image, Chunks, StoreError};

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dock(#[from] DockError),
    #[error("the module is not instrumented, so it has no snapshot")]
    NotMigratable,
    #[error("the module's chunks hash to {found}, not to {expected} as the snapshot says")]
    ModuleHash { expected: Hash, found: Hash },
    #[error("the snapshot was made by rewriter {found}; this dock has {ours} and cannot reproduce its module")]
    RewriterVersion { found: String, ours: String },
    #[error(
        "this dock's rewriter turns the module into {found}, not {expected} as the snapshot needs"
    )]
    InstrumentedHash { expected: Hash, found: Hash },
    #[error("its memory is {size_bytes} bytes, over this dock's memory limit of {limit_bytes} bytes (--max-memory, or the node's vessel_max_memory_bytes)")]
    MemoryOverLimit { size_bytes: u64, limit_bytes: u64 },
    #[error("its memory is {size_bytes} bytes, more than this 32-bit host's address space holds for a vessel ({limit_bytes} bytes, MAX_MEMORY_BYTES_32_BIT)")]
    MemoryOverAddressSpace { size_bytes: u64, limit_bytes: u64 },
    #[error(
        "the memory image has {chunks} chunks for {size_bytes} bytes, or a chunk of the wrong size"
    )]
    MemoryShape { size_bytes: u64, chunks: usize },
}

/// Refuses a snapshot whose memory is over `config`'s limit: the limits of
/// the node or the CLI that resumes it apply, whatever the snapshot says it
/// ran under, and so does the host's address space (a 32-bit host's is
/// lower). Checked before anything is read or allocated.
pub fn check_limits(manifest: &Manifest, config: &DockConfig) -> Result<(), SnapshotError> {
    let limit = config.memory_limit();
    let size_bytes = manifest.memory.size_bytes;
    if size_bytes <= limit.bytes {
        return Ok(());
    }
    let limit_bytes = limit.bytes;
    Err(match limit.limit {
        Limit::AddressSpace => SnapshotError::MemoryOverAddressSpace {
            size_bytes,
            limit_bytes,
        },
        _ => SnapshotError::MemoryOverLimit {
            size_bytes,
            limit_bytes,
        },
    })
}

/// Writes `capture` of a vessel running `vm` into `store` and returns the
/// manifest (not yet stored: the caller decides where the manifest goes).
pub fn to_manifest(
    store: &mut impl Chunks,
    vm: &VesselModule,
    capture: &Capture,
    config: &DockConfig,
) -> Result<Manifest, SnapshotError> {
    let original = put_image(store, &vm.original)?;
    let memory = put_image(store, &capture.memory)?;
    manifest_with(vm, original, capture, memory, config)
}

/// The manifest of `capture`, with the module's and the memory's chunk
/// lists already made (by [`to_manifest`], or by a migration's memory
/// tracker, which hashes only what changed).
pub fn manifest_with(
    vm: &VesselModule,
    original: ChunkedImage,
    capture: &Capture,
    memory: ChunkedImage,
    config: &DockConfig,
) -> Result<Manifest, SnapshotError> {
    let instrumented = vm
        .instrumented
        .as_ref()
        .ok_or(SnapshotError::NotMigratable)?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        module: ModuleRef {
            original_hash: vm.original_hash,
            original,
            rewriter_version: wasm_rewriter::REWRITER_VERSION.to_string(),
            countdown: instrumented.countdown,
            instrumented_hash: instrumented.hash,
        },
        memory,
        globals: capture.globals.clone(),
        data_dropped: capture.data_dropped,
        entry: capture.entry,
        frames: capture.frames.clone(),
        wasi: capture.wasi.clone(),
        limits: VesselLimits {
            max_memory_bytes: config.memory_limit().bytes,
            max_call_depth: config.max_call_depth as u64,
        },
        points_passed: capture.points_passed,
    };
    // Pair assertion with `from_manifest`: what we hand out is well-formed.
    debug_assert_eq!(manifest.check(), Ok(()));
    Ok(manifest)
}

/// Re-creates the module a manifest names, exactly: from its chunks,
/// through this dock's rewriter, checked against both hashes.
pub fn module_from_manifest(
    config: &DockConfig,
    store: &impl Chunks,
    manifest: &Manifest,
) -> Result<(Engine, DockConfig, VesselModule), SnapshotError> {
    check_limits(manifest, config)?;
    let m = &manifest.module;
    if m.rewriter_version != wasm_rewriter::REWRITER_VERSION {
        return Err(SnapshotError::RewriterVersion {
            found: m.rewriter_version.clone(),
            ours: wasm_rewriter::REWRITER_VERSION.to_string(),
        });
    }
    let original = get_image(store, &m.original, MAX_MODULE_BYTES)?;
    let found = Hash::of(&original);
    if found != m.original_hash {
        return Err(SnapshotError::ModuleHash {
            expected: m.original_hash,
            found,
        });
    }
    let name = format!("snapshot module {}", m.original_hash);
    let mode = Mode::Migratable {
        countdown: m.countdown,
    };
    let (engine, config, vm) =
        VesselModule::prepare_with_engine(config, Path::new(&name), original, mode)?;
    let found = vm
        .instrumented
        .as_ref()
        .map(|i| i.hash)
        .ok_or(SnapshotError::NotMigratable)?;
    if found != m.instrumented_hash {
        return Err(SnapshotError::InstrumentedHash {
            expected: m.instrumented_hash,
            found,
        });
    }
    Ok((engine, config, vm))
}

/// Reads the capture a manifest describes, every chunk verified, the
/// memory into a buffer of its own (see [`resume_from_manifest`] for a
/// resume that writes it in place). `max_memory_bytes` bounds the memory
/// image before it is allocated.
pub fn capture_from_manifest(
    store: &impl Chunks,
    manifest: &Manifest,
    max_memory_bytes: u64,
) -> Result<Capture, SnapshotError> {
    let memory = get_image(store, &manifest.memory, max_memory_bytes)?;
    Ok(Capture {
        memory,
        globals: manifest.globals.clone(),
        data_dropped: manifest.data_dropped,
        entry: manifest.entry,
        frames: manifest.frames.clone(),
        wasi: manifest.wasi.clone(),
        points_passed: manifest.points_passed,
    })
}

/// Re-creates the vessel a manifest describes, its memory written in place:
/// the memory is grown to the snapshot's size and only the chunks that are
/// not all zero are read and written (fresh wasm memory is already zero),
/// so the resume holds no second copy of the memory and a snapshot of zero
/// pages costs no chunk reads. `vm` and `engine` come from
/// [`module_from_manifest`]; the memory is checked against `config` first.
pub fn resume_from_manifest(
    engine: &Engine,
    vm: &VesselModule,
    store: &impl Chunks,
    manifest: &Manifest,
    wasi: WasiCtx,
    config: &DockConfig,
) -> Result<Vessel, SnapshotError> {
    check_limits(manifest, config)?;
    let mut vessel = Vessel::blank(engine, vm, config)?;
    let size_bytes = manifest.memory.size_bytes;
    if size_bytes > 0 {
        fill_memory(store, &manifest.memory, vessel.memory_sized(size_bytes)?)?;
    }
    let capture = Capture {
        memory: Vec::new(),
        globals: manifest.globals.clone(),
        data_dropped: manifest.data_dropped,
        entry: manifest.entry,
        frames: manifest.frames.clone(),
        wasi: manifest.wasi.clone(),
        points_passed: manifest.points_passed,
    };
    Ok(vessel.resume_blank(vm, &capture, size_bytes, wasi, config)?)
}

/// Writes the image's non-zero chunks, each verified, into `memory`
/// (already zero, and exactly the image's size).
fn fill_memory(
    store: &impl Chunks,
    img: &ChunkedImage,
    memory: &mut [u8],
) -> Result<(), SnapshotError> {
    let shape_err = || SnapshotError::MemoryShape {
        size_bytes: img.size_bytes,
        chunks: img.chunks.len(),
    };
    if ChunkedImage::chunk_count(img.size_bytes) != img.chunks.len() as u64
        || memory.len() as u64 != img.size_bytes
    {
        return Err(shape_err());
    }
    let chunk_bytes = CHUNK_SIZE_BYTES as usize;
    for (i, chunk) in img.chunks.iter().enumerate() {
        let Some(hash) = chunk else { continue };
        let data = store.get_chunk(hash)?;
        let start = i * chunk_bytes;
        let end = (start + chunk_bytes).min(memory.len());
        if data.len() != end - start {
            return Err(shape_err());
        }
        memory[start..end].copy_from_slice(&data);
    }
    Ok(())
}
