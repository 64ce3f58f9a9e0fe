//! `sees`: a node sees a peer as a connected member with a fresh status
//! (or, with `expect = false`, does not). Windowed.

use super::{Check, Judge, Kind, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::{sees_row, View};

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "sees",
        fields: &["at", "within", "node", "peer", "expect"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct Sees {
    pub node: usize,
    pub peer: usize,
    pub expect: bool,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let node = t.node("node", "the observing node")?;
    let peer = t.node("peer", "the node it should (not) see")?;
    if node == peer {
        return Err(t.err("peer", "a node does not list itself"));
    }
    Ok(Box::new(Sees {
        node,
        peer,
        expect: t.bool_or("expect", true)?,
    }))
}

fn sees_words(seen: bool) -> &'static str {
    if seen {
        "sees"
    } else {
        "does not see"
    }
}

impl Check for Sees {
    fn describe(&self, names: &Names) -> String {
        format!(
            "{} {} {}",
            names.nodes[self.node],
            sees_words(self.expect),
            names.nodes[self.peer]
        )
    }

    fn timing(&self) -> Timing {
        Timing::Window
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for Sees {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        if !view.node_up(self.node) {
            return (
                false,
                format!("{} is not running", view.node_name(self.node)),
            );
        }
        let id = view.node_peer_id(self.peer).unwrap_or_default();
        let rows = match view.peers(self.node) {
            Ok(rows) => rows,
            Err(e) => return (false, e),
        };
        let row = rows.iter().find(|r| r["peer_id"] == id.as_str());
        let seen = row.is_some_and(|r| sees_row(r, view.stale_ms()));
        let what = match row {
            None => "not listed".to_string(),
            Some(r) => format!(
                "member {}, rtt {}, status age {} ms",
                r["member"], r["rtt_ms"], r["status_age_ms"]
            ),
        };
        (
            seen == self.expect,
            format!("{} {}: {what}", sees_words(seen), view.node_name(self.peer)),
        )
    }
}
