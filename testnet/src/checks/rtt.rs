//! `rtt`: a node's smoothed RTT to a peer, as `meshnode peers --json`
//! reports it, is the expected value (default: twice the link's latency at
//! the time of the check) within a tolerance (relative) or a slack
//! (absolute), whichever is wider. Windowed.
//!
//! `estimated_rtt`: the same, of the RTT the two nodes' network coordinates
//! estimate (`estimated_rtt_ms`, issue 19): how far Vivaldi is from the
//! configured matrix on real nodes.

use super::{slack_ms, tolerance, Check, Judge, Kind, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table, MAX_LATENCY_MS};
use crate::view::{sees_row, View};

const FIELDS: &[&str] = &[
    "at",
    "within",
    "from",
    "to",
    "expect_ms",
    "tolerance",
    "slack_ms",
];

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "rtt",
        fields: FIELDS,
    },
    parse: parse_measured,
};

pub const ESTIMATED_KIND: Kind = Kind {
    fields: KindFields {
        name: "estimated_rtt",
        fields: FIELDS,
    },
    parse: parse_estimated,
};

#[derive(Debug, Clone)]
pub struct Rtt {
    pub from: usize,
    pub to: usize,
    pub expect_ms: Option<f64>,
    pub tolerance: f64,
    pub slack_ms: f64,
    /// The coordinates' estimate (`estimated_rtt`), not the measured RTT.
    pub estimated: bool,
}

fn parse_measured(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    parse(t, false)
}

fn parse_estimated(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    parse(t, true)
}

fn parse(t: &Table, estimated: bool) -> Result<Box<dyn Check>, ScenarioError> {
    let from = t.node("from", "the measuring node")?;
    let to = t.node("to", "the measured peer")?;
    if from == to {
        return Err(t.err("to", "an RTT is between two different nodes"));
    }
    let expect_ms = t
        .opt_f64("expect_ms")?
        .map(|v| {
            t.ck.range(&t.field("expect_ms"), v, 0.0, 2.0 * MAX_LATENCY_MS)
        })
        .transpose()?;
    Ok(Box::new(Rtt {
        from,
        to,
        expect_ms,
        tolerance: tolerance(t)?,
        slack_ms: slack_ms(t)?,
        estimated,
    }))
}

impl Check for Rtt {
    fn describe(&self, names: &Names) -> String {
        let e = match self.expect_ms {
            Some(e) => format!("{e} ms"),
            None => "2×latency".into(),
        };
        format!(
            "{}({},{}) ≈ {e} (±{:.0}% or {} ms)",
            self.column(),
            names.nodes[self.from],
            names.nodes[self.to],
            self.tolerance * 100.0,
            self.slack_ms
        )
    }

    fn timing(&self) -> Timing {
        Timing::Window
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Rtt {
    /// The kind's name, and what `peers --json` calls the value.
    fn column(&self) -> &'static str {
        match self.estimated {
            true => "estimated_rtt",
            false => "rtt",
        }
    }
}

impl Judge for Rtt {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let name = view.node_name(self.from);
        if !view.node_up(self.from) {
            return (false, format!("{name} is not running"));
        }
        let expect = self
            .expect_ms
            .unwrap_or_else(|| 2.0 * view.link_latency_ms(self.from, self.to));
        let id = view.node_peer_id(self.to).unwrap_or_default();
        let rows = match view.peers(self.from) {
            Ok(rows) => rows,
            Err(e) => return (false, e),
        };
        // Only a peer seen now counts: after a partition a node still lists
        // the last smoothed RTT of a connection that carries nothing.
        let rtt = rows
            .iter()
            .find(|r| r["peer_id"] == id.as_str())
            .filter(|r| sees_row(r, view.stale_ms()))
            .and_then(|r| r[format!("{}_ms", self.column())].as_f64());
        let Some(rtt) = rtt else {
            return (
                false,
                format!(
                    "{name} does not see {} (no {}, or no fresh status)",
                    view.node_name(self.to),
                    match self.estimated {
                        true => "settled estimate",
                        false => "RTT",
                    }
                ),
            );
        };
        let margin = (self.tolerance * expect).max(self.slack_ms);
        // An estimate also says how far off it is: the figure is
        // that relative error.
        let what = match self.estimated {
            true => format!(
                "estimated {rtt:.2} ms ({:+.0}%)",
                100.0 * (rtt - expect) / expect.max(f64::MIN_POSITIVE)
            ),
            false => format!("measured {rtt:.2} ms"),
        };
        (
            (rtt - expect).abs() <= margin,
            format!("{what}, expected {expect:.2} ± {margin:.2} ms"),
        )
    }
}
