//! The memory copy a checkpoint's pause compares with.

use protocol::snapshot::{ChunkedImage, Hash, CHUNK_SIZE_BYTES};

use crate::dock::dirty::{WriteMark, WriteTracker, Written};
use crate::store::{ChunkStore, StoreError};
use crate::vessel::image::{changed_among, changed_chunks, chunk_changed};

/// The last checkpoint's memory, chunk by chunk: what the next one
/// compares with. Kept on the node (a copy as large as the memory), so that
/// the pause compares and copies rather than hashes.
#[derive(Default)]
pub struct Baseline {
    last: Vec<u8>,
    chunks: Vec<Option<Hash>>,
    /// The copy no longer matches the hashes: the next checkpoint takes
    /// every chunk (into the buffer it already has).
    stale: bool,
    /// When the last pause asked the vessel's write tracking.
    mark: Option<WriteMark>,
    /// How many chunks the last pause compared.
    compared: usize,
    /// Chunks whose hash is known but whose bytes `last` does not hold
    /// (a baseline seeded from the image the vessel resumed from): they
    /// are compared by hash, and copied once looked at.
    unknown: Vec<bool>,
    /// How many chunks are in `unknown`.
    unknown_count: usize,
}

impl Baseline {
    /// In the pause: which chunks of `memory` changed since the last
    /// checkpoint. Brings the copy up to `memory` (copying only those); their
    /// hashes wait for [`store_changes`](Self::store_changes).
    ///
    /// `writes` (the vessel's write tracking) says which chunks were written
    /// since the last pause, so only those are compared; when it cannot
    /// say, every chunk is.
    pub fn take_changes(&mut self, memory: &[u8], writes: &WriteTracker) -> Vec<usize> {
        let cs = CHUNK_SIZE_BYTES as usize;
        // Linear memory only grows; new pages compare with zeros, which is
        // what an unknown (`None`) chunk means. The buffer is sized ahead
        // (`presize`), so this allocates only if the memory grew since.
        self.last.resize(memory.len(), 0);
        self.chunks.resize(memory.len().div_ceil(cs), None);
        self.unknown.resize(self.chunks.len(), false);
        let (written, mark) = writes.look(memory, self.mark);
        self.mark = Some(mark);
        let all = self.chunks.len();
        let looked: Vec<usize>;
        let changed = match (std::mem::take(&mut self.stale), written) {
            (true, _) => {
                looked = (0..all).collect();
                looked.clone()
            }
            (false, Written::All) if self.unknown_count == 0 => {
                looked = Vec::new();
                changed_chunks(&self.last, &self.chunks, memory)
            }
            (false, Written::All) => {
                looked = (0..all).collect();
                self.differing(memory, &looked)
            }
            (false, Written::Chunks(candidates)) if self.unknown_count == 0 => {
                self.compared = candidates.len();
                let changed = changed_among(&self.last, &self.chunks, memory, candidates);
                self.copy_in(memory, &changed);
                return changed;
            }
            (false, Written::Chunks(candidates)) => {
                let changed = self.differing(memory, &candidates);
                looked = candidates;
                changed
            }
        };
        self.compared = if looked.is_empty() { all } else { looked.len() };
        // Every chunk looked at is copied: its bytes are known from now on.
        self.copy_in(memory, if looked.is_empty() { &changed } else { &looked });
        changed
    }

    /// The chunks among `candidates` that differ from the baseline: by
    /// hash where only the hash is known, else byte by byte.
    fn differing(&self, memory: &[u8], candidates: &[usize]) -> Vec<usize> {
        let cs = CHUNK_SIZE_BYTES as usize;
        candidates
            .iter()
            .copied()
            .filter(|&i| {
                if !self.unknown[i] {
                    return chunk_changed(&self.last, &self.chunks, memory, i);
                }
                let now = &memory[i * cs..((i + 1) * cs).min(memory.len())];
                match self.chunks[i] {
                    None => now.iter().any(|&b| b != 0),
                    Some(h) => Hash::of(now) != h,
                }
            })
            .collect()
    }

    /// Copies chunks `which` of `memory` into the baseline; their bytes
    /// are known from now on.
    fn copy_in(&mut self, memory: &[u8], which: &[usize]) {
        let cs = CHUNK_SIZE_BYTES as usize;
        for &i in which {
            let range = i * cs..((i + 1) * cs).min(memory.len());
            self.last[range.clone()].copy_from_slice(&memory[range]);
            if std::mem::take(&mut self.unknown[i]) {
                self.unknown_count -= 1;
            }
        }
    }

    /// Seeds the baseline of a vessel that resumed from `image` (its memory
    /// holds exactly those chunks) and whose write tracking was armed at
    /// `mark`, before it ran: its first checkpoint here then compares, by
    /// hash, only the chunks it wrote since, instead of copying its whole
    /// memory in the pause (115–150 ms at 64 MiB, after every arrival).
    pub fn seed(&mut self, image: &ChunkedImage, mark: WriteMark) {
        self.chunks = image.chunks.clone();
        self.unknown = vec![true; self.chunks.len()];
        self.unknown_count = self.chunks.len();
        self.mark = Some(mark);
        self.stale = false;
    }

    /// How many chunks the last [`take_changes`](Self::take_changes)
    /// compared (all of them, unless write tracking named fewer).
    pub fn compared(&self) -> usize {
        self.compared
    }

    /// After the pause: hashes and stores the chunks `take_changes` found,
    /// and returns the memory's image.
    pub fn store_changes(
        &mut self,
        store: &ChunkStore,
        changed: &[usize],
    ) -> Result<ChunkedImage, StoreError> {
        let cs = CHUNK_SIZE_BYTES as usize;
        for &i in changed {
            let bytes = &self.last[i * cs..((i + 1) * cs).min(self.last.len())];
            self.chunks[i] = if bytes.iter().all(|&b| b == 0) {
                None
            } else {
                Some(store.put_chunk(bytes)?)
            };
        }
        Ok(ChunkedImage {
            size_bytes: self.last.len() as u64,
            chunks: self.chunks.clone(),
        })
    }

    /// Before a pause, off the vessel's thread: makes the copy as large as
    /// the memory, so that the pause does not allocate and zero it (for a
    /// vessel's first checkpoint here, tens of milliseconds at 64 MiB).
    pub fn presize(&mut self, memory_bytes: usize) {
        if self.last.len() < memory_bytes {
            self.last.resize(memory_bytes, 0);
        }
    }

    /// The copy no longer matches the hashes (a checkpoint failed between
    /// its pause and its store): the next one takes every chunk, which
    /// makes it whole. The buffer stays, for the next pause.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }
}
