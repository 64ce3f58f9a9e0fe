//! Retention: the store of a vessel checkpointed many times stays bounded,
//! and the newest checkpoints stay whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::fuzzing::SplitMix64;
use protocol::snapshot::{
    Entry, Frame, Manifest, ModuleRef, VesselLimits, CHUNK_SIZE_BYTES, MANIFEST_VERSION,
};
use protocol::vessel::{Deployment, DeploymentBody, LogImage, Resume, VesselImage, VESSEL_VERSION};

use super::*;
use crate::dock::DockConfig;
use crate::store::{get_image, put_image};
use crate::vessel::log::VesselLog;
use crate::vessel::Local;

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = CHUNK_SIZE_BYTES as usize;

fn open_host(dir: &std::path::Path) -> Host {
    Host::open(dir, "n".into(), DockConfig::default(), BTreeMap::new()).unwrap()
}

fn deployment(vessel: VesselId, module: &[u8]) -> Deployment {
    let user = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    Deployment::sign(
        &user,
        DeploymentBody {
            version: VESSEL_VERSION,
            vessel,
            name: "counter".into(),
            module_hash: Hash::of(module),
            args: vec![],
            env: vec![],
            volumes: vec![],
            mounts: vec![],
            ports: vec![],
            checkpoint_every_ms: None,
            replicas: None,
            durability: None,
            max_memory_bytes: None,
            restart: None,
        },
    )
}

/// A vessel that runs here under `record` (no thread: retention only
/// looks at records).
fn local(deployment: Deployment, record: Record) -> Local {
    Local {
        deployment,
        record,
        log: Arc::new(Mutex::new(VesselLog::default())),
        runner: None,
        migrations: 0,
        run_ms_before: 0,
        started: Instant::now(),
        reason: "test".into(),
        migrating: false,
        stopped: false,
        pinned: false,
        last_move: None,
        why: String::new(),
        checkpoints: Default::default(),
        gate: crate::vessel::lease_gate::LeaseGate::open(),
        restarting: None,
        restarts: 0,
        restarts_in_a_row: 0,
    }
}

/// One checkpoint the way the checkpoint path stores it: under a pin, the
/// memory's chunks, the manifest (unsynced), the image, one sync, then the
/// record, then `note_checkpoint`. Returns the image's name.
fn checkpoint(host: &mut Host, id: VesselId, module: &[u8], memory: &[u8]) -> Hash {
    let pin = host.store.pin();
    let image = write_image(&host.store, id, module, memory);
    note(host, id, image);
    drop(pin);
    image
}

/// The record points at the image, durably, and the host notes it.
fn note(host: &mut Host, id: VesselId, image: Hash) {
    let record = Record::Owned { epoch: 1, image };
    host.write_record(id, &record).unwrap();
    host.vessels.get_mut(&id).unwrap().record = record;
    host.note_checkpoint(id, image);
}

/// Stores a checkpoint's chunks, manifest and image, with one sync.
fn write_image(store: &ChunkStore, id: VesselId, module: &[u8], memory: &[u8]) -> Hash {
    let mut chunks = store.clone();
    let module_image = put_image(&mut chunks, module).unwrap();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        module: ModuleRef {
            original_hash: Hash::of(module),
            original: module_image.clone(),
            rewriter_version: "x".into(),
            countdown: false,
            instrumented_hash: Hash::of(b"i"),
        },
        memory: put_image(&mut chunks, memory).unwrap(),
        globals: vec![],
        data_dropped: 0,
        entry: Entry::Main,
        frames: vec![Frame {
            func: 0,
            point: 0,
            locals: vec![],
        }],
        wasi: crate::dock::wasi::WasiCtx::new(Default::default())
            .unwrap()
            .capture_state()
            .unwrap(),
        limits: VesselLimits {
            max_memory_bytes: memory.len() as u64,
            max_call_depth: 100,
        },
        points_passed: 0,
    };
    let (manifest_bytes, manifest_hash) = manifest.encode_and_hash();
    store.put_manifest_bytes_unsynced(&manifest_bytes).unwrap();
    let epoch = 1;
    let img = VesselImage {
        version: VESSEL_VERSION,
        deployment: deployment(id, module),
        epoch,
        resume: Resume::Snapshot(manifest_hash),
        module: module_image,
        manifest: manifest_bytes,
        volumes: vec![],
        log: LogImage::default(),
        migrations: 0,
        run_ms: 0,
        placement: Default::default(),
        hub: Default::default(),
    };
    let (bytes, _) = img.encode_and_hash();
    let image = store.put_image_doc(&bytes, false).unwrap();
    store.sync().unwrap();
    image
}

