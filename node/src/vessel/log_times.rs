//! When a vessel's log records were printed, coarsely, for `logs --since`.
//!
//! The log's records carry no time (their format travels in images and is
//! read by older nodes), so the node that runs a vessel keeps, beside the
//! log, a mark per [`LOG_TIME_MARK_EVERY_MS`]: the offset of the first
//! record printed in that stretch and when (Unix ms, this node's clock).
//! The marks stay on the node: after a move, or a restart that resumes
//! the vessel, times are known from then on, and what was printed before
//! counts as older than the first mark (`--since` reaching back before it
//! shows it all). A `--since` is answered to within one mark's stretch:
//! a few lines printed up to a second before it may be shown too.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far apart two marks are at least: `--since`'s resolution.
pub const LOG_TIME_MARK_EVERY_MS: u64 = 1_000;

/// How many marks a log keeps (16 bytes each): a day of a vessel that
/// prints every second. When full, every other mark is dropped, so an
/// older stretch is kept at a coarser resolution rather than forgotten.
pub const MAX_LOG_TIME_MARKS: usize = 86_400 / 16;

/// The marks of one log.
#[derive(Debug, Default, Clone)]
pub struct LogTimes {
    /// (offset of a record, when it was printed), both increasing.
    marks: VecDeque<(u64, u64)>,
    /// When the last record was printed (Unix ms).
    last_ms: Option<u64>,
}

/// Now, in Unix milliseconds (0 for a clock before 1970).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LogTimes {
    /// Notes a record printed at `offset` at `at_ms`.
    pub fn note(&mut self, offset: u64, at_ms: u64) {
        self.last_ms = Some(at_ms);
        if let Some(&(_, last)) = self.marks.back() {
            if at_ms < last + LOG_TIME_MARK_EVERY_MS {
                return;
            }
        }
        if self.marks.len() >= MAX_LOG_TIME_MARKS {
            let kept: VecDeque<(u64, u64)> = self.marks.iter().copied().step_by(2).collect();
            self.marks = kept;
        }
        self.marks.push_back((offset, at_ms));
    }

    /// The offset from which a reader sees every record printed at or after
    /// `since_ms` (and at most one mark's stretch before it). `start` and
    /// `end` are the log's kept range.
    pub fn offset_since(&self, since_ms: u64, start: u64, end: u64) -> u64 {
        if self.last_ms.is_some_and(|last| since_ms > last) {
            return end;
        }
        let at = self
            .marks
            .iter()
            .rev()
            .find(|(_, at)| *at <= since_ms)
            .map_or(start, |(offset, _)| *offset);
        at.clamp(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_finds_the_stretch_that_holds_it() {
        let mut t = LogTimes::default();
        // Records of 10 bytes: at 1.0 s, 1.5 s, 2.2 s, 5.0 s, 5.1 s.
        for (i, ms) in [1_000, 1_500, 2_200, 5_000, 5_100].into_iter().enumerate() {
            t.note(i as u64 * 10, ms);
        }
        // Marks at 1.0 s (offset 0), 2.2 s (20), 5.0 s (30).
        assert_eq!(t.offset_since(0, 0, 50), 0, "before every mark: all of it");
        assert_eq!(t.offset_since(2_200, 0, 50), 20);
        assert_eq!(
            t.offset_since(3_000, 0, 50),
            20,
            "within a stretch: its start"
        );
        assert_eq!(t.offset_since(5_050, 0, 50), 30);
        assert_eq!(
            t.offset_since(5_101, 0, 50),
            50,
            "after the last record: none"
        );
        // What the log's bound dropped is not asked for.
        assert_eq!(t.offset_since(0, 25, 50), 25);
    }

    #[test]
    fn a_full_set_of_marks_thins_out_and_stays_ordered() {
        let mut t = LogTimes::default();
        for i in 0..(MAX_LOG_TIME_MARKS as u64 * 3) {
            t.note(i, i * LOG_TIME_MARK_EVERY_MS);
        }
        assert!(t.marks.len() <= MAX_LOG_TIME_MARKS);
        assert!(t
            .marks
            .iter()
            .zip(t.marks.iter().skip(1))
            .all(|(a, b)| a < b));
        let last = MAX_LOG_TIME_MARKS as u64 * 3 - 1;
        assert_eq!(t.offset_since(last * 1000, 0, last + 1), last);
    }
}
