//! Which chunks of a vessel's memory were written since a checkpoint's last
//! pause, without comparing the whole memory in the pause.
//!
//! The memory's pages are write-protected (`mprotect`); the first write to
//! a page faults once, and the handler (`fault.rs`) notes the page and lets
//! the write through. A pause then looks only at the chunks whose pages
//! were written, and protects those pages again. For a vessel that changes
//! 1 MiB a second that is a few hundred faults a second, microseconds each,
//! where the compare it replaces reads all 64 MiB of a 64 MiB vessel in the
//! pause. (Soft-dirty page bits would do it without faults, but they are
//! not available on every kernel this runs on; a store barrier in the
//! rewriter would slow every store.)
//!
//! Tracking is only ever an optimisation: whenever it cannot say for sure
//! (not yet armed, the memory grew, a handler table or mapping limit was
//! reached, a vessel that rewrites most of its memory every interval), a
//! look answers [`Written::All`] and the caller compares everything, as it
//! did before.

mod fault;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub use fault::{page_bytes, touch_for_write, MAX_TRACKED_RANGES};
use fault::{ProtectError, Protected};

use crate::sync::lock;

/// The chunk size looks answer in: the snapshot's chunk.
const CHUNK_BYTES: usize = protocol::snapshot::CHUNK_SIZE_BYTES as usize;

/// A look that finds more than this share of the pages written (as a
/// fraction 1/N) is a heavy one: faulting on most pages costs more than
/// the compare it saves.
const HEAVY_WRITER_SHARE: usize = 2;

/// This many heavy looks in a row stop tracking for a while. One is not
/// enough: a program that fills its memory once (at start, or loading a
/// file) would lose tracking for the intervals after, when it writes
/// little.
const HEAVY_LOOKS_TO_REST: u32 = 2;

/// How many looks a heavy writer then goes untracked before tracking is
/// tried again.
const REST_LOOKS_AFTER_HEAVY: u32 = 8;

/// Set `MESHNODE_WRITE_TRACKING=off` to compare whole memories instead (for
/// benchmarks that measure what tracking saves, and as an escape hatch).
pub const WRITE_TRACKING_ENV: &str = "MESHNODE_WRITE_TRACKING";

fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(WRITE_TRACKING_ENV).map_or(true, |v| v != "off"))
}

/// What a look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Anything may have changed: compare every chunk.
    All,
    /// Only these chunks (ascending) can differ from how they were at the
    /// mark.
    Chunks(Vec<usize>),
}

/// When a caller last looked: pass it to the next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteMark {
    tracker: u64,
    generation: u64,
}

/// One vessel's write tracking. Looks and disarms happen on the vessel's
/// thread, in a pause or before its memory grows.
pub struct WriteTracker {
    id: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    armed: Option<Armed>,
    generation: u64,
    /// Per chunk: the generation of the look that last found it written.
    stamps: Vec<u64>,
    /// Writes are known completely since the end of this look.
    tracked_since: Option<u64>,
    /// Heavy looks in a row.
    heavy_streak: u32,
    rest_looks: u32,
    /// Why tracking is not armed, if it failed (for the node log).
    last_refusal: Option<ProtectError>,
}

/// The protected part of the memory `[memory, memory + len)`: its whole
/// pages, `[protected.start(), protected.end())`.
struct Armed {
    protected: Protected,
    memory: usize,
    len: usize,
}

impl std::fmt::Debug for WriteTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTracker")
            .field("id", &self.id)
            .field("armed", &self.is_armed())
            .finish()
    }
}

impl Default for WriteTracker {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        WriteTracker {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl WriteTracker {
    /// In a pause: which chunks of `memory` may have changed since `since`
    /// (a mark from an earlier look at this vessel), and the mark for the
    /// next look. Protects the memory again for the next interval.
    ///
    /// `memory` must be the vessel's memory, and nothing may write it
    /// during the call.
    pub fn look(&self, memory: &[u8], since: Option<WriteMark>) -> (Written, WriteMark) {
        let mut inner = lock(&self.inner);
        inner.generation += 1;
        let generation = inner.generation;
        let harvest = inner.harvest(memory, generation);
        let written = match (since, &harvest) {
            (Some(m), Some(h)) if m.tracker == self.id && h.since <= m.generation => {
                Written::Chunks(inner.chunks_since(m.generation, memory.len(), h))
            }
            _ => Written::All,
        };
        inner.arm_if_resting_over(memory, generation);
        let mark = WriteMark {
            tracker: self.id,
            generation,
        };
        (written, mark)
    }

