use protocol::fuzzing::SplitMix64;
use protocol::limits::MAX_LOG_BYTES;
use protocol::vessel::{log_records, LOG_RECORD_HEADER_BYTES};

use super::log_chunks::pack_log_since;
use super::*;
use crate::store::{get_image, put_image, ChunkStore};
use crate::vessel::log::VesselLog;

fn store() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    (dir, store)
}

/// The oracle: every checkpoint's memory image is what chunking the
/// whole memory afresh gives, however the memory changed and grew.
#[test]
fn incremental_memory_images_equal_whole_ones() {
    let (_dir, store) = store();
    let mut rng = SplitMix64(13);
    let cs = CHUNK_SIZE_BYTES as usize;
    let mut memory = vec![0u8; 8 * cs];
    let mut baseline = Baseline::default();
    // Declared after the memory, so dropped (and unprotected) before it.
    let writes = crate::dock::dirty::WriteTracker::default();
    let mut tracked = 0;
    for round in 0..40 {
        for _ in 0..rng.below(6) {
            let at = rng.below(memory.len() as u64) as usize;
            memory[at] = rng.below(256) as u8;
        }
        if round % 13 == 5 {
            // A page zeroed again, and the memory grows.
            memory[cs..2 * cs].fill(0);
            // As a vessel's limiter does before its memory grows (and moves).
            writes.disarm();
            memory.resize(memory.len() + 3 * cs, 0);
            let end = memory.len() - 1;
            memory[end] = 7;
        }
        let changed = baseline.take_changes(&memory, &writes);
        let got = baseline.store_changes(&store, &changed).unwrap();
        let mut s = store.clone();
        assert_eq!(got, put_image(&mut s, &memory).unwrap(), "round {round}");
        let again = baseline.take_changes(&memory, &writes);
        assert!(again.is_empty(), "unchanged memory reported {again:?}");
        tracked += usize::from(writes.is_armed());
    }
    assert!(
        tracked >= 30,
        "write tracking was armed in only {tracked} rounds"
    );
    baseline.invalidate();
    let changed = baseline.take_changes(&memory, &writes);
    let got = baseline.store_changes(&store, &changed).unwrap();
    let mut s = store.clone();
    assert_eq!(got, put_image(&mut s, &memory).unwrap(), "after invalidate");
}

/// Every checkpoint's log is the log's bytes from its anchor to the
/// noted end, whole records; the anchor holds while the log keeps it,
/// so the chunks before the tail are the ones stored last time.
#[test]
fn the_log_is_packed_from_a_stable_anchor_across_the_bound() {
    let (_dir, store) = store();
    let log = Mutex::new(VesselLog::default());
    let mut cache = LogChunks::default();
    let line = vec![b'x'; 40_000];
    let mut anchors = Vec::new();
    for i in 0..400u32 {
        lock(&log).append(1 + (i % 2) as u8, &line);
        if i % 7 != 0 {
            continue;
        }
        let end = lock(&log).end();
        let before = cache.chunks.clone();
        let img = pack_log_since(&store, &mut cache, &log, end).unwrap();
        let l = lock(&log);
        assert!(img.start_offset >= l.start && img.start_offset + img.content.size_bytes == end);
        let bytes = get_image(&store, &img.content, MAX_LOG_BYTES).unwrap();
        let from = (img.start_offset - l.start) as usize;
        assert_eq!(bytes, l.bytes[from..], "checkpoint {i}");
        assert!(
            log_records(&bytes)
                .iter()
                .map(|(_, r)| r.len() + LOG_RECORD_HEADER_BYTES)
                .sum::<usize>()
                == bytes.len(),
            "not whole records"
        );
        if anchors.last() == Some(&img.start_offset) {
            assert_eq!(
                img.content.chunks[..before.len()],
                before[..],
                "reused chunks changed"
            );
        }
        anchors.push(img.start_offset);
        assert!(
            l.end() - img.start_offset >= MAX_LOG_BYTES / 2 - line.len() as u64
                || img.start_offset == 0
        );
    }
    anchors.dedup();
    // 16 MB printed through an 8 MiB bound: re-anchored a few times,
    // not at every checkpoint.
    assert!(anchors.len() >= 2 && anchors.len() <= 6, "{anchors:?}");
}

