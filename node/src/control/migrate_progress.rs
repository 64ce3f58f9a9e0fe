//! `meshnode migrate`'s progress while the move runs: a bar in a terminal
//! (`indicatif`), plain lines otherwise (a log, a pipe, CI), both from the
//! source's report, which counts each step's chunks as they go: the bar's
//! length is what the destination lacked at the current step (a pre-copy
//! round, or the final send with the vessel paused), its position what has
//! been sent of it. Rounds are counted as the result counts them.

use indicatif::{ProgressBar, ProgressStyle};
use protocol::control::{MigrationPhase, MigrationReport};

/// How the progress is shown.
pub enum Progress {
    Bar(ProgressBar),
    /// Plain lines: one each time the line changes.
    Lines {
        last: String,
    },
}

/// The bar's layout: the step, a bar of its chunks, and the totals.
const BAR_TEMPLATE: &str = "{msg:40} [{bar:30}] {pos}/{len} chunks";

impl Progress {
    /// A bar when stderr is a terminal, else plain lines.
    pub fn new() -> Progress {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
                bar.set_style(style.progress_chars("=> "));
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                last: String::new(),
            }
        }
    }

    /// Shows `report`.
    pub fn show(&mut self, report: &MigrationReport) {
        match self {
            Progress::Bar(bar) => {
                bar.set_length(report.step_chunks);
                bar.set_position(report.step_chunks_sent.min(report.step_chunks));
                bar.set_message(step(report));
            }
            Progress::Lines { last } => {
                let line = line(report);
                if line != *last {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    /// Takes the bar off the terminal once the move is over.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// What the move is doing now, with the totals so far.
pub fn step(r: &MigrationReport) -> String {
    let what = match r.phase {
        // `rounds` counts the rounds done: the one under way is the next.
        MigrationPhase::Warming => format!("pre-copy round {}", r.rounds + 1),
        MigrationPhase::Final => "paused: final send".to_string(),
        MigrationPhase::Committed => "committed: starting there".to_string(),
        other => other.to_string(),
    };
    format!("{what}, {:.1} MiB sent", mib(r.bytes_sent))
}

/// One plain progress line.
pub fn line(r: &MigrationReport) -> String {
    format!(
        "{}: {} of {} chunks of this step sent",
        step(r),
        r.step_chunks_sent.min(r.step_chunks),
        r.step_chunks
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::vessel::VesselId;

    fn report(phase: MigrationPhase, rounds: u32, sent: u64, of: u64) -> MigrationReport {
        MigrationReport {
            vessel: VesselId([1; 8]),
            from: "a".into(),
            to: "b".into(),
            phase,
            rounds,
            bytes_sent: 3 << 20,
            chunks_sent: 48,
            chunks_skipped: 0,
            final_chunks_sent: 0,
            downtime_us: None,
            total_ms: 0,
            error: None,
            step_chunks: of,
            step_chunks_sent: sent,
        }
    }

    #[test]
    fn lines_count_the_round_under_way_and_the_steps_chunks() {
        let r = report(MigrationPhase::Warming, 0, 16, 64);
        assert_eq!(
            line(&r),
            "pre-copy round 1, 3.0 MiB sent: 16 of 64 chunks of this step sent"
        );
        let r = report(MigrationPhase::Final, 3, 2, 2);
        assert!(line(&r).starts_with("paused: final send, 3.0 MiB sent"));
    }
}
