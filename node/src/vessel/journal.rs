//! A vessel's log journal and its generations: what keeps the log truthful
//! across a crash.
//!
//! A node resumes a vessel after a crash from an image, whose log ends where
//! the image was taken: whatever the vessel printed after that is rolled
//! back and printed again (or differently) by the re-executed program. To
//! know it happened, and to keep what was rolled back, the log sink appends
//! every record to a journal in the vessel's directory as it is printed:
//!
//! ```text
//! log.journal      "MNLOGJ1\n" · epoch u64 LE · start offset u64 LE · records
//! log.journal.old  the same, the part before log.journal (after a rotation)
//! ```
//!
//! The records are framed as in the log (`protocol::vessel::log_append`)
//! and sit at the same absolute offsets. There is no fsync per record: a
//! process killed with `kill -9` leaves its writes in the page cache, so the
//! journal survives the crashes this is for; a power cut may lose the
//! journal's newest records, and then the rollback of those lines goes
//! unnoticed (the log itself stays correct, only the record of what was
//! lost is short).
//!
//! When a vessel is made ready from an image ([`restore`]) and the journal,
//! written under the same epoch (the same run of the vessel on this node),
//! reaches past the image's log end, the log was rolled back: the log gets
//! a new generation, starting at the image's log end, and the rolled-back
//! records are kept (bounded) as the old generation's tail. The list is
//! kept in `log-generations.cbor`, the tails in `log-generation-N.tail`.
//! An image of another epoch (a migration's arrival) is not a rollback.
//! Either way the journal restarts at the image's log end.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protocol::control::LogGeneration;
use protocol::limits::MAX_LOG_BYTES;
use protocol::vessel::LOG_RECORD_HEADER_BYTES;
use serde::{Deserialize, Serialize};

use super::log::VesselLog;

pub const JOURNAL_FILE: &str = "log.journal";
pub const JOURNAL_OLD_FILE: &str = "log.journal.old";
pub const GENERATIONS_FILE: &str = "log-generations.cbor";

const JOURNAL_MAGIC: [u8; 8] = *b"MNLOGJ1\n";
/// Magic, epoch, start offset.
pub const JOURNAL_HEADER_BYTES: usize = 8 + 8 + 8;
/// A journal file moves to `log.journal.old` before a record would take it
/// past this: the two files together hold at least the newest half of what
/// the log keeps, which is far more than a checkpoint interval prints.
const ROTATE_AT_BYTES: u64 = MAX_LOG_BYTES / 2;
/// Largest journal file read back: a rotated file holds at most
/// [`ROTATE_AT_BYTES`], or one record, which the log bounds to
/// [`MAX_LOG_BYTES`]. A larger file is not one this node wrote.
pub const MAX_JOURNAL_FILE_BYTES: u64 = JOURNAL_HEADER_BYTES as u64 + MAX_LOG_BYTES;
/// The rolled-back bytes kept per generation (the newest whole records):
/// a crash rolls back at most one checkpoint interval, normally far less.
pub const MAX_ROLLED_BACK_KEPT_BYTES: u64 = 1024 * 1024;
/// Rolled-back generations kept per vessel: a vessel that crashes more
/// often than this keeps the newest (the disk a vessel's history takes is
/// bounded by this × [`MAX_ROLLED_BACK_KEPT_BYTES`]).
pub const MAX_KEPT_GENERATIONS: usize = 32;
/// Largest generation list read back ([`MAX_KEPT_GENERATIONS`] entries of
/// a few dozen bytes each, with room to spare).
const MAX_GENERATIONS_FILE_BYTES: u64 = 64 * 1024;
const GENERATIONS_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {bytes} bytes, more than the {limit} bytes this node writes")]
    TooLarge { path: PathBuf, bytes: u64, limit: u64 },
    #[error("{path}: not a log journal this node wrote ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("generation {generation}: {reason}")]
    NoSuchGeneration { generation: u32, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The journal being written as the vessel prints.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    epoch: u64,
    file: File,
    /// The absolute offset of the current file's first record.
    start: u64,
    /// Record bytes in the current file.
    len_bytes: u64,
}

