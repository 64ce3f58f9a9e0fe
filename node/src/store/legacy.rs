//! Converts a store of the earlier layout (one file per chunk under
//! `chunks/ab/`, one per manifest under `manifests/`, one per image under
//! `images/`) into packs, at the first open by a node that has packs.
//!
//! Every file is verified against its name and copied into the packs; the
//! packs are made durable; only then are the old directories removed,
//! `chunks/` last, because its presence is what starts a conversion. A
//! crash part-way leaves `chunks/` in place, and the next open converts
//! again (a record already in the packs is not written twice).

use std::io::Read;
use std::path::{Path, PathBuf};

use protocol::snapshot::Hash;

use super::pack::Kind;
use super::{io_err, ChunkStore, StoreError};

/// The directory whose presence marks the earlier layout.
const LEGACY_CHUNKS_DIR: &str = "chunks";

pub(super) fn present(root: &Path) -> bool {
    root.join(LEGACY_CHUNKS_DIR).is_dir()
}

/// The files of one kind in the earlier layout.
fn files_of(root: &Path, kind: Kind) -> Vec<PathBuf> {
    let list = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    match kind {
        Kind::Chunk => list(&root.join(LEGACY_CHUNKS_DIR))
            .iter()
            .flat_map(|sub| list(sub))
            .collect(),
        Kind::Manifest => list(&root.join("manifests")),
        Kind::Image => list(&root.join("images")),
        Kind::Commit | Kind::Forget => Vec::new(),
    }
}

/// Reads one old file if it is named by a hash, within its kind's limit,
/// and hashes to its name; says why not otherwise.
fn read_old(path: &Path, kind: Kind) -> Result<(Hash, Vec<u8>), String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let h = Hash::from_hex(&name).ok_or("its name is not a hash")?;
    let limit = kind.max_payload_bytes();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is over the limit of {limit} bytes"));
    }
    if Hash::of(&bytes) != h {
        return Err("its content does not hash to its name".into());
    }
    Ok((h, bytes))
}

pub(super) fn convert(store: &ChunkStore) -> Result<(), StoreError> {
    let root = store.root().to_path_buf();
    tracing::info!(store = %root.display(), "converting the one-file-per-chunk store into packs");
    let mut converted = 0usize;
    for kind in [Kind::Chunk, Kind::Manifest, Kind::Image] {
        for path in files_of(&root, kind) {
            match read_old(&path, kind) {
                Ok((h, bytes)) => {
                    store.put(kind, &h, &bytes)?;
                    converted += 1;
                }
                // A file that does not verify could never have been used.
                Err(why) => tracing::warn!(
                    file = %path.display(),
                    "not converted, {why}; it is removed with the old layout"
                ),
            }
        }
    }
    store.state().written += 1;
    store.sync()?;
    for dir in ["manifests", "images", "tmp", LEGACY_CHUNKS_DIR] {
        let p = root.join(dir);
        match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Io { path: p, source: e })
            }
            _ => {}
        }
    }
    std::fs::File::open(&root)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&root))?;
    tracing::info!(store = %root.display(), records = converted, "converted into packs");
    Ok(())
}
