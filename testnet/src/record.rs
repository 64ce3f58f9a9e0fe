//! What a run records: progress lines, samples (series of values over time)
//! and marks (events, migrations, client failures, verdicts), all timed
//! from t = 0, the moment the mesh was up.

use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since t = 0.
    pub t: f64,
    pub series: String,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Event,
    Migration,
    ClientError,
    Pass,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Mark {
    pub t: f64,
    pub kind: MarkKind,
    pub label: String,
}

pub struct Recorder {
    start: Instant,
    t0: OnceLock<Instant>,
    samples: Mutex<Vec<Sample>>,
    marks: Mutex<Vec<Mark>>,
    log: Mutex<Option<File>>,
    quiet: bool,
}

impl Recorder {
    pub fn new(quiet: bool) -> Recorder {
        Recorder {
            start: Instant::now(),
            t0: OnceLock::new(),
            samples: Mutex::new(Vec::new()),
            marks: Mutex::new(Vec::new()),
            log: Mutex::new(None),
            quiet,
        }
    }

    /// Progress lines also go to this file.
    pub fn log_to(&self, f: File) {
        *self.log.lock().unwrap() = Some(f);
    }

    /// t = 0 is now.
    pub fn set_t0(&self) -> Instant {
        *self.t0.get_or_init(Instant::now)
    }

    pub fn t0(&self) -> Option<Instant> {
        self.t0.get().copied()
    }

    /// Seconds since t = 0 (negative before it).
    pub fn t(&self) -> f64 {
        match self.t0.get() {
            Some(t0) => t0.elapsed().as_secs_f64(),
            None => -1.0,
        }
    }

    /// Seconds since testnet started.
    pub fn since_start(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// One progress line, stamped with t (or with the setup time before t = 0).
    pub fn say(&self, msg: impl AsRef<str>) {
        let stamp = match self.t0.get() {
            Some(t0) => format!("[{:>7.2}s]", t0.elapsed().as_secs_f64()),
            None => format!("[setup {:>5.1}s]", self.since_start()),
        };
        let line = format!("{stamp} {}", msg.as_ref());
        if !self.quiet {
            println!("{line}");
        }
        if let Some(f) = self.log.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    pub fn sample(&self, series: impl Into<String>, value: f64) {
        if self.t0.get().is_none() {
            return;
        }
        let t = self.t();
        self.samples.lock().unwrap().push(Sample {
            t,
            series: series.into(),
            value,
        });
    }

    pub fn mark(&self, kind: MarkKind, label: impl Into<String>) {
        let t = self.t().max(0.0);
        self.marks.lock().unwrap().push(Mark {
            t,
            kind,
            label: label.into(),
        });
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    pub fn marks(&self) -> Vec<Mark> {
        let mut m = self.marks.lock().unwrap().clone();
        m.sort_by(|a, b| a.t.total_cmp(&b.t));
        m
    }

    /// The latest value of a series.
    pub fn latest(&self, series: &str) -> Option<f64> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.series == series)
            .map(|s| s.value)
    }
}

/// The median of some values (None when there are none).
pub fn median(v: &mut [f64]) -> Option<f64> {
    percentile(v, 0.5)
}

/// The p-quantile (nearest rank) of some values.
pub fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}
