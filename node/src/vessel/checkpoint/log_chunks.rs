//! A checkpoint's log, packed from a stable anchor.

use std::sync::Mutex;

use protocol::limits::MAX_LOG_BYTES;
use protocol::snapshot::{ChunkedImage, Hash, CHUNK_SIZE_BYTES};
use protocol::vessel::{log_records, LogImage, LOG_RECORD_HEADER_BYTES};

use crate::store::{ChunkStore, StoreError};
use crate::sync::lock;
use crate::vessel::log::VesselLog;

/// The log as the last checkpoint stored it. A checkpoint's log starts at
/// an anchor, a record boundary that stays put from one checkpoint to the
/// next: the log only grows at its end, so every whole chunk after the
/// anchor is the same bytes as last time, and only the tail is hashed and
/// written. When the log's bound drops records past the anchor, a new
/// anchor is taken half the bound before the end: the checkpoint's log then
/// keeps at least the newest half of the bound, and the next re-anchoring
/// comes after as much new output again (so a vessel that prints a lot
/// rewrites its log at most once per half bound it prints).
#[derive(Default)]
pub struct LogChunks {
    pub(super) anchor: u64,
    /// The whole chunks from the anchor.
    pub(super) chunks: Vec<Option<Hash>>,
}

/// Packs the log up to `end` (a record boundary noted in the pause) from
/// its anchor, hashing and storing only what is new since the last time.
pub(super) fn pack_log_since(
    store: &ChunkStore,
    cache: &mut LogChunks,
    log: &Mutex<VesselLog>,
    end: u64,
) -> Result<LogImage, StoreError> {
    let cs = CHUNK_SIZE_BYTES as usize;
    let (anchor, tail, end) = {
        let log = lock(log);
        let end = end.clamp(log.start, log.end());
        if cache.anchor < log.start || cache.anchor > end {
            let wanted = log.start.max(end.saturating_sub(MAX_LOG_BYTES / 2));
            cache.anchor = boundary_at_or_after(&log, wanted).min(end);
            cache.chunks.clear();
        }
        let from = cache.anchor + (cache.chunks.len() * cs) as u64;
        let from = from.min(end);
        let tail = log.bytes[(from - log.start) as usize..(end - log.start) as usize].to_vec();
        (cache.anchor, tail, end)
    };
    let mut chunks = cache.chunks.clone();
    for piece in tail.chunks(cs) {
        let h = if piece.iter().all(|&b| b == 0) {
            None
        } else {
            Some(store.put_chunk(piece)?)
        };
        chunks.push(h);
        if piece.len() == cs {
            cache.chunks.push(h);
        }
    }
    Ok(LogImage {
        start_offset: anchor,
        content: ChunkedImage {
            size_bytes: end - anchor,
            chunks,
        },
    })
}

/// The first record boundary of `log` at or after the absolute `offset`.
fn boundary_at_or_after(log: &VesselLog, offset: u64) -> u64 {
    let mut at = log.start;
    for (_, rec) in log_records(&log.bytes) {
        if at >= offset {
            break;
        }
        at += (LOG_RECORD_HEADER_BYTES + rec.len()) as u64;
    }
    at
}
