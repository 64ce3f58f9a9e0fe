//! The tombstones of removed vessels (`meshnode rm`, issue 16): what a node
//! keeps of a vessel once its record, log, checkpoints and replica are
//! gone, so that no stale copy brings it back.
//!
//! A tombstone stands for a record at its epoch: the migration rules judge
//! an offer, a commit or a replica copy against it as against any record
//! (`Host::known_epoch`, `mesh::serve::record_on_disk`), so a copy from
//! below it is refused as stale; a record found below it at start-up is
//! deleted, not resumed. Kept in `tombstones.cbor` in the data directory,
//! at most [`MAX_TOMBSTONES`], each for [`TOMBSTONE_TTL`] after this node
//! learned it (docs/protocol.md, "Removal and tombstones").

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::vessel::{Tombstone, VesselId};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// The book's file in the data directory.
pub const TOMBSTONES_FILE: &str = "tombstones.cbor";

/// Most tombstones a node keeps: about 200 bytes each, so the file stays
/// under 1 MiB, and a node that removes a vessel a minute keeps three days
/// of them. Past it the oldest (by when this node learned it) goes first.
pub const MAX_TOMBSTONES: usize = 4096;

/// How long a tombstone is kept after this node learned it: a node away
/// for longer than this (or a copy older than [`MAX_TOMBSTONES`] later
/// removals) is no longer told its copy is stale, and shows it again as
/// the record it holds. Thirty days covers a board on a shelf for a month.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often one node is told of one tombstone at most, when it is seen
/// naming a stale copy (its status, its `ps` rows): it takes one request
/// to bury a copy, and a node that cannot (an older one) is not asked
/// again at every status.
pub const TOMBSTONE_PUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Largest book file read back: [`MAX_TOMBSTONES`] of about 200 bytes,
/// with room to spare.
const MAX_TOMBSTONES_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One tombstone as kept: with when this node learned it (Unix ms).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    pub tombstone: Tombstone,
    pub learned_unix_ms: u64,
}