impl Journal {
    /// Starts a journal of `epoch` at offset `start`, replacing any other.
    pub fn create(dir: &Path, epoch: u64, start: u64) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let old = dir.join(JOURNAL_OLD_FILE);
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&old)(e)),
            _ => {}
        }
        let file = new_journal_file(dir, epoch, start)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            epoch,
            file,
            start,
            len_bytes: 0,
        })
    }

    /// Appends one framed record (one write, so a crash tears at most this
    /// record, which the reader cuts off).
    pub fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        if self.len_bytes > 0 && self.len_bytes + record.len() as u64 > ROTATE_AT_BYTES {
            self.rotate()?;
        }
        let path = self.dir.join(JOURNAL_FILE);
        self.file.write_all(record).map_err(io(&path))?;
        self.len_bytes += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let (cur, old) = (self.dir.join(JOURNAL_FILE), self.dir.join(JOURNAL_OLD_FILE));
        std::fs::rename(&cur, &old).map_err(io(&cur))?;
        self.start += self.len_bytes;
        self.len_bytes = 0;
        self.file = new_journal_file(&self.dir, self.epoch, self.start)?;
        Ok(())
    }
}

/// Writes a journal file with its header under a temporary name and moves
/// it into place, so a reader never sees a file without its header.
fn new_journal_file(dir: &Path, epoch: u64, start: u64) -> Result<File, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let tmp = dir.join(format!("{JOURNAL_FILE}.tmp"));
    let mut header = Vec::with_capacity(JOURNAL_HEADER_BYTES);
    header.extend_from_slice(&JOURNAL_MAGIC);
    header.extend_from_slice(&epoch.to_le_bytes());
    header.extend_from_slice(&start.to_le_bytes());
    std::fs::write(&tmp, &header).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&tmp))?;
    OpenOptions::new().append(true).open(&path).map_err(io(&path))
}

/// A journal as read back: contiguous records from `start`.
#[derive(Debug, PartialEq, Eq)]
pub struct JournalRead {
    pub epoch: u64,
    pub start: u64,
    pub bytes: Vec<u8>,
}

