//! `client-clean`: at the end, the client had no failed request, no wrong
//! answer (so no lost write), no reset and no failed connect, and at least
//! one answer.

use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::view::View;

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "client-clean",
        fields: &["client"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct ClientClean {
    pub client: usize,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    Ok(Box::new(ClientClean {
        client: t.client("client", "the client's name")?,
    }))
}

impl Check for ClientClean {
    fn describe(&self, names: &Names) -> String {
        format!(
            "client {}: no failed request, no lost write, no reset, no failed connect",
            names.clients[self.client]
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Client(self.client))
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(self.clone())
    }
}

impl Judge for ClientClean {
    fn judge(&self, view: &dyn View) -> (bool, String) {
        let s = view.client(self.client).stats.lock().unwrap();
        let ok =
            s.failed == 0 && s.resets == 0 && s.connect_failures == 0 && s.wrong == 0 && s.ok > 0;
        let last = s
            .last_error
            .as_ref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        (
            ok,
            format!(
                "{} requests: {} ok, {} failed ({} wrong answers, {} lost writes), {} resets, {} failed connects{last}",
                s.requests, s.ok, s.failed, s.wrong, s.lost, s.resets, s.connect_failures
            ),
        )
    }
}
