//! What a node keeps in its chunk store, and when it collects the rest.
//!
//! Kept: each vessel's record image (what it restarts from), the newest
//! [`RetentionConfig::keep_checkpoints`] checkpoints of each vessel that
//! runs here ([`Host::note_checkpoint`]), the images of prepared vessels,
//! the departed LRU, and every record a live [`Pin`] has seen (a batch no
//! kept image names yet). Everything else is garbage, collected when enough
//! new bytes were written ([`Host::collection_if_due`]).
//!
//! The list of checkpoints lives in memory only: after a restart it starts
//! again from each record's image, and the older checkpoints on disk are
//! garbage at the next collection. Only the newest one is ever resumed from
//! (see the recovery rule in docs/snapshot-format.md), so nothing a restart
//! needs is lost.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use protocol::snapshot::Hash;
use protocol::vessel::VesselId;
use tracing::info;

use super::{Host, Record};
use crate::store::{ChunkStore, Pin, StoreError};

/// Checkpoints kept per vessel by default: the newest, which recovery
/// resumes from, and the one before it, so that a checkpoint found damaged
/// on a read still leaves one whole image to fall back on.
pub const DEFAULT_KEEP_CHECKPOINTS: usize = 2;

/// A collection is due after this many bytes were stored since the last.
/// Measured (docs/snapshot-format.md, "Retention on a node"): a collection
/// of a store of 4 vessels of 64 MiB, two checkpoints each, with this much
/// garbage costs 30-70 ms, or 130-430 ms when it rewrites a pack that is
/// half garbage; at the 1 MiB/s of checkpoints it runs about once a
/// minute (under 1 % of a core), and between two collections the store
/// grows by at most this much. A smaller threshold rewrites packs more
/// often for little space; a larger one lets a board's store overshoot
/// further.
pub const COLLECT_EVERY_BYTES: u64 = 64 * 1024 * 1024;

/// Above this fraction (numerator, denominator) of the disk budget, a
/// collection is due after an eighth of [`COLLECT_EVERY_BYTES`]: the
/// garbage is what stands between the node and skipped checkpoints.
const BUDGET_PRESSURE: (u64, u64) = (3, 4);

/// With no `disk_budget_bytes` set, the budget is this fraction of the
/// file system the data directory is on: on a 16 GB SD card about 3.6 GB,
/// room for many vessels' checkpoints while the system keeps the rest
/// (logs, packages, the user's files).
pub const DEFAULT_DISK_BUDGET_DIVISOR: u64 = 4;

/// How a node keeps checkpoints (config.toml `keep_checkpoints`,
/// `disk_budget_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Newest checkpoints kept per vessel; at least 1.
    pub keep_checkpoints: usize,
    /// Most bytes the store may take on disk before checkpoints are
    /// skipped (`None`: no budget beyond the disk itself).
    pub disk_budget_bytes: Option<u64>,
    /// A collection is due after this many bytes were stored.
    pub collect_every_bytes: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_checkpoints: DEFAULT_KEEP_CHECKPOINTS,
            disk_budget_bytes: None,
            collect_every_bytes: COLLECT_EVERY_BYTES,
        }
    }
}

/// The default disk budget for a store under `dir`: a quarter of its file
/// system ([`DEFAULT_DISK_BUDGET_DIVISOR`]); `None` when the file system's
/// size cannot be read.
pub fn default_disk_budget_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    (total > 0).then_some(total / DEFAULT_DISK_BUDGET_DIVISOR)
}

/// A checkpoint would take the store over the node's disk budget: it is
/// skipped (the vessel runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "checkpoint skipped: the store holds {store_bytes} bytes and a checkpoint of about \
     {estimated_bytes} more would exceed this node's disk budget of {limit_bytes} bytes \
     (disk_budget_bytes in config.toml)"
)]
pub struct BudgetExceeded {
    pub limit_bytes: u64,
    pub store_bytes: u64,
    pub estimated_bytes: u64,
}

/// The host's side of retention: its settings, the newest checkpoints of
/// each vessel, and where the last collection left off.
#[derive(Debug, Default)]
pub struct Retention {
    pub config: RetentionConfig,
    /// Each vessel's newest checkpoints, oldest first, at most
    /// `keep_checkpoints`.
    checkpoints: HashMap<VesselId, VecDeque<Hash>>,
    /// The store's [`ChunkStore::appended_bytes`] when the last collection
    /// began.
    appended_at_last_collection: u64,
}

/// A collection decided under the host's lock, to run without it: the
/// images to keep, and a pin that keeps whatever is stored after the
/// decision (a checkpoint noted meanwhile is not in `keep`).
#[must_use = "a collection does nothing until it runs"]
pub struct Collection {
    store: ChunkStore,
    keep: Vec<Hash>,
    _after: Pin,
}

/// What a collection did.
#[derive(Debug, Clone, Copy)]
pub struct Collected {
    pub chunks_removed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub took: Duration,
}

