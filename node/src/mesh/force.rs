//! `meshnode recover VESSEL --on PEER --force` (issue 15): the user
//! decides what the mesh cannot. PEER runs the vessel from the newest
//! checkpoint it holds as its replica, at an epoch above every one it
//! knows, under a [`ForcedCertificate`] it signs itself; and once the old
//! host is heard from again, PEER shows it that certificate, and the old
//! host fences its copy (docs/protocol.md, "Forced recovery").
//!
//! What it refuses: without `--force`; on a node that holds no replica;
//! while the host is up (failure detection does not suspect it: move or
//! stop the vessel instead); while this node's voter still grants the host
//! its lease (the host may still run it: wait, it runs out within a hold).
//!
//! What it cannot prevent, and `--help` says: a host that was only cut off
//! runs on until it hears of the new epoch, so for that time the vessel
//! runs twice, and what the losing copy did is lost.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use protocol::control::RecoverReport;
use protocol::forced::{ForcedBody, ForcedCertificate, FORCED_VERSION};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::replica::ReplicaRecord;
use protocol::vessel::{VesselId, VesselImage};
use tracing::{info, warn};

use super::lease::{now_ms, peer_bytes, LeaseStatus};
use super::link::Link;
use super::liveness::Suspects;
use super::vessels::{refuse, Migrator};
use crate::migration::record::{fenced_by, Record};
use crate::sync::lock;
use crate::vessel::runner::Command as RunnerCmd;
use crate::vessel::Host;

/// How often the recovering node looks whether the old host is heard from
/// again, to fence it: a second adds little to the time both copies run
/// (detection itself takes longer to see it back).
pub const FENCE_RETRY: Duration = Duration::from_secs(1);

/// How long one fence request may take before it is tried again.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// The file beside the record where a forced owner keeps its certificate.
pub const FORCED_FILE: &str = "forced.cbor";

/// Runs `vessel` here from its replica by the user's decision; see the
/// module's doc for what it refuses.
pub fn recover_here(
    migrator: &Migrator,
    suspects: &Suspects,
    vessel: VesselId,
    force: bool,
) -> Result<(RecoverReport, ForcedCertificate), Refusal> {
    let me = migrator.me;
    if !force {
        return Err(refuse(
            RefusalCode::BadArgument,
            "recover runs the vessel without its voters' majority: if its host still runs \
             (cut off, not dead), the vessel runs twice until the host hears of it; add --force \
             to accept that (see `meshnode recover --help`)",
        ));
    }
    let held = held_replica(migrator, vessel)?;
    let from_host = PeerId::from_bytes(&held.host.0)
        .map_err(|_| refuse(RefusalCode::Internal, "the replica's host is not a PeerId"))?;
    check_host_gone(migrator, suspects, vessel, from_host)?;
    let epoch = next_epoch(migrator, vessel, held.epoch);
    let certificate = ForcedBody {
        version: FORCED_VERSION,
        vessel,
        epoch,
        owner: peer_bytes(&me),
        from_host: held.host.clone(),
        from_epoch: held.epoch,
    }
    .sign(&migrator.signing);
    run_forced(&migrator.host, &held, &certificate).map_err(|e| {
        refuse(
            RefusalCode::Internal,
            format!("cannot run vessel {vessel} here: {e}"),
        )
    })?;
    // It runs here now: no longer a replica, so this node's takeover watch
    // never runs the older replica image over it (a takeover after the
    // partition heals would otherwise find the replica and win an epoch).
    super::replica_serve::drop_held(migrator, vessel, held.epoch);
    migrator.lease_driver().set_status(
        vessel,
        LeaseStatus::Unleased(format!(
            "recovered by force at epoch {epoch} from {from_host}'s epoch {}",
            held.epoch
        )),
    );
    info!(%vessel, epoch, %from_host, "recovered by force from its replica");
    let now_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let report = RecoverReport {
        vessel,
        node: me.to_string(),
        epoch,
        from_epoch: held.epoch,
        from_host: from_host.to_string(),
        checkpoint_age_ms: now_unix_ms.checked_sub(held.received_unix_ms),
    };
    Ok((report, certificate))
}