impl JournalRead {
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Reads one journal file: its size is checked before anything is
/// allocated, its header must be this node's, and a torn last record (a
/// crash in the middle of a write) is cut off.
fn read_journal_file(path: &Path) -> Result<Option<JournalRead>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let len = file.metadata().map_err(io(path))?.len();
    if len > MAX_JOURNAL_FILE_BYTES {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
            bytes: len,
            limit: MAX_JOURNAL_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_JOURNAL_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() < JOURNAL_HEADER_BYTES || bytes[..8] != JOURNAL_MAGIC {
        return Err(corrupt(path, "no journal header"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (epoch, start) = (word(8), word(16));
    let mut records = bytes.split_off(JOURNAL_HEADER_BYTES);
    let whole = whole_records_len(&records).map_err(|r| corrupt(path, r))?;
    records.truncate(whole);
    if start.checked_add(records.len() as u64).is_none() {
        return Err(corrupt(path, "its offsets overflow"));
    }
    Ok(Some(JournalRead {
        epoch,
        start,
        bytes: records,
    }))
}

/// The length of the whole records at the front of `bytes` (a torn last
/// record is left out); a record no log could hold is an error.
fn whole_records_len(bytes: &[u8]) -> Result<usize, String> {
    let mut at = 0usize;
    while at + LOG_RECORD_HEADER_BYTES <= bytes.len() {
        let stream = bytes[at];
        if stream != 1 && stream != 2 {
            return Err(format!("a record of stream {stream} at byte {at}"));
        }
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes")) as u64;
        if len > MAX_LOG_BYTES {
            return Err(format!("a record of {len} bytes at byte {at}"));
        }
        let next = at + LOG_RECORD_HEADER_BYTES + len as usize;
        if next > bytes.len() {
            break;
        }
        at = next;
    }
    Ok(at)
}

/// Reads the journal in `dir` (None: there is none), with its rotated part
/// in front when the two join up.
pub fn read_journal(dir: &Path) -> Result<Option<JournalRead>, JournalError> {
    let Some(current) = read_journal_file(&dir.join(JOURNAL_FILE))? else {
        return Ok(None);
    };
    // A rotated part that does not join (torn by a power cut, or of another
    // run) is left out: the current part alone is still true.
    match read_journal_file(&dir.join(JOURNAL_OLD_FILE)) {
        Ok(Some(mut old)) if old.epoch == current.epoch && old.end() == current.start => {
            old.bytes.extend_from_slice(&current.bytes);
            Ok(Some(old))
        }
        _ => Ok(Some(current)),
    }
}

/// One rolled-back generation as kept on disk: with the epoch it was
/// found under, so that finding the same journal twice (a crash between
/// writing the list and restarting the journal) records it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeptGeneration {
    epoch: u64,
    info: LogGeneration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct GenerationsDoc {
    version: u32,
    current: u32,
    current_start: u64,
    rolled_back: Vec<KeptGeneration>,
}

/// A vessel's log generations on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogHistory {
    /// The vessel's directory (empty: a log kept nowhere, as a vessel only
    /// listed, not run).
    dir: PathBuf,
    doc: GenerationsDoc,
}

fn tail_file(dir: &Path, generation: u32) -> PathBuf {
    dir.join(format!("log-generation-{generation}.tail"))
}

impl LogHistory {
    /// The history kept in `dir`: none yet is an empty one; a damaged one
    /// is an error (the caller starts afresh).
    pub fn load(dir: &Path) -> Result<LogHistory, JournalError> {
        let path = dir.join(GENERATIONS_FILE);
        let fresh = LogHistory {
            dir: dir.to_path_buf(),
            doc: GenerationsDoc {
                version: GENERATIONS_VERSION,
                ..Default::default()
            },
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(e) => return Err(io(&path)(e)),
        };
        let len = file.metadata().map_err(io(&path))?.len();
        if len > MAX_GENERATIONS_FILE_BYTES {
            return Err(JournalError::TooLarge {
                path,
                bytes: len,
                limit: MAX_GENERATIONS_FILE_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_GENERATIONS_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        let doc: GenerationsDoc =
            protocol::cbor::decode(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
        if doc.version != GENERATIONS_VERSION || doc.rolled_back.len() > MAX_KEPT_GENERATIONS {
            return Err(corrupt(&path, "an unknown version or too many generations"));
        }
        Ok(LogHistory { dir: fresh.dir, doc })
    }

    /// A history for `dir` with nothing in it.
    pub fn empty(dir: &Path) -> LogHistory {
        LogHistory {
            dir: dir.to_path_buf(),
            doc: GenerationsDoc {
                version: GENERATIONS_VERSION,
                ..Default::default()
            },
        }
    }

    /// The current generation's number.
    pub fn current(&self) -> u32 {
        self.doc.current
    }

    /// The offset the current generation starts at.
    pub fn current_start(&self) -> u64 {
        self.doc.current_start
    }

    /// The rolled-back generations kept, oldest first.
    pub fn rolled_back(&self) -> Vec<LogGeneration> {
        self.doc.rolled_back.iter().map(|k| k.info.clone()).collect()
    }

    /// Records a rollback found under `epoch`: the log went back to
    /// `rolled_back_to` from `ended_at`; `tail` holds the newest whole
    /// records of what was rolled back, ending at `ended_at`. Writes the
    /// tail, then the list (so a listed generation's tail is on disk).
    pub fn record_rollback(
        &mut self,
        epoch: u64,
        rolled_back_to: u64,
        ended_at: u64,
        at_unix_ms: u64,
        tail: &[u8],
    ) -> Result<(), JournalError> {
        let seen = self.doc.rolled_back.last().is_some_and(|k| {
            k.epoch == epoch
                && k.info.rolled_back_to == rolled_back_to
                && k.info.ended_at == ended_at
        });
        if seen {
            return Ok(());
        }
        let generation = self.doc.current;
        let path = tail_file(&self.dir, generation);
        write_durably(&path, tail)?;
        self.doc.rolled_back.push(KeptGeneration {
            epoch,
            info: LogGeneration {
                generation,
                rolled_back_to,
                ended_at,
                at_unix_ms,
                kept_bytes: tail.len() as u64,
            },
        });
        self.doc.current = generation.saturating_add(1);
        self.doc.current_start = rolled_back_to;
        let excess = self
            .doc
            .rolled_back
            .len()
            .saturating_sub(MAX_KEPT_GENERATIONS);
        for k in self.doc.rolled_back.drain(..excess) {
            let _ = std::fs::remove_file(tail_file(&self.dir, k.info.generation));
        }
        write_durably(
            &self.dir.join(GENERATIONS_FILE),
            &protocol::cbor::encode(&self.doc),
        )
    }

    /// The rolled-back records of `generation` that are kept, and the
    /// offset of the first.
    pub fn read_tail(&self, generation: u32) -> Result<(u64, Vec<u8>), JournalError> {
        let Some(info) = self
            .doc
            .rolled_back
            .iter()
            .map(|k| &k.info)
            .find(|i| i.generation == generation)
        else {
            return Err(self.no_such(generation));
        };
        let path = tail_file(&self.dir, generation);
        let file = File::open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        if len != info.kept_bytes || len > MAX_ROLLED_BACK_KEPT_BYTES {
            return Err(corrupt(
                &path,
                format!("{len} bytes, but {} were kept", info.kept_bytes),
            ));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut bytes).map_err(io(&path))?;
        if whole_records_len(&bytes) != Ok(bytes.len()) {
            return Err(corrupt(&path, "its records are damaged"));
        }
        Ok((info.ended_at - len, bytes))
    }

    fn no_such(&self, generation: u32) -> JournalError {
        let current = self.doc.current;
        let reason = match self.doc.rolled_back.first() {
            None if current == 0 => "this log was never rolled back on this node".to_string(),
            None => format!("not kept; the current generation is {current}"),
            Some(first) => format!(
                "not kept; this node keeps generations {} to {} and the current one, {current}",
                first.info.generation,
                self.doc.rolled_back.last().map_or(0, |k| k.info.generation)
            ),
        };
        JournalError::NoSuchGeneration { generation, reason }
    }
}

/// Writes a file under a temporary name, syncs it and moves it into place:
/// a generation is recorded at most once per restart, so it can afford it.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// What a journal says about an image's log: the rolled-back records past
/// its end, if it reaches past it under the same epoch.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// Nothing was printed past the image's log (or the journal is of
    /// another epoch: the vessel arrived by a migration).
    NoRollback,
    /// The log was rolled back from `ended_at` to the image's log end;
    /// `tail` holds the newest whole records of it (bounded).
    Rollback { ended_at: u64, tail: Vec<u8> },
}

/// Compares a journal with the log of an image of `epoch` (records from
/// `start`). A journal that disagrees with the image on the bytes both
/// hold, or whose records do not break at the image's log end, is not
/// trusted (an error).
pub fn compare(
    journal: &JournalRead,
    epoch: u64,
    start: u64,
    bytes: &[u8],
) -> Result<Finding, String> {
    let end = start + bytes.len() as u64;
    if journal.epoch != epoch || journal.end() <= end {
        return Ok(Finding::NoRollback);
    }
    let overlap_from = journal.start.max(start);
    if overlap_from < end {
        let ours = &journal.bytes[(overlap_from - journal.start) as usize..][..(end - overlap_from) as usize];
        let theirs = &bytes[(overlap_from - start) as usize..];
        if ours != theirs {
            return Err("the journal disagrees with the image's log".into());
        }
    }
    let past = if journal.start >= end {
        &journal.bytes[..]
    } else {
        let at = (end - journal.start) as usize;
        if whole_records_len(&journal.bytes[..at]) != Ok(at) {
            return Err("the image's log ends inside a journal record".into());
        }
        &journal.bytes[at..]
    };
    Ok(Finding::Rollback {
        ended_at: journal.end(),
        tail: newest_records(past, MAX_ROLLED_BACK_KEPT_BYTES as usize).to_vec(),
    })
}

/// The newest whole records of `records` that fit in `limit` bytes.
fn newest_records(records: &[u8], limit: usize) -> &[u8] {
    let mut at = 0usize;
    for (_, rec) in protocol::vessel::log_records(records) {
        if records.len() - at <= limit {
            break;
        }
        at += LOG_RECORD_HEADER_BYTES + rec.len();
    }
    &records[at..]
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The log of a vessel made ready from an image (its log: `bytes` from
/// offset `start`, taken under `epoch`), in the vessel's directory `dir`:
/// a rollback that the journal shows starts a new generation, and the
/// journal restarts at the image's log end. Nothing here stops the vessel:
/// a damaged journal or history is a warning, and a journal that cannot be
/// written leaves the log without one.
pub fn restore(dir: &Path, epoch: u64, start: u64, bytes: Vec<u8>) -> VesselLog {
    let mut history = LogHistory::load(dir).unwrap_or_else(|e| {
        tracing::warn!("the log's generation list is ignored: {e}");
        LogHistory::empty(dir)
    });
    let end = start + bytes.len() as u64;
    let finding = match read_journal(dir) {
        Ok(Some(j)) => compare(&j, epoch, start, &bytes).unwrap_or_else(|reason| {
            tracing::warn!("{}: ignored: {reason}", dir.join(JOURNAL_FILE).display());
            Finding::NoRollback
        }),
        Ok(None) => Finding::NoRollback,
        Err(e) => {
            tracing::warn!("the log journal is ignored: {e}");
            Finding::NoRollback
        }
    };
    if let Finding::Rollback { ended_at, tail } = finding {
        tracing::info!(
            "{}: the log was rolled back from offset {ended_at} to {end} by the resume",
            dir.display()
        );
        if let Err(e) = history.record_rollback(epoch, end, ended_at, now_unix_ms(), &tail) {
            tracing::warn!("the rolled-back log lines cannot be kept: {e}");
        }
    }
    let journal = Journal::create(dir, epoch, end)
        .map_err(|e| tracing::warn!("the log has no journal: {e}"))
        .ok();
    VesselLog {
        start,
        bytes,
        journal,
        history,
    }
}
