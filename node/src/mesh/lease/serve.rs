//! Answering a peer's lease request or vote: the voter decides
//! (`failover::voter`), this makes its promise durable first when it made
//! one, signs what it agreed to sign, and answers.

use libp2p::PeerId;
use protocol::lease::{LeaseRequest, LeaseResponse};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;

use super::{now_ms, peer_bytes, store, Leases};
use crate::failover::voter::{Answer, Outcome};
use crate::sync::lock;

/// The vessel a request is about.
fn vessel_of(request: &LeaseRequest) -> VesselId {
    match request {
        LeaseRequest::Lease { certificate, .. } => certificate.body.vessel,
        LeaseRequest::Vote { body, .. } => body.vessel,
        LeaseRequest::Proof { vessel, .. } => *vessel,
    }
}

/// Answers an entry's [`LeaseRequest::Proof`]: the certificate of
/// `vessel` at `epoch`, the one kept beside its record here (this node
/// owns or owned that epoch) or the one its voter learnt. A read, never a
/// promise: nothing is written.
pub fn proof(
    leases: &Leases,
    host: &std::sync::Mutex<crate::vessel::Host>,
    vessel: VesselId,
    epoch: u64,
) -> Result<LeaseResponse, Refusal> {
    let at_epoch = |c: &protocol::lease::Certificate| c.body.epoch == epoch;
    let kept = lock(host).certificate(vessel).filter(at_epoch);
    let known = || {
        let book = lock(&leases.book);
        book.known(vessel).filter(at_epoch)
    };
    kept.or_else(known)
        .map(LeaseResponse::Proof)
        .ok_or_else(|| {
            Refusal::new(
                RefusalCode::UnknownVessel,
                format!("no certificate of vessel {vessel} at epoch {epoch} here"),
            )
        })
}

/// Answers `request` from `from` (a member; the gate checked it).
pub async fn serve(
    leases: &Leases,
    signing: &ed25519_dalek::SigningKey,
    from: PeerId,
    request: LeaseRequest,
) -> Result<LeaseResponse, Refusal> {
    let vessel = vessel_of(&request);
    let sender = peer_bytes(&from);
    // Decided and written under one durable-write turn, so that promises
    // reach the disk in the order they were made.
    let _turn = leases.writes.lock().await;
    let (outcome, round, me, learnt) = {
        let mut book = lock(&leases.book);
        let me = book.me.clone();
        let voter = book.voter(vessel);
        let before = voter.known.as_ref().map(|k| k.body.epoch);
        let now = now_ms();
        let (outcome, round) = match &request {
            LeaseRequest::Lease { certificate, round } => {
                (voter.lease(&sender, certificate, now), *round)
            }
            LeaseRequest::Vote { body, proof } => {
                (voter.vote(&sender, body, proof.as_ref(), now), 0)
            }
            LeaseRequest::Proof { .. } => {
                return Err(Refusal::internal("a proof is answered by `proof`"));
            }
        };
        let learnt = voter.known.clone().filter(|k| Some(k.body.epoch) != before);
        (outcome, round, me, learnt)
    };
    if let Some(cert) = learnt {
        // Not for safety, so a failure only warns: a restart then forgets
        // it, as before.
        let dir = leases.dir.clone();
        let written =
            tokio::task::spawn_blocking(move || store::write_known(&dir, vessel, &cert)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(vessel = %vessel, "cannot keep the certificate this voter learnt: {written:?}");
        }
    }
    let Outcome { answer, write } = outcome;
    if let Some(durable) = write {
        let dir = leases.dir.clone();
        tokio::task::spawn_blocking(move || store::write(&dir, vessel, &durable))
            .await
            .map_err(|e| Refusal::internal(format!("its write task failed: {e}")))?
            .map_err(|e| {
                Refusal::new(
                    RefusalCode::Internal,
                    format!("cannot make this voter's promise durable: {e}"),
                )
            })?;
    }
    match answer.map_err(|e| e.refusal())? {
        Answer::Granted { epoch } => Ok(LeaseResponse::Granted {
            vessel,
            epoch,
            round,
        }),
        Answer::Sign(body) => Ok(LeaseResponse::Voted(body.sign(signing, me))),
        Answer::Superseded(cert) => Ok(LeaseResponse::Superseded(cert)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::cert::tests::{body, id, key, signed};
    use crate::failover::LeaseParams;
    use protocol::lease::AssignmentKind;

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes(&id(n).0).expect("an ed25519 PeerId")
    }

    /// A replica's voter (node 1) learns the takeover of epoch 2 from its
    /// new owner (node 2), restarts, and is then asked for the lease by the
    /// old host (node 0) at epoch 1. It used to forget the certificate in
    /// the restart and grant epoch 1 without telling node 0 it is fenced;
    /// its takeover watch could not propose either, knowing no epoch.
    #[tokio::test]
    async fn a_restarted_voter_still_knows_the_certificate_it_learned() {
        let dir = tempfile::tempdir().unwrap();
        let params = LeaseParams::default();
        let deployed = signed(body(1, 0, AssignmentKind::Deploy, 3), &[0, 1, 2]);
        let taken = signed(body(2, 2, AssignmentKind::Takeover, 3), &[0, 2]);
        let leases = Leases::open(dir.path(), &peer(1), params);
        let ask = |c: &protocol::lease::Certificate| LeaseRequest::Lease {
            certificate: c.clone(),
            round: 7,
        };
        let granted = serve(&leases, &key(1), peer(2), ask(&taken)).await;
        assert!(matches!(
            granted,
            Ok(LeaseResponse::Granted { epoch: 2, .. })
        ));
        drop(leases);

        let restarted = Leases::open(dir.path(), &peer(1), params);
        let vessel = taken.body.vessel;
        let known = lock(&restarted.book).voter(vessel).known.clone();
        assert_eq!(known, Some(taken.clone()), "the certificate it learned");
        let old_host = serve(&restarted, &key(1), peer(0), ask(&deployed)).await;
        assert_eq!(old_host, Ok(LeaseResponse::Superseded(taken)));
    }
}
