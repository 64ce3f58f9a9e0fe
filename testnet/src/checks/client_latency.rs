//! `client-latency`: at the end, the client's median latency over a window
//! is the expected value within a tolerance (relative) or a slack
//! (absolute), whichever is wider.

use std::time::Duration;

use super::{latencies_in, slack_ms, tolerance, window_words, Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table, MAX_LATENCY_MS};
use crate::record::median;
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "client-latency",
        fields: &["client", "window", "expect_ms", "tolerance", "slack_ms"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct ClientLatency {
    pub client: usize,
    pub window: (Duration, Duration),
    pub expect_ms: f64,
    pub tolerance: f64,
    pub slack_ms: f64,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let field = t.field("expect_ms");
    let expect_ms = *t.ck.need(
        &field,
        &t.opt_f64("expect_ms")?,
        "the expected median in ms",
    )?;
    let expect_ms = t.ck.range(&field, expect_ms, 0.0, 100.0 * MAX_LATENCY_MS)?;
    Ok(Box::new(ClientLatency {
        client: t.client("client", "the client's name")?,
        window: t.window("window")?,
        expect_ms,
        tolerance: tolerance(t)?,
        slack_ms: slack_ms(t)?,
    }))
}

impl Check for ClientLatency {
    fn describe(&self, names: &Names) -> String {
        format!(
            "client {} median latency in {} ≈ {} ms (±{:.0}% or {} ms)",
            names.clients[self.client],
            window_words(&self.window),
            self.expect_ms,
            self.tolerance * 100.0,
            self.slack_ms
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Client(self.client))
    }

    fn reads_until(&self) -> Duration {
        self.window.1
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for ClientLatency {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let mut v = latencies_in(
            &view.client(self.client).stats.lock().unwrap(),
            &self.window,
        );
        let n = v.len();
        let Some(m) = median(&mut v) else {
            return (false, "no answered request in the window".into());
        };
        let expect = self.expect_ms;
        let margin = (self.tolerance * expect).max(self.slack_ms);
        (
            (m - expect).abs() <= margin,
            format!("median {m:.2} ms over {n} requests, expected {expect} ± {margin:.2} ms"),
        )
    }
}
