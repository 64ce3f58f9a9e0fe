//! The `meshnode logs` subcommand: a vessel's log, followed across moves
//! and node restarts, with a marker where a crash rolled it back; and the
//! lines that rollbacks took back (`--generations`, `--generation N`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse, LogChunk, LogGeneration};
use protocol::vessel::log_records;

use super::cli::{out, NodeTarget};
use super::vessel_cli::Client;

#[derive(Args, Debug)]
#[command(after_help = "\
A crash of the vessel's node (kill -9, power loss) resumes the vessel from the \
newest image the node holds of it (its checkpoint), so the log is rolled back to \
that image's offset and the vessel prints again from there. Each such rollback \
starts a new log generation: `logs` shows the current one (everything up to the \
image, then what the vessel printed after it resumed). `logs -f` keeps following while the node \
restarts, and prints one line

  -- rolled back to offset N after a crash --

for each crash that rolled the log back; read as \"forget what followed \
offset N\", its output is the current log. `--generations` lists the rollbacks \
the vessel's node saw, `--generation N` prints the lines generation N printed \
that were rolled back.

When the vessel's host stops answering (unreachable or down), `logs` fails at \
once and says since when; `logs -f` prints one line on stderr saying so, waits \
for the vessel to answer again (retrying with back-off for up to 2 minutes), \
prints a line when it does and goes on, or exits with status 1 and why.")]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Keep following the log until the vessel ends: across migrations, and
    /// across restarts of its node. While the log does not answer it
    /// retries with back-off, and gives up after 2 minutes without an
    /// answer; it says so on stderr at once when the vessel's host is
    /// unreachable or down, and after 10 s otherwise (a restart).
    #[arg(short, long)]
    pub follow: bool,
    /// Print JSON lines ({"stream", "offset", "text"}; a rollback as
    /// {"rolled_back_to", "generation"}) instead of raw output.
    #[arg(long)]
    pub json: bool,
    /// List the log's generations: each crash that rolled the log back, to
    /// which offset, how many bytes, and when.
    #[arg(long, conflicts_with_all = ["follow", "generation"])]
    pub generations: bool,
    /// Print the lines of generation N that a crash rolled back (the newest
    /// part of them is kept, up to 1 MiB), instead of the current log.
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub generation: Option<u32>,
    /// Print only the last N lines of the log (stdout's and stderr's
    /// together, in the order printed); with -f, then follow it.
    #[arg(long, value_name = "N", conflicts_with_all = ["generations", "generation"])]
    pub tail: Option<usize>,
    /// Print only what the vessel printed in the last DURATION (e.g. 30s,
    /// 5m, 2h), by when its node saw it printed, to within a second. Times
    /// are kept by the node that runs the vessel since it arrived there (a
    /// move, a restart): what it printed before counts as older, and a
    /// DURATION that reaches back before that shows it all. With --tail:
    /// the last N lines of that.
    #[arg(long, value_name = "DURATION", value_parser = parse_since,
          conflicts_with_all = ["generations", "generation"])]
    pub since: Option<Duration>,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

/// How long `logs -f` keeps retrying while the vessel cannot be found (it
/// is between two nodes) or its node does not answer (it restarts).
pub const LOGS_RETRY_FOR: Duration = Duration::from_secs(120);
/// The first wait before `logs -f` tries again, doubled on each failure up
/// to [`LOGS_RETRY_MAX_WAIT`]: quick after a short hiccup, and a node that
/// restarts is asked about once a second, not hammered.
const LOGS_RETRY_FIRST_WAIT: Duration = Duration::from_millis(100);
const LOGS_RETRY_MAX_WAIT: Duration = Duration::from_secs(1);
/// A failure to reach the log that lasts this long is told on stderr: a
/// move's hand-over and a node's restart (seconds) are ridden out quietly,
/// a longer outage is not silent. A host that failure detection suspects
/// is told at once.
pub const LOGS_TELL_AFTER: Duration = Duration::from_secs(10);
/// How often `logs -f` asks for more when it has everything.
const LOGS_POLL_EVERY: Duration = Duration::from_millis(150);

