//! Taking a vessel over when its host's lease has run out (issue 15): a
//! node that keeps a replica of a leased vessel, and votes for it, asks
//! the voters for the next epoch once its own grant to the host has run
//! out (so no voter of the host's last majority can still be counting a
//! lease of it; `failover::voter`'s takeover rule), and runs the vessel
//! from its replica under the certificate it wins, with a lease of its own.
//!
//! Failure detection only decides *when* to ask: the voters decide, and a
//! host that still renews keeps its voters from signing. A host that
//! stopped renewing but still answers (most likely in a move: its rounds
//! stalled under the copy, or its destination not yet begun) is given [`ANSWERING_HOST_GRACE_MS`] more
//! before its replica asks.

use std::collections::HashMap;
use std::time::Duration;

use protocol::lease::{AssignmentBody, AssignmentKind, Certificate, LEASE_VERSION};
use protocol::vessel::{VesselId, VesselImage};
use tracing::{debug, info, warn};

use super::elect::{elect, ElectError, ELECTION_TIMEOUT};
use super::{now_ms, peer_bytes, LeaseDriver};
use crate::mesh::liveness::Suspects;
use crate::migration::record::Record;
use crate::sync::lock;
use crate::vessel::Host;

/// How often a node looks for vessels it might take over.
pub const TAKEOVER_TICK: Duration = Duration::from_millis(100);

/// How much later each voter after the first asks, by its rank among the
/// voters that are not the host: so that two replicas rarely split the
/// votes of one epoch (a split costs a retry, never safety).
pub const TAKEOVER_STAGGER_MS: u64 = 300;

/// How long a proposer waits after a takeover it did not win.
pub const TAKEOVER_RETRY_MS: u64 = 1_000;

/// How much longer than its grant a replica waits to ask for a takeover
/// while failure detection still hears the host. A host that answers but
/// stopped renewing is most likely *moving* the vessel: a loaded source's
/// rounds can stall behind the copy, and the destination asks for its
/// first grant only after the commit (which of the two it was there is not
/// measured: the nodes logged at info). In testnet's mixed-fleet
/// (riscv64 → aarch64, both under qemu) the final pause took 4.9 s, a
/// replica took the vessel over mid-move from a checkpoint 64 writes old,
/// and the move's destination was fenced. This covers that pause. It only
/// delays a takeover (never unsafe: the voters still decide): a host that
/// is alive but cannot renew is taken over this much later, and a host
/// that died or is cut off is suspected within a few seconds and taken
/// over as soon as its grant ran out.
pub const ANSWERING_HOST_GRACE_MS: u64 = 6_000;

/// One replica this node could take over: its certificate and image.
struct Candidate {
    vessel: VesselId,
    cert: Certificate,
    image: protocol::snapshot::Hash,
    /// When this node may first ask (its grant ran out, plus its stagger).
    due_ms: u64,
}

impl Candidate {
    /// Whether failure detection still hears the host: then it is given
    /// [`ANSWERING_HOST_GRACE_MS`] more.
    fn host_answers(&self, suspects: &Suspects) -> bool {
        libp2p::PeerId::from_bytes(&self.cert.body.owner.0)
            .is_ok_and(|owner| suspects.of(&owner).is_none())
    }
}

/// Runs for as long as the node: takes over the vessels whose host's lease
/// ran out and of which this node keeps the replica.
pub async fn watch(
    driver: LeaseDriver,
    host: std::sync::Arc<std::sync::Mutex<Host>>,
    suspects: Suspects,
) {
    let mut next_try: HashMap<VesselId, u64> = HashMap::new();
    let mut tick = tokio::time::interval(TAKEOVER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        for c in candidates(&driver) {
            let retry_later = next_try.get(&c.vessel).is_some_and(|t| now < *t);
            if retry_later || !may_ask(now, c.due_ms, || c.host_answers(&suspects)) {
                continue;
            }
            if owned_here_above(&host, c.vessel, c.cert.body.epoch) {
                // Taken over already (or handed here): its replica entry
                // and this voter's certificate lag the record for a while,
                // and a second takeover would restart the vessel from the
                // replica's image at yet another epoch.
                continue;
            }
            match take_over(&driver, &host, &c).await {
                Ok(()) => {
                    next_try.remove(&c.vessel);
                }
                Err(why) => {
                    debug!(vessel = %c.vessel, "no takeover yet: {why}");
                    next_try.insert(c.vessel, now_ms() + TAKEOVER_RETRY_MS);
                }
            }
        }
    }
}

/// Whether a replica whose grant to the host runs out at `due_ms` (with
/// its stagger) may ask for a takeover at `now`: a host that failure
/// detection still hears gets [`ANSWERING_HOST_GRACE_MS`] more.
fn may_ask(now: u64, due_ms: u64, host_answers: impl FnOnce() -> bool) -> bool {
    now >= due_ms && (now >= due_ms + ANSWERING_HOST_GRACE_MS || !host_answers())
}

/// This node owns `vessel` at an epoch above `epoch`.
fn owned_here_above(host: &std::sync::Mutex<Host>, vessel: VesselId, epoch: u64) -> bool {
    lock(host).vessels.get(&vessel).is_some_and(|l| {
        matches!(l.record, crate::vessel::Record::Owned { .. }) && l.record.epoch() > epoch
    })
}