impl Collection {
    /// Removes what no kept image names and rewrites packs that are mostly
    /// garbage.
    pub fn run(self) -> Result<Collected, StoreError> {
        let started = Instant::now();
        let bytes_before = self.store.disk_bytes();
        let chunks_removed = self.store.retain_images(&self.keep)?;
        let done = Collected {
            chunks_removed,
            bytes_before,
            bytes_after: self.store.disk_bytes(),
            took: started.elapsed(),
        };
        info!(
            "garbage collection: {} chunks removed, store {} -> {} bytes in {} ms",
            done.chunks_removed,
            done.bytes_before,
            done.bytes_after,
            done.took.as_millis()
        );
        Ok(done)
    }
}

impl Host {
    /// Sets how checkpoints are kept (the node's config.toml).
    pub fn configure_retention(&mut self, config: RetentionConfig) {
        let keep = config.keep_checkpoints.max(1);
        self.retention.config = RetentionConfig {
            keep_checkpoints: keep,
            ..config
        };
        for list in self.retention.checkpoints.values_mut() {
            while list.len() > keep {
                list.pop_front();
            }
        }
    }

    /// Remembers a vessel's newest checkpoint. Call once its record points
    /// at `image` durably, and only then drop the [`Pin`] its batch was
    /// written under: from here on the image is kept by name (a collection
    /// decided before this call inherits the pin).
    pub fn note_checkpoint(&mut self, id: VesselId, image: Hash) {
        let keep = self.retention.config.keep_checkpoints.max(1);
        let list = self.retention.checkpoints.entry(id).or_default();
        list.retain(|h| *h != image);
        list.push_back(image);
        while list.len() > keep {
            list.pop_front();
        }
    }

    /// The newest checkpoints kept for a vessel, oldest first.
    pub fn kept_checkpoints(&self, id: VesselId) -> Vec<Hash> {
        self.retention
            .checkpoints
            .get(&id)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The kept checkpoints of the vessels that run here (a vessel that
    /// left, ended or is gone keeps only its record's image).
    pub(super) fn kept_checkpoint_images(&self) -> impl Iterator<Item = Hash> + '_ {
        self.retention
            .checkpoints
            .iter()
            .filter(|(id, _)| {
                self.vessels
                    .get(id)
                    .is_some_and(|l| matches!(l.record, Record::Owned { .. }))
            })
            .flat_map(|(_, list)| list.iter().copied())
    }

    /// Whether a checkpoint of about `estimated_bytes` (what it will append:
    /// its changed chunks and documents) fits the disk budget.
    pub fn checkpoint_allowed(&self, estimated_bytes: u64) -> Result<(), BudgetExceeded> {
        let Some(limit_bytes) = self.retention.config.disk_budget_bytes else {
            return Ok(());
        };
        let store_bytes = self.store.disk_bytes();
        if store_bytes.saturating_add(estimated_bytes) > limit_bytes {
            return Err(BudgetExceeded {
                limit_bytes,
                store_bytes,
                estimated_bytes,
            });
        }
        Ok(())
    }

    /// Whether enough was stored since the last collection for another:
    /// [`RetentionConfig::collect_every_bytes`], or an eighth of it when
    /// the store is near its disk budget.
    pub fn collection_due(&self) -> bool {
        let every = self.retention.config.collect_every_bytes.max(1);
        let since = self
            .store
            .appended_bytes()
            .saturating_sub(self.retention.appended_at_last_collection);
        let pressed = self.retention.config.disk_budget_bytes.is_some_and(|b| {
            let (num, den) = BUDGET_PRESSURE;
            self.store.disk_bytes() > b / den * num
        });
        since >= every || (pressed && since >= every / 8)
    }

    /// A collection, when one is due ([`Host::collection_due`]): decided
    /// here, under the host's lock, and run with [`Collection::run`]
    /// without it. Forgets the checkpoints of vessels that no longer run
    /// here.
    ///
    /// Safe while vessels run and migrations arrive only when every batch
    /// that no kept image names yet is written under a [`ChunkStore::pin`]
    /// (a checkpoint until [`Host::note_checkpoint`], an arriving
    /// migration until its record is durable); without pins, call it only
    /// when no migration is in flight, as `evict` is.
    pub fn collection_if_due(&mut self) -> Option<Collection> {
        if !self.collection_due() {
            return None;
        }
        Some(self.collection())
    }

    /// A collection now, whether due or not.
    pub fn collection(&mut self) -> Collection {
        let vessels = &self.vessels;
        self.retention.checkpoints.retain(|id, _| {
            vessels
                .get(id)
                .is_some_and(|l| matches!(l.record, Record::Owned { .. }))
        });
        // The pin comes first: whatever is stored from here on, and
        // whatever a live pin has seen (a checkpoint written but noted only
        // after this decision, whose own pin may go before the collection
        // is done), is kept even if `keep` does not name it.
        let after = self.store.pin_with_live();
        self.retention.appended_at_last_collection = self.store.appended_bytes();
        let mut keep = self.live_images();
        keep.extend(self.prepared_images());
        Collection {
            store: self.store.clone(),
            keep,
            _after: after,
        }
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