/// A baseline seeded from the image a vessel resumed from (an arrival, a
/// restart) compares only the chunks written since, by hash, and its
/// images equal whole ones; without write tracking it hashes them all and
/// is still exact. Before seeding existed, the first checkpoint after an
/// arrival copied the whole memory in the pause.
#[test]
fn a_seeded_baseline_compares_only_what_was_written_since_the_arrival() {
    let (_dir, store) = store();
    let mut rng = SplitMix64(15);
    let cs = CHUNK_SIZE_BYTES as usize;
    for tracking in [true, false] {
        let mut memory = vec![0u8; 32 * cs];
        for b in memory.iter_mut().skip(3 * cs).step_by(97) {
            *b = rng.below(255) as u8 + 1;
        }
        let mut s = store.clone();
        let arrived = put_image(&mut s, &memory).unwrap();
        let writes = crate::dock::dirty::WriteTracker::default();
        let mut baseline = Baseline::default();
        let (_, mark) = writes.look(&memory, None);
        if !tracking {
            writes.disarm();
        }
        baseline.seed(&arrived, mark);
        baseline.presize(memory.len());
        // Written since: one chunk changed, one rewritten with its own
        // bytes, one zero chunk made non-zero.
        memory[5 * cs + 11] ^= 0xff;
        let same = std::hint::black_box(memory[9 * cs]);
        memory[9 * cs] = same;
        memory[cs + 1] = 1;
        let changed = baseline.take_changes(&memory, &writes);
        assert_eq!(changed, vec![1, 5], "tracking {tracking}");
        if tracking {
            // The written chunks, and the two at the ends of this test's
            // memory (a Vec, not page-aligned: partial pages are never
            // protected, so always candidates).
            let compared = baseline.compared();
            assert!((3..=8).contains(&compared), "compared {compared} of 32");
        } else {
            assert_eq!(baseline.compared(), 32);
        }
        let got = baseline.store_changes(&store, &changed).unwrap();
        let mut s = store.clone();
        assert_eq!(got, put_image(&mut s, &memory).unwrap());
        // Later checkpoints go on from there, byte by byte.
        memory[20 * cs] ^= 1;
        let changed = baseline.take_changes(&memory, &writes);
        assert_eq!(changed, vec![20]);
        let got = baseline.store_changes(&store, &changed).unwrap();
        let mut s = store.clone();
        assert_eq!(got, put_image(&mut s, &memory).unwrap());
    }
}

#[test]
fn a_replicated_vessel_checkpoints_early_enough_that_its_replica_is_never_an_interval_behind() {
    use std::time::{Duration, Instant};
    let ms = Duration::from_millis;
    let every = ms(1000);
    let t0 = Instant::now();
    // The last checkpoint was asked for at t0, ended 20 ms later.
    let c = Checkpoints {
        last_attempt: Some(t0),
        last_done: Some((t0 + ms(20), ms(20))),
        ..Checkpoints::default()
    };
    // Without replicas: an interval after it ended.
    assert_eq!(next_checkpoint_at(&c, every, t0), t0 + ms(1020));
    // Its replicas held it 200 ms after its pause: the next is asked for
    // 300 ms early (with room for a slower shipment), held at about
    // 900 ms, so a failover never loses more than the interval.
    let replicated = Checkpoints {
        replica_lag: Some(ms(200)),
        ..c
    };
    assert_eq!(next_checkpoint_at(&replicated, every, t0), t0 + ms(700));
    // A replica far behind halves the interval, no more.
    let slow = Checkpoints {
        replica_lag: Some(ms(5000)),
        ..replicated
    };
    assert_eq!(next_checkpoint_at(&slow, every, t0), t0 + ms(500));
    // Slow checkpoints still space themselves out.
    let heavy = Checkpoints {
        last_done: Some((t0 + ms(100), ms(100))),
        ..slow
    };
    assert_eq!(
        next_checkpoint_at(&heavy, every, t0),
        t0 + ms(100) + ms(100) * CHECKPOINT_SPACING_FACTOR
    );
}