fn parse_since(s: &str) -> std::result::Result<Duration, String> {
    protocol::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// `meshnode logs`.
pub fn run_logs(args: LogsArgs) -> Result<i32> {
    if args.generations {
        return list_generations(&args);
    }
    if let Some(g) = args.generation {
        return print_generation(&args, g);
    }
    print_log(&args)
}

/// A connection to the node that `logs` talks to, made again when a call
/// fails while following (the node may have restarted, on a new port).
struct Reconnecting<'a> {
    target: &'a NodeTarget,
    client: Option<Client>,
    failing_since: Option<Instant>,
    /// The failing stretch was told on stderr.
    told: bool,
    wait: Duration,
}

impl<'a> Reconnecting<'a> {
    fn new(target: &'a NodeTarget) -> Self {
        Reconnecting {
            target,
            client: None,
            failing_since: None,
            told: false,
            wait: LOGS_RETRY_FIRST_WAIT,
        }
    }

    /// One `Logs` call. With `retry`, a failure waits (with back-off) and
    /// answers None, until [`LOGS_RETRY_FOR`] without an answer.
    fn logs(&mut self, command: Command, retry: bool) -> Result<Option<LogChunk>> {
        let result = match &mut self.client {
            Some(c) => c.call(command),
            None => Client::connect(self.target).and_then(|mut c| {
                let r = c.call(command);
                self.client = Some(c);
                r
            }),
        };
        match result {
            Ok(ControlResponse::Logs(page)) => {
                if std::mem::take(&mut self.told) {
                    eprintln!(
                        "meshnode: logs -f: the log answers again (from node {})",
                        page.node
                    );
                }
                self.failing_since = None;
                self.wait = LOGS_RETRY_FIRST_WAIT;
                Ok(Some(page))
            }
            Ok(other) => bail!("unexpected answer to `logs`: {other:?}"),
            Err(e) if retry => {
                // The connection may be to a node that is gone.
                self.client = None;
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOGS_RETRY_FOR {
                    return Err(e.context(format!(
                        "logs -f gave up: the vessel's log did not answer for {} s while following",
                        LOGS_RETRY_FOR.as_secs()
                    )));
                }
                if !self.told && (host_unreachable(&e) || since.elapsed() >= LOGS_TELL_AFTER) {
                    eprintln!(
                        "meshnode: logs -f: {e:#}; waiting for the vessel to come back (retrying for up to {} s)",
                        LOGS_RETRY_FOR.as_secs()
                    );
                    self.told = true;
                }
                std::thread::sleep(self.wait);
                self.wait = (self.wait * 2).min(LOGS_RETRY_MAX_WAIT);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The node refused because the vessel's host is unreachable or down.
fn host_unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<super::client::ClientError>(),
        Some(super::client::ClientError::Refused(r))
            if r.code == protocol::refusal::RefusalCode::Unreachable
    )
}

/// What a reader has seen of the log's generations: the node that answered
/// and the generation it was at (generation numbers are per node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenGeneration {
    pub node: String,
    pub generation: u32,
}

/// Notes the generation of `page`. When it is newer than what the reader
/// saw on the same node, the log was rolled back once per generation
/// between: each is returned (the reader prints one marker per crash,
/// even for a rollback to where it had not read yet, which then takes
/// back nothing it printed), and each that went back before `from` (what
/// the reader had printed) moves `from` back to its offset; the reader
/// asks again from `from`.
pub fn rollbacks_seen(
    seen: &mut Option<SeenGeneration>,
    page: &LogChunk,
    from: &mut u64,
) -> Vec<u64> {
    let mut back_to = Vec::new();
    if let Some(s) = seen.as_ref() {
        if s.node == page.node && page.generation > s.generation {
            for g in s.generation + 1..=page.generation {
                // Generation g starts where generation g-1 was rolled back to.
                let start = if g == page.generation {
                    Some(page.generation_start)
                } else {
                    page.generations
                        .iter()
                        .find(|r| r.generation == g - 1)
                        .map(|r| r.rolled_back_to)
                };
                if let Some(start) = start {
                    *from = (*from).min(start);
                    back_to.push(start);
                }
            }
        }
    }
    *seen = Some(SeenGeneration {
        node: page.node.clone(),
        generation: page.generation,
    });
    back_to
}

/// The marker line `logs -f` prints where the log was rolled back.
pub fn rollback_marker(offset: u64) -> String {
    format!("-- rolled back to offset {offset} after a crash --")
}

/// What `logs -f` prints where a vessel whose host is gone goes back to
/// its replica's checkpoint.
pub fn failover_marker(offset: u64) -> String {
    format!("-- rolled back to offset {offset}: its host is gone; it runs again from its replica's checkpoint --")
}

/// The current log, once or (`-f`) until the vessel ends.
fn print_log(args: &LogsArgs) -> Result<i32> {
    let mut conn = Reconnecting::new(&args.target);
    let mut from = 0u64;
    let mut seen = None;
    let mut told_as_of: Option<String> = None;
    let since = args.since.map(super::logs_tail::since_unix_ms);
    if let Some(lines) = args.tail {
        from = print_tail(&mut conn, args, lines, since)?;
        if !args.follow {
            return Ok(0);
        }
    }
    loop {
        let command = Command::Logs {
            vessel: args.vessel.clone(),
            from,
            generation: None,
            since_unix_ms: since,
        };
        let Some(page) = conn.logs(command, args.follow)? else {
            continue;
        };
        if let Some(as_of) = &page.as_of {
            // Once per replica: a follower polls it until the vessel runs
            // again.
            if told_as_of.as_ref() != Some(&page.node) {
                eprintln!("meshnode: {as_of}");
                told_as_of = Some(page.node.clone());
            }
        }
        if page.as_of.is_some() && page.next < from && page.records.is_empty() {
            // The replica's checkpoint ends before what was printed: the
            // vessel runs again from there (a takeover or a recovery), so
            // what followed it is rolled back, as after a crash.
            if args.json {
                out(serde_json::json!({ "rolled_back_to": page.next, "failover": true }))?;
            } else {
                out(failover_marker(page.next))?;
            }
            from = page.next;
            continue;
        }
        let back_to = rollbacks_seen(&mut seen, &page, &mut from);
        if !back_to.is_empty() {
            for offset in back_to {
                if args.json {
                    out(serde_json::json!({
                        "rolled_back_to": offset,
                        "generation": page.generation,
                    }))?;
                } else {
                    out(rollback_marker(offset))?;
                }
            }
            // This page went on from where the reader was, not from where
            // the log went back to.
            continue;
        }
        if page.start > from {
            eprintln!(
                "meshnode: {} bytes of log were dropped (the log keeps its last {} bytes)",
                page.start - from,
                protocol::limits::MAX_LOG_BYTES
            );
        }
        if !print_records(&page, args.json)? {
            return Ok(0);
        }
        let progressed = page.next > from;
        from = page.next;
        if page.ended.is_some() && !progressed {
            return Ok(0);
        }
        if !progressed {
            if !args.follow {
                return Ok(0);
            }
            std::thread::sleep(LOGS_POLL_EVERY);
        }
    }
}

/// Prints a page's records: stdout's to stdout, stderr's to stderr, or as
/// JSON lines. False: stdout was closed (`| head`), stop quietly.
fn print_records(page: &LogChunk, json: bool) -> Result<bool> {
    let mut offset = page.from;
    for (stream, bytes) in log_records(&page.records) {
        if !print_record(stream, bytes, offset, json)? {
            return Ok(false);
        }
        offset += (protocol::vessel::LOG_RECORD_HEADER_BYTES + bytes.len()) as u64;
    }
    Ok(true)
}

/// Prints one record (see [`print_records`]).
fn print_record(stream: u8, bytes: &[u8], offset: u64, json: bool) -> Result<bool> {
    if json {
        out(serde_json::json!({
            "stream": if stream == 2 { "stderr" } else { "stdout" },
            "offset": offset,
            "text": String::from_utf8_lossy(bytes),
        }))?;
    } else if stream == 2 {
        let _ = std::io::stderr().lock().write_all(bytes);
    } else {
        let mut o = std::io::stdout().lock();
        if let Err(e) = o.write_all(bytes).and_then(|_| o.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(false);
            }
            return Err(e.into());
        }
    }
    Ok(true)
}

