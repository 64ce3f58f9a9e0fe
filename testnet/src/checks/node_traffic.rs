//! `node-traffic`: at the end, no node's traffic (bytes in + out through
//! the router, per second) over a window exceeded a budget. The issue's
//! gate for background traffic is 4 KB/s per node at 100 nodes.

use std::time::Duration;

use super::{window_words, Check, Judge, Kind, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::traffic::kb_words;
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "node-traffic",
        fields: &["window", "max_kb_per_s"],
    },
    parse,
};

/// The largest budget: 1 GB/s per node is no budget at all.
const MAX_BUDGET_KB_PER_S: f64 = 1_000_000.0;

#[derive(Debug, Clone)]
pub struct NodeTrafficCheck {
    pub window: (Duration, Duration),
    /// KB (1000 bytes) per second, in + out.
    pub max_kb_per_s: f64,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let field = t.field("max_kb_per_s");
    let max = *t.ck.need(
        &field,
        &t.opt_f64("max_kb_per_s")?,
        "the budget per node, KB/s in + out",
    )?;
    Ok(Box::new(NodeTrafficCheck {
        window: t.window("window")?,
        max_kb_per_s: t.ck.range(&field, max, 0.0, MAX_BUDGET_KB_PER_S)?,
    }))
}

impl Check for NodeTrafficCheck {
    fn describe(&self, _names: &Names) -> String {
        format!(
            "every node's traffic in {} ≤ {} KB/s (in + out)",
            window_words(&self.window),
            self.max_kb_per_s
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn reads_until(&self) -> Duration {
        self.window.1
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for NodeTrafficCheck {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let Some(r) = view.traffic_rates(self.window) else {
            return (false, "no traffic snapshots in the window".into());
        };
        let Some((node, max)) = r.max() else {
            return (false, "no nodes".into());
        };
        let over = r
            .nodes
            .iter()
            .filter(|n| n.total() > self.max_kb_per_s * 1000.0)
            .count();
        let worst = &r.nodes[node];
        let detail = format!(
            "max {} ({}: in {}, out {}), mean {} over {} nodes, {:.1}–{:.1}s; {over} over {} KB/s",
            kb_words(max),
            view.node_name(node),
            kb_words(worst.in_bytes_per_s),
            kb_words(worst.out_bytes_per_s),
            kb_words(r.mean()),
            r.nodes.len(),
            r.from_s,
            r.to_s,
            self.max_kb_per_s
        );
        (over == 0, detail)
    }
}
