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
//! log.journal      "MNLOGJ1\n" · epoch u64 · start offset u64 · journal id u64
//!                  (little-endian) · records
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
/// Magic, epoch, start offset, journal id.
pub const JOURNAL_HEADER_BYTES: usize = 8 + 8 + 8 + 8;
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
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
    #[error("{path}: not a log journal this node wrote ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("generation {generation}: {reason}")]
    NoSuchGeneration { generation: u32, reason: String },
}

impl JournalError {
    /// How a reader asking for this is refused: a generation that is not
    /// kept is the reader's mistake, a damaged file is the node's.
    pub fn refusal_code(&self) -> protocol::refusal::RefusalCode {
        use protocol::refusal::RefusalCode;
        match self {
            JournalError::NoSuchGeneration { .. } => RefusalCode::BadArgument,
            _ => RefusalCode::Internal,
        }
    }
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
    /// Random, per journal (its rotated parts share it): the same journal
    /// found twice is one rollback, not two.
    id: u64,
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
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| io(dir)(std::io::Error::other(e.to_string())))?;
        let id = u64::from_le_bytes(id);
        let file = new_journal_file(dir, epoch, start, id)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            epoch,
            id,
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
        self.file = new_journal_file(&self.dir, self.epoch, self.start, self.id)?;
        Ok(())
    }
}

/// Writes a journal file with its header under a temporary name and moves
/// it into place, so a reader never sees a file without its header.
fn new_journal_file(dir: &Path, epoch: u64, start: u64, id: u64) -> Result<File, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let tmp = dir.join(format!("{JOURNAL_FILE}.tmp"));
    let mut header = Vec::with_capacity(JOURNAL_HEADER_BYTES);
    header.extend_from_slice(&JOURNAL_MAGIC);
    header.extend_from_slice(&epoch.to_le_bytes());
    header.extend_from_slice(&start.to_le_bytes());
    header.extend_from_slice(&id.to_le_bytes());
    std::fs::write(&tmp, &header).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&tmp))?;
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io(&path))
}

/// A journal as read back: contiguous records from `start`.
#[derive(Debug, PartialEq, Eq)]
pub struct JournalRead {
    pub epoch: u64,
    pub id: u64,
    pub start: u64,
    pub bytes: Vec<u8>,
}