/// `logs --tail N`: reads the current log (from `--since`) to its end and
/// prints its last N lines; answers the offset to follow on from.
fn print_tail(
    conn: &mut Reconnecting,
    args: &LogsArgs,
    lines: usize,
    since: Option<u64>,
) -> Result<u64> {
    use super::logs_tail::{tail_lines, TailRecord, MAX_TAIL_READ_BYTES};
    let mut records: Vec<TailRecord> = Vec::new();
    let mut from = 0u64;
    loop {
        let command = Command::Logs {
            vessel: args.vessel.clone(),
            from,
            generation: None,
            since_unix_ms: since,
        };
        let page = conn.logs(command, false)?.expect("no retry");
        let mut offset = page.from;
        for (stream, bytes) in log_records(&page.records) {
            records.push(TailRecord {
                stream,
                bytes: bytes.to_vec(),
                offset,
            });
            offset += (protocol::vessel::LOG_RECORD_HEADER_BYTES + bytes.len()) as u64;
        }
        let read: u64 = records.iter().map(|r| r.bytes.len() as u64).sum();
        if page.next <= from || read > MAX_TAIL_READ_BYTES {
            break;
        }
        from = page.next;
    }
    for r in tail_lines(&records, lines) {
        if !print_record(r.stream, &r.bytes, r.offset, args.json)? {
            break;
        }
    }
    Ok(from)
}

