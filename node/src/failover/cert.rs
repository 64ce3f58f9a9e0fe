//! Certificates against what a node knows: the signatures (a majority of
//! the assignment's signers, each once), that the signers are the voter
//! set this node knows for the epoch before, and that the set does not
//! change (a change of voter set needs a rule this delivery does not have
//! yet: docs/protocol.md says why). And [`Ballot`]: a proposer's votes,
//! collected into a certificate.

use protocol::ids::PeerIdBytes;
use protocol::lease::{majority, AssignmentBody, AssignmentKind, Certificate, VoterSignature};
use protocol::limits::MIN_VOTERS_FOR_FAILOVER;

use super::error::FailoverError;

/// Checks `body` against the certificate this node knows (`known`, its
/// highest): the shape ([`AssignmentBody::check`]), the same voter set
/// throughout, and, when `known` is the epoch `body` follows, that its
/// signers are that epoch's voters. A takeover needs
/// [`MIN_VOTERS_FOR_FAILOVER`] voters.
pub fn check_assignment(
    body: &AssignmentBody,
    known: Option<&AssignmentBody>,
) -> Result<(), FailoverError> {
    body.check()?;
    if body.signers != body.voters {
        return Err(FailoverError::VoterSetChange);
    }
    if body.kind == AssignmentKind::Takeover && body.voters.len() < MIN_VOTERS_FOR_FAILOVER {
        return Err(FailoverError::TooFewVoters {
            found: body.voters.len(),
            needed: MIN_VOTERS_FOR_FAILOVER,
        });
    }
    if let Some(k) = known {
        if k.vessel == body.vessel && k.voters != body.signers {
            return Err(FailoverError::WrongSigners { epoch: k.epoch });
        }
    }
    Ok(())
}

/// A certificate, checked: [`check_assignment`] and every signature.
pub fn check_certificate(
    cert: &Certificate,
    known: Option<&AssignmentBody>,
) -> Result<(), FailoverError> {
    check_assignment(&cert.body, known)?;
    cert.verify()?;
    Ok(())
}

/// The votes a proposer collected for one assignment.
#[derive(Debug, Clone)]
pub struct Ballot {
    pub body: AssignmentBody,
    pub signatures: Vec<VoterSignature>,
}

impl Ballot {
    pub fn new(body: AssignmentBody) -> Ballot {
        Ballot {
            body,
            signatures: Vec::new(),
        }
    }

    /// Adds a vote (a signer's valid signature, once each) and returns the
    /// certificate once a majority of the signers signed.
    pub fn add(&mut self, sig: VoterSignature) -> Option<Certificate> {
        let fresh = self.body.signers.contains(&sig.voter)
            && !self.signatures.iter().any(|s| s.voter == sig.voter)
            && self.body.verify(&sig).is_ok();
        if fresh {
            self.signatures.push(sig);
        }
        self.certificate()
    }

    /// The certificate, if a majority signed.
    pub fn certificate(&self) -> Option<Certificate> {
        (self.signatures.len() >= majority(self.body.signers.len())).then(|| Certificate {
            body: self.body.clone(),
            signatures: self.signatures.clone(),
        })
    }

    /// Whether `voter` signed already (so it need not be asked again).
    pub fn has(&self, voter: &PeerIdBytes) -> bool {
        self.signatures.iter().any(|s| &s.voter == voter)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::lease::{peer_id_bytes_of, LEASE_VERSION};
    use protocol::membership::PublicKey;
    use protocol::vessel::VesselId;

    pub fn key(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n + 1; 32])
    }

    pub fn id(n: u8) -> PeerIdBytes {
        peer_id_bytes_of(&PublicKey::of(&key(n)))
    }

    /// An assignment of the vessel among voters 0..voters to `owner`.
    pub fn body(epoch: u64, owner: u8, kind: AssignmentKind, voters: u8) -> AssignmentBody {
        let set: Vec<PeerIdBytes> = (0..voters).map(id).collect();
        AssignmentBody {
            version: LEASE_VERSION,
            vessel: VesselId([1; 8]),
            epoch,
            owner: id(owner),
            kind,
            previous_epoch: if kind == AssignmentKind::Deploy {
                0
            } else {
                epoch - 1
            },
            signers: set.clone(),
            voters: set,
        }
    }

    pub fn signed(body: AssignmentBody, by: &[u8]) -> Certificate {
        let mut b = Ballot::new(body);
        for n in by {
            b.add(b.body.sign(&key(*n), id(*n)));
        }
        Certificate {
            body: b.body,
            signatures: b.signatures,
        }
    }

    #[test]
    fn a_ballot_becomes_a_certificate_at_a_majority_of_distinct_signers() {
        let mut b = Ballot::new(body(2, 1, AssignmentKind::Takeover, 3));
        assert!(b.add(b.body.sign(&key(1), id(1))).is_none());
        assert!(b.add(b.body.sign(&key(1), id(1))).is_none(), "twice");
        assert!(b.add(b.body.sign(&key(7), id(7))).is_none(), "not a signer");
        let mut forged = b.body.sign(&key(0), id(0));
        forged.voter = id(2);
        assert!(b.add(forged).is_none(), "a signature that does not verify");
        let cert = b.add(b.body.sign(&key(2), id(2))).expect("a majority");
        assert_eq!(check_certificate(&cert, None), Ok(()));
        assert!(b.has(&id(2)) && !b.has(&id(0)));
    }

    #[test]
    fn a_certificate_must_keep_the_voter_set_it_follows() {
        let known = body(1, 0, AssignmentKind::Deploy, 3);
        let next = signed(body(2, 1, AssignmentKind::Takeover, 3), &[0, 1]);
        assert_eq!(check_certificate(&next, Some(&known)), Ok(()));
        let other = body(1, 0, AssignmentKind::Deploy, 4);
        assert_eq!(
            check_certificate(&next, Some(&other)),
            Err(FailoverError::WrongSigners { epoch: 1 })
        );
        let mut grown = body(2, 1, AssignmentKind::Takeover, 3);
        grown.voters.push(id(3));
        assert_eq!(
            check_assignment(&grown, None),
            Err(FailoverError::VoterSetChange)
        );
        let small = body(2, 1, AssignmentKind::Takeover, 2);
        assert!(matches!(
            check_assignment(&small, None),
            Err(FailoverError::TooFewVoters {
                found: 2,
                needed: 3
            })
        ));
        let short = signed(body(2, 1, AssignmentKind::Takeover, 3), &[1]);
        assert!(matches!(
            check_certificate(&short, None),
            Err(FailoverError::Certificate(_))
        ));
    }
}
