//! Append-only pack files: where the chunk store keeps its records.
//!
//! A pack is a sequence of records, each a 44-byte header (magic `MNPK`, a
//! kind byte, three zero bytes, the payload's length as u32 LE, the
//! payload's BLAKE3 hash) and its payload. Records are only ever appended.
//! A batch is made durable by one `fdatasync` of the pack, after which a
//! commit record is appended that names how far the pack was durable
//! (payload: that offset as u64 LE). The commit record is itself made durable
//! by the next batch's `fdatasync`; so a commit record that is on disk and
//! whole always tells the truth.
//!
//! At open, every record below the furthest valid commit is trusted on its
//! header (its payload is still verified on every read); every record past
//! it is verified against its hash, and the first one that is not whole and
//! valid ends the pack: it and everything after it (the torn tail of a
//! crash) is cut off. Since a pack is append-only, what survives is always a
//! prefix of what was written, so a manifest never survives without the
//! chunks written before it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::limits::MAX_CBOR_DOCUMENT_BYTES;
use protocol::snapshot::{Hash, CHUNK_SIZE_BYTES};

use super::StoreError;

const RECORD_MAGIC: [u8; 4] = *b"MNPK";
pub(super) const HEADER_BYTES: u64 = 44;
/// A pack is sealed and a new one begun past this size, so that garbage
/// collection rewrites at most this much at a time.
pub const MAX_PACK_BYTES: u64 = 64 * 1024 * 1024;
/// The active pack is compacted only from this size on: below it, rewriting
/// it would cost more writes than the space it frees.
pub const MIN_COMPACT_BYTES: u64 = 4 * 1024 * 1024;

/// What a record holds. Each kind has its own limit on its payload's
/// length, checked before anything is allocated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Chunk = 1,
    Manifest = 2,
    Image = 3,
    Commit = 4,
    /// A tombstone: garbage collection forgot the record it names (payload:
    /// that record's kind byte and hash), so a reopen does not bring it
    /// back while its bytes wait in a pack that was not rewritten.
    Forget = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Chunk,
            2 => Kind::Manifest,
            3 => Kind::Image,
            4 => Kind::Commit,
            5 => Kind::Forget,
            _ => return None,
        })
    }

    /// The largest payload a record of this kind may have: a chunk is at
    /// most one chunk, a document at most what the CBOR decoder accepts, a
    /// commit is one offset.
    pub fn max_payload_bytes(self) -> u64 {
        match self {
            Kind::Chunk => u64::from(CHUNK_SIZE_BYTES),
            Kind::Manifest | Kind::Image => MAX_CBOR_DOCUMENT_BYTES as u64,
            Kind::Commit => 8,
            Kind::Forget => 33,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chunk => "chunk",
            Kind::Manifest => "manifest",
            Kind::Image => "image",
            Kind::Commit => "commit",
            Kind::Forget => "tombstone",
        }
    }
}

/// Something the store made durable, told to a probe (tests): a file's
/// content up to now, or a directory's list of names.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    File(PathBuf),
    Dir(PathBuf),
}

pub type Probe = Arc<dyn Fn(&SyncEvent) + Send + Sync>;

pub(super) fn encode_header(kind: Kind, len: u32, hash: &Hash) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4] = kind as u8;
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..].copy_from_slice(&hash.0);
    h
}

/// A header, or `None` when it is not one (bad magic, unknown kind, or a
/// length over its kind's limit).
fn decode_header(h: &[u8; HEADER_BYTES as usize]) -> Option<(Kind, u32, Hash)> {
    if h[..4] != RECORD_MAGIC || h[5..8] != [0, 0, 0] {
        return None;
    }
    let kind = Kind::from_byte(h[4])?;
    let len = u32::from_le_bytes(h[8..12].try_into().ok()?);
    if u64::from(len) > kind.max_payload_bytes() {
        return None;
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&h[12..]);
    Some((kind, len, Hash(hash)))
}

/// Where a record's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Loc {
    fn record_bytes(&self) -> u64 {
        HEADER_BYTES + u64::from(self.len)
    }
}

