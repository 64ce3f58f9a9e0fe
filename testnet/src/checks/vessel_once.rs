//! `vessel-once`: sampled every ONCE_EVERY from the vessel's deployment to
//! the end of the run, decided at the end:
//! - at no sample could two nodes run the vessel. A node can run it when it
//!   holds an `Owned` record of it (docs/protocol.md) and, for a vessel
//!   with a lease (issue 15), when its lease note says the lease holds now.
//!   Every node's record is read, up or not: a stopped node that holds
//!   `Owned` of a vessel without a lease runs it again when it starts,
//!   while one whose lease ran out must win the lease back first. After a
//!   failover the old host keeps its `Owned` record until it hears of the
//!   new epoch (then it writes `Fenced`), so two `Owned` records at two
//!   epochs are expected; two that can run are not.
//! - no epoch ever had two owners: two nodes never held an `Owned` record
//!   at the same epoch, at one sample or at two (each epoch of a vessel
//!   has one owner, named by its certificate).
//!
//! - with `max_owner_changes = N`: the owner (the one node that could run
//!   it) changed at most N times over the run (a new epoch on the same
//!   node, as a change of its voter set makes, is no change). A flapping link must not
//!   make a vessel ping-pong between nodes (issue 15's flapping.toml).
//!
//! The lease note (`DATA/vessels/ID/lease.cbor`, written by the node's
//! lease driver at each renewal) holds the epoch and until when the lease
//! holds on `CLOCK_BOOTTIME`, which every node of a testnet shares with
//! this sampler (one machine), so "holds now" is exact. A vessel is leased
//! at an epoch when its node keeps a certificate of that epoch beside the
//! record (`certificate.cbor`); before its first grant it has no note, and
//! does not run.

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
        fields: &["vessel", "max_owner_changes"],
    },
    parse,
};

#[derive(Debug, Clone)]
pub struct VesselOnce {
    pub vessel: usize,
    pub max_owner_changes: Option<u64>,
}

/// The largest `max_owner_changes` a scenario may ask for.
const MAX_OWNER_CHANGES: f64 = 1000.0;

fn parse(t: &Table) -> Result<Box<dyn Check>, ScenarioError> {
    let max_owner_changes = match t.opt_f64("max_owner_changes")? {
        None => None,
        Some(n) if n.fract() == 0.0 => {
            let field = t.field("max_owner_changes");
            Some(t.ck.range(&field, n, 0.0, MAX_OWNER_CHANGES)? as u64)
        }
        Some(n) => return Err(t.err("max_owner_changes", format!("{n} is not a whole number"))),
    };
    Ok(Box::new(VesselOnce {
        vessel: t.vessel("vessel", "the vessel's name")?,
        max_owner_changes,
    }))
}

impl Check for VesselOnce {
    fn describe(&self, names: &Names) -> String {
        let changes = self
            .max_owner_changes
            .map(|n| format!(", and its owner changes at most {n} times"))
            .unwrap_or_default();
        format!(
            "vessel {} never runs on two nodes (at every sample at most one node can run it, and no epoch has two owners){changes}",
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
            max_owner_changes: self.max_owner_changes,
            seen: Mutex::new(OnceSeen::default()),
        })
    }
}

/// What the samples saw of the vessel.
#[derive(Debug, Clone, Default)]
struct OnceSeen {
    /// Samples taken (after the vessel was deployed).
    samples: u64,
    /// The owners that could run it, in turn: (node, epoch, first seen at t).
    owners: Vec<(String, u64, f64)>,
    /// Who held an `Owned` record at each epoch (first seen).
    epoch_owner: std::collections::BTreeMap<u64, String>,
    /// The first sample with two runners, or an epoch with two owners,
    /// said in words.
    twice: Option<String>,
}

/// One node's hold on the vessel at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    node: String,
    /// Its record's epoch (an `Owned` record).
    epoch: u64,
    /// It can run the vessel now (no lease, or a lease that holds now).
    runs: bool,
}

struct Watch {
    vessel: usize,
    max_owner_changes: Option<u64>,
    seen: Mutex<OnceSeen>,
}

impl Watch {
    /// Every node's `Owned` record of the vessel, and whether it can run it.
    fn holds(view: &dyn View, id: &str) -> Vec<Hold> {
        let now_ns = boot_clock_ns();
        (0..view.node_count())
            .filter_map(|n| {
                let dir = view.node_data_dir(n);
                let (kind, epoch) = read_record(dir, id)?;
                if kind != "Owned" {
                    return None;
                }
                // Leased at this epoch (its certificate is kept beside
                // the record): it runs only while its note says the lease
                // holds. A leased vessel waiting for its first grant has
                // no note yet, and does not run.
                let leased = read_certificate_epoch(dir, id) == Some(epoch);
                let runs = match read_lease_note(dir, id) {
                    Some((e, until_ns)) if leased => e == epoch && until_ns > now_ns,
                    _ => !leased,
                };
                Some(Hold {
                    node: view.node_name(n).to_string(),
                    epoch,
                    runs,
                })
            })
            .collect()
    }