/// The replicas this node keeps whose host's lease it no longer grants:
/// this node's voter knows the vessel's certificate at the replica's epoch,
/// names another owner, and its own grant has run out.
fn candidates(driver: &LeaseDriver) -> Vec<Candidate> {
    let me = peer_bytes(&driver.me);
    let held: Vec<(VesselId, u64, protocol::snapshot::Hash)> = driver
        .replication
        .book()
        .held
        .iter()
        .map(|(id, r)| (*id, r.epoch, r.image))
        .collect();
    let mut book = lock(&driver.leases.book);
    held.into_iter()
        .filter_map(|(vessel, epoch, image)| {
            let voter = book.voter(vessel);
            let cert = voter.known.clone()?;
            // Bound by a change of voter set it signed (rule 5): it waits
            // to learn the change instead of proposing from the old set.
            let bound = voter.durable.follows_from_epoch() > cert.body.epoch;
            if cert.body.epoch != epoch || cert.body.owner == me || bound {
                return None;
            }
            let rank = cert
                .body
                .voters
                .iter()
                .filter(|v| **v != cert.body.owner)
                .position(|v| *v == me)? as u64;
            let due_ms = voter.granted_until_ms + rank * TAKEOVER_STAGGER_MS;
            Some(Candidate {
                vessel,
                cert,
                image,
                due_ms,
            })
        })
        .collect()
}

/// Wins the next epoch of `c.vessel` and runs it here from its replica.
async fn take_over(
    driver: &LeaseDriver,
    host: &std::sync::Mutex<Host>,
    c: &Candidate,
) -> Result<(), String> {
    let promised = {
        let mut book = lock(&driver.leases.book);
        let v = book.voter(c.vessel);
        v.durable.promised.as_ref().map_or(0, |p| p.epoch)
    };
    let epoch = c.cert.body.epoch.max(promised) + 1;
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: c.vessel,
        epoch,
        owner: peer_bytes(&driver.me),
        kind: AssignmentKind::Takeover,
        previous_epoch: c.cert.body.epoch,
        voters: c.cert.body.voters.clone(),
        signers: c.cert.body.voters.clone(),
    };
    let cert = match elect(driver, body, Some(c.cert.clone()), ELECTION_TIMEOUT).await {
        Ok(cert) => cert,
        Err(ElectError::Superseded(k)) => {
            return Err(format!("epoch {} has an owner already", k.body.epoch))
        }
        Err(e) => return Err(e.to_string()),
    };
    // This node's voter learns the new certificate now, not at the first
    // renewal: until then it still names the dead host at the replica's
    // epoch, and [`candidates`] would list the vessel again.
    if let Err(e) = lock(&driver.leases.book).voter(c.vessel).learn(&cert) {
        warn!(vessel = %c.vessel, "its own takeover certificate: {e}");
    }
    let entries = run_from_replica(host, c, &cert)?;
    info!(
        vessel = %c.vessel,
        epoch = cert.body.epoch,
        "took the vessel over from its replica: its host's lease ran out"
    );
    // The entries of its clients learn the new host now, as after a
    // migration: otherwise each waits for the gossip (about a second
    // more, measured by scripts/bench_failover.py) before it resets or
    // resends.
    crate::mesh::ingress::announce_arrival(
        &driver.link,
        driver.me,
        c.vessel,
        cert.body.epoch,
        entries,
    );
    Ok(())
}

/// Runs the replica's image here as the owner at the certificate's epoch:
/// the image again under the new epoch, the certificate and the `Owned`
/// record made durable first, then the vessel started (under its lease).
/// Returns the entry nodes of the clients its image holds.
fn run_from_replica(
    host: &std::sync::Mutex<Host>,
    c: &Candidate,
    cert: &Certificate,
) -> Result<Vec<libp2p::PeerId>, String> {
    let mut h = lock(host);
    let bytes = h
        .store
        .get_image_doc(&c.image)
        .map_err(|e| format!("its replica image: {e}"))?;
    let mut image: VesselImage =
        protocol::cbor::decode(&bytes).map_err(|e| format!("its replica image: {e}"))?;
    image.epoch = cert.body.epoch;
    let (doc, name) = image.encode_and_hash();
    h.store
        .put_image_doc(&doc, true)
        .map_err(|e| format!("its image: {e}"))?;
    let dir = h.vessel_dir(c.vessel);
    crate::vessel::certificate::write(&dir, cert).map_err(|e| format!("its certificate: {e}"))?;
    let record = Record::Owned {
        epoch: cert.body.epoch,
        image: name,
    };
    h.write_record(c.vessel, &record)
        .map_err(|e| format!("its record: {e}"))?;
    let reason = format!(
        "took over at epoch {}: its host's lease ran out",
        cert.body.epoch
    );
    let entries = image
        .hub
        .conns
        .iter()
        .filter_map(|c| libp2p::PeerId::from_bytes(&c.entry.0).ok())
        .collect();
    if let Err(e) = h.start_from_image(image, record, reason, None) {
        // Owned and durable: a restart runs it (under its lease).
        warn!(vessel = %c.vessel, "took it over but cannot start it now: {e}");
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// testnet's mixed-fleet: a replica took a vessel over during a move's
    /// 4.9 s final pause, because its grant to the (answering) host ran out.
    #[test]
    fn a_replica_waits_longer_for_a_host_that_still_answers() {
        let due = 10_000;
        assert!(!may_ask(due - 1, due, || false), "its grant still runs");
        assert!(may_ask(due, due, || false), "a suspected host: at once");
        assert!(!may_ask(due, due, || true), "an answering host: later");
        let late = due + ANSWERING_HOST_GRACE_MS;
        assert!(!may_ask(late - 1, due, || true));
        assert!(may_ask(late, due, || true), "but not forever");
    }
}