/// One pack file.
#[derive(Debug)]
pub(super) struct Pack {
    pub id: u32,
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Bytes written (the next record's offset).
    pub size: u64,
    /// Bytes of records the index still points at.
    pub live_bytes: u64,
    /// Everything below this offset is known durable.
    pub durable_end: u64,
    /// Damaged inside what was durable (see [`durable_beyond`]): kept as it
    /// is, never written to or rewritten.
    pub damaged: bool,
}

/// Why a store takes no more writes until it is reopened (see
/// [`Packs::stop`]).
#[derive(Debug, Clone)]
pub(super) struct Stopped {
    pub cause: String,
    pub disk_full: bool,
}

/// A record found by [`scan`].
pub(super) struct Found {
    pub kind: Kind,
    pub hash: Hash,
    pub loc: Loc,
}

/// What [`scan`] found in one pack: its whole records (commits left out),
/// where the valid part ends, and how far a commit said it was durable.
pub(super) struct Scanned {
    pub records: Vec<Found>,
    pub valid_end: u64,
    pub durable_end: u64,
}

fn read_exact(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<(), StoreError> {
    file.read_exact_at(buf, at)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a pack's headers, then verifies every record past its furthest
/// valid commit; see the module's description.
pub(super) fn scan(file: &File, path: &Path, pack: u32) -> Result<Scanned, StoreError> {
    let size = file
        .metadata()
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut all: Vec<(Kind, Hash, Loc)> = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER_BYTES as usize];
    while at + HEADER_BYTES <= size {
        read_exact(file, path, &mut header, at)?;
        let Some((kind, len, hash)) = decode_header(&header) else {
            break;
        };
        let loc = Loc {
            pack,
            offset: at + HEADER_BYTES,
            len,
        };
        if loc.offset + u64::from(len) > size {
            break;
        }
        all.push((kind, hash, loc));
        at = loc.offset + u64::from(len);
    }
    let mut durable_end = 0;
    for (kind, hash, loc) in &all {
        if *kind != Kind::Commit {
            continue;
        }
        let mut b = [0u8; 8];
        read_exact(file, path, &mut b, loc.offset)?;
        let claimed = u64::from_le_bytes(b);
        if Hash::of(&b) == *hash && claimed <= loc.offset - HEADER_BYTES {
            durable_end = durable_end.max(claimed);
        }
    }
    let mut records = Vec::with_capacity(all.len());
    let mut valid_end = 0;
    for (kind, hash, loc) in all {
        let end = loc.offset + u64::from(loc.len);
        if end > durable_end {
            let mut payload = vec![0u8; loc.len as usize];
            read_exact(file, path, &mut payload, loc.offset)?;
            if Hash::of(&payload) != hash {
                break;
            }
        }
        valid_end = end;
        if kind != Kind::Commit {
            records.push(Found { kind, hash, loc });
        }
    }
    // A tail of nothing but commit records needs no sync at open.
    let data_end = records
        .last()
        .map_or(0, |f| f.loc.offset + u64::from(f.loc.len));
    if data_end <= durable_end {
        durable_end = valid_end;
    }
    Ok(Scanned {
        records,
        valid_end,
        durable_end: durable_end.min(valid_end),
    })
}

/// The bytes every commit record begins with: magic, kind 4, length 8.
const COMMIT_PREFIX: [u8; 12] = *b"MNPK\x04\0\0\0\x08\0\0\0";
/// The tail is searched for commits in windows of this size.
const SEARCH_WINDOW_BYTES: u64 = 1024 * 1024;

/// Whether a valid commit record past `from` says the pack was durable
/// beyond `from`. Then what stopped the scan at `from` is damage inside
/// durable data (a flipped bit), not the tail a crash tore, and cutting the
/// pack there would destroy durable records.
fn durable_beyond(file: &File, path: &Path, from: u64, size: u64) -> Result<bool, StoreError> {
    let record_bytes = HEADER_BYTES + 8;
    let mut at = from;
    while at + record_bytes <= size {
        let len = (size - at).min(SEARCH_WINDOW_BYTES);
        let mut window = vec![0u8; len as usize];
        read_exact(file, path, &mut window, at)?;
        for q in 0..window.len().saturating_sub(COMMIT_PREFIX.len() - 1) {
            if window[q..].starts_with(&COMMIT_PREFIX) && at + q as u64 + record_bytes <= size {
                let mut rec = [0u8; (HEADER_BYTES + 8) as usize];
                read_exact(file, path, &mut rec, at + q as u64)?;
                let payload = &rec[HEADER_BYTES as usize..];
                let claimed = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
                if rec[12..44] == Hash::of(payload).0 && claimed > from && claimed <= at + q as u64
                {
                    return Ok(true);
                }
            }
        }
        // Windows overlap by a record, so none is missed at a boundary.
        at += len.saturating_sub(record_bytes).max(1);
    }
    Ok(false)
}

/// The packs of one store and the index of what they hold.
pub(super) struct Packs {
    pub dir: PathBuf,
    pub packs: BTreeMap<u32, Pack>,
    pub index: HashMap<(Kind, Hash), Loc>,
    pub active: u32,
    pub probe: Option<Probe>,
    /// Where a pack is sealed: [`MAX_PACK_BYTES`], smaller in tests.
    pub pack_limit_bytes: u64,
    /// `packs/lock`, `flock`ed while the store is open: two processes
    /// appending to one pack would write over each other's records.
    lock: File,
    /// Set when what is on disk can no longer be trusted to match what the
    /// index says (a failed `fdatasync`, or a failed write whose partial
    /// record could not be cut off): every later write is refused, reads
    /// go on.
    pub stopped: Option<Stopped>,
}

impl Drop for Packs {
    /// Unlocks explicitly: a child forked by another thread holds a copy
    /// of the descriptor until it execs, and closing ours alone would leave
    /// the lock held until then.
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.lock, rustix::fs::FlockOperation::Unlock);
    }
}