impl JournalRead {
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Reads one journal file of `epoch` (None: there is none, or it is of
/// another epoch, whose records are not read: an arrival reads 32 bytes in
/// its migration's pause). Its size is checked before anything is
/// allocated, its header must be this node's, and a torn last record (a
/// crash in the middle of a write) is cut off.
fn read_journal_file(path: &Path, epoch: u64) -> Result<Option<JournalRead>, JournalError> {
    let mut file = match File::open(path) {
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
    let mut header = [0u8; JOURNAL_HEADER_BYTES];
    if len < JOURNAL_HEADER_BYTES as u64 {
        return Err(corrupt(path, "no journal header"));
    }
    file.read_exact(&mut header).map_err(io(path))?;
    if header[..8] != JOURNAL_MAGIC {
        return Err(corrupt(path, "no journal header"));
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (written_epoch, start, id) = (word(8), word(16), word(24));
    if written_epoch != epoch {
        return Ok(None);
    }
    let mut records = Vec::with_capacity((len - JOURNAL_HEADER_BYTES as u64) as usize);
    file.take(MAX_JOURNAL_FILE_BYTES)
        .read_to_end(&mut records)
        .map_err(io(path))?;
    let whole = whole_records_len(&records).map_err(|r| corrupt(path, r))?;
    records.truncate(whole);
    if start.checked_add(records.len() as u64).is_none() {
        return Err(corrupt(path, "its offsets overflow"));
    }
    Ok(Some(JournalRead {
        epoch,
        id,
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

/// Reads the journal in `dir` written under `epoch` (None: there is none
/// of that epoch), with its rotated part in front when the two join up.
pub fn read_journal(dir: &Path, epoch: u64) -> Result<Option<JournalRead>, JournalError> {
    let Some(current) = read_journal_file(&dir.join(JOURNAL_FILE), epoch)? else {
        return Ok(None);
    };
    // A rotated part that does not join (torn by a power cut, or of another
    // run) is left out: the current part alone is still true.
    match read_journal_file(&dir.join(JOURNAL_OLD_FILE), epoch) {
        Ok(Some(mut old)) if old.id == current.id && old.end() == current.start => {
            old.bytes.extend_from_slice(&current.bytes);
            Ok(Some(old))
        }
        _ => Ok(Some(current)),
    }
}

/// One rolled-back generation as kept on disk: with the journal it was
/// found in, so that finding the same journal twice (a crash between
/// writing the list and restarting the journal) records it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeptGeneration {
    journal_id: u64,
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
        Ok(LogHistory {
            dir: fresh.dir,
            doc,
        })
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
        self.doc
            .rolled_back
            .iter()
            .map(|k| k.info.clone())
            .collect()
    }

    /// Records a rollback found in journal `journal_id`: the log went back to
    /// `rolled_back_to` from `ended_at`; `tail` holds the newest whole
    /// records of what was rolled back, ending at `ended_at`. Writes the
    /// tail, then the list (so a listed generation's tail is on disk).
    pub fn record_rollback(
        &mut self,
        journal_id: u64,
        rolled_back_to: u64,
        ended_at: u64,
        at_unix_ms: u64,
        tail: &[u8],
    ) -> Result<(), JournalError> {
        let seen = self
            .doc
            .rolled_back
            .iter()
            .any(|k| k.journal_id == journal_id);
        if seen {
            return Ok(());
        }
        let generation = self.doc.current;
        let path = tail_file(&self.dir, generation);
        write_durably(&path, tail)?;
        self.doc.rolled_back.push(KeptGeneration {
            journal_id,
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
    Rollback {
        journal_id: u64,
        ended_at: u64,
        tail: Vec<u8>,
    },
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
        let ours = &journal.bytes[(overlap_from - journal.start) as usize..]
            [..(end - overlap_from) as usize];
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
        journal_id: journal.id,
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
    let finding = match read_journal(dir, epoch) {
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
    if let Finding::Rollback {
        journal_id,
        ended_at,
        tail,
    } = finding
    {
        tracing::info!(
            "{}: the log was rolled back from offset {ended_at} to {end} by the resume",
            dir.display()
        );
        if let Err(e) = history.record_rollback(journal_id, end, ended_at, now_unix_ms(), &tail) {
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
        released_end: None,
        times: Default::default(),
    }
}

/// The log of a vessel that is only listed (it left or ended here, and a
/// restart remembers it): with the generations kept in `dir`, so that
/// `logs --generations` still shows them, and no journal (nothing prints).
pub fn listed(dir: &Path, start: u64, bytes: Vec<u8>) -> VesselLog {
    let history = match LogHistory::load(dir) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("the log's generation list is ignored: {e}");
            LogHistory::empty(dir)
        }
    };
    VesselLog {
        start,
        bytes,
        journal: None,
        history,
        released_end: None,
        times: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::vessel::{log_append, log_records};

    fn lines(log: &mut VesselLog, from: u32, to: u32) {
        for n in from..to {
            log.append(1, format!("line {n}\n").as_bytes());
        }
    }

    fn texts(records: &[u8]) -> Vec<String> {
        log_records(records)
            .into_iter()
            .map(|(_, r)| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// The image's log of a vessel that printed lines `0..n` (as a
    /// checkpoint would hold it).
    fn image_log(n: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..n {
            log_append(&mut bytes, 1, format!("line {i}\n").as_bytes());
        }
        bytes
    }

    /// A restart from the arrival image (log empty) after the vessel
    /// printed: a rollback to offset 0, whose lines are kept as generation
    /// 0; the next restart from a checkpoint rolls back only what followed
    /// it; both survive further restarts.
    #[test]
    fn a_resume_behind_the_journal_is_a_new_generation_that_keeps_what_was_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 7, 0, Vec::new());
        assert_eq!(log.history.current(), 0);
        lines(&mut log, 0, 5);
        let printed_end = log.end();
        drop(log); // kill -9: the journal's writes are in the page cache

        let mut log = restore(dir.path(), 7, 0, Vec::new());
        assert_eq!(log.history.current(), 1);
        assert_eq!(log.history.current_start(), 0);
        let g = &log.history.rolled_back()[0];
        assert_eq!(
            (g.generation, g.rolled_back_to, g.ended_at),
            (0, 0, printed_end)
        );
        assert_eq!(g.rolled_back_bytes(), printed_end);
        let page = log.page_of(0, Some(0)).unwrap();
        assert_eq!(page.generation, 0);
        assert_eq!(texts(&page.records)[4], "line 4\n");
        assert_eq!(log_records(&page.records).len(), 5);

        // It re-executes and prints further; a checkpoint holds lines 0..3,
        // and the node dies after line 8.
        lines(&mut log, 0, 9);
        drop(log);
        let checkpoint = image_log(3);
        let end = checkpoint.len() as u64;
        let log = restore(dir.path(), 7, 0, checkpoint);
        assert_eq!(log.history.current(), 2);
        assert_eq!(log.history.current_start(), end);
        let page = log.page_of(0, Some(1)).unwrap();
        assert_eq!(page.from, end);
        assert_eq!(
            texts(&page.records),
            ["line 3\n", "line 4\n", "line 5\n", "line 6\n", "line 7\n", "line 8\n"]
        );
        // The current generation is the log itself.
        assert_eq!(log.page_of(0, Some(2)).unwrap().records, log.bytes);
        drop(log);

        // Listed after a restart (it ended here): the generations are there.
        let listed = listed(dir.path(), 0, Vec::new());
        assert_eq!(listed.history.rolled_back().len(), 2);
        assert!(listed.journal.is_none());

        // A clean restart from an image that has everything: no rollback,
        // and the history is still there.
        let all = image_log(3);
        let log = restore(dir.path(), 7, 0, all);
        assert_eq!(log.history.current(), 2);
        assert_eq!(log.history.rolled_back().len(), 2);
    }

    /// An image of another epoch (a migration's arrival, or a vessel that
    /// came back) is not a rollback, however far the journal reached; the
    /// journal then restarts at the image's log end, under the new epoch.
    #[test]
    fn an_arrival_is_not_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 1, 0, Vec::new());
        lines(&mut log, 0, 4);
        drop(log);
        let log = restore(dir.path(), 2, 0, image_log(2));
        assert_eq!(log.history.current(), 0);
        assert!(log.history.rolled_back().is_empty());
        assert_eq!(read_journal(dir.path(), 1).unwrap(), None);
        let j = read_journal(dir.path(), 2).unwrap().unwrap();
        assert_eq!((j.epoch, j.start, j.bytes.len()), (2, log.end(), 0));
        let err = log.page_of(0, Some(1)).err().unwrap();
        assert!(err.to_string().contains("never rolled back"), "{err}");
    }

    /// A journal torn in its last record (a crash inside a write) keeps its
    /// whole records; one with a bad header, impossible records or more
    /// bytes than a node writes is refused with a reason (and `restore`
    /// goes on without it), never a panic.
    #[test]
    fn a_torn_or_corrupt_journal_is_cut_or_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 3, 0, Vec::new());
        lines(&mut log, 0, 3);
        drop(log);
        let path = dir.path().join(JOURNAL_FILE);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 2]).unwrap();
        let j = read_journal(dir.path(), 3).unwrap().unwrap();
        assert_eq!(texts(&j.bytes), ["line 0\n", "line 1\n"]);

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"MNLOGJ1".to_vec(), "no journal header"),
            (
                [b"XXXXXXXX".as_slice(), &whole[8..]].concat(),
                "no journal header",
            ),
            (
                [&whole[..JOURNAL_HEADER_BYTES], &[9, 1, 0, 0, 0, b'x'][..]].concat(),
                "stream 9",
            ),
            (
                [
                    &whole[..JOURNAL_HEADER_BYTES],
                    &[1, 0xff, 0xff, 0xff, 0xff][..],
                ]
                .concat(),
                "bytes at byte 0",
            ),
        ];
        for (bytes, reason) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = read_journal(dir.path(), 3).unwrap_err();
            assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(reason), "{err}");
            let log = restore(dir.path(), 3, 0, Vec::new());
            assert_eq!(log.history.current(), 0, "{reason}");
            // The journal was replaced by a good one.
            assert!(read_journal(dir.path(), 3).unwrap().is_some());
        }
        // Too large to be ours: refused before it is read.
        let f = File::create(&path).unwrap();
        f.set_len(MAX_JOURNAL_FILE_BYTES + 1).unwrap();
        assert!(matches!(
            read_journal(dir.path(), 3),
            Err(JournalError::TooLarge { .. })
        ));
        assert_eq!(restore(dir.path(), 3, 0, Vec::new()).history.current(), 0);
    }

