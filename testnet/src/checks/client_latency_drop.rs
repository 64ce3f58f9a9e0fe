//! `client-latency-drop`: at the end, the client's median latency in
//! `before` is at least `factor` times its median in `after` (placement
//! brought the service nearer).

use std::time::Duration;

use super::{latencies_in, window_words, Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::record::median;
use crate::view::View;

/// The default factor.
const DEFAULT_FACTOR: f64 = 5.0;
/// The largest factor a scenario may ask for.
const MAX_FACTOR: f64 = 1e6;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "client-latency-drop",
        fields: &["client", "before", "after", "factor"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct ClientLatencyDrop {
    pub client: usize,
    pub before: (Duration, Duration),
    pub after: (Duration, Duration),
    pub factor: f64,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    Ok(Box::new(ClientLatencyDrop {
        client: t.client("client", "the client's name")?,
        before: t.window("before")?,
        after: t.window("after")?,
        factor: t.f64_in("factor", DEFAULT_FACTOR, 1.0, MAX_FACTOR)?,
    }))
}

impl Check for ClientLatencyDrop {
    fn describe(&self, names: &Names) -> String {
        format!(
            "client {} median latency falls ≥{}× from {} to {}",
            names.clients[self.client],
            self.factor,
            window_words(&self.before),
            window_words(&self.after)
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Client(self.client))
    }

    fn reads_until(&self) -> Duration {
        self.before.1.max(self.after.1)
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for ClientLatencyDrop {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let stats = view.client(self.client).stats.lock().unwrap();
        let mut b = latencies_in(&stats, &self.before);
        let mut a = latencies_in(&stats, &self.after);
        drop(stats);
        let (Some(mb), Some(ma)) = (median(&mut b), median(&mut a)) else {
            return (false, "no answered request in one of the windows".into());
        };
        let ratio = mb / ma.max(1e-6);
        (
            ratio >= self.factor,
            format!("median {mb:.2} ms before, {ma:.2} ms after: {ratio:.1}×"),
        )
    }
}