/// Every tombstone this node keeps, by vessel.
#[derive(Debug, Default)]
pub struct TombstoneBook {
    path: Option<PathBuf>,
    by_vessel: BTreeMap<VesselId, Kept>,
    /// When each (node, vessel) was last told ([`TOMBSTONE_PUSH_INTERVAL`];
    /// cleared past [`MAX_TOMBSTONES`] entries).
    pushed: HashMap<(String, VesselId), Instant>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TombstoneBook {
    /// Reads the book in `dir` (none yet, or unreadable: an empty one, said
    /// in the log; the mesh tells this node again of any stale copy it
    /// names). Expired entries are dropped; signatures were checked when
    /// each arrived, and are again here.
    pub fn load(dir: &Path) -> TombstoneBook {
        let path = dir.join(TOMBSTONES_FILE);
        let mut book = TombstoneBook {
            path: Some(path.clone()),
            ..TombstoneBook::default()
        };
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => return book,
        };
        if len > MAX_TOMBSTONES_FILE_BYTES {
            warn!(
                "{}: {len} bytes, over {MAX_TOMBSTONES_FILE_BYTES}: tombstones not read",
                path.display()
            );
            return book;
        }
        let kept: Vec<Kept> = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| protocol::cbor::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(k) => k,
            Err(e) => {
                warn!("{}: unreadable tombstones: {e}", path.display());
                return book;
            }
        };
        for k in kept.into_iter().take(MAX_TOMBSTONES) {
            if k.tombstone.verify().is_ok() {
                book.by_vessel.insert(k.tombstone.vessel(), k);
            }
        }
        book.expire(now_unix_ms());
        book
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let kept: Vec<&Kept> = self.by_vessel.values().collect();
        if let Err(e) = crate::daemon::datadir::write_atomic(path, &protocol::cbor::encode(&kept)) {
            warn!("cannot save the tombstones: {e}");
        }
    }

    /// Drops what is past [`TOMBSTONE_TTL`], then the oldest past
    /// [`MAX_TOMBSTONES`].
    fn expire(&mut self, now_ms: u64) {
        let ttl_ms = TOMBSTONE_TTL.as_millis() as u64;
        self.by_vessel
            .retain(|_, k| now_ms.saturating_sub(k.learned_unix_ms) < ttl_ms);
        while self.by_vessel.len() > MAX_TOMBSTONES {
            let oldest = self
                .by_vessel
                .iter()
                .min_by_key(|(_, k)| k.learned_unix_ms)
                .map(|(v, _)| *v)
                .expect("not empty");
            self.by_vessel.remove(&oldest);
        }
    }

    /// Keeps `t` (already verified and trusted) unless a tombstone of the
    /// vessel at or above its epoch is kept already. Returns whether it is
    /// new here.
    pub fn insert(&mut self, t: Tombstone) -> bool {
        if self.epoch_of(t.vessel()) >= t.epoch() {
            return false;
        }
        let now = now_unix_ms();
        self.by_vessel.insert(
            t.vessel(),
            Kept {
                tombstone: t,
                learned_unix_ms: now,
            },
        );
        self.expire(now);
        self.save();
        true
    }

    /// The epoch a vessel was removed under (0: not removed, as far as
    /// this node knows).
    pub fn epoch_of(&self, vessel: VesselId) -> u64 {
        self.by_vessel
            .get(&vessel)
            .map_or(0, |k| k.tombstone.epoch())
    }

    pub fn get(&self, vessel: VesselId) -> Option<&Tombstone> {
        self.by_vessel.get(&vessel).map(|k| &k.tombstone)
    }

    /// Whether a copy of `vessel` at `epoch` is stale: a tombstone above it.
    pub fn buries(&self, vessel: VesselId, epoch: u64) -> bool {
        epoch < self.epoch_of(vessel)
    }

    /// The tombstone to tell `node` of, which was seen naming a copy of
    /// `vessel` at `epoch`: one that buries it, at most once per
    /// [`TOMBSTONE_PUSH_INTERVAL`].
    pub fn to_push(&mut self, node: &str, vessel: VesselId, epoch: u64) -> Option<Tombstone> {
        if !self.buries(vessel, epoch) {
            return None;
        }
        let now = Instant::now();
        let key = (node.to_string(), vessel);
        if self
            .pushed
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < TOMBSTONE_PUSH_INTERVAL)
        {
            return None;
        }
        if self.pushed.len() >= MAX_TOMBSTONES {
            self.pushed.clear();
        }
        self.pushed.insert(key, now);
        self.get(vessel).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_vessel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_vessel.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::vessel::{TombstoneBody, VESSEL_VERSION};

    fn tombstone(n: u8, epoch: u64) -> Tombstone {
        let user = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        Tombstone::sign(
            &user,
            TombstoneBody {
                version: VESSEL_VERSION,
                vessel: VesselId([n; 8]),
                epoch,
                removed_unix_ms: 0,
            },
        )
    }

    #[test]
    fn a_tombstone_buries_lower_epochs_only_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = TombstoneBook::load(dir.path());
        assert!(book.insert(tombstone(1, 4)));
        assert!(!book.insert(tombstone(1, 3)), "a lower one adds nothing");
        assert!(book.buries(VesselId([1; 8]), 3));
        assert!(!book.buries(VesselId([1; 8]), 4));
        assert!(!book.buries(VesselId([2; 8]), 0));
        let again = TombstoneBook::load(dir.path());
        assert_eq!(again.epoch_of(VesselId([1; 8])), 4);
    }

    #[test]
    fn the_book_is_bounded_and_expires() {
        let mut book = TombstoneBook::default();
        for i in 0..MAX_TOMBSTONES + 3 {
            let mut t = tombstone(0, 1);
            t.body.vessel = VesselId((i as u64).to_le_bytes());
            book.by_vessel.insert(
                t.vessel(),
                Kept {
                    tombstone: t,
                    learned_unix_ms: 1_000 + i as u64,
                },
            );
        }
        book.expire(2_000);
        assert_eq!(book.len(), MAX_TOMBSTONES);
        assert_eq!(book.epoch_of(VesselId(0u64.to_le_bytes())), 0, "oldest out");
        book.expire(TOMBSTONE_TTL.as_millis() as u64 + 10_000);
        assert!(book.is_empty());
    }
}
