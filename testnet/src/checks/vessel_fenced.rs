//! `vessel-fenced`: the named node, the vessel's host before a failover,
//! has dropped its copy: its durable record of the vessel is `Fenced` (it
//! saw the higher epoch's certificate and will never run it again; issue
//! 15). Read from the node's data directory, so it holds for a node that is
//! stopped too. Windowed.

use super::vessel_once::read_record;
use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "vessel-fenced",
        fields: &["at", "within", "vessel", "node"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct VesselFenced {
    pub vessel: usize,
    pub node: usize,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    Ok(Box::new(VesselFenced {
        vessel: t.vessel("vessel", "the vessel's name")?,
        node: t.node("node", "the node whose copy must be dropped")?,
    }))
}

impl Check for VesselFenced {
    fn describe(&self, names: &Names) -> String {
        format!(
            "node {} has dropped its copy of vessel {} (its record is Fenced)",
            names.nodes[self.node], names.vessels[self.vessel]
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

impl Judge for VesselFenced {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let node = view.node_name(self.node);
        let Some(id) = view.vessel_id(self.vessel) else {
            return (false, "the vessel was never deployed".into());
        };
        match read_record(view.node_data_dir(self.node), &id) {
            Some((kind, epoch)) => (
                kind == "Fenced",
                format!("{node}'s record of it is {kind} (epoch {epoch})"),
            ),
            None => (false, format!("{node} has no record of it")),
        }
    }
}
