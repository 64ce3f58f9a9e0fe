//! The owner's side of a lease: rounds to the voters
//! (`failover::holder::Holder` decides when and counts the grants), the
//! vessel's gate (`vessel::lease_gate`, which the runner obeys), the lease
//! note, fencing when a voter shows a higher certificate, and the change
//! of voter set (`reconfigure`) when its voters change.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::ids::PeerIdBytes;
use protocol::lease::{Certificate, LeaseRequest, LeaseResponse};
use protocol::vessel::VesselId;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{now_ms, LeaseDriver};
use crate::boot_clock::BootInstant;
use crate::failover::holder::Holder;
use crate::migration::record::{fenced_by, Record};
use crate::sync::lock;
use crate::vessel::lease_gate::LeaseGate;
use crate::vessel::Host;

/// How often the holder looks at its rounds and its vessel: a grant is in
/// the gate at most this late, an eighth of the renewal interval.
pub const HOLD_TICK: Duration = Duration::from_millis(50);

/// The lease note's name in the vessel's directory.
pub const LEASE_NOTE: &str = "lease.cbor";

/// The lease note (`vessels/ID/lease.cbor`): until when this node's lease
/// of the vessel holds, on `CLOCK_BOOTTIME`. Written at each extension,
/// not fsynced: it is for observers (testnet's `vessel-once` check reads
/// it), never for a decision of this node.
#[derive(Serialize)]
struct LeaseNote {
    epoch: u64,
    until_boot_ns: u64,
}

/// One voter's answer to one round.
struct Answer {
    voter: PeerIdBytes,
    round: u64,
    answer: Result<LeaseResponse, super::AskFailed>,
}

/// How a holder ended, for its keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing more to hold here.
    Over,
    /// It holds a change of voter set, written and owned: hold that one.
    Changed,
}

/// The first rounds under a changed voter set also go to the voters it
/// removed, so that they learn it (they refuse the lease) and stop
/// suspecting this node: as many as a lease has rounds.
const ROUNDS_TO_FORMER_VOTERS: u64 = 4;

/// What ends a holder.
#[derive(Debug)]
enum End {
    /// The vessel is no longer owned here at this epoch (it moved, ended,
    /// or was stopped): nothing to hold.
    NotOwned,
    /// A voter knows a higher certificate: this node's epoch is over.
    Fenced(Box<Certificate>),
    /// Its voters signed a change of voter set: hold the new one.
    Changed(Box<Certificate>),
}

/// Holds the lease of vessel `id`, owned here under `certificate`, for as
/// long as it is owned here at that epoch: renews it, opens `gate` to
/// where it holds, and fences the vessel if a higher epoch shows up.
pub async fn hold(
    driver: LeaseDriver,
    host: Arc<Mutex<Host>>,
    id: VesselId,
    certificate: Certificate,
    gate: Arc<LeaseGate>,
) -> Held {
    let epoch = certificate.body.epoch;
    let note = lock(&host).vessel_dir(id).join(LEASE_NOTE);
    // Rounds numbered from a random start: a grant of a round this node
    // sent before it restarted must not count as one of this holder's
    // (the simulation's seed 8233: a restarted owner ran beside a takeover).
    let mut first = [0u8; 8];
    getrandom::fill(&mut first).expect("the OS random source works");
    let first_round = u64::from_le_bytes(first) >> 1;
    let mut holder = Holder::new(driver.leases.params(), certificate.clone(), first_round);
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let mut changing = false;
    let mut rounds_sent = 0u64;
    let mut tick = tokio::time::interval(HOLD_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut change_tick = tokio::time::interval(super::reconfigure::CHANGE_CHECK);
    change_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            _ = tick.tick() => {
                if !owned_at(&host, id, epoch, &gate) {
                    break End::NotOwned;
                }
                if let Some(round) = holder.poll(now_ms()) {
                    rounds_sent += 1;
                    let former = rounds_sent <= ROUNDS_TO_FORMER_VOTERS;
                    send_round(&driver, &certificate, round, former, &tx);
                }
            }
            _ = change_tick.tick(), if !changing => {
                changing = true;
                let (driver, cert, tx) = (driver.clone(), certificate.clone(), changed_tx.clone());
                let running = holder.may_run(now_ms());
                tokio::spawn(async move {
                    let _ = tx.send(super::reconfigure::change(driver, id, cert, running).await);
                });
            }
            Some(result) = changed_rx.recv() => {
                changing = false;
                match result {
                    Ok(Some(cert)) => break End::Changed(Box::new(cert)),
                    Ok(None) => {}
                    Err(why) => debug!(vessel = %id, "no change of voter set yet: {why}"),
                }
            }
            Some(a) = rx.recv() => {
                if let Some(end) = take_answer(&mut holder, &gate, &note, a) {
                    break end;
                }
                if let Some(until) = gate.until() {
                    driver.set_held_until(id, until);
                }
            }
        }
    };
    match end {
        End::NotOwned => {
            debug!(vessel = %id, epoch, "lease holder ends: not owned here at this epoch");
            Held::Over
        }
        End::Fenced(cert) => {
            driver.set_status(
                id,
                super::LeaseStatus::Fenced {
                    by_epoch: cert.body.epoch,
                },
            );
            fence(&host, id, &gate, &cert);
            super::reconfigure::drop_own_change(&driver, id, cert.body.epoch).await;
            Held::Over
        }
        End::Changed(cert) => take_change(&host, id, epoch, &gate, *cert).await,
    }
}