    /// Notes one sample; the words for what broke, the first time.
    fn note(&self, t: f64, holds: &[Hold]) -> Option<String> {
        let mut s = self.seen.lock().unwrap();
        s.samples += 1;
        let running: Vec<&Hold> = holds.iter().filter(|h| h.runs).collect();
        if let [h] = running.as_slice() {
            if s.owners
                .last()
                .is_none_or(|(n, e, _)| *n != h.node || *e != h.epoch)
            {
                s.owners.push((h.node.clone(), h.epoch, t));
            }
        }
        let mut broke = None;
        for h in holds {
            let first = s.epoch_owner.entry(h.epoch).or_insert(h.node.clone());
            if *first != h.node && broke.is_none() {
                broke = Some(format!(
                    "at {t:.2}s {} and {} both hold an Owned record at epoch {}",
                    first, h.node, h.epoch
                ));
            }
        }
        if running.len() >= 2 && broke.is_none() {
            let who: Vec<String> = running
                .iter()
                .map(|h| format!("{} (epoch {})", h.node, h.epoch))
                .collect();
            broke = Some(format!("at {t:.2}s {} can both run it", who.join(" and ")));
        }
        if s.twice.is_some() {
            return None;
        }
        s.twice.clone_from(&broke);
        broke
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
            let holds = Self::holds(view, &id);
            if let Some(line) = self.note(t, &holds) {
                view.rec().say(format!("vessel {name} runs twice: {line}"));
                view.rec()
                    .mark(MarkKind::ClientError, format!("{name} twice"));
            }
        }
    }

    fn judge(&self, _view: &dyn View) -> (bool, String) {
        let s = self.seen.lock().unwrap().clone();
        self.verdict(&s)
    }
}