/// The replica this node holds of `vessel`, unless the vessel runs here.
fn held_replica(migrator: &Migrator, vessel: VesselId) -> Result<ReplicaRecord, Refusal> {
    let me = migrator.me;
    if let Some(l) = lock(&migrator.host).vessels.get(&vessel) {
        if matches!(l.record, Record::Owned { .. }) {
            return Err(refuse(
                RefusalCode::Exists,
                format!("vessel {vessel} runs on {me} already"),
            ));
        }
    }
    migrator
        .replication
        .book()
        .held
        .get(&vessel)
        .cloned()
        .ok_or_else(|| {
            refuse(
                RefusalCode::UnknownVessel,
                format!(
                    "{me} holds no replica of vessel {vessel}: recover runs it from a checkpoint \
                     the node holds (`meshnode ps` lists its replicas)"
                ),
            )
        })
}

/// Refused while the host is up, or while this node's voter still grants
/// it the lease.
fn check_host_gone(
    migrator: &Migrator,
    suspects: &Suspects,
    vessel: VesselId,
    host: PeerId,
) -> Result<(), Refusal> {
    if suspects.of(&host).is_none() {
        return Err(refuse(
            RefusalCode::Busy,
            format!(
                "vessel {vessel}'s host {host} is up (this node hears from it): \
                 use `meshnode migrate` or `meshnode stop`; recover is for a host that is gone"
            ),
        ));
    }
    let mut book = lock(&migrator.leases.book);
    let voter = book.voter(vessel);
    let left_ms = voter.granted_until_ms.saturating_sub(now_ms());
    if left_ms > 0 {
        return Err(refuse(
            RefusalCode::LeaseHeld,
            format!(
                "vessel {vessel}'s host {host} holds its lease: this node granted it for {left_ms} ms \
                 more; try again after that"
            ),
        ));
    }
    Ok(())
}

/// An epoch above the replica's and above any this node's voter promised
/// or knows of the vessel.
fn next_epoch(migrator: &Migrator, vessel: VesselId, replica_epoch: u64) -> u64 {
    let mut book = lock(&migrator.leases.book);
    let voter = book.voter(vessel);
    let promised = voter.durable.promised.as_ref().map_or(0, |p| p.epoch);
    let known = voter.known.as_ref().map_or(0, |c| c.body.epoch);
    replica_epoch.max(promised).max(known) + 1
}

/// The replica's image again under the forced epoch, the certificate and
/// the `Owned` record made durable, then the vessel started (unleased: no
/// voter signed this epoch).
fn run_forced(
    host: &Mutex<Host>,
    held: &ReplicaRecord,
    certificate: &ForcedCertificate,
) -> Result<(), String> {
    let mut h = lock(host);
    let bytes = h
        .store
        .get_image_doc(&held.image)
        .map_err(|e| format!("its replica image: {e}"))?;
    let mut image: VesselImage =
        protocol::cbor::decode(&bytes).map_err(|e| format!("its replica image: {e}"))?;
    image.epoch = certificate.body.epoch;
    let (doc, name) = image.encode_and_hash();
    h.store
        .put_image_doc(&doc, true)
        .map_err(|e| format!("its image: {e}"))?;
    let dir = h.vessel_dir(held.vessel);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::daemon::datadir::write_atomic(
        &dir.join(FORCED_FILE),
        &protocol::cbor::encode(certificate),
    )
    .map_err(|e| format!("its forced certificate: {e}"))?;
    let record = Record::Owned {
        epoch: certificate.body.epoch,
        image: name,
    };
    h.write_record(held.vessel, &record)
        .map_err(|e| format!("its record: {e}"))?;
    let reason = format!(
        "recovered by force at epoch {} (`meshnode recover --force`)",
        certificate.body.epoch
    );
    h.start_from_image(image, record, reason, None)
        .map_err(|e| format!("it is owned here now but did not start: {e}"))
}