/// The change of voter set `cert` formed: the vessel stops running on the
/// old set's lease *before* the certificate leaves this node (a new voter
/// that never granted the old lease could sign a takeover at once), then
/// the certificate and the record at its epoch are made durable, and the
/// keeper holds the new set's lease (the vessel runs again once a majority
/// of the new set granted it: a round trip).
async fn take_change(
    host: &Arc<Mutex<Host>>,
    id: VesselId,
    epoch: u64,
    gate: &Arc<LeaseGate>,
    cert: Certificate,
) -> Held {
    if !owned_at(host, id, epoch, gate) {
        return Held::Over;
    }
    gate.shut_now();
    let (h, new_epoch) = (host.clone(), cert.body.epoch);
    let voters = cert.body.voters.len();
    let written = tokio::task::spawn_blocking(move || {
        let mut h = lock(&h);
        let Some(Record::Owned { image, .. }) = h.vessels.get(&id).map(|l| l.record.clone()) else {
            return Err("not owned here any more".to_string());
        };
        crate::vessel::certificate::write(&h.vessel_dir(id), &cert)
            .map_err(|e| format!("its certificate: {e}"))?;
        let record = Record::Owned {
            epoch: new_epoch,
            image,
        };
        h.write_record(id, &record)
            .map_err(|e| format!("its record: {e}"))?;
        if let Some(l) = h.vessels.get_mut(&id) {
            l.record = record;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match written {
        Ok(()) => {
            info!(vessel = %id, epoch = new_epoch, voters, "its voters changed: it runs again once the new set grants its lease");
            Held::Changed
        }
        Err(why) => {
            // The gate stays shut: a restart holds what is on disk.
            warn!(vessel = %id, "cannot keep its change of voter set: {why}");
            Held::Over
        }
    }
}

/// Sends round `round` to every voter (and, when `former`, to the voters a
/// change removed); each answer comes back on `tx`.
fn send_round(
    driver: &LeaseDriver,
    certificate: &Certificate,
    round: u64,
    former: bool,
    tx: &mpsc::UnboundedSender<Answer>,
) {
    let timeout = Duration::from_millis(driver.leases.params().renew_every_ms);
    let body = &certificate.body;
    let removed = body
        .signers
        .iter()
        .filter(|s| former && !body.voters.contains(s));
    for voter in body.voters.iter().chain(removed) {
        let (driver, voter, tx) = (driver.clone(), voter.clone(), tx.clone());
        let request = LeaseRequest::Lease {
            certificate: certificate.clone(),
            round,
        };
        tokio::spawn(async move {
            let answer = driver.ask(&voter, request, timeout).await;
            let _ = tx.send(Answer {
                voter,
                round,
                answer,
            });
        });
    }
}

/// Counts one answer; extends the gate when a round reached a majority.
fn take_answer(
    holder: &mut Holder,
    gate: &LeaseGate,
    note: &std::path::Path,
    a: Answer,
) -> Option<End> {
    match a.answer {
        Ok(LeaseResponse::Granted { epoch, round, .. })
            if epoch == holder.epoch() && round == a.round =>
        {
            let before = holder.valid_until_ms();
            holder.granted(&a.voter, round, now_ms());
            if let Some(until_ms) = holder.valid_until_ms().filter(|u| Some(*u) != before) {
                let until = BootInstant::from_ns(until_ms.saturating_mul(1_000_000));
                gate.hold_until(until);
                write_note(note, holder.epoch(), until);
            }
            None
        }
        Ok(LeaseResponse::Superseded(cert)) if cert.body.epoch > holder.epoch() => {
            Some(End::Fenced(Box::new(cert)))
        }
        Ok(other) => {
            debug!(answer = ?other, "a voter's answer that grants nothing");
            None
        }
        Err(e) => {
            debug!("lease round {}: {e}", a.round);
            None
        }
    }
}

/// Whether vessel `id` is owned here at `epoch` (and not stopped), and
/// still runs behind `gate` (a vessel started again has a gate of its own,
/// and a keeper of its own).
fn owned_at(host: &Mutex<Host>, id: VesselId, epoch: u64, gate: &Arc<LeaseGate>) -> bool {
    let h = lock(host);
    h.vessels.get(&id).is_some_and(|l| {
        !l.stopped
            && Arc::ptr_eq(&l.gate, gate)
            && matches!(l.record, Record::Owned { epoch: e, .. } if e == epoch)
    })
}

fn write_note(path: &std::path::Path, epoch: u64, until: BootInstant) {
    let note = LeaseNote {
        epoch,
        until_boot_ns: until.as_ns(),
    };
    let tmp: PathBuf = path.with_extension("tmp");
    let written = std::fs::write(&tmp, protocol::cbor::encode(&note))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        debug!(path = %path.display(), "cannot write the lease note: {e}");
    }
}

/// A voter showed `cert`, above this node's epoch: the vessel never runs
/// here again. The gate shuts first (no guest code from the next look),
/// then the record becomes `Fenced` durably and the runner is let go; the
/// log stays, as a past generation of the vessel.
fn fence(host: &Mutex<Host>, id: VesselId, gate: &LeaseGate, cert: &Certificate) {
    gate.shut_now();
    let mut h = lock(host);
    let Some(record) = h.vessels.get(&id).map(|l| l.record.clone()) else {
        return;
    };
    let Some(fenced) = fenced_by(Some(&record), cert.body.epoch) else {
        return;
    };
    if let Err(e) = h.write_record(id, &fenced) {
        // The gate stays shut; a restart asks for the lease first and is
        // told again.
        warn!(vessel = %id, "cannot write the Fenced record: {e}");
    }
    if let Some(l) = h.vessels.get_mut(&id) {
        l.record = fenced;
        l.runner = None;
    }
    info!(
        vessel = %id,
        epoch = record.epoch(),
        new_epoch = cert.body.epoch,
        "fenced: another node owns this vessel at a higher epoch; it never runs here again"
    );
}
