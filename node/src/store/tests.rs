//! The store's crash safety: torn tails, corrupt records, `kill -9` during
//! writes, and a power loss that drops every write not yet synced.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::pack::{SyncEvent, HEADER_BYTES};
use super::*;

/// A seeded xorshift generator: the tests' moments and sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A distinct chunk of `len` bytes, made from `seed`.
fn chunk(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

fn pack_path(root: &Path, id: u32) -> PathBuf {
    root.join(PACKS_DIR).join(pack::pack_name(id))
}

/// A "manifest" for these tests: an image record listing chunk names, so
/// a test can tell whether everything it names survived.
fn doc_of(chunks: &[Hash]) -> Vec<u8> {
    chunks.iter().flat_map(|h| h.0).collect()
}

/// Every chunk a stored doc names reads back verified, and so does every
/// chunk the store says it has.
fn assert_complete(store: &ChunkStore, docs: &[Hash], what: &str) {
    for d in docs {
        let bytes = store
            .get_image_doc(d)
            .unwrap_or_else(|e| panic!("{what}: durable doc {d} lost: {e}"));
        for c in bytes.chunks(32) {
            let h = Hash(c.try_into().unwrap());
            store
                .get_chunk(&h)
                .unwrap_or_else(|e| panic!("{what}: doc {d} names chunk {h}: {e}"));
        }
    }
    let present: Vec<Hash> = {
        let s = store.state();
        s.packs
            .index
            .keys()
            .filter(|(k, _)| *k == Kind::Chunk)
            .map(|(_, h)| *h)
            .collect()
    };
    for h in present {
        store
            .get_chunk(&h)
            .unwrap_or_else(|e| panic!("{what}: chunk {h} counted present: {e}"));
    }
}

#[test]
fn torn_tail_written_by_hand_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let a = store.put_chunk(&chunk(1, 5000)).unwrap();
    let b = store.put_chunk(&chunk(2, 70)).unwrap();
    store.sync().unwrap();
    drop(store);
    let path = pack_path(dir.path(), 1);
    let whole_len = std::fs::metadata(&path).unwrap().len();
    // Three kinds of torn tail: half a header; a whole header and half its
    // payload; a whole record whose payload is garbage (pages that never
    // reached the disk).
    let c = chunk(3, 4000);
    let header = pack::encode_header(Kind::Chunk, c.len() as u32, &Hash::of(&c));
    let mut garbage = header.to_vec();
    garbage.extend(std::iter::repeat_n(0u8, c.len()));
    let mut half = header.to_vec();
    half.extend_from_slice(&c[..2000]);
    for tail in [&header[..20], &half[..], &garbage[..]] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(tail);
        std::fs::write(&path, &bytes).unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        assert!(store.has_chunk(&a) && store.has_chunk(&b));
        assert!(
            !store.has_chunk(&Hash::of(&c)),
            "a torn chunk counts as present"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole_len);
        assert_eq!(store.get_chunk(&a).unwrap(), chunk(1, 5000));
    }
    // The store goes on writing where the torn tail was.
    let store = ChunkStore::open(dir.path()).unwrap();
    let c_hash = store.put_chunk(&c).unwrap();
    store.sync().unwrap();
    drop(store);
    assert_eq!(
        ChunkStore::open(dir.path())
            .unwrap()
            .get_chunk(&c_hash)
            .unwrap(),
        c
    );
}

/// A header damaged inside data a commit says was durable is not a torn
/// tail: the pack is kept whole (nothing durable is cut off) and new
/// records go to a new pack.
#[test]
fn damage_inside_durable_data_is_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let a = store.put_chunk(&chunk(21, 3000)).unwrap();
    let b = store.put_chunk(&chunk(22, 3000)).unwrap();
    store.sync().unwrap();
    let c = store.put_chunk(&chunk(23, 3000)).unwrap();
    store.sync().unwrap();
    drop(store);
    let path = pack_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let b_header = HEADER_BYTES as usize + 3000;
    assert_eq!(&bytes[b_header..b_header + 4], b"MNPK");
    bytes[b_header] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    assert!(store.has_chunk(&a) && !store.has_chunk(&b) && !store.has_chunk(&c));
    let d = store.put_chunk(&chunk(24, 3000)).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = ChunkStore::open(dir.path()).unwrap();
    assert_eq!(store.get_chunk(&d).unwrap(), chunk(24, 3000));
    assert!(pack_path(dir.path(), 2).exists());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
}

#[test]
fn a_corrupt_chunk_is_refused_on_read_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let data = chunk(7, 3000);
    let h = store.put_chunk(&data).unwrap();
    let other = store.put_chunk(&chunk(8, 3000)).unwrap();
    store.sync().unwrap();
    let path = pack_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = HEADER_BYTES as usize + 100;
    assert_eq!(bytes[at], data[100]);
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    // Refused by the store that wrote it, and after a reopen (where the
    // record is below a commit, so only the read can catch it).
    let refuses = |store: &ChunkStore| {
        match store.get_chunk(&h) {
            Err(StoreError::CorruptRecord { kind, hash, .. }) => {
                assert_eq!((kind, hash), ("chunk", h));
            }
            other => panic!("a corrupt chunk read as {other:?}"),
        }
        assert!(store.get_chunk(&other).is_ok());
    };
    refuses(&store);
    drop(store);
    refuses(&ChunkStore::open(dir.path()).unwrap());
}

