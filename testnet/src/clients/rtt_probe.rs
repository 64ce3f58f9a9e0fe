//! `rtt-probe`: `meshnode peers --json` in the node's namespace every
//! interval; the smoothed RTT to each peer becomes the series `rtt a→b`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{ClientSpec, Kind, Load};
use crate::fields::{KindFields, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "rtt-probe",
        fields: &[],
    },
    parse,
};

#[derive(Debug)]
pub struct RttProbe;

fn parse(_: &Table) -> Result<Box<dyn Load>, ScenarioError> {
    Ok(Box::new(RttProbe))
}

impl Load for RttProbe {
    fn kind(&self) -> &'static str {
        KIND.fields.name
    }

    fn counts_requests(&self) -> bool {
        false
    }

    fn run(&self, view: &dyn View, spec: &ClientSpec, client: usize, t0: Instant) {
        let mut next = spec.start;
        while view.sleep_until(t0, next) {
            next += spec.interval;
            let at = view.client(client).node.load(Ordering::SeqCst);
            if !view.node_up(at) {
                continue;
            }
            let Ok(rows) = view.peers(at) else {
                continue;
            };
            let from = view.node_name(at);
            for r in rows {
                if let (Some(p), Some(rtt)) = (r["peer_id"].as_str(), r["rtt_ms"].as_f64()) {
                    if let Some(to) = view.name_of(p) {
                        view.rec().sample(format!("rtt {from}→{to}"), rtt);
                    }
                }
            }
        }
    }
}
