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