/// A disk that keeps, at a crash, only what was made durable: a file's
/// content as of its last `fdatasync`, and a directory's names as of its
/// last fsync. Past a file's durable length, a seeded prefix of what was
/// written may survive, with one of its pages lost (written out of order).
#[derive(Default)]
struct PowerLossDisk {
    durable: Mutex<HashMap<PathBuf, Vec<u8>>>,
    names: Mutex<HashMap<PathBuf, Vec<PathBuf>>>,
}

/// A page, the unit a disk writes back in.
const PAGE_BYTES: usize = 4096;

impl PowerLossDisk {
    fn probe(self: &Arc<Self>) -> Probe {
        let disk = self.clone();
        Arc::new(move |event: &SyncEvent| match event {
            SyncEvent::File(p) => {
                let bytes = std::fs::read(p).unwrap();
                disk.durable.lock().unwrap().insert(p.clone(), bytes);
            }
            SyncEvent::Dir(d) => {
                let names = std::fs::read_dir(d)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                disk.names.lock().unwrap().insert(d.clone(), names);
            }
        })
    }

    /// Writes what the disk would hold after a power cut now into `to`.
    fn crash_into(&self, from: &Path, to: &Path, rng: &mut Rng) {
        let durable = self.durable.lock().unwrap();
        for (dir, names) in self.names.lock().unwrap().iter() {
            let out_dir = to.join(dir.strip_prefix(from).unwrap());
            std::fs::create_dir_all(&out_dir).unwrap();
            for name in names {
                let mut bytes = durable.get(name).cloned().unwrap_or_default();
                let now = std::fs::read(name).unwrap_or_default();
                if now.len() > bytes.len() && now.starts_with(&bytes) {
                    let kept = bytes.len();
                    let extra = rng.below((now.len() - kept) as u64 + 1) as usize;
                    bytes.extend_from_slice(&now[kept..kept + extra]);
                    if extra > PAGE_BYTES && rng.below(2) == 0 {
                        let page = kept + rng.below(extra as u64) as usize;
                        let end = (page + PAGE_BYTES).min(bytes.len());
                        bytes[page..end].fill(0);
                    }
                }
                std::fs::write(out_dir.join(name.file_name().unwrap()), bytes).unwrap();
            }
        }
    }
}

/// Seeded runs of writes, syncs and durable docs, cut by a power loss at a
/// seeded moment: every doc whose durable write returned is complete after
/// the reopen, and every chunk counted present verifies.
#[test]
fn power_loss_keeps_every_durable_doc_complete() {
    const SEEDS: u64 = 40;
    for seed in 1..=SEEDS {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let live = tempfile::tempdir().unwrap();
        let disk = Arc::new(PowerLossDisk::default());
        let store = ChunkStore::open_with_probe(live.path(), Some(disk.probe())).unwrap();
        // Small packs, so that runs seal packs and begin new ones.
        store.set_pack_limit(256 * 1024);
        let mut durable_docs = Vec::new();
        for _ in 0..5 + rng.below(40) {
            let names: Vec<Hash> = (0..1 + rng.below(5))
                .map(|_| {
                    let len = 1 + rng.below(u64::from(CHUNK_SIZE_BYTES)) as usize;
                    store.put_chunk(&chunk(rng.below(200), len)).unwrap()
                })
                .collect();
            match rng.below(4) {
                0 => store.sync().unwrap(),
                1 => {
                    store.put_image_doc(&doc_of(&names), false).unwrap();
                }
                _ => durable_docs.push(store.put_image_doc(&doc_of(&names), true).unwrap()),
            }
        }
        let after = tempfile::tempdir().unwrap();
        disk.crash_into(live.path(), after.path(), &mut rng);
        let reopened = ChunkStore::open(after.path()).unwrap();
        assert_complete(
            &reopened,
            &durable_docs,
            &format!("power loss, seed {seed}"),
        );
    }
}

/// The child process of the `kill -9` test: writes chunks and durable docs
/// into the store named by the environment, printing each doc once its
/// durable write returned, until it is killed (or a bound is reached).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let (dir, seed) = spec.split_once(',').unwrap();
    let mut rng = Rng(seed.parse::<u64>().unwrap() | 1);
    let store = ChunkStore::open(Path::new(dir)).unwrap();
    store.set_pack_limit(512 * 1024);
    for _ in 0..CRASH_CHILD_MAX_DOCS {
        let names: Vec<Hash> = (0..1 + rng.below(6))
            .map(|_| {
                let len = 1 + rng.below(u64::from(CHUNK_SIZE_BYTES)) as usize;
                let h = store.put_chunk(&chunk(rng.next(), len)).unwrap();
                println!("put {h}");
                h
            })
            .collect();
        let d = store.put_image_doc(&doc_of(&names), true).unwrap();
        println!("durable {d}");
    }
}