/// The image loads whole: its document, its manifest, every chunk of its
/// memory, which is `memory`.
fn assert_loads(store: &ChunkStore, image: &Hash, memory: &[u8], what: &str) {
    let doc = store
        .get_image_doc(image)
        .unwrap_or_else(|e| panic!("{what}: image {image}: {e}"));
    let img: VesselImage = protocol::cbor::decode(&doc).unwrap();
    let Resume::Snapshot(m) = img.resume else {
        panic!("{what}: not a snapshot")
    };
    let man = store
        .get_manifest(&m)
        .unwrap_or_else(|e| panic!("{what}: manifest {m}: {e}"));
    let loaded = get_image(store, &man.memory, memory.len() as u64)
        .unwrap_or_else(|e| panic!("{what}: memory of {image}: {e}"));
    assert!(loaded == memory, "{what}: memory of {image} differs");
}

/// A vessel whose memory keeps changing, checkpointed 200 times: with the
/// collection policy running, the store stays under a fixed bound (while
/// it appends many times that), the newest `keep_checkpoints` images load
/// whole, and older ones are gone. After a restart the kept list starts
/// from the record's image.
#[test]
fn the_store_of_a_vessel_checkpointed_200_times_stays_bounded() {
    const MEMORY_BYTES: usize = 16 * CHUNK; // 1 MiB
    const DIRTY_CHUNKS: usize = 4;
    const CHECKPOINTS: usize = 200;
    const KEEP: usize = 2;
    // Collected every 4 MiB here (the default is 64 MiB): the test stays
    // small while appending over 5 times the bound.
    const COLLECT_EVERY: u64 = 4 * MIB;
    // What is live (K memories, mostly shared, and the module), plus what
    // is written between two collections, plus the active pack's slack.
    const BOUND: u64 = KEEP as u64 * MEMORY_BYTES as u64 + COLLECT_EVERY + 2 * MIB;

    let dir = tempfile::tempdir().unwrap();
    let mut host = open_host(dir.path());
    host.configure_retention(RetentionConfig {
        keep_checkpoints: KEEP,
        disk_budget_bytes: None,
        collect_every_bytes: COLLECT_EVERY,
    });
    let id = VesselId([7; 8]);
    let module = b"\0asm counter module".to_vec();
    host.vessels.insert(
        id,
        local(
            deployment(id, &module),
            Record::Owned {
                epoch: 1,
                image: Hash::of(b"none yet"),
            },
        ),
    );
    let mut rng = SplitMix64(0x5eed);
    let mut memory = vec![0u8; MEMORY_BYTES];
    let mut history: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut collections = 0;
    let mut peak = 0;
    for n in 0..CHECKPOINTS {
        for _ in 0..DIRTY_CHUNKS {
            let at = (rng.next_u64() as usize % (MEMORY_BYTES / CHUNK)) * CHUNK;
            for b in &mut memory[at..at + CHUNK] {
                *b = rng.next_u64() as u8;
            }
        }
        let image = checkpoint(&mut host, id, &module, &memory);
        history.push((image, memory.clone()));
        if let Some(c) = host.collection_if_due() {
            c.run().unwrap();
            collections += 1;
        }
        peak = peak.max(host.store.disk_bytes());
        assert!(
            host.store.disk_bytes() <= BOUND,
            "after checkpoint {n}: the store takes {} bytes, over {BOUND}",
            host.store.disk_bytes()
        );
    }
    let appended = host.store.appended_bytes();
    assert!(
        appended > 5 * BOUND,
        "only {appended} bytes appended: the bound proves nothing"
    );
    assert!(collections >= 10, "{collections} collections");
    eprintln!("appended {appended} bytes, peak {peak}, {collections} collections");
    // One more collection, so that the last checkpoints were through one.
    host.collection().run().unwrap();
    for (image, mem) in &history[CHECKPOINTS - KEEP..] {
        assert_loads(&host.store, image, mem, "a kept checkpoint");
    }
    assert_eq!(
        host.kept_checkpoints(id),
        history[CHECKPOINTS - KEEP..]
            .iter()
            .map(|(h, _)| *h)
            .collect::<Vec<_>>()
    );
    for (image, _) in &history[..CHECKPOINTS - KEEP] {
        assert!(
            host.store.get_image_doc(image).is_err(),
            "an old checkpoint {image} was not collected"
        );
    }

    // A restart: the kept list starts again from the record's image.
    drop(host);
    let mut host = open_host(dir.path());
    let (_, record) = host
        .read_records()
        .into_iter()
        .find(|(v, _)| *v == id)
        .unwrap();
    host.vessels
        .insert(id, local(deployment(id, &module), record.clone()));
    let (newest, newest_memory) = history.last().unwrap();
    assert_eq!(record.image(), *newest);
    host.collection().run().unwrap();
    assert_loads(&host.store, newest, newest_memory, "the record's image");
    let (older, _) = &history[CHECKPOINTS - 2];
    assert!(host.store.get_image_doc(older).is_err());
}

