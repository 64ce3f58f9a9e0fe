//! `vessel-on`: the vessel is running on one of the named nodes, as
//! `meshnode ps --json` through a node that is up says (or through the node
//! `through` names: on a side of a partition, what that side sees).
//! Windowed.

use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "vessel-on",
        fields: &["at", "within", "vessel", "nodes", "through"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct VesselOn {
    pub vessel: usize,
    pub nodes: Vec<usize>,
    pub through: Option<usize>,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let vessel = t.vessel("vessel", "the vessel's name")?;
    let nodes = t.nodes("nodes", "the nodes it may run on")?;
    let through = match t.opt_str("through")? {
        Some(n) => Some(t.ck.node(&t.field("through"), &n)?),
        None => None,
    };
    Ok(Box::new(VesselOn {
        vessel,
        nodes,
        through,
    }))
}

impl Check for VesselOn {
    fn describe(&self, names: &Names) -> String {
        let on: Vec<&str> = self
            .nodes
            .iter()
            .map(|i| names.nodes[*i].as_str())
            .collect();
        let through = self
            .through
            .map(|n| format!(", as {} sees it", names.nodes[n]))
            .unwrap_or_default();
        format!(
            "vessel {} runs on {}{through}",
            names.vessels[self.vessel],
            on.join(" or ")
        )
    }

    fn timing(&self) -> Timing {
        Timing::Window
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Vessel(self.vessel))
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for VesselOn {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let name = view.vessel_name(self.vessel);
        let rows = match view.ps(self.through) {
            Ok(rows) => rows,
            Err(e) => return (false, e),
        };
        let Some(r) = rows.iter().find(|r| r["name"] == name) else {
            return (false, format!("{name} is not in `ps`"));
        };
        let on = r["node"].as_str().and_then(|p| view.name_of(p));
        let state = r["state"].as_str().unwrap_or("?");
        let ok = state == "running"
            && on
                .as_ref()
                .is_some_and(|o| self.nodes.iter().any(|i| view.node_name(*i) == o));
        (
            ok,
            format!("{name} is {state} on {}", on.unwrap_or_else(|| "?".into())),
        )
    }
}
