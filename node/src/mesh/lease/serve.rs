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
    }
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
    let (outcome, round, me) = {
        let mut book = lock(&leases.book);
        let me = book.me.clone();
        let voter = book.voter(vessel);
        let now = now_ms();
        match &request {
            LeaseRequest::Lease { certificate, round } => {
                (voter.lease(&sender, certificate, now), *round, me)
            }
            LeaseRequest::Vote { body, proof } => {
                (voter.vote(&sender, body, proof.as_ref(), now), 0, me)
            }
        }
    };
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