/// Collections that run while a vessel checkpoints (writing without the
/// host's lock, under a pin, as the checkpoint path does; compacting packs
/// while it writes): every checkpoint noted stays whole while it is among
/// the newest `keep_checkpoints`.
#[test]
fn collections_while_checkpoints_are_written_keep_every_noted_image() {
    const MEMORY_BYTES: usize = 16 * CHUNK;
    const CHECKPOINTS: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let mut host = open_host(dir.path());
    host.configure_retention(RetentionConfig {
        collect_every_bytes: 1,
        ..RetentionConfig::default()
    });
    let id = VesselId([9; 8]);
    let module = b"\0asm concurrent".to_vec();
    host.vessels.insert(
        id,
        local(
            deployment(id, &module),
            Record::Owned {
                epoch: 1,
                image: Hash::of(b"none yet"),
            },
        ),
    );
    let store = host.store.clone();
    let host = Arc::new(Mutex::new(host));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (host, done) = (host.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let c = host.lock().unwrap().collection_if_due();
                if let Some(c) = c {
                    c.run().unwrap();
                    runs += 1;
                }
            }
            runs
        })
    };
    let mut rng = SplitMix64(77);
    let mut memory = vec![0u8; MEMORY_BYTES];
    let mut history: Vec<(Hash, Vec<u8>)> = Vec::new();
    for _ in 0..CHECKPOINTS {
        for _ in 0..4 {
            let at = (rng.next_u64() as usize % (MEMORY_BYTES / CHUNK)) * CHUNK;
            for b in &mut memory[at..at + CHUNK] {
                *b = rng.next_u64() as u8;
            }
        }
        let pin = store.pin();
        let image = write_image(&store, id, &module, &memory);
        note(&mut host.lock().unwrap(), id, image);
        drop(pin);
        history.push((image, memory.clone()));
        let kept = &history[history.len().saturating_sub(DEFAULT_KEEP_CHECKPOINTS)..];
        for (image, mem) in kept {
            assert_loads(&store, image, mem, "a kept checkpoint, while collecting");
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.join().unwrap();
    assert!(runs >= 10, "only {runs} collections ran");
    assert!(
        store.disk_bytes() < 16 * MIB,
        "collections ran but the store takes {} bytes",
        store.disk_bytes()
    );
}

/// A checkpoint that would take the store over the budget is refused with
/// the figures; no budget refuses nothing.
#[test]
fn the_disk_budget_refuses_a_checkpoint_that_would_exceed_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = open_host(dir.path());
    host.store.put_chunk(&[9u8; 1000]).unwrap();
    host.store.sync().unwrap();
    let stored = host.store.disk_bytes();
    assert!(stored > 1000);
    assert_eq!(host.checkpoint_allowed(u64::MAX / 2), Ok(()));
    host.configure_retention(RetentionConfig {
        disk_budget_bytes: Some(stored + 500),
        ..RetentionConfig::default()
    });
    assert_eq!(host.checkpoint_allowed(500), Ok(()));
    let err = host.checkpoint_allowed(501).unwrap_err();
    assert_eq!(
        err,
        BudgetExceeded {
            limit_bytes: stored + 500,
            store_bytes: stored,
            estimated_bytes: 501,
        }
    );
    assert!(err.to_string().contains("disk_budget_bytes"), "{err}");
}

