//! Turning a [`Capture`] into a snapshot (manifest + chunks) and back.
//!
//! Writing: memory and the original module are cut into chunks and put into
//! a [`Chunks`] store; the manifest names them. Reading: every chunk is
//! verified against its hash, the module is re-instrumented and must hash to
//! exactly what the manifest names, and the frames are checked against the
//! rewriter's layouts (by [`Vessel::resume`]) before anything runs.

use std::path::Path;

use protocol::limits::MAX_MODULE_BYTES;
use protocol::snapshot::{ChunkedImage, Hash, Manifest, ModuleRef, VesselLimits, MANIFEST_VERSION};
use wasmi::Engine;

use super::{Capture, DockConfig, DockError, Mode, VesselModule};
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
            max_memory_bytes: config.max_memory_bytes as u64,
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

/// Reads the capture a manifest describes, every chunk verified.
/// `max_memory_bytes` bounds the memory image before it is allocated.
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
