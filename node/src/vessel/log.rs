//! A vessel's log: stdout and stderr as one ordered stream of framed records
//! (`protocol::vessel::log_append`), addressed by absolute offset.
//!
//! The offset of a byte never changes: the log travels with the vessel, and
//! a node that resumes an older image truncates its log to that image's
//! offset, so a reader that asks "from N" sees every record once. Such a
//! rollback after a crash starts a new log *generation* (see
//! [`super::journal`]), which readers are told, so that `logs -f` can say
//! where it went back to.

use protocol::control::LogChunk;
use protocol::limits::{MAX_LOG_BYTES, MAX_LOG_PAGE_BYTES};
use protocol::vessel::{log_records, LOG_RECORD_HEADER_BYTES};

use super::journal::{Journal, JournalError, LogHistory};

#[derive(Debug, Default)]
pub struct VesselLog {
    /// Absolute offset of `bytes[0]`.
    pub start: u64,
    /// Whole records only.
    pub bytes: Vec<u8>,
    /// Where every record is also appended as it is printed (None: a log
    /// that is only listed, or whose journal could not be written).
    pub journal: Option<Journal>,
    /// The generations this log went through on this node.
    pub history: LogHistory,
    /// A `--durability sync` vessel's log is shown to readers only up to
    /// the end an acknowledged checkpoint holds
    /// (`dock::services::released`); `None`: all of it (async).
    pub released_end: Option<u64>,
    /// When its records were printed, coarsely (`logs --since`); kept on
    /// this node only.
    pub times: super::log_times::LogTimes,
}

/// A page of records.
pub struct Page {
    pub start: u64,
    pub from: u64,
    pub next: u64,
    pub records: Vec<u8>,
    /// The generation the records are of.
    pub generation: u32,
}

impl VesselLog {
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Appends a record, dropping the oldest records past [`MAX_LOG_BYTES`].
    pub fn append(&mut self, stream: u8, data: &[u8]) {
        // One write of more than the whole bound keeps its tail.
        let keep = (MAX_LOG_BYTES as usize).saturating_sub(LOG_RECORD_HEADER_BYTES);
        let data = if data.len() > keep {
            &data[data.len() - keep..]
        } else {
            data
        };
        let at = self.bytes.len();
        self.times
            .note(self.start + at as u64, super::log_times::now_unix_ms());
        protocol::vessel::log_append(&mut self.bytes, stream, data);
        if let Some(journal) = &mut self.journal {
            if let Err(e) = journal.append(&self.bytes[at..]) {
                // The log goes on without it: a later rollback is then
                // not noticed, which is what happened before journals.
                tracing::warn!("the log journal stops: {e}");
                self.journal = None;
            }
        }
        if self.bytes.len() as u64 > MAX_LOG_BYTES {
            let mut cut = 0usize;
            for (_, rec) in log_records(&self.bytes) {
                if (self.bytes.len() - cut) as u64 <= MAX_LOG_BYTES {
                    break;
                }
                cut += LOG_RECORD_HEADER_BYTES + rec.len();
            }
            self.bytes.drain(..cut);
            self.start += cut as u64;
        }
    }

    /// The end a reader may see: all of it, or for a sync vessel what an
    /// acknowledged checkpoint holds (a released end is always a record
    /// boundary: a checkpoint notes the log's end between records).
    pub fn visible_end(&self) -> u64 {
        match self.released_end {
            Some(released) => released.clamp(self.start, self.end()),
            None => self.end(),
        }
    }

    /// Whole records from `from` (clamped to what is kept and released),
    /// at most [`MAX_LOG_PAGE_BYTES`] (at least one record).
    pub fn page(&self, from: u64) -> Page {
        let visible = self.visible_end();
        let from = from.clamp(self.start, self.end());
        if from >= visible {
            // Nothing released past it yet: an empty page where the reader
            // stands (never an older offset: it would print records twice).
            return Page {
                start: self.start,
                from,
                next: from,
                records: Vec::new(),
                generation: self.history.current(),
            };
        }
        let shown = &self.bytes[..(visible - self.start) as usize];
        let mut at = (from - self.start) as usize;
        // A reader's offset is always a record boundary it was given; one
        // that is not (a hostile or confused client) restarts at the next
        // boundary rather than reading a torn record.
        let mut boundary = 0usize;
        for (_, rec) in log_records(shown) {
            if boundary >= at {
                break;
            }
            boundary += LOG_RECORD_HEADER_BYTES + rec.len();
        }
        at = boundary;
        let mut end = at;
        for (_, rec) in log_records(&shown[at..]) {
            let len = LOG_RECORD_HEADER_BYTES + rec.len();
            if end > at && end - at + len > MAX_LOG_PAGE_BYTES {
                break;
            }
            end += len;
        }
        Page {
            start: self.start,
            from: self.start + at as u64,
            next: self.start + end as u64,
            records: shown[at..end].to_vec(),
            generation: self.history.current(),
        }
    }

    /// A page of the current log (`generation` None or the current one),
    /// or of the rolled-back records kept of an older generation.
    pub fn page_of(&self, from: u64, generation: Option<u32>) -> Result<Page, JournalError> {
        match generation {
            None => Ok(self.page(from)),
            Some(g) if g == self.history.current() => Ok(self.page(from)),
            Some(g) => {
                let (start, bytes) = self.history.read_tail(g)?;
                let tail = VesselLog {
                    start,
                    bytes,
                    ..Default::default()
                };
                Ok(Page {
                    generation: g,
                    ..tail.page(from)
                })
            }
        }
    }

    /// The control protocol's answer for `page` of this log.
    pub fn chunk(&self, page: Page, ended: Option<String>, node: String) -> LogChunk {
        LogChunk {
            start: page.start,
            from: page.from,
            next: page.next,
            records: page.records,
            ended,
            node,
            generation: page.generation,
            generation_start: self.history.current_start(),
            generations: self.history.rolled_back(),
            as_of: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_whole_records_from_absolute_offsets() {
        let mut log = VesselLog::default();
        log.append(1, b"one\n");
        log.append(2, b"two\n");
        let p = log.page(0);
        assert_eq!(log_records(&p.records).len(), 2);
        let first = LOG_RECORD_HEADER_BYTES as u64 + 4;
        let p = log.page(first);
        assert_eq!(log_records(&p.records), vec![(2, &b"two\n"[..])]);
        assert_eq!(p.next, log.end());
        // Mid-record offsets move to the next boundary.
        let p = log.page(2);
        assert_eq!(p.from, first);
    }

    #[test]
    fn a_sync_vessels_reader_sees_only_what_a_checkpoint_holds() {
        let mut log = VesselLog::default();
        log.append(1, b"one\n");
        let first = log.end();
        log.append(1, b"two\n");
        log.released_end = Some(first);
        let p = log.page(0);
        assert_eq!(log_records(&p.records), vec![(1, &b"one\n"[..])]);
        assert_eq!(p.next, first);
        // A reader at the released end waits there, with no records.
        let p = log.page(first);
        assert!(p.records.is_empty());
        assert_eq!(p.next, first);
        log.released_end = None;
        assert_eq!(log.page(first).next, log.end());
    }

    #[test]
    fn the_bound_drops_the_oldest_records_and_keeps_offsets() {
        let mut log = VesselLog::default();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..(MAX_LOG_BYTES / (1024 * 1024) + 3) {
            log.append(1, &line);
        }
        assert!(log.bytes.len() as u64 <= MAX_LOG_BYTES);
        assert!(log.start > 0);
        assert_eq!(log.start % (line.len() as u64 + 5), 0);
    }
}