    /// A journal that does not agree with the image on the bytes both
    /// hold is not evidence of a rollback.
    #[test]
    fn a_journal_that_disagrees_with_the_image_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 3, 0, Vec::new());
        lines(&mut log, 0, 4);
        drop(log);
        let mut other = Vec::new();
        log_append(&mut other, 1, b"LINE 0\n");
        let log = restore(dir.path(), 3, 0, other);
        assert_eq!(log.history.current(), 0);
        // An image log that ends inside a journal record.
        let mut log = restore(dir.path(), 3, 0, Vec::new());
        lines(&mut log, 0, 4);
        drop(log);
        let j = read_journal(dir.path(), 3).unwrap().unwrap();
        assert!(compare(&j, 3, 0, &j.bytes[..3]).is_err());
    }

    /// The journal rotates before a file passes its bound, and the two
    /// parts read back as one; the kept tail of a large rollback is its
    /// newest whole records, within the bound, while the count of bytes
    /// rolled back is the whole.
    #[test]
    fn the_journal_and_the_kept_tail_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 1, 0, Vec::new());
        let line = vec![b'y'; 64 * 1024 - 1];
        let count = (ROTATE_AT_BYTES / line.len() as u64) * 3 / 2;
        for _ in 0..count {
            log.append(1, &line);
        }
        let end = log.end();
        drop(log);
        for f in [JOURNAL_FILE, JOURNAL_OLD_FILE] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(
                len <= JOURNAL_HEADER_BYTES as u64 + ROTATE_AT_BYTES,
                "{f}: {len}"
            );
        }
        let j = read_journal(dir.path(), 1).unwrap().unwrap();
        assert_eq!((j.start, j.end()), (0, end));
        let log = restore(dir.path(), 1, 0, Vec::new());
        let g = &log.history.rolled_back()[0];
        assert_eq!(g.rolled_back_bytes(), end);
        assert!(g.kept_bytes <= MAX_ROLLED_BACK_KEPT_BYTES && g.kept_bytes > 0);
        let (tail_start, tail) = log.history.read_tail(0).unwrap();
        assert_eq!(tail_start + tail.len() as u64, end);
        assert_eq!(whole_records_len(&tail), Ok(tail.len()));
    }

    /// Many crashes keep the newest generations only, and their files; a
    /// damaged list or tail is reported, not trusted.
    #[test]
    fn old_generations_are_dropped_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..MAX_KEPT_GENERATIONS + 2 {
            let mut log = restore(dir.path(), 1, 0, Vec::new());
            lines(&mut log, 0, 1);
        }
        let log = restore(dir.path(), 1, 0, Vec::new());
        let kept = log.history.rolled_back();
        assert_eq!(kept.len(), MAX_KEPT_GENERATIONS);
        assert_eq!(log.history.current(), MAX_KEPT_GENERATIONS as u32 + 2);
        assert_eq!(kept[0].generation, 2);
        assert!(!tail_file(dir.path(), 1).exists());
        assert!(tail_file(dir.path(), 2).exists());
        assert!(log.page_of(0, Some(1)).is_err());

        // A tail cut short.
        std::fs::write(tail_file(dir.path(), 2), b"\x01\x09\0\0\0li").unwrap();
        let err = log.page_of(0, Some(2)).err().unwrap();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");

        // A list that is not CBOR: a warning, and the log starts afresh.
        std::fs::write(dir.path().join(GENERATIONS_FILE), b"garbage").unwrap();
        assert!(LogHistory::load(dir.path()).is_err());
        assert_eq!(restore(dir.path(), 1, 0, Vec::new()).history.current(), 0);
    }

    /// A crash between writing the list and restarting the journal finds
    /// the same journal again: it is recorded once. The same crash twice
    /// (same offsets, another journal) is two rollbacks.
    #[test]
    fn the_same_journal_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = restore(dir.path(), 4, 0, Vec::new());
        lines(&mut log, 0, 2);
        drop(log);
        let kept: Vec<_> = [JOURNAL_FILE, JOURNAL_OLD_FILE]
            .map(|f| std::fs::read(dir.path().join(f)).ok())
            .into();
        let log = restore(dir.path(), 4, 0, Vec::new());
        assert_eq!(log.history.current(), 1);
        drop(log);
        for (f, bytes) in [JOURNAL_FILE, JOURNAL_OLD_FILE].iter().zip(kept) {
            if let Some(b) = bytes {
                std::fs::write(dir.path().join(f), b).unwrap();
            }
        }
        let mut log = restore(dir.path(), 4, 0, Vec::new());
        assert_eq!(log.history.current(), 1);
        lines(&mut log, 0, 2);
        drop(log);
        let log = restore(dir.path(), 4, 0, Vec::new());
        assert_eq!(log.history.current(), 2);
        assert_eq!(LogHistory::load(dir.path()).unwrap(), log.history);
    }
}
