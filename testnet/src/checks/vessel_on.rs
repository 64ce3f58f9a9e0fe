//! `vessel-on`: the vessel is running on one of the named nodes, as
//! `meshnode ps --json` through a node that is up says. Windowed.

use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "vessel-on",
        fields: &["at", "within", "vessel", "nodes"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct VesselOn {
    pub vessel: usize,
    pub nodes: Vec<usize>,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let vessel = t.vessel("vessel", "the vessel's name")?;
    let field = t.field("nodes");
    let list =
        t.ck.need(&field, &t.opt_strs("nodes")?, "the nodes it may run on")?
            .clone();
    if list.is_empty() {
        return Err(t.err("nodes", "name at least one node"));
    }
    let nodes = list
        .iter()
        .map(|m| t.ck.node(&field, m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(VesselOn { vessel, nodes }))
}

impl Check for VesselOn {
    fn describe(&self, names: &Names) -> String {
        let on: Vec<&str> = self
            .nodes
            .iter()
            .map(|i| names.nodes[*i].as_str())
            .collect();
        format!(
            "vessel {} runs on {}",
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
        let rows = match view.ps() {
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
