//! An entry's check of a leased vessel's new epoch (issue 15: "entries,
//! peers and the old host accept E+1 only with that certificate").
//!
//! An entry learns a service's route from gossip, from frames and from
//! announcements, any of which a member sends. For a leased (replicated)
//! vessel a route that names a new epoch, or a new host at the same
//! epoch, is not followed on the sender's word: the entry asks the claimed
//! owner for that epoch's certificate ([`LeaseRequest::Proof`]) and routes
//! clients there only once it checked it: a majority of its signers
//! signed it, it names that owner and epoch, and, when the entry checked
//! the epoch it follows, its signers are that epoch's voters
//! ([`check_certificate`]). Until then clients keep the route they had.
//!
//! The first route an entry learns of a vessel is taken as it comes (the
//! entry knows no voters to check it against), and a proof is asked for
//! it too, so that the next epoch's signers are checked against its
//! voters. A vessel that is not leased (`--replicas 0`) has no
//! certificates; its routes follow its migrations' signed offers as
//! before. docs/protocol.md ("Who checks a new epoch's certificate").
//!
//! This file holds no I/O but [`ask`]: what to ask is decided by
//! [`RouteProofs`], driven by the ingress task.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::PeerId;
use protocol::lease::{AssignmentBody, Certificate, LeaseRequest, LeaseResponse};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::Refusal;
use protocol::vessel::VesselId;

use super::lease::peer_bytes;
use super::link::{Link, RequestError};
use crate::failover::cert::check_certificate;
use crate::failover::error::FailoverError;

/// Most proofs an entry asks for at once: a burst of gossiped epochs (a
/// mesh-wide failover) is asked for in turn, the rest again at the next
/// gossip.
pub const MAX_PROOFS_IN_FLIGHT: usize = 16;

/// How long an entry waits for a proof (a LAN round trip and a file read;
/// a host that does not answer in this is asked again at the next route).
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a proof was not taken. Each names what it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{host} sent no proof: {0}", host = .1)]
    Unanswered(Box<RequestError>, PeerId),
    #[error("{host} refused the proof: {0}", host = .1)]
    Refused(Box<Refusal>, PeerId),
    #[error("{host} answered the proof with something else")]
    Unexpected { host: PeerId },
    #[error(
        "the proof is of vessel {found_vessel} at epoch {found_epoch}, not {vessel} at {epoch}"
    )]
    OtherAssignment {
        vessel: VesselId,
        epoch: u64,
        found_vessel: VesselId,
        found_epoch: u64,
    },
    #[error("the certificate of epoch {epoch} names another owner than {host}")]
    OtherOwner { epoch: u64, host: PeerId },
    #[error("the certificate of epoch {epoch} does not hold: {source}")]
    Invalid {
        epoch: u64,
        #[source]
        source: FailoverError,
    },
}

/// What an entry checked, and what it is asking.
#[derive(Debug, Default)]
pub struct RouteProofs {
    /// The highest certificate checked per vessel (its voters sign the
    /// next epoch).
    proven: HashMap<VesselId, AssignmentBody>,
    /// Asked and not yet answered, by whom (a claim that does not hold
    /// keeps no one else's from being asked).
    asking: HashSet<(VesselId, u64, PeerId)>,
}

impl RouteProofs {
    /// Whether `host` owns `vessel` at `epoch` by a certificate checked here.
    pub fn proves(&self, vessel: VesselId, epoch: u64, host: &PeerId) -> bool {
        self.proven
            .get(&vessel)
            .is_some_and(|b| b.epoch == epoch && b.owner == peer_bytes(host))
    }

    /// Whether to ask for the proof of `vessel` at `epoch` now (not asked
    /// already, not proven already, room in flight); marks it asked.
    pub fn should_ask(&mut self, vessel: VesselId, epoch: u64, host: PeerId) -> bool {
        if self.proves(vessel, epoch, &host) || self.asking.len() >= MAX_PROOFS_IN_FLIGHT {
            return false;
        }
        let known = self.proven.get(&vessel).map_or(0, |b| b.epoch);
        known <= epoch && self.asking.insert((vessel, epoch, host))
    }

    /// The body this entry checked the proof of `vessel` against.
    pub fn known(&self, vessel: VesselId) -> Option<AssignmentBody> {
        self.proven.get(&vessel).cloned()
    }

    /// The answer to the ask of `host` for `vessel` at `epoch` came: a
    /// checked body (kept if it is the highest) or nothing.
    pub fn answered(
        &mut self,
        (host, vessel, epoch): (PeerId, VesselId, u64),
        checked: Option<AssignmentBody>,
    ) {
        self.asking.remove(&(vessel, epoch, host));
        let Some(body) = checked else { return };
        let higher = self
            .proven
            .get(&vessel)
            .is_none_or(|b| body.epoch > b.epoch);
        if higher {
            self.proven.insert(vessel, body);
        }
    }

    /// Forgets vessels no route names any more (bounded by the routes).
    pub fn retain(&mut self, keep: impl Fn(&VesselId) -> bool) {
        self.proven.retain(|v, _| keep(v));
    }
}

