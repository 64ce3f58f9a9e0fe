//! `vessel-once`: sampled every ONCE_EVERY from the vessel's deployment to
//! the end of the run, decided at the end: at no sample did two nodes hold
//! an `Owned` record of the vessel (a node runs a vessel only under one,
//! docs/protocol.md). Every node's record is read, up or not: a stopped
//! node that holds `Owned` runs the vessel again when it starts.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Check, Judge, Kind, Subject, Timing};
use crate::fields::{KindFields, Names, ScenarioError, Table};
use crate::record::MarkKind;
use crate::view::View;

/// How often each node's record of the vessel is read.
const ONCE_EVERY: Duration = Duration::from_millis(100);

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "vessel-once",
        fields: &["vessel"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct VesselOnce {
    pub vessel: usize,
}

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    Ok(Box::new(VesselOnce {
        vessel: t.vessel("vessel", "the vessel's name")?,
    }))
}

impl Check for VesselOnce {
    fn describe(&self, names: &Names) -> String {
        format!(
            "vessel {} never runs on two nodes (an Owned record on at most one node at every sample)",
            names.vessels[self.vessel]
        )
    }

    fn timing(&self) -> Timing {
        Timing::AtEnd
    }

    fn subject(&self) -> Option<Subject> {
        Some(Subject::Vessel(self.vessel))
    }

    fn begin(&self) -> Box<dyn Judge> {
        Box::new(Watch {
            vessel: self.vessel,
            seen: Mutex::new(OnceSeen::default()),
        })
    }
}

/// What the samples saw of the vessel.
#[derive(Debug, Clone, Default)]
struct OnceSeen {
    /// Samples taken (after the vessel was deployed).
    samples: u64,
    /// The owners in turn: (node, epoch, first seen at t).
    owners: Vec<(String, u64, f64)>,
    /// The first sample with two owners, said in words.
    twice: Option<String>,
}

struct Watch {
    vessel: usize,
    seen: Mutex<OnceSeen>,
}

impl Watch {
    /// Every node's `Owned` record of the vessel: (node, epoch).
    fn owners(view: &dyn View, id: &str) -> Vec<(String, u64)> {
        (0..view.node_count())
            .filter_map(|n| {
                read_record(view.node_data_dir(n), id)
                    .filter(|(kind, _)| kind == "Owned")
                    .map(|(_, epoch)| (view.node_name(n).to_string(), epoch))
            })
            .collect()
    }

    /// Notes one sample; the words for a sample with two owners, the first
    /// time there is one.
    fn note(&self, t: f64, owners: &[(String, u64)]) -> Option<String> {
        let mut s = self.seen.lock().unwrap();
        s.samples += 1;
        if let [(node, epoch)] = owners {
            if s.owners
                .last()
                .is_none_or(|(n, e, _)| n != node || e != epoch)
            {
                s.owners.push((node.clone(), *epoch, t));
            }
        }
        if owners.len() < 2 || s.twice.is_some() {
            return None;
        }
        let who: Vec<String> = owners
            .iter()
            .map(|(n, e)| format!("{n} (epoch {e})"))
            .collect();
        let line = format!("at {t:.2}s {} both hold an Owned record", who.join(" and "));
        s.twice = Some(line.clone());
        Some(line)
    }
}

impl Judge for Watch {
    fn samples(&self) -> bool {
        true
    }

    fn sample(&self, view: &dyn View, t0: Instant) {
        let name = view.vessel_name(self.vessel);
        let mut next = Duration::ZERO;
        while view.sleep_until(t0, next) {
            next += ONCE_EVERY;
            let Some(id) = view.vessel_id(self.vessel) else {
                continue;
            };
            let t = view.rec().t();
            let owners = Self::owners(view, &id);
            if let Some(line) = self.note(t, &owners) {
                view.rec().say(format!("vessel {name} runs twice: {line}"));
                view.rec()
                    .mark(MarkKind::ClientError, format!("{name} twice"));
            }
        }
    }

    fn judge(&self, _view: &dyn View) -> (bool, String) {
        let s = self.seen.lock().unwrap().clone();
        let owners: Vec<String> = s
            .owners
            .iter()
            .map(|(n, e, t)| format!("{n}@{e} from {t:.1}s"))
            .collect();
        let owners = owners.join(", ");
        match (&s.twice, s.samples) {
            (Some(line), _) => (false, format!("{line}; owners in turn: {owners}")),
            (None, 0) => (false, "never sampled (was it deployed?)".into()),
            (None, n) => (
                !s.owners.is_empty(),
                format!("{n} samples, never two owners; owners in turn: {owners}"),
            ),
        }
    }
}

/// A node's durable record of a vessel (`DATA/vessels/ID/record.cbor`,
/// written atomically): its kind (`Owned`, `Left`, `Prepared`, `Ended`)
/// and epoch. None when there is none or it cannot be read.
pub fn read_record(data_dir: &Path, vessel_id: &str) -> Option<(String, u64)> {
    let bytes = std::fs::read(data_dir.join("vessels").join(vessel_id).join("record.cbor")).ok()?;
    parse_record(&bytes)
}

/// The kind and epoch of a CBOR-encoded record: serde's external tagging,
/// `{"Owned": {"epoch": 3, "image": …}}`.
pub fn parse_record(bytes: &[u8]) -> Option<(String, u64)> {
    use ciborium::Value;
    let v: Value = ciborium::from_reader(bytes).ok()?;
    let Value::Map(outer) = v else { return None };
    let [(Value::Text(kind), Value::Map(fields))] = outer.as_slice() else {
        return None;
    };
    let epoch = fields.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Integer(e)) if k == "epoch" => u64::try_from(*e).ok(),
        _ => None,
    })?;
    Some((kind.clone(), epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_as_the_node_writes_them() {
        // The node's encoding (serde, externally tagged, in CBOR).
        #[derive(serde::Serialize)]
        enum Record {
            Owned {
                epoch: u64,
                image: [u8; 4],
            },
            Left {
                epoch: u64,
                image: [u8; 4],
                to: Vec<u8>,
                acked: bool,
            },
        }
        let enc = |r: &Record| {
            let mut b = Vec::new();
            ciborium::into_writer(r, &mut b).unwrap();
            b
        };
        assert_eq!(
            parse_record(&enc(&Record::Owned {
                epoch: 3,
                image: [1; 4]
            })),
            Some(("Owned".into(), 3))
        );
        assert_eq!(
            parse_record(&enc(&Record::Left {
                epoch: 4,
                image: [1; 4],
                to: vec![9],
                acked: false
            })),
            Some(("Left".into(), 4))
        );
        assert_eq!(parse_record(b"not cbor"), None);
    }

    #[test]
    fn two_owners_fail_and_are_told_once() {
        let w = Watch {
            vessel: 0,
            seen: Mutex::new(OnceSeen::default()),
        };
        let one = [("a".to_string(), 1)];
        let two = [("a".to_string(), 1), ("d".to_string(), 2)];
        assert_eq!(w.note(0.1, &one), None);
        assert_eq!(w.note(0.2, &one), None);
        let line = w.note(0.3, &two).unwrap();
        assert_eq!(
            line,
            "at 0.30s a (epoch 1) and d (epoch 2) both hold an Owned record"
        );
        assert_eq!(w.note(0.4, &two), None, "told once");
        let s = w.seen.lock().unwrap().clone();
        assert_eq!(s.samples, 4);
        assert_eq!(s.owners, vec![("a".to_string(), 1, 0.1)]);
    }
}
