//! `converged`: every node's `meshnode peers --json` lists every other node
//! as a member whose state is up, within `within` of the cold start (the
//! moment the first node was started). Decided at the end; it records when
//! that first held for each node, and so for the whole mesh.
//!
//! The setup's wait for the mesh notes each node's first time already; from
//! t = 0 a thread asks the nodes that have not converged yet, at most
//! CONVERGE_PARALLEL `peers` calls at a time, in rounds at least
//! CONVERGE_ROUND apart: at 100 nodes a round is up to 100 short CLI
//! processes, 8 at a time, never 100 at once. The time a node is credited with is when its answer came, so the
//! figure is late by at most one round.

use std::time::{Duration, Instant};

use super::{Check, Judge, Kind, Timing};
use crate::fields::{secs, KindFields, Names, ScenarioError, Table};
use crate::view::{up_member_row, View};

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "converged",
        fields: &["within"],
    },
    parse,
};

/// The shortest time between the starts of two rounds of `peers` calls.
pub const CONVERGE_ROUND: Duration = Duration::from_secs(1);
/// `peers` calls at once. A loaded node takes seconds to answer (10 s at
/// 40 debug nodes on two cores) while its CLI process sits idle, so a few
/// at a time keep a round short without adding load; never one per node.
pub const CONVERGE_PARALLEL: usize = 8;

#[derive(Debug, Clone)]
pub struct Converged {
    /// The bound after the cold start.
    pub within: Duration,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let within = t.opt_dur("within")?;
    let within = *t.ck.need(
        &t.field("within"),
        &within,
        "the bound after the cold start",
    )?;
    Ok(Box::new(Converged { within }))
}

impl Check for Converged {
    fn describe(&self, _names: &Names) -> String {
        format!(
            "every node lists every other as an up member within {} of the cold start",
            secs(self.within)
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    /// The run lasts at least the bound (counted from t = 0, which is
    /// after the cold start: a little longer than needed).
    fn reads_until(&self) -> Duration {
        self.within
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(ConvergedJudge {
            within: self.within,
            seen: std::sync::Mutex::new(Vec::new()),
            rounds: std::sync::Mutex::new(Vec::new()),
        })
    }
}

pub struct ConvergedJudge {
    within: Duration,
    /// Per node, when it first held (seconds since the cold start).
    seen: std::sync::Mutex<Vec<Option<f64>>>,
    /// How long each round of `peers` calls took (s), for the detail.
    rounds: std::sync::Mutex<Vec<f64>>,
}

/// Whether node `i`'s `peers` lists every other node as an up member.
fn holds(view: &dyn View, i: usize) -> bool {
    let Ok(rows) = view.peers(i) else {
        return false;
    };
    (0..view.node_count()).filter(|j| *j != i).all(|j| {
        let id = view.node_peer_id(j).unwrap_or_default();
        rows.iter()
            .any(|r| r["peer_id"] == id.as_str() && up_member_row(r))
    })
}

impl Judge for ConvergedJudge {
    fn samples(&self) -> bool {
        true
    }

    fn sample(&self, view: &dyn View, t0: Instant) {
        let n = view.node_count();
        let mut seen = view.converged();
        seen.resize(n, None);
        *self.seen.lock().unwrap() = seen.clone();
        while seen.iter().any(Option::is_none) {
            let round = t0.elapsed();
            let todo: Vec<usize> = (0..n)
                .filter(|&i| seen[i].is_none() && view.node_up(i))
                .collect();
            for batch in todo.chunks(CONVERGE_PARALLEL) {
                let done: Vec<(usize, Option<f64>)> = std::thread::scope(|s| {
                    let calls: Vec<_> = batch
                        .iter()
                        .map(|&i| {
                            s.spawn(move || (i, holds(view, i).then(|| view.since_cold_start())))
                        })
                        .collect();
                    calls.into_iter().filter_map(|c| c.join().ok()).collect()
                });
                for (i, t) in done {
                    seen[i] = seen[i].or(t);
                }
                if view.stopping() {
                    break;
                }
            }
            *self.seen.lock().unwrap() = seen.clone();
            let took = t0.elapsed() - round;
            self.rounds.lock().unwrap().push(took.as_secs_f64());
            if !view.sleep_until(t0, round + took.max(CONVERGE_ROUND)) {
                return;
            }
        }
    }

    fn judge(&self, view: &dyn View) -> (bool, String) {
        let seen = self.seen.lock().unwrap().clone();
        let rounds = self.rounds.lock().unwrap().clone();
        let poll = match rounds.iter().copied().reduce(f64::max) {
            Some(slowest) => format!(
                "; after t = 0 {} rounds of `peers` on the nodes not yet converged, {} calls at a time, ≥ {} apart (slowest {slowest:.1}s)",
                rounds.len(),
                CONVERGE_PARALLEL,
                secs(CONVERGE_ROUND)
            ),
            None => String::new(),
        };
        let missing: Vec<&str> = (0..seen.len())
            .filter(|i| seen[*i].is_none())
            .map(|i| view.node_name(i))
            .collect();
        if seen.is_empty() || !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(10).copied().collect();
            return (
                false,
                format!(
                    "{} of {} nodes never listed every other as an up member ({}{}){poll}",
                    missing.len(),
                    seen.len(),
                    shown.join(", "),
                    if missing.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            );
        }
        let (last, at) = seen
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.unwrap_or_default()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        let first = seen.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        let ok = at <= self.within.as_secs_f64();
        (
            ok,
            format!(
                "converged {at:.1}s after the cold start (first node {first:.1}s, last {}){poll}",
                view.node_name(last)
            ),
        )
    }
}