/// Checks `cert` as the proof that `host` owns `vessel` at `epoch`,
/// against the body this entry checked before (`known`).
pub fn check_proof(
    cert: &Certificate,
    vessel: VesselId,
    epoch: u64,
    host: &PeerId,
    known: Option<&AssignmentBody>,
) -> Result<(), ProofError> {
    let body = &cert.body;
    if body.vessel != vessel || body.epoch != epoch {
        return Err(ProofError::OtherAssignment {
            vessel,
            epoch,
            found_vessel: body.vessel,
            found_epoch: body.epoch,
        });
    }
    if body.owner != peer_bytes(host) {
        return Err(ProofError::OtherOwner { epoch, host: *host });
    }
    check_certificate(cert, known).map_err(|source| ProofError::Invalid { epoch, source })
}

/// Asks `host` for its certificate of `vessel` at `epoch` and checks it.
pub async fn ask(
    link: &Link,
    host: PeerId,
    vessel: VesselId,
    epoch: u64,
    known: Option<AssignmentBody>,
) -> Result<AssignmentBody, ProofError> {
    let request = PeerRequest::Lease(LeaseRequest::Proof { vessel, epoch });
    let unanswered = |e| ProofError::Unanswered(Box::new(e), host);
    let answer = match tokio::time::timeout(PROOF_TIMEOUT, link.request_once(host, request)).await {
        Ok(answer) => answer.map_err(unanswered)?,
        Err(_) => {
            return Err(unanswered(RequestError::Failed {
                peer: host,
                reason: format!("no answer within {} s", PROOF_TIMEOUT.as_secs()),
            }))
        }
    };
    let cert = match answer {
        PeerResponse::Lease(LeaseResponse::Proof(cert)) => cert,
        PeerResponse::Refused(r) => return Err(ProofError::Refused(Box::new(r), host)),
        _ => return Err(ProofError::Unexpected { host }),
    };
    check_proof(&cert, vessel, epoch, &host, known.as_ref())?;
    Ok(cert.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::cert::tests::{body, id, signed};
    use protocol::lease::AssignmentKind;

    fn peer_of(n: u8) -> PeerId {
        PeerId::from_bytes(&id(n).0).expect("a test id is a PeerId")
    }

    /// The deploy (owner 0, voters 0..3) and a takeover of it by voter 2.
    fn deploy_and_takeover() -> (AssignmentBody, AssignmentBody) {
        let deploy = body(1, 0, AssignmentKind::Deploy, 3);
        (deploy, body(2, 2, AssignmentKind::Takeover, 3))
    }

    #[test]
    fn a_takeover_certificate_proves_its_owner_and_no_one_else() {
        let (deploy, next) = deploy_and_takeover();
        let v = next.vessel;
        let cert = signed(next, &[1, 2]);
        check_proof(&cert, v, 2, &peer_of(2), Some(&deploy)).expect("the new owner's proof");
        assert!(matches!(
            check_proof(&cert, v, 2, &peer_of(1), Some(&deploy)),
            Err(ProofError::OtherOwner { .. })
        ));
        assert!(matches!(
            check_proof(&cert, v, 3, &peer_of(2), Some(&deploy)),
            Err(ProofError::OtherAssignment { .. })
        ));
    }

    #[test]
    fn a_minority_or_the_wrong_signers_prove_nothing() {
        let (deploy, next) = deploy_and_takeover();
        let v = next.vessel;
        let minority = signed(next.clone(), &[2]);
        assert!(matches!(
            check_proof(&minority, v, 2, &peer_of(2), Some(&deploy)),
            Err(ProofError::Invalid { .. })
        ));
        // A majority of a set that is not the deploy's voters.
        let mut other = next;
        other.signers = vec![id(2), id(4), id(5)];
        other.voters = other.signers.clone();
        let forged = signed(other, &[2, 4, 5]);
        let err = check_proof(&forged, v, 2, &peer_of(2), Some(&deploy));
        assert!(
            matches!(
                err,
                Err(ProofError::Invalid {
                    source: FailoverError::WrongSigners { epoch: 1 },
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn proofs_are_asked_once_and_kept_highest() {
        let mut proofs = RouteProofs::default();
        let b = body(3, 2, AssignmentKind::Takeover, 3);
        let v = b.vessel;
        assert!(proofs.should_ask(v, 3, peer_of(2)));
        assert!(!proofs.should_ask(v, 3, peer_of(2)), "asked already");
        assert!(
            proofs.should_ask(v, 3, peer_of(1)),
            "another claim is asked too"
        );
        proofs.answered((peer_of(1), v, 3), None);
        proofs.answered((peer_of(2), v, 3), Some(b));
        assert!(proofs.proves(v, 3, &peer_of(2)));
        assert!(!proofs.proves(v, 3, &peer_of(1)));
        assert!(!proofs.should_ask(v, 3, peer_of(2)), "proven already");
        assert!(!proofs.should_ask(v, 2, peer_of(0)), "below what is proven");
        proofs.answered(
            (peer_of(0), v, 2),
            Some(body(2, 0, AssignmentKind::Handoff, 3)),
        );
        assert_eq!(
            proofs.known(v).map(|k| k.epoch),
            Some(3),
            "the highest kept"
        );
    }
}