/// `logs --generation N`: the rolled-back lines of generation N.
fn print_generation(args: &LogsArgs, generation: u32) -> Result<i32> {
    let mut conn = Reconnecting::new(&args.target);
    let mut from = 0u64;
    loop {
        let command = Command::Logs {
            vessel: args.vessel.clone(),
            from,
            generation: Some(generation),
            since_unix_ms: None,
        };
        let page = conn.logs(command, false)?.expect("no retry");
        if page.generation != generation {
            bail!(
                "node {} answered with generation {} of the log: it is older than log generations and keeps no rolled-back lines",
                page.node,
                page.generation
            );
        }
        if !print_records(&page, args.json)? || page.next <= from {
            return Ok(0);
        }
        from = page.next;
    }
}

/// `logs --generations`: the rollbacks the vessel's node saw.
fn list_generations(args: &LogsArgs) -> Result<i32> {
    let mut conn = Reconnecting::new(&args.target);
    // From past the end: the answer's records are empty, its list is all
    // that is wanted.
    let command = Command::Logs {
        vessel: args.vessel.clone(),
        from: u64::MAX,
        generation: None,
        since_unix_ms: None,
    };
    let page = conn.logs(command, false)?.expect("no retry");
    if args.json {
        out(serde_json::json!({
            "node": page.node,
            "current": page.generation,
            "current_start": page.generation_start,
            "rolled_back": page.generations.iter().map(generation_json).collect::<Vec<_>>(),
        }))?;
        return Ok(0);
    }
    if page.generations.is_empty() {
        out(format_args!(
            "generation {} (current): the log was not rolled back on node {}",
            page.generation, page.node
        ))?;
        return Ok(0);
    }
    out(format_args!(
        "{:<10} {:>14} {:>17} {:>10}  WHEN (UTC)",
        "GENERATION", "ROLLED BACK TO", "BYTES ROLLED BACK", "BYTES KEPT"
    ))?;
    for g in &page.generations {
        out(format_args!(
            "{:<10} {:>14} {:>17} {:>10}  {}",
            g.generation,
            g.rolled_back_to,
            g.rolled_back_bytes(),
            g.kept_bytes,
            utc_time(g.at_unix_ms)
        ))?;
    }
    out(format_args!(
        "{:<10} current, from offset {} (node {})",
        page.generation, page.generation_start, page.node
    ))?;
    Ok(0)
}