impl Watch {
    fn verdict(&self, s: &OnceSeen) -> (bool, String) {
        let owners: Vec<String> = s
            .owners
            .iter()
            .map(|(n, e, t)| format!("{n}@{e} from {t:.1}s"))
            .collect();
        let owners = owners.join(", ");
        // A change of owner is a change of node: a new epoch on the same
        // node (its voter set changed, issue 15) moves nothing.
        let changes = s.owners.windows(2).filter(|w| w[0].0 != w[1].0).count() as u64;
        match (&s.twice, s.samples) {
            (Some(line), _) => (false, format!("{line}; owners in turn: {owners}")),
            (None, 0) => (false, "never sampled (was it deployed?)".into()),
            (None, _) if self.max_owner_changes.is_some_and(|m| changes > m) => (
                false,
                format!("its owner changed {changes} times; owners in turn: {owners}"),
            ),
            (None, n) => (
                !s.owners.is_empty(),
                format!("{n} samples, never two owners, {changes} owner changes; owners in turn: {owners}"),
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

/// A node's lease note of a vessel (`DATA/vessels/ID/lease.cbor`): the
/// epoch and until when its lease holds, in `CLOCK_BOOTTIME` nanoseconds,
/// `{"epoch": 3, "until_boot_ns": …}`. None for a vessel without a lease.
pub fn read_lease_note(data_dir: &Path, vessel_id: &str) -> Option<(u64, u64)> {
    let bytes = std::fs::read(data_dir.join("vessels").join(vessel_id).join("lease.cbor")).ok()?;
    parse_lease_note(&bytes)
}

fn parse_lease_note(bytes: &[u8]) -> Option<(u64, u64)> {
    use ciborium::Value;
    let Value::Map(fields) = ciborium::from_reader(bytes).ok()? else {
        return None;
    };
    let field = |name: &str| {
        fields.iter().find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Integer(e)) if k == name => u64::try_from(*e).ok(),
            _ => None,
        })
    };
    Some((field("epoch")?, field("until_boot_ns")?))
}

/// The epoch of the lease certificate a node keeps beside its record of a
/// vessel (`DATA/vessels/ID/certificate.cbor`: `{"body": {"epoch": …}}`),
/// if any.
pub fn read_certificate_epoch(data_dir: &Path, vessel_id: &str) -> Option<u64> {
    let bytes = std::fs::read(
        data_dir
            .join("vessels")
            .join(vessel_id)
            .join("certificate.cbor"),
    )
    .ok()?;
    parse_certificate_epoch(&bytes)
}

fn parse_certificate_epoch(bytes: &[u8]) -> Option<u64> {
    use ciborium::Value;
    let Value::Map(cert) = ciborium::from_reader(bytes).ok()? else {
        return None;
    };
    let body = cert.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Map(b)) if k == "body" => Some(b),
        _ => None,
    })?;
    body.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Integer(e)) if k == "epoch" => u64::try_from(*e).ok(),
        _ => None,
    })
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock the nodes count their
/// leases on.
fn boot_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
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

    fn watch() -> Watch {
        Watch {
            vessel: 0,
            max_owner_changes: None,
            seen: Mutex::new(OnceSeen::default()),
        }
    }

    fn hold(node: &str, epoch: u64, runs: bool) -> Hold {
        Hold {
            node: node.into(),
            epoch,
            runs,
        }
    }

    #[test]
    fn a_vessel_that_ping_pongs_between_nodes_fails_max_owner_changes() {
        let w = Watch {
            max_owner_changes: Some(1),
            ..watch()
        };
        w.note(0.1, &[hold("a", 1, true)]);
        w.note(0.2, &[hold("a", 1, true)]);
        w.note(0.3, &[hold("d", 2, true)]);
        let once = w.verdict(&w.seen.lock().unwrap().clone());
        assert!(once.0, "one change is allowed: {}", once.1);
        // A new epoch on the same node (a change of its voter set) is no
        // change of owner: seen in CI, d@2 then d@3.
        w.note(0.35, &[hold("d", 3, true)]);
        let same = w.verdict(&w.seen.lock().unwrap().clone());
        assert!(same.0, "a new epoch on the same node: {}", same.1);
        w.note(0.4, &[hold("a", 4, true)]);
        let (ok, why) = w.verdict(&w.seen.lock().unwrap().clone());
        assert!(!ok && why.contains("changed 2 times"), "{why}");
    }

    #[test]
    fn two_owners_fail_and_are_told_once() {
        let w = watch();
        let one = [hold("a", 1, true)];
        let two = [hold("a", 1, true), hold("d", 2, true)];
        assert_eq!(w.note(0.1, &one), None);
        assert_eq!(w.note(0.2, &one), None);
        let line = w.note(0.3, &two).unwrap();
        assert_eq!(line, "at 0.30s a (epoch 1) and d (epoch 2) can both run it");
        assert_eq!(w.note(0.4, &two), None, "told once");
        let s = w.seen.lock().unwrap().clone();
        assert_eq!(s.samples, 4);
        assert_eq!(s.owners, vec![("a".to_string(), 1, 0.1)]);
    }

    #[test]
    fn a_fenced_old_host_is_no_runner_but_an_epoch_has_one_owner() {
        let w = watch();
        // A failover: a's lease ran out, d took over at epoch 2; a keeps
        // its Owned record until it hears (then Fenced, not listed).
        assert_eq!(w.note(0.1, &[hold("a", 1, true)]), None);
        assert_eq!(w.note(0.2, &[hold("a", 1, false)]), None);
        assert_eq!(
            w.note(0.3, &[hold("a", 1, false), hold("d", 2, true)]),
            None
        );
        assert_eq!(w.note(0.4, &[hold("d", 2, true)]), None);
        // Epoch 2 owned by another node later, even alone: two owners.
        let line = w.note(0.5, &[hold("e", 2, true)]).unwrap();
        assert_eq!(
            line,
            "at 0.50s d and e both hold an Owned record at epoch 2"
        );
        let s = w.seen.lock().unwrap().clone();
        assert_eq!(
            s.owners,
            vec![
                ("a".to_string(), 1, 0.1),
                ("d".to_string(), 2, 0.3),
                ("e".to_string(), 2, 0.5)
            ]
        );
    }

    #[test]
    fn lease_notes_are_read_as_the_node_writes_them() {
        #[derive(serde::Serialize)]
        struct Note {
            epoch: u64,
            until_boot_ns: u64,
        }
        let mut b = Vec::new();
        ciborium::into_writer(
            &Note {
                epoch: 4,
                until_boot_ns: 123_456_789_000,
            },
            &mut b,
        )
        .unwrap();
        assert_eq!(parse_lease_note(&b), Some((4, 123_456_789_000)));
        assert_eq!(parse_lease_note(b"junk"), None);
        #[derive(serde::Serialize)]
        struct Body {
            version: u32,
            epoch: u64,
        }
        #[derive(serde::Serialize)]
        struct Cert {
            body: Body,
            signatures: Vec<u8>,
        }
        let mut c = Vec::new();
        ciborium::into_writer(
            &Cert {
                body: Body {
                    version: 1,
                    epoch: 3,
                },
                signatures: vec![],
            },
            &mut c,
        )
        .unwrap();
        assert_eq!(parse_certificate_epoch(&c), Some(3));
        assert_eq!(parse_certificate_epoch(&b), None);
        assert!(boot_clock_ns() > 0);
    }
}