    /// Stops tracking (the memory is about to grow and may move, or the
    /// vessel is dropped): the pages are writable again and the next look
    /// answers `All`.
    pub fn disarm(&self) {
        let mut inner = lock(&self.inner);
        inner.armed = None;
        inner.tracked_since = None;
    }

    /// Whether the memory is protected now (tests and `ps` diagnostics).
    pub fn is_armed(&self) -> bool {
        lock(&self.inner).armed.is_some()
    }

    /// Why the last attempt to arm failed, if it did.
    pub fn last_refusal(&self) -> Option<String> {
        lock(&self.inner).last_refusal.map(|e| format!("{e:?}"))
    }
}

/// What a complete harvest knows: writes since the end of look `since`
/// are all stamped, and the memory's first `head` and last `tail` bytes
/// (partial pages) were never protected.
struct Harvest {
    since: u64,
    head: usize,
    tail: usize,
}

impl Inner {
    /// Stamps the chunks whose pages were written since the last look.
    /// None if writes since then are not completely known.
    fn harvest(&mut self, memory: &[u8], generation: u64) -> Option<Harvest> {
        let since = self.tracked_since?;
        let armed = self.armed.as_mut()?;
        if armed.memory != memory.as_ptr() as usize || armed.len != memory.len() {
            self.disarm_now();
            return None;
        }
        let Some(pages) = armed.protected.take_written() else {
            self.disarm_now();
            return None;
        };
        let page = page_bytes();
        let head = armed.protected.start() - armed.memory;
        let tail = armed.memory + armed.len - armed.protected.end();
        let protected_pages = (armed.protected.end() - armed.protected.start()) / page;
        let last_chunk = self.stamps.len().saturating_sub(1);
        for &p in &pages {
            let first = (head + p * page) / CHUNK_BYTES;
            let last = (head + (p + 1) * page - 1) / CHUNK_BYTES;
            for c in first..=last.min(last_chunk) {
                self.stamps[c] = generation;
            }
        }
        let heavy = pages.len() * HEAVY_WRITER_SHARE > protected_pages;
        self.heavy_streak = if heavy { self.heavy_streak + 1 } else { 0 };
        if self.heavy_streak >= HEAVY_LOOKS_TO_REST {
            // Complete for this look, but not worth tracking on.
            self.disarm_now();
            self.heavy_streak = 0;
            self.rest_looks = REST_LOOKS_AFTER_HEAVY;
        }
        Some(Harvest { since, head, tail })
    }

    /// The chunks stamped after `generation`, and the chunks at either end
    /// of the memory that lie partly outside whole pages (never protected,
    /// so always candidates).
    fn chunks_since(&self, generation: u64, len: usize, h: &Harvest) -> Vec<usize> {
        let count = len.div_ceil(CHUNK_BYTES);
        let mut out: Vec<usize> = (0..count.min(self.stamps.len()))
            .filter(|&c| self.stamps[c] > generation)
            .collect();
        if count > 0 && h.head > 0 {
            out.extend(0..=((h.head - 1) / CHUNK_BYTES).min(count - 1));
        }
        if count > 0 && h.tail > 0 {
            out.extend((len - h.tail) / CHUNK_BYTES..count);
        }
        // Chunks past the stamps: none while the memory keeps its size
        // (a growth disarms), but never assumed unchanged.
        out.extend(self.stamps.len().min(count)..count);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn disarm_now(&mut self) {
        self.armed = None;
        self.tracked_since = None;
    }

    /// Protects the memory for the next interval, unless tracking rests
    /// (after a heavy writer) or is off.
    fn arm_if_resting_over(&mut self, memory: &[u8], generation: u64) {
        if self.armed.is_some() {
            return;
        }
        if self.rest_looks > 0 {
            self.rest_looks -= 1;
            return;
        }
        if !enabled() {
            return;
        }
        let page = page_bytes();
        let base = memory.as_ptr() as usize;
        let start = base.div_ceil(page) * page;
        let end = (base + memory.len()) / page * page;
        if start >= end {
            return;
        }
        self.stamps.resize(memory.len().div_ceil(CHUNK_BYTES), 0);
        // SAFETY: the vessel's memory, written only by its own thread, whose
        // system-call writes touch pages first (`touch_for_write`, in the
        // WASI layer's `GuestMemory::slice_mut`); the vessel disarms before
        // its memory grows or is freed.
        match unsafe { Protected::new(start, end) } {
            Ok(protected) => {
                self.armed = Some(Armed {
                    protected,
                    memory: base,
                    len: memory.len(),
                });
                self.tracked_since = Some(generation);
                self.last_refusal = None;
            }
            Err(e) => self.last_refusal = Some(e),
        }
    }
}
