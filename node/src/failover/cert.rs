//! Certificates against what a node knows: the signatures (a majority of
//! the assignment's signers, each once), that the signers are the voter
//! set this node knows for the epoch before, and that only a
//! `Reconfigure` changes the set (keeping its owner, and at least
//! [`MIN_VOTERS_FOR_FAILOVER`] voters; the voter's rules say who signs
//! one, docs/protocol.md why that is safe). And [`Ballot`]: a proposer's
//! votes, collected into a certificate.

use protocol::ids::PeerIdBytes;
use protocol::lease::{majority, AssignmentBody, AssignmentKind, Certificate, VoterSignature};
use protocol::limits::MIN_VOTERS_FOR_FAILOVER;

use super::error::FailoverError;

/// Checks `body` against the certificate this node knows (`known`, its
/// highest): the shape ([`AssignmentBody::check`]), the same voter set
/// unless it is a reconfiguration (which must change it), and, when
/// `known` is the epoch `body` follows, that its signers are that epoch's
/// voters. A takeover, and the set a reconfiguration makes, need
/// [`MIN_VOTERS_FOR_FAILOVER`] voters.
pub fn check_assignment(
    body: &AssignmentBody,
    known: Option<&AssignmentBody>,
) -> Result<(), FailoverError> {
    body.check()?;
    let reconfigures = body.kind == AssignmentKind::Reconfigure;
    if reconfigures == (body.signers == body.voters) {
        return Err(FailoverError::VoterSetChange);
    }
    let needs_three = matches!(
        body.kind,
        AssignmentKind::Takeover | AssignmentKind::Reconfigure
    );
    if needs_three && body.voters.len() < MIN_VOTERS_FOR_FAILOVER {
        return Err(FailoverError::TooFewVoters {
            found: body.voters.len(),
            needed: MIN_VOTERS_FOR_FAILOVER,
        });
    }
    // Only the epoch it follows says who signs: a certificate learnt out
    // of order (below what this node knows) is checked by its signatures.
    if let Some(k) = known.filter(|k| k.vessel == body.vessel && k.epoch == body.previous_epoch) {
        if k.voters != body.signers {
            return Err(FailoverError::WrongSigners { epoch: k.epoch });
        }
        if reconfigures && k.owner != body.owner {
            return Err(FailoverError::NotOwner { epoch: k.epoch });
        }
    }
    Ok(())
}

/// Checks the certificate a vote request shows for the epoch `body`
/// follows: it is that epoch's, and its voters are `body`'s signers (so a
/// voter that knows a higher epoch still checks who signs).
pub fn check_proof(body: &AssignmentBody, proof: &Certificate) -> Result<(), FailoverError> {
    if proof.body.epoch != body.previous_epoch || proof.body.vessel != body.vessel {
        return Err(FailoverError::WrongProof {
            epoch: body.previous_epoch,
        });
    }
    if proof.body.voters != body.signers {
        return Err(FailoverError::WrongSigners {
            epoch: proof.body.epoch,
        });
    }
    if body.kind == AssignmentKind::Reconfigure && proof.body.owner != body.owner {
        return Err(FailoverError::NotOwner {
            epoch: proof.body.epoch,
        });
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

    /// Whether the proposer's own voter should sign now: a candidate for a
    /// takeover signs its own ballot only as the vote that completes the
    /// majority, so that a ballot the others refuse (a voter bound by a
    /// change of voter set it signed, rule 5) leaves no promise behind
    /// that would later make it refuse to complete that change.
    pub fn signs_last(&self) -> bool {
        self.signatures.len() + 1 >= majority(self.body.signers.len())
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
        let mut changed = body(2, 0, AssignmentKind::Reconfigure, 3);
        assert_eq!(
            check_assignment(&changed, Some(&known)),
            Err(FailoverError::VoterSetChange),
            "a reconfiguration changes the set"
        );
        changed.voters[2] = id(3);
        assert_eq!(check_assignment(&changed, Some(&known)), Ok(()));
        changed.owner = id(1);
        assert_eq!(
            check_assignment(&changed, Some(&known)),
            Err(FailoverError::NotOwner { epoch: 1 }),
            "a reconfiguration keeps the owner"
        );
        changed.voters.pop();
        assert!(matches!(
            check_assignment(&changed, None),
            Err(FailoverError::TooFewVoters { found: 2, .. })
        ));
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