/// Shows `certificate` to the old host once it is heard from again, until
/// it answers; for as long as the node runs.
pub async fn fence_old_host(link: Link, suspects: Suspects, certificate: ForcedCertificate) {
    let Ok(old) = PeerId::from_bytes(&certificate.body.from_host.0) else {
        return;
    };
    let vessel = certificate.body.vessel;
    loop {
        tokio::time::sleep(FENCE_RETRY).await;
        if suspects.of(&old).is_some() {
            continue;
        }
        let request = ForwardRequest::Fence {
            certificate: certificate.clone(),
        };
        match tokio::time::timeout(FENCE_TIMEOUT, link.forward(old, request)).await {
            Ok(Ok(ForwardResponse::Done)) => {
                info!(%vessel, %old, "the old host knows of the forced recovery: its copy is fenced");
                return;
            }
            Ok(Err(e)) if !e.is_transport() => {
                warn!(%vessel, %old, "the old host refused the forced recovery's fence: {e}");
                return;
            }
            Ok(other) => info!(%vessel, %old, "fence not taken yet: {other:?}"),
            Err(_) => info!(%vessel, %old, "fence not answered within {FENCE_TIMEOUT:?}"),
        }
    }
}

/// At start-up: every vessel owned here under a forced certificate (its
/// record at the certificate's epoch) goes on showing it to the old host,
/// as before the restart, until the old host took it.
pub fn resume_fences(host: &Mutex<Host>, link: &Link, suspects: &Suspects) {
    let forced: Vec<ForcedCertificate> = {
        let h = lock(host);
        h.vessels
            .iter()
            .filter_map(|(id, l)| {
                let Record::Owned { epoch, .. } = l.record else {
                    return None;
                };
                let bytes = std::fs::read(h.vessel_dir(*id).join(FORCED_FILE)).ok()?;
                let cert: ForcedCertificate = protocol::cbor::decode(&bytes).ok()?;
                (cert.body.epoch == epoch && cert.body.vessel == *id).then_some(cert)
            })
            .collect()
    };
    for certificate in forced {
        info!(vessel = %certificate.body.vessel, "showing the forced recovery to the old host again");
        tokio::spawn(fence_old_host(link.clone(), suspects.clone(), certificate));
    }
}

/// The old host's side: fences its copy of the vessel if `certificate`
/// holds (its owner signed it and is `from`, the node showing it) and is
/// above this node's epoch of it. Nothing to fence (no copy, or one that
/// ended, left or was fenced higher) is answered the same.
pub fn fence_here(
    host: &Mutex<Host>,
    from: PeerId,
    certificate: &ForcedCertificate,
) -> Result<(), Refusal> {
    certificate
        .verify()
        .map_err(|e| refuse(RefusalCode::Forged, format!("forced certificate: {e}")))?;
    if certificate.body.owner != peer_bytes(&from) {
        return Err(refuse(
            RefusalCode::Forged,
            format!("a forced certificate is shown by its owner only, not by {from}"),
        ));
    }
    let id = certificate.body.vessel;
    let mut h = lock(host);
    let Some(record) = h.vessels.get(&id).map(|l| l.record.clone()) else {
        return Ok(());
    };
    if let Record::Owned { epoch, .. } = record {
        if epoch >= certificate.body.epoch {
            return Err(refuse(
                RefusalCode::StaleEpoch,
                format!(
                    "vessel {id} is owned here at epoch {epoch}, not below the forced epoch {}",
                    certificate.body.epoch
                ),
            ));
        }
    }
    let Some(fenced) = fenced_by(Some(&record), certificate.body.epoch) else {
        return Ok(());
    };
    h.write_record(id, &fenced)
        .map_err(|e| refuse(RefusalCode::Internal, format!("the Fenced record: {e}")))?;
    if let Some(l) = h.vessels.get_mut(&id) {
        l.gate.shut_now();
        if let Some(r) = l.runner.take() {
            let _ = r.send(RunnerCmd::Stop);
        }
        l.record = fenced;
    }
    warn!(
        vessel = %id,
        epoch = record.epoch(),
        new_epoch = certificate.body.epoch,
        %from,
        "fenced by a forced recovery: the vessel runs there now and never again here"
    );
    Ok(())
}
