//! `client-failover`: a kv client connected while its vessel's host died
//! or was cut off from the majority of its voters (issue 15, the default
//! async durability), from `at`. Decided at the end, over what
//! the client recorded:
//! - it was never left hanging: no request waited out its whole timeout
//!   (a reset or a closed connection is what it must see instead);
//! - it was answered again within `within` of `at` (the kill);
//! - every write it lost was made within `lost_within` before `at`: the
//!   replica resumed from a checkpoint at most that old;
//! - it read back every key after the failover (at least a full round of
//!   GETs answered after `at + within`), so a lost write older than that
//!   could not have gone unseen.

use std::time::Duration;

use super::{Check, Judge, Kind, Subject, Timing};
use crate::clients::kv::KV_KEYS;
use crate::fields::{secs, KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "client-failover",
        fields: &["client", "at", "within", "lost_within"],
    },
    parse,
};

/// Answers after the failover needed to have read back every key: a GET
/// reads the write made `KV_KEYS − 1` SETs before, and GETs alternate with
/// SETs, so two rounds of keys is one full round of GETs.
const ANSWERS_TO_SEE_EVERY_KEY: u64 = 2 * KV_KEYS;

#[derive(Debug, Clone)]
pub struct ClientFailover {
    pub client: usize,
    pub at: Duration,
    pub within: Duration,
    pub lost_within: Duration,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let need = |key: &str, why: &str| {
        t.opt_dur(key)?
            .ok_or_else(|| t.err(key, format!("missing ({why})")))
    };
    Ok(Box::new(ClientFailover {
        client: t.client("client", "the client's name")?,
        at: need("at", "when the host dies")?,
        within: need("within", "how soon the client must be answered again")?,
        lost_within: need(
            "lost_within",
            "how old a lost write may be: one checkpoint interval and its shipping",
        )?,
    }))
}

impl Check for ClientFailover {
    fn describe(&self, names: &Names) -> String {
        format!(
            "client {} across the failover from {}: reset, never hung; answered again within {}; writes lost only from the last {} before it",
            names.clients[self.client],
            secs(self.at),
            secs(self.within),
            secs(self.lost_within)
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Client(self.client))
    }

    fn reads_until(&self) -> Duration {
        self.at + self.within
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

/// What the client's record says about one failover.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub timeouts: u64,
    /// The first answer after `at`, in seconds after it.
    pub back_after_s: Option<f64>,
    /// Answers after `at + within`.
    pub answers_after: u64,
    /// Lost writes, and the oldest one's age at `at` (s; negative: made
    /// after the kill).
    pub lost: usize,
    pub oldest_lost_s: Option<f64>,
}

impl ClientFailover {
    pub fn seen(&self, stats: &crate::view::ClientStats) -> Seen {
        let at = self.at.as_secs_f64();
        let settled = at + self.within.as_secs_f64();
        let back_after_s = stats
            .latencies
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t > at)
            .map(|t| t - at);
        let oldest = stats
            .lost_writes_at
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
        Seen {
            timeouts: stats.timeouts,
            back_after_s,
            answers_after: stats.latencies.iter().filter(|(t, _)| *t > settled).count() as u64,
            lost: stats.lost_writes_at.len(),
            oldest_lost_s: oldest.map(|t| at - t),
        }
    }

    /// (holds, why not) for what was seen.
    pub fn verdict(&self, s: &Seen) -> (bool, Option<String>) {
        let why = if s.timeouts > 0 {
            Some(format!("{} requests hung to their timeout", s.timeouts))
        } else if s.back_after_s.is_none_or(|b| b > self.within.as_secs_f64()) {
            Some(format!("not answered again within {}", secs(self.within)))
        } else if s.answers_after < ANSWERS_TO_SEE_EVERY_KEY {
            Some(format!(
                "{} answers after the failover, {ANSWERS_TO_SEE_EVERY_KEY} needed to read back every key",
                s.answers_after
            ))
        } else if s
            .oldest_lost_s
            .is_some_and(|age| age > self.lost_within.as_secs_f64())
        {
            Some(format!(
                "a write made {:.2}s before the kill was lost (at most {} allowed)",
                s.oldest_lost_s.unwrap_or_default(),
                secs(self.lost_within)
            ))
        } else {
            None
        };
        (why.is_none(), why)
    }
}

impl Judge for ClientFailover {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let stats = view.client(self.client).stats.lock().unwrap();
        let s = self.seen(&stats);
        let (ok, why) = self.verdict(&s);
        let back = s.back_after_s.map_or("never".to_string(), |b| {
            format!("{b:.2}s after {}", secs(self.at))
        });
        let oldest = s.oldest_lost_s.map_or(String::new(), |a| {
            format!(", the oldest made {a:.2}s before {}", secs(self.at))
        });
        let detail = format!(
            "{} resets, {} hung; answered again {back}; {} answers after; {} lost writes{oldest}",
            stats.resets, s.timeouts, s.answers_after, s.lost
        );
        match why {
            Some(why) => (ok, format!("{why}: {detail}")),
            None => (ok, detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ClientStats;

    fn check() -> ClientFailover {
        ClientFailover {
            client: 0,
            at: Duration::from_secs(20),
            within: Duration::from_secs(5),
            lost_within: Duration::from_millis(1500),
        }
    }

    fn stats(answers: &[f64], lost: &[f64], timeouts: u64) -> ClientStats {
        ClientStats {
            latencies: answers.iter().map(|t| (*t, 1.0)).collect(),
            lost_writes_at: lost.to_vec(),
            timeouts,
            ..ClientStats::default()
        }
    }

    fn after(from: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| from + 0.1 * i as f64).collect()
    }

    #[test]
    fn a_failover_that_resets_and_loses_only_recent_writes_holds() {
        let c = check();
        let answers = [vec![19.0], after(22.0, 100)].concat();
        let (ok, why) = c.verdict(&c.seen(&stats(&answers, &[19.2, 19.9], 0)));
        assert!(ok, "{why:?}");
    }

    #[test]
    fn a_hang_an_old_lost_write_a_late_answer_or_too_few_reads_fail() {
        let c = check();
        let good = [vec![19.0], after(22.0, 100)].concat();
        let hung = c.verdict(&c.seen(&stats(&good, &[], 1)));
        assert!(hung.1.unwrap().contains("hung"));
        let old = c.verdict(&c.seen(&stats(&good, &[17.0], 0)));
        assert!(old.1.unwrap().contains("3.00s before the kill"));
        let late = c.verdict(&c.seen(&stats(&after(26.0, 100), &[], 0)));
        assert!(late.1.unwrap().contains("not answered again"));
        let few = c.verdict(&c.seen(&stats(&after(22.0, 40), &[], 0)));
        assert!(few.1.unwrap().contains("needed to read back every key"));
    }
}