const CRASH_CHILD_ENV: &str = "MESHNODE_STORE_CRASH_CHILD";
/// The child stops by itself after this many docs, so that a parent that
/// failed to kill it does not leave it writing forever.
const CRASH_CHILD_MAX_DOCS: usize = 2000;

/// Kills the child when dropped, so a failing assertion leaves none behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kill -9` at seeded moments during writes, twelve times into the same
/// store: after each, every doc the child reported durable is complete,
/// and every chunk counted present verifies.
#[test]
fn kill_during_writes_leaves_every_durable_doc_complete() {
    const KILLS: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x5eed_0013);
    let mut durable_docs: Vec<Hash> = Vec::new();
    for kill in 0..KILLS {
        let child = std::process::Command::new(&exe)
            .args(["store::tests::crash_child", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(
                CRASH_CHILD_ENV,
                format!("{},{}", dir.path().display(), rng.next()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let out = BufReader::new(child.0.stdout.take().unwrap());
        let kill_after_lines = 1 + rng.below(60);
        let mut lines = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(d) = line.strip_prefix("durable ") {
                durable_docs.push(Hash::from_hex(d).unwrap());
            }
            if line.starts_with("put ") || line.starts_with("durable ") {
                lines += 1;
                if lines == kill_after_lines {
                    // SIGKILL: the child gets no chance to finish a write.
                    child.0.kill().unwrap();
                }
            }
        }
        drop(child);
        assert!(
            lines >= kill_after_lines,
            "kill {kill}: the child stopped early"
        );
        let store = ChunkStore::open(dir.path()).unwrap();
        assert_complete(&store, &durable_docs, &format!("kill {kill}"));
    }
    assert!(!durable_docs.is_empty());
}

/// A second opener, in this process or another, is refused while the
/// store is open, and may open it once the first is gone.
#[test]
fn a_store_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    match ChunkStore::open(dir.path()) {
        Err(e @ StoreError::InUse { .. }) => assert!(e.to_string().contains("another process")),
        other => panic!("a second open gave {other:?}"),
    }
    drop(store);
    ChunkStore::open(dir.path()).unwrap();
}

#[test]
fn a_store_of_the_old_layout_is_converted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = chunk(11, 9000);
    let h = Hash::of(&good);
    let hex = h.to_hex();
    let sub = root.join("chunks").join(&hex[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join(&hex), &good).unwrap();
    // A chunk file cut short by a crash: it does not hash to its name.
    let torn = chunk(12, 9000);
    let torn_hex = Hash::of(&torn).to_hex();
    let torn_sub = root.join("chunks").join(&torn_hex[..2]);
    std::fs::create_dir_all(&torn_sub).unwrap();
    std::fs::write(torn_sub.join(&torn_hex), &torn[..4000]).unwrap();
    let image = b"an image document".to_vec();
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::write(root.join("images").join(Hash::of(&image).to_hex()), &image).unwrap();
    std::fs::create_dir_all(root.join("manifests")).unwrap();

    let store = ChunkStore::open(root).unwrap();
    assert_eq!(store.get_chunk(&h).unwrap(), good);
    assert!(!store.has_chunk(&Hash::of(&torn)));
    assert_eq!(store.get_image_doc(&Hash::of(&image)).unwrap(), image);
    for old in ["chunks", "manifests", "images"] {
        assert!(!root.join(old).exists(), "{old}/ is left behind");
    }
    assert_eq!(store.unsynced_count(), 0);
    drop(store);
    assert_eq!(ChunkStore::open(root).unwrap().get_chunk(&h).unwrap(), good);
}

/// Garbage collection forgets what no kept image names and rewrites packs
/// that are mostly garbage, so the store's size follows what is live.
#[test]
fn garbage_collection_removes_mostly_dead_packs() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    store.set_pack_limit(2 * 1024 * 1024);
    let chunk_len = CHUNK_SIZE_BYTES as usize;
    let hashes: Vec<Hash> = (0..80)
        .map(|i| store.put_chunk(&chunk(1000 + i, chunk_len)).unwrap())
        .collect();
    store.sync().unwrap();
    let size_of_packs = || -> u64 {
        std::fs::read_dir(dir.path().join(PACKS_DIR))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert!(size_of_packs() > 5 * 1024 * 1024);
    assert_eq!(store.retain_images(&[]).unwrap(), 80);
    assert!(hashes.iter().all(|h| !store.has_chunk(h)));
    // Every sealed pack was all garbage and is gone; what is left is the
    // active pack, under the compaction threshold.
    assert!(
        size_of_packs() < pack::MIN_COMPACT_BYTES,
        "{}",
        size_of_packs()
    );
    drop(store);
    let store = ChunkStore::open(dir.path()).unwrap();
    assert!(hashes.iter().all(|h| !store.has_chunk(h)));
}
