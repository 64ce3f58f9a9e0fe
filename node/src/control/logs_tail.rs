//! `logs --tail N` and `logs --since DURATION`: what the log prints first.
//!
//! `--since` is the node's to answer (it keeps when records were printed,
//! `vessel::log_times`); `--tail` is the CLI's: it reads the log (from
//! `--since`, if given) up to its end and prints the last N lines of it,
//! stdout's and stderr's together, in the order they were printed.

use std::time::Duration;

/// One record of a log read: its stream (1 stdout, 2 stderr), bytes and
/// offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRecord {
    pub stream: u8,
    pub bytes: Vec<u8>,
    pub offset: u64,
}

/// The most a `--tail` holds while it reads to the end: the log's own
/// bound, which it cannot exceed.
pub const MAX_TAIL_READ_BYTES: u64 = protocol::limits::MAX_LOG_BYTES;

/// `--since DURATION` as Unix ms by this machine's clock (the nodes' may
/// differ by their skew).
pub fn since_unix_ms(ago: Duration) -> u64 {
    crate::vessel::log_times::now_unix_ms().saturating_sub(ago.as_millis() as u64)
}

/// The last `lines` lines of `records` (a last line without its newline
/// counts), cutting the first record kept at a line start.
pub fn tail_lines(records: &[TailRecord], lines: usize) -> Vec<TailRecord> {
    if lines == 0 {
        return Vec::new();
    }
    let total: usize = records.iter().map(|r| r.bytes.len()).sum();
    // Walk back over every byte but a final newline, counting newlines:
    // the line after the `lines`th one from the end starts the tail.
    let mut seen = 0usize;
    let mut pos = total; // global position just past the byte looked at
    let mut cut = 0usize;
    'outer: for r in records.iter().rev() {
        for &b in r.bytes.iter().rev() {
            pos -= 1;
            if pos == total - 1 && b == b'\n' {
                continue;
            }
            if b == b'\n' {
                seen += 1;
                if seen == lines {
                    cut = pos + 1;
                    break 'outer;
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for r in records {
        let end = at + r.bytes.len();
        if end > cut {
            let skip = cut.saturating_sub(at);
            out.push(TailRecord {
                stream: r.stream,
                bytes: r.bytes[skip..].to_vec(),
                offset: r.offset,
            });
        }
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: u8, text: &str, offset: u64) -> TailRecord {
        TailRecord {
            stream,
            bytes: text.as_bytes().to_vec(),
            offset,
        }
    }

    fn text(records: &[TailRecord]) -> String {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.bytes).into_owned())
            .collect()
    }

    #[test]
    fn the_tail_is_the_last_lines_across_records_and_streams() {
        let log = [
            rec(1, "one\ntwo\n", 0),
            rec(2, "err three\n", 13),
            rec(1, "four\nfive\n", 28),
        ];
        assert_eq!(text(&tail_lines(&log, 2)), "four\nfive\n");
        assert_eq!(text(&tail_lines(&log, 3)), "err three\nfour\nfive\n");
        let t = tail_lines(&log, 4);
        assert_eq!(text(&t), "two\nerr three\nfour\nfive\n");
        assert_eq!((t[0].stream, t[1].stream), (1, 2), "streams kept");
        assert_eq!(
            text(&tail_lines(&log, 99)),
            "one\ntwo\nerr three\nfour\nfive\n"
        );
        assert!(tail_lines(&log, 0).is_empty());
    }

    #[test]
    fn a_last_line_without_its_newline_counts() {
        let log = [rec(1, "a\nb\npartial", 0)];
        assert_eq!(text(&tail_lines(&log, 1)), "partial");
        assert_eq!(text(&tail_lines(&log, 2)), "b\npartial");
        assert!(tail_lines(&[], 3).is_empty());
    }
}
