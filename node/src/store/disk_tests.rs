//! The store on a disk that fills up, and pins against garbage collection.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// The size of the tmpfs the disk-full test fills: small, so that it fills
/// in well under a second, and big enough for tens of checkpoints.
const SMALL_DISK_BYTES: u64 = 4 * 1024 * 1024;

/// A tmpfs mounted for one test, unmounted when dropped (also when the
/// test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes` at `dir`. Returns `None` only when
    /// this process is not root (a developer's machine); as root (CI) a
    /// failed mount fails the test.
    fn mount(dir: &Path, size_bytes: u64) -> Option<Tmpfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: cannot mount a tmpfs, the disk-full test does not run here (CI runs it as root)");
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "running as root, but `mount -t tmpfs` at {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "could not unmount the test's tmpfs at {}",
                self.dir.display()
            );
        }
    }
}

/// A distinct 64 KiB chunk.
fn chunk_of(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..CHUNK_SIZE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One checkpoint as the checkpoint path writes it: its changed chunks, a
/// manifest, and an image document naming them, made durable by one sync.
/// Returns the image's name and the chunks it names.
fn checkpoint(store: &ChunkStore, n: u64) -> Result<(Hash, Vec<Hash>), StoreError> {
    // Four new chunks each time and one that every checkpoint shares.
    let mut named = vec![store.put_chunk(&chunk_of(0))?];
    for i in 0..4 {
        named.push(store.put_chunk(&chunk_of(n * 10 + i + 1))?);
    }
    let doc: Vec<u8> = named.iter().flat_map(|h| h.0).collect();
    store.put_manifest_bytes_unsynced(&[&n.to_le_bytes()[..], &doc].concat())?;
    let image = store.put_image_doc(&doc, false)?;
    store.sync()?;
    Ok((image, named))
}

/// Every image stored before reads back, and so does every chunk it names.
fn assert_intact(store: &ChunkStore, stored: &[(Hash, Vec<Hash>)], what: &str) {
    for (image, chunks) in stored {
        let doc = store
            .get_image_doc(image)
            .unwrap_or_else(|e| panic!("{what}: image {image}: {e}"));
        assert_eq!(doc, chunks.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
        for c in chunks {
            store
                .get_chunk(c)
                .unwrap_or_else(|e| panic!("{what}: image {image} names chunk {c}: {e}"));
        }
    }
}

fn packs_on_disk_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join(PACKS_DIR))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A disk that fills up: the write that does not fit fails with the
/// disk-full kind and is undone (no torn record stays, the packs are what
/// the store counts), everything stored before reads back, before and
/// after a reopen, and writing works again once there is room.
#[test]
fn a_full_disk_refuses_the_write_and_keeps_everything_stored_before() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(mount_point.path(), SMALL_DISK_BYTES) else {
        return;
    };
    // What the test frees later, to show that writing works again.
    let filler = mount_point.path().join("filler");
    std::fs::write(&filler, vec![1u8; 1024 * 1024]).unwrap();
    let root = mount_point.path().join("store");
    let store = ChunkStore::open(&root).unwrap();
    let mut stored = Vec::new();
    let err = loop {
        match checkpoint(&store, stored.len() as u64 + 1) {
            Ok(c) => stored.push(c),
            Err(e) => break e,
        }
        assert!(stored.len() < 1000, "a 4 MiB disk never filled up");
    };
    assert!(
        matches!(err, StoreError::DiskFull { .. }) && err.is_disk_full(),
        "the error says the disk is full: {err:?}"
    );
    assert!(
        stored.len() >= 3,
        "only {} checkpoints fitted",
        stored.len()
    );
    assert_eq!(
        packs_on_disk_bytes(&root),
        store.disk_bytes(),
        "a torn record stayed after the failed write"
    );
    assert_intact(&store, &stored, "after the failed write");

    drop(store);
    let store = ChunkStore::open(&root).unwrap();
    assert_intact(&store, &stored, "reopened on the full disk");

    std::fs::remove_file(&filler).unwrap();
    let again = checkpoint(&store, 5000).expect("writing works again once there is room");
    stored.push(again);
    drop(store);
    let store = ChunkStore::open(&root).unwrap();
    assert_intact(&store, &stored, "reopened after writing again");
    // Every chunk the store counts present is whole, including those of
    // the checkpoint that did not fit.
    let present: Vec<Hash> = store
        .state()
        .packs
        .index
        .keys()
        .filter(|(k, _)| *k == Kind::Chunk)
        .map(|(_, h)| *h)
        .collect();
    for h in present {
        store.get_chunk(&h).unwrap();
    }
}

/// A pinned batch survives a collection that runs before its image is
/// kept (a checkpoint being written, a migration arriving), including a
/// chunk it found already stored; once the pin is dropped it is garbage.
#[test]
fn a_pin_keeps_a_batch_from_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let old = store.put_chunk(&chunk_of(1)).unwrap();
    store.sync().unwrap();
    let pin = store.pin();
    let new = store.put_chunk(&chunk_of(2)).unwrap();
    // Already stored: the pin must keep it too.
    assert_eq!(store.put_chunk(&chunk_of(1)).unwrap(), old);
    let unpinned = {
        let other = store.clone();
        other.put_chunk(&chunk_of(3)).unwrap()
    };
    store.sync().unwrap();
    store.retain_images(&[]).unwrap();
    assert!(store.has_chunk(&new) && store.has_chunk(&old));
    // A pin sees everything put while it lives, whoever puts it.
    assert!(store.has_chunk(&unpinned));
    drop(pin);
    assert_eq!(store.retain_images(&[]).unwrap(), 3);
    assert!(!store.has_chunk(&new) && !store.has_chunk(&old));
}

/// A failed `fdatasync` stops writes until the store is reopened (a retry
/// could vouch for pages the kernel dropped); reads go on, and the reopen
/// keeps everything that was durable.
#[test]
fn a_failed_sync_stops_writes_until_reopen_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let (durable, chunks) = checkpoint(&store, 1).unwrap();
    let pending = store.put_chunk(&chunk_of(99)).unwrap();
    pack::FAIL_NEXT_FDATASYNC.with(|f| f.set(true));
    let err = store.sync().unwrap_err();
    assert!(
        err.is_write_failure() && !err.is_disk_full(),
        "an EIO is a write failure: {err:?}"
    );
    let again = store.sync().unwrap_err();
    assert!(
        matches!(again, StoreError::WritesStopped { .. }),
        "a retried sync must not report success: {again:?}"
    );
    let refused = store.put_chunk(&chunk_of(100)).unwrap_err();
    assert!(
        matches!(refused, StoreError::WritesStopped { .. }),
        "{refused:?}"
    );
    assert_intact(
        &store,
        &[(durable, chunks.clone())],
        "after the failed sync",
    );
    drop(store);
    let store = ChunkStore::open(dir.path()).unwrap();
    assert_intact(&store, &[(durable, chunks)], "reopened");
    // The reopen verified the unsynced chunk (it is whole here) and takes
    // writes again.
    assert!(store.has_chunk(&pending));
    checkpoint(&store, 2).unwrap();
}
