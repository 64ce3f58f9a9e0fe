//! `node-version`: each named node runs this run's meshnode (`build =
//! "current"`, the default) or the frozen older build (`build = "frozen"`),
//! by the version its `meshnode status --json` reports. The rolling-upgrade
//! scenario checks with it that every node came back on the new build.
//! Windowed.

use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "node-version",
        fields: &["at", "within", "nodes", "build"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct NodeVersion {
    pub nodes: Vec<usize>,
    /// The frozen build's version, not the current one's.
    pub frozen: bool,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let nodes = t.nodes("nodes", "the nodes to ask")?;
    let frozen = match t.opt_str("build")?.as_deref() {
        None | Some("current") => false,
        Some("frozen") => true,
        Some(other) => {
            return Err(t.err(
                "build",
                format!("{other:?} is not a build (\"current\" or \"frozen\")"),
            ))
        }
    };
    Ok(Box::new(NodeVersion { nodes, frozen }))
}

impl Check for NodeVersion {
    fn describe(&self, names: &Names) -> String {
        let on: Vec<&str> = self
            .nodes
            .iter()
            .map(|i| names.nodes[*i].as_str())
            .collect();
        format!(
            "{} run{} the {} build",
            on.join(", "),
            if on.len() == 1 { "s" } else { "" },
            if self.frozen { "frozen" } else { "current" }
        )
    }

    fn timing(&self) -> Timing {
        Timing::Window
    }

    fn subject(&self) -> Option<Subject> {
        None
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for NodeVersion {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let Some(want) = view.build_version(self.frozen) else {
            return (false, "no frozen build in this run".into());
        };
        let mut seen = Vec::new();
        let mut ok = true;
        for &n in &self.nodes {
            let name = view.node_name(n);
            match view.node_version(n) {
                Ok(v) => {
                    ok &= v == want;
                    seen.push(format!("{name} runs {v}"));
                }
                Err(e) => {
                    ok = false;
                    seen.push(format!("{name}: {e}"));
                }
            }
        }
        (ok, format!("{} (want {want})", seen.join(", ")))
    }
}
