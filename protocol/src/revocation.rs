//! Revocations and endorsements, and the trust notice that gossips them
//! (issue 14, item 1). Plain data and pure functions.
//!
//! - A [`Revocation`] is a user key's statement "node key N is no longer a
//!   member". It also voids every certificate N issued under an invite
//!   grant: a stolen board's key signs as well as the board did.
//! - An *endorsement* is a [`MemberCertificate`] signed by the user key
//!   itself (no grant) for a node that a revoked node had enrolled: it
//!   replaces that node's invite certificate, so the node stays a member.
//! - A [`TrustNotice`] carries every revocation and endorsement a node
//!   holds; nodes gossip it on [`TRUST_TOPIC`] when it changes and now and
//!   then, so that a node that was away catches up. Every entry verifies on
//!   its own (the user's signature), so a notice needs no sender's
//!   authority, and an entry whose user key the receiver does not trust is
//!   ignored.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ENDORSEMENTS, MAX_REVOCATIONS};
use crate::membership::{
    sign, verify, Domain, MemberCertificate, MembershipError, PublicKey, Signature,
    MEMBERSHIP_VERSION,
};

/// The gossipsub topic of trust notices.
pub const TRUST_TOPIC: &str = "meshnode/trust/1";

/// A user key revokes a node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub body: RevocationBody,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBody {
    pub version: u32,
    pub user_key: PublicKey,
    pub node_key: PublicKey,
}

impl Revocation {
    pub fn sign(user: &SigningKey, node_key: PublicKey) -> Revocation {
        let body = RevocationBody {
            version: MEMBERSHIP_VERSION,
            user_key: PublicKey::of(user),
            node_key,
        };
        let signature = sign(user, Domain::Revocation, &body);
        Revocation { body, signature }
    }

    /// Checks the version and the user's signature (not whether the user
    /// is trusted).
    pub fn verify(&self) -> Result<(), MembershipError> {
        if self.body.version != MEMBERSHIP_VERSION {
            return Err(MembershipError::Version {
                found: self.body.version,
                expected: MEMBERSHIP_VERSION,
            });
        }
        verify(
            &self.body.user_key,
            Domain::Revocation,
            &self.body,
            &self.signature,
        )
        .map_err(|source| MembershipError::Signature {
            what: "revocation",
            source,
        })
    }
}

/// Checks an endorsement: a certificate the user key signed itself (no
/// invite grant), for the node key it names.
pub fn verify_endorsement(cert: &MemberCertificate) -> Result<(), MembershipError> {
    if cert.body.grant.is_some() {
        return Err(MembershipError::NotEndorsement);
    }
    cert.verify_for(&cert.body.node_key)
}

/// Every revocation and endorsement a node holds, as gossiped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustNotice {
    pub revocations: Vec<Revocation>,
    pub endorsements: Vec<MemberCertificate>,
}

/// Why a trust notice was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustNoticeError {
    #[error("{found} revocations, over the limit of {limit}")]
    TooManyRevocations { found: usize, limit: usize },
    #[error("{found} endorsements, over the limit of {limit}")]
    TooManyEndorsements { found: usize, limit: usize },
}

impl TrustNotice {
    /// Bounds only; each entry's signature is checked by the receiver.
    pub fn check(&self) -> Result<(), TrustNoticeError> {
        if self.revocations.len() > MAX_REVOCATIONS {
            return Err(TrustNoticeError::TooManyRevocations {
                found: self.revocations.len(),
                limit: MAX_REVOCATIONS,
            });
        }
        if self.endorsements.len() > MAX_ENDORSEMENTS {
            return Err(TrustNoticeError::TooManyEndorsements {
                found: self.endorsements.len(),
                limit: MAX_ENDORSEMENTS,
            });
        }
        Ok(())
    }
}

/// Decodes `data` as a trust notice and checks every entry without
/// panicking: the `mesh_messages` fuzz target's part for this module.
pub fn trust_notice_oracle(data: &[u8]) -> bool {
    let Some(notice) = crate::fuzzing::round_trip::<TrustNotice>(data) else {
        return false;
    };
    let _ = notice.check();
    for r in &notice.revocations {
        let _ = r.verify();
    }
    for c in &notice.endorsements {
        let _ = verify_endorsement(c);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_STATUS_MESSAGE_BYTES;
    use crate::membership::{InviteGrant, Nonce};
    use crate::snapshot::Hash;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_revocation_verifies_and_a_changed_one_does_not() {
        let r = Revocation::sign(&key(1), PublicKey::of(&key(2)));
        r.verify().unwrap();
        let mut moved = r.clone();
        moved.body.node_key = PublicKey::of(&key(3));
        assert!(matches!(
            moved.verify(),
            Err(MembershipError::Signature {
                what: "revocation",
                ..
            })
        ));
        // A certificate's signature over the same bytes is no revocation.
        let mut cross = r.clone();
        cross.signature = sign(&key(1), Domain::MemberCertificate, &r.body);
        assert!(cross.verify().is_err());
    }

    #[test]
    fn an_endorsement_is_signed_by_the_user_key_itself() {
        let node = PublicKey::of(&key(4));
        verify_endorsement(&MemberCertificate::self_enrol(&key(1), node)).unwrap();
        let grant = InviteGrant::sign(
            &key(1),
            PublicKey::of(&key(2)),
            Nonce([1; 32]),
            Hash::of(b"s"),
        );
        let invited = MemberCertificate::by_invite(&key(2), grant, node);
        assert_eq!(
            verify_endorsement(&invited),
            Err(MembershipError::NotEndorsement)
        );
    }

    /// A full notice fits one gossipsub message (whose limit is the status
    /// message's).
    #[test]
    fn a_full_notice_fits_a_gossip_message() {
        let notice = TrustNotice {
            revocations: (0..MAX_REVOCATIONS)
                .map(|i| Revocation::sign(&key(1), PublicKey([i as u8; 32])))
                .collect(),
            endorsements: (0..MAX_ENDORSEMENTS)
                .map(|i| MemberCertificate::self_enrol(&key(1), PublicKey([i as u8; 32])))
                .collect(),
        };
        notice.check().unwrap();
        let bytes = crate::cbor::encode(&notice);
        assert!(
            bytes.len() < MAX_STATUS_MESSAGE_BYTES,
            "{} bytes",
            bytes.len()
        );
        assert!(trust_notice_oracle(&bytes));
        let mut over = notice;
        over.revocations
            .push(Revocation::sign(&key(1), PublicKey([0; 32])));
        assert!(matches!(
            over.check(),
            Err(TrustNoticeError::TooManyRevocations { .. })
        ));
    }
}