/// The file `flock`ed while a store is open.
const LOCK_FILE: &str = "lock";

fn lock_store(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::InUse {
            root: dir.parent().unwrap_or(dir).to_path_buf(),
        }),
        Err(e) => Err(StoreError::Io {
            path,
            source: e.into(),
        }),
    }
}

pub(super) fn pack_name(id: u32) -> String {
    format!("{id:08}.pack")
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Packs {
    /// Opens every pack under `dir`, cutting off torn tails, and makes
    /// what survived durable; creates the first pack of a new store.
    pub fn open(dir: &Path, probe: Option<Probe>) -> Result<Packs, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_store(dir)?;
        let mut ids: Vec<u32> = std::fs::read_dir(dir)
            .map_err(io_at(dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".pack")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut packs = Packs {
            dir: dir.to_path_buf(),
            packs: BTreeMap::new(),
            index: HashMap::new(),
            active: 0,
            probe,
            pack_limit_bytes: MAX_PACK_BYTES,
            lock,
            stopped: None,
        };
        let mut newest_damaged = false;
        for id in ids {
            newest_damaged = packs.load(id)?;
        }
        match packs.packs.keys().next_back() {
            Some(&id) if newest_damaged => packs.begin_pack(id + 1)?,
            Some(&id) => packs.active = id,
            None => packs.begin_pack(1)?,
        }
        Ok(packs)
    }

    /// Loads one pack into the index; cuts a torn tail off, and makes a
    /// verified tail durable. Returns whether the pack is damaged.
    fn load(&mut self, id: u32) -> Result<bool, StoreError> {
        let path = self.dir.join(pack_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let found = scan(&file, &path, id)?;
        let size = file.metadata().map_err(io_at(&path))?.len();
        let damaged =
            found.valid_end < size && durable_beyond(&file, &path, found.valid_end, size)?;
        if damaged {
            tracing::error!(
                pack = %path.display(),
                "a record at offset {} is damaged inside data a commit says was durable: \
                 the pack is kept as it is (the records after it cannot be read) and \
                 new records go to a new pack",
                found.valid_end
            );
        } else if found.valid_end < size {
            tracing::warn!(
                pack = %path.display(),
                "dropping a torn tail of {} bytes (a write a crash cut short)",
                size - found.valid_end
            );
            file.set_len(found.valid_end).map_err(io_at(&path))?;
        }
        let mut pack = Pack {
            id,
            file: Arc::new(file),
            path,
            size: if damaged { size } else { found.valid_end },
            live_bytes: 0,
            durable_end: found.durable_end,
            damaged,
        };
        for f in found.records {
            if f.kind == Kind::Forget {
                let Some(key) = forgotten(&f, &pack) else {
                    continue;
                };
                if let Some(old) = self.index.remove(&key) {
                    match self.packs.get_mut(&old.pack) {
                        Some(p) => p.live_bytes -= old.record_bytes(),
                        None => pack.live_bytes -= old.record_bytes(),
                    }
                }
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = self.index.entry((f.kind, f.hash))
            {
                pack.live_bytes += f.loc.record_bytes();
                e.insert(f.loc);
            }
        }
        let sync_to = (!damaged && (pack.durable_end < pack.size || found.valid_end < size))
            .then_some(pack.size);
        self.packs.insert(id, pack);
        if let Some(end) = sync_to {
            self.fdatasync_pack(id)?;
            self.commit(id, end)?;
        }
        Ok(damaged)
    }

    /// Creates pack `id`, durably (its directory entry too), and makes it
    /// the one written to.
    fn begin_pack(&mut self, id: u32) -> Result<(), StoreError> {
        let path = self.dir.join(pack_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| write_error(&path, e))?;
        self.packs.insert(
            id,
            Pack {
                id,
                file: Arc::new(file),
                path,
                size: 0,
                live_bytes: 0,
                durable_end: 0,
                damaged: false,
            },
        );
        self.active = id;
        // Unless its name is durable, a power loss could take the pack, and
        // every record a later sync of it made durable, away.
        if let Err(e) = self.fsync_dir() {
            return Err(self.stop(e));
        }
        Ok(())
    }

    pub fn fsync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&self.dir))?;
        self.tell(SyncEvent::Dir(self.dir.clone()));
        Ok(())
    }

    fn tell(&self, event: SyncEvent) {
        if let Some(p) = &self.probe {
            p(&event);
        }
    }

    /// `fdatasync` of one pack: everything written to it so far is durable.
    pub fn fdatasync_pack(&self, id: u32) -> Result<(), StoreError> {
        let Some(pack) = self.packs.get(&id) else {
            return Ok(());
        };
        fdatasync(&pack.file, &pack.path, self.probe.as_ref())
    }

    /// Appends a commit record saying pack `id` is durable up to `end`
    /// (call only once an `fdatasync` that began after `end` was written
    /// has returned).
    pub fn commit(&mut self, id: u32, end: u64) -> Result<(), StoreError> {
        let Some(pack) = self.packs.get_mut(&id) else {
            return Ok(());
        };
        if pack.durable_end >= end {
            return Ok(());
        }
        pack.durable_end = end;
        let payload = end.to_le_bytes();
        // The records are durable already; a commit record only spares the
        // next open from verifying them. One that cannot be written (a
        // full disk) costs that, nothing else.
        match write_record(pack, Kind::Commit, &Hash::of(&payload), &payload) {
            Ok(_) => Ok(()),
            Err(WriteError::Undone(e)) => {
                tracing::debug!("no commit record after a sync: {e}");
                Ok(())
            }
            Err(WriteError::Torn(e)) => Err(self.stop(e)),
        }
    }

    /// Refuses every later write (see [`Packs::stopped`]) and returns the
    /// error that caused it.
    pub fn stop(&mut self, e: StoreError) -> StoreError {
        tracing::error!("the chunk store takes no more writes until the node restarts: {e}");
        self.stopped = Some(Stopped {
            cause: e.to_string(),
            disk_full: e.is_disk_full(),
        });
        e
    }

    /// Fails when writes are refused ([`Packs::stop`]).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match &self.stopped {
            None => Ok(()),
            Some(s) => Err(StoreError::WritesStopped {
                root: self.dir.parent().unwrap_or(&self.dir).to_path_buf(),
                cause: s.cause.clone(),
                disk_full: s.disk_full,
            }),
        }
    }

    /// Appends one record to the active pack; a failed write that could
    /// not be undone stops the store.
    fn write_active(&mut self, kind: Kind, hash: &Hash, payload: &[u8]) -> Result<Loc, StoreError> {
        let active = self.active;
        let pack = self
            .packs
            .get_mut(&active)
            .expect("the active pack is open");
        match write_record(pack, kind, hash, payload) {
            Ok(loc) => Ok(loc),
            Err(WriteError::Undone(e)) => Err(e),
            Err(WriteError::Torn(e)) => Err(self.stop(e)),
        }
    }

    /// Appends a record to the active pack (sealing it first when full)
    /// and indexes it. The record is whole on disk before the index names
    /// it, so a reader never finds a record that is still being written.
    pub fn append(&mut self, kind: Kind, hash: &Hash, payload: &[u8]) -> Result<(), StoreError> {
        self.check_writable()?;
        let record_bytes = HEADER_BYTES + payload.len() as u64;
        if self.packs[&self.active].size > 0
            && self.packs[&self.active].size + record_bytes > self.pack_limit_bytes
        {
            self.seal_and_begin()?;
        }
        let loc = self.write_active(kind, hash, payload)?;
        if let Some(pack) = self.packs.get_mut(&loc.pack) {
            pack.live_bytes += loc.record_bytes();
        }
        if let Some(old) = self.index.insert((kind, *hash), loc) {
            if let Some(p) = self.packs.get_mut(&old.pack) {
                p.live_bytes -= old.record_bytes();
            }
        }
        Ok(())
    }

    /// Makes the active pack durable and begins the next one.
    pub fn seal_and_begin(&mut self) -> Result<(), StoreError> {
        let old = self.active;
        let end = self.packs[&old].size;
        if let Err(e) = self.fdatasync_pack(old) {
            // What the failed sync covered may or may not be on disk.
            return Err(self.stop(e));
        }
        self.commit(old, end)?;
        self.begin_pack(old + 1)
    }

    /// Forgets a record (garbage collection) and appends its tombstone;
    /// its bytes stay in its pack until garbage collection rewrites the
    /// pack or the pack is all garbage and removed.
    pub fn forget(&mut self, kind: Kind, hash: &Hash) -> Result<(), StoreError> {
        self.check_writable()?;
        let Some(loc) = self.index.remove(&(kind, *hash)) else {
            return Ok(());
        };
        if let Some(p) = self.packs.get_mut(&loc.pack) {
            p.live_bytes -= loc.record_bytes();
        }
        let mut payload = [0u8; 33];
        payload[0] = kind as u8;
        payload[1..].copy_from_slice(&hash.0);
        self.write_active(Kind::Forget, &Hash::of(&payload), &payload)
            .map(|_| ())
    }

    /// Bytes of every pack on disk (what a disk budget counts).
    pub fn disk_bytes(&self) -> u64 {
        self.packs.values().map(|p| p.size).sum()
    }

    /// The packs worth rewriting: at most half live, and (the active one)
    /// big enough to be worth it. A pack with nothing live is removed.
    pub fn compaction_candidates(&self) -> Vec<u32> {
        self.packs
            .iter()
            .filter(|(id, p)| {
                let mostly_dead = p.live_bytes * 2 <= p.size && p.size > 0 && !p.damaged;
                mostly_dead && (**id != self.active || p.size >= MIN_COMPACT_BYTES)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The records the index places in packs `ids`, with each pack's file,
    /// for a copy that reads them without the store's lock.
    pub fn live_in(&self, ids: &[u32]) -> Vec<Moving> {
        self.index
            .iter()
            .filter(|(_, loc)| ids.contains(&loc.pack))
            .filter_map(|(&(kind, hash), &loc)| {
                let pack = self.packs.get(&loc.pack)?;
                Some(Moving {
                    kind,
                    hash,
                    loc,
                    file: pack.file.clone(),
                    path: pack.path.clone(),
                })
            })
            .collect()
    }

    /// Removes packs whose live records were copied and made durable.
    pub fn remove_packs(&mut self, ids: &[u32]) -> Result<(), StoreError> {
        for id in ids {
            if *id == self.active {
                continue;
            }
            if let Some(p) = self.packs.remove(id) {
                std::fs::remove_file(&p.path).map_err(io_at(&p.path))?;
            }
        }
        self.fsync_dir()
    }
}

/// A live record in a pack being rewritten.
pub(super) struct Moving {
    pub kind: Kind,
    pub hash: Hash,
    pub loc: Loc,
    pub file: Arc<File>,
    pub path: PathBuf,
}

/// The record a tombstone names, read from its payload.
fn forgotten(f: &Found, pack: &Pack) -> Option<(Kind, Hash)> {
    let mut payload = [0u8; 33];
    if f.loc.len != 33 {
        return None;
    }
    pack.file.read_exact_at(&mut payload, f.loc.offset).ok()?;
    let kind = Kind::from_byte(payload[0])?;
    let mut h = [0u8; 32];
    h.copy_from_slice(&payload[1..]);
    Some((kind, Hash(h)))
}

/// Reads a payload (its length was checked against its kind's limit when
/// the record was indexed) and verifies it.
pub(super) fn read_verified(
    file: &File,
    path: &Path,
    kind: Kind,
    hash: &Hash,
    loc: Loc,
) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; loc.len as usize];
    read_exact(file, path, &mut buf, loc.offset)?;
    let found = Hash::of(&buf);
    if found != *hash {
        return Err(StoreError::CorruptRecord {
            kind: kind.name(),
            hash: *hash,
            pack: path.to_path_buf(),
            offset: loc.offset,
            found,
        });
    }
    Ok(buf)
}