fn generation_json(g: &LogGeneration) -> serde_json::Value {
    serde_json::json!({
        "generation": g.generation,
        "rolled_back_to": g.rolled_back_to,
        "ended_at": g.ended_at,
        "rolled_back_bytes": g.rolled_back_bytes(),
        "kept_bytes": g.kept_bytes,
        "at_unix_ms": g.at_unix_ms,
    })
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from Unix milliseconds.
fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(node: &str, generation: u32, start: u64, rolled: &[(u32, u64)]) -> LogChunk {
        LogChunk {
            start: 0,
            from: 0,
            next: 0,
            records: Vec::new(),
            ended: None,
            node: node.into(),
            generation,
            generation_start: start,
            generations: rolled
                .iter()
                .map(|&(generation, rolled_back_to)| LogGeneration {
                    generation,
                    rolled_back_to,
                    ended_at: rolled_back_to + 100,
                    at_unix_ms: 0,
                    kept_bytes: 100,
                })
                .collect(),
            as_of: None,
        }
    }

    #[test]
    fn a_newer_generation_below_what_was_printed_is_one_marker() {
        let mut seen = None;
        let mut from = 500;
        assert!(rollbacks_seen(&mut seen, &page("a", 0, 0, &[]), &mut from).is_empty());
        let p = page("a", 1, 300, &[(0, 300)]);
        assert_eq!(rollbacks_seen(&mut seen, &p, &mut from), vec![300]);
        assert_eq!(from, 300);
        // The same generation again: nothing more.
        assert!(rollbacks_seen(&mut seen, &p, &mut from).is_empty());
        assert_eq!(from, 300);
    }

    #[test]
    fn each_rollback_missed_while_away_is_a_marker_and_moves_the_reader_back_if_past_it() {
        let mut seen = None;
        let mut from = 900;
        rollbacks_seen(&mut seen, &page("a", 0, 0, &[]), &mut from);
        // Away during two crashes: back to 700, then (after printing more)
        // back to 400.
        let p = page("a", 2, 400, &[(0, 700), (1, 400)]);
        assert_eq!(rollbacks_seen(&mut seen, &p, &mut from), vec![700, 400]);
        assert_eq!(from, 400);
        // A rollback beyond what was printed took nothing the reader saw:
        // still one marker per crash, and the reader stays where it is.
        let mut from = 350;
        let mut seen = Some(SeenGeneration {
            node: "a".into(),
            generation: 0,
        });
        assert_eq!(rollbacks_seen(&mut seen, &p, &mut from), vec![700, 400]);
        assert_eq!(from, 350);
    }

    #[test]
    fn another_node_or_an_older_node_is_no_rollback() {
        // Generation numbers are per node: a move to a node with another
        // history, or back, is not a rollback.
        let mut seen = None;
        let mut from = 900;
        rollbacks_seen(&mut seen, &page("a", 3, 100, &[]), &mut from);
        assert!(rollbacks_seen(&mut seen, &page("b", 0, 0, &[]), &mut from).is_empty());
        assert!(rollbacks_seen(&mut seen, &page("a", 3, 100, &[]), &mut from).is_empty());
        assert_eq!(from, 900);
    }

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
        assert_eq!(utc_time(1_796_601_600_000), "2026-12-07 00:00:00");
    }
}