/// The default budget is a quarter of the data directory's file system.
#[test]
fn the_default_budget_is_a_quarter_of_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let st = rustix::fs::statvfs(dir.path()).unwrap();
    assert_eq!(
        default_disk_budget_bytes(dir.path()),
        Some(st.f_blocks * st.f_frsize / 4)
    );
}

/// What a collection costs at a realistic store size: 4 vessels of 64 MiB,
/// two checkpoints each, then [`COLLECT_EVERY_BYTES`] of checkpoints that
/// each change 1 MiB, then one collection; five rounds. Run by hand:
/// `cargo test -p meshnode --lib measure_collection_cost -- --ignored --nocapture`
/// (MESHNODE_MEASURE_DIR picks the disk; /var/tmp by default).
#[test]
#[ignore = "a measurement, not a check"]
fn measure_collection_cost() {
    const VESSELS: u8 = 4;
    const MEMORY_BYTES: usize = 64 * MIB as usize;
    const DIRTY_BYTES: usize = MIB as usize;
    let base = std::env::var("MESHNODE_MEASURE_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut host = open_host(dir.path());
    let module = b"\0asm measured module".to_vec();
    let mut rng = SplitMix64(42);
    let mut memories = Vec::new();
    for v in 0..VESSELS {
        let id = VesselId([v; 8]);
        let mut memory = vec![0u8; MEMORY_BYTES];
        for w in memory.chunks_mut(8) {
            w.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        host.vessels.insert(
            id,
            local(
                deployment(id, &module),
                Record::Owned {
                    epoch: 1,
                    image: Hash::of(b"none yet"),
                },
            ),
        );
        checkpoint(&mut host, id, &module, &memory);
        memories.push((id, memory));
    }
    for round in 0..5 {
        let started = host.store.appended_bytes();
        let write = Instant::now();
        let mut checkpoints = 0;
        while host.store.appended_bytes() - started < COLLECT_EVERY_BYTES {
            let (id, memory) = &mut memories[checkpoints % VESSELS as usize];
            for _ in 0..DIRTY_BYTES / CHUNK {
                let at = (rng.next_u64() as usize % (MEMORY_BYTES / CHUNK)) * CHUNK;
                memory[at..at + 8].copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let id = *id;
            let memory = memory.clone();
            checkpoint(&mut host, id, &module, &memory);
            checkpoints += 1;
        }
        let wrote = write.elapsed();
        let done = host.collection().run().unwrap();
        eprintln!(
            "round {round}: {checkpoints} checkpoints in {} ms; collection: {} ms, {} chunks removed, store {:.1} -> {:.1} MiB",
            wrote.as_millis(),
            done.took.as_millis(),
            done.chunks_removed,
            done.bytes_before as f64 / MIB as f64,
            done.bytes_after as f64 / MIB as f64,
        );
    }
}