/// A write that failed.
pub(super) enum WriteError {
    /// Nothing of it is left: the pack ends where it did before.
    Undone(StoreError),
    /// Its partial record could not be cut off: the pack's file no longer
    /// ends at a record's end.
    Torn(StoreError),
}

/// The error for a failed write: [`StoreError::DiskFull`] when the disk (or
/// the user's quota) is full, [`StoreError::WriteFailed`] otherwise.
pub(super) fn write_error(path: &Path, source: std::io::Error) -> StoreError {
    let full = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT]
        .iter()
        .any(|e| source.raw_os_error() == Some(e.raw_os_error()));
    let path = path.to_path_buf();
    if full {
        StoreError::DiskFull { path, source }
    } else {
        StoreError::WriteFailed { path, source }
    }
}

/// Appends one record at the pack's end. A failed write is undone: the
/// file is cut back to the end of the last whole record (the records
/// before it, durable or not, stay whole and indexed), so no torn record
/// stays on disk and the space it took is free again.
fn write_record(
    pack: &mut Pack,
    kind: Kind,
    hash: &Hash,
    payload: &[u8],
) -> Result<Loc, WriteError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| u64::from(*l) <= kind.max_payload_bytes())
        .ok_or(WriteError::Undone(StoreError::TooLarge {
            kind: kind.name(),
            size_bytes: payload.len() as u64,
            limit_bytes: kind.max_payload_bytes(),
        }))?;
    let mut rec = Vec::with_capacity(HEADER_BYTES as usize + payload.len());
    rec.extend_from_slice(&encode_header(kind, len, hash));
    rec.extend_from_slice(payload);
    if let Err(source) = pack.file.write_all_at(&rec, pack.size) {
        let err = write_error(&pack.path, source);
        return Err(match pack.file.set_len(pack.size) {
            Ok(()) => WriteError::Undone(err),
            Err(cut) => WriteError::Torn(StoreError::WriteFailed {
                path: pack.path.clone(),
                source: std::io::Error::new(
                    cut.kind(),
                    format!("{err}; then cutting off the partial record failed: {cut}"),
                ),
            }),
        });
    }
    let loc = Loc {
        pack: pack.id,
        offset: pack.size + HEADER_BYTES,
        len,
    };
    pack.size += rec.len() as u64;
    Ok(loc)
}

#[cfg(test)]
thread_local! {
    /// Makes this thread's next `fdatasync` fail with EIO (tests: no real
    /// disk fails on demand).
    pub(super) static FAIL_NEXT_FDATASYNC: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

/// `fdatasync` of one file, told to the probe once it returned (so that
/// removing a call removes both, and the power-loss test sees it).
pub(super) fn fdatasync(file: &File, path: &Path, probe: Option<&Probe>) -> Result<(), StoreError> {
    #[cfg(test)]
    if FAIL_NEXT_FDATASYNC.with(|f| f.replace(false)) {
        return Err(write_error(path, std::io::Error::from_raw_os_error(5)));
    }
    file.sync_data().map_err(|e| write_error(path, e))?;
    if let Some(p) = probe {
        p(&SyncEvent::File(path.to_path_buf()));
    }
    Ok(())
}
