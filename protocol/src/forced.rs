//! A forced recovery (`meshnode recover VESSEL --on PEER --force`, issue
//! 15): the user decided that a vessel's host is gone and that PEER runs
//! the vessel from the newest checkpoint it holds, with no majority of
//! voters behind it (there were fewer than 3, or this side is a minority).
//!
//! PEER runs it at an epoch above every one it knows and signs a
//! [`ForcedCertificate`] for that epoch with its node key alone. The old
//! host, if it was only cut off, is shown it once it is heard from again,
//! and accepts it only by the rule in docs/protocol.md ("Forced recovery"):
//! signed by the node it names as the owner, that node is the one showing
//! it, and its epoch is above the old host's own. It then fences its copy
//! (`Fenced { by_epoch }`) and never runs it again.
//!
//! It is no lease certificate: no voter signed it, and it proves nothing to
//! voters. What it promises is only that the losing copy stops once it
//! hears of the winner; until then both may run.

use serde::{Deserialize, Serialize};

use crate::ids::{PeerIdBytes, VesselId};
use crate::lease::ed25519_key_of;
use crate::limits::MAX_PEER_ID_BYTES;
use crate::membership::{Signature, DOMAIN_PREFIX};

/// Version of the forced-recovery certificate.
pub const FORCED_VERSION: u32 = 1;

/// The signing domain (after [`DOMAIN_PREFIX`]): no other signed message
/// of meshnode uses it, so a forced certificate can never pass for a lease
/// assignment or anything else.
pub const FORCED_DOMAIN: &[u8] = b"forced-recovery";

/// What the recovering node signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedBody {
    pub version: u32,
    pub vessel: VesselId,
    /// The epoch it runs the vessel at now.
    pub epoch: u64,
    /// The node that runs it (and signs this).
    pub owner: PeerIdBytes,
    /// The host it was recovered from, and the epoch of the checkpoint it
    /// ran from.
    pub from_host: PeerIdBytes,
    pub from_epoch: u64,
}

/// A forced recovery, signed by its owner's node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedCertificate {
    pub body: ForcedBody,
    pub signature: Signature,
}

/// Why a forced certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForcedError {
    #[error("forced certificate version {0}, this build reads version {FORCED_VERSION}")]
    Version(u32),
    #[error("a PeerId of {0} bytes in a forced certificate, over the limit")]
    PeerIdTooLong(usize),
    #[error("the forced epoch {epoch} is not above the epoch it recovered from ({from})")]
    EpochOrder { epoch: u64, from: u64 },
    #[error("its owner is not an ed25519 node id")]
    NoKey,
    #[error("its owner's signature does not verify")]
    BadSignature,
}

impl ForcedBody {
    /// The exact bytes the owner signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(DOMAIN_PREFIX);
        out.extend_from_slice(FORCED_DOMAIN);
        out.push(0);
        out.extend_from_slice(&crate::cbor::encode(self));
        out
    }

    /// Signed by `owner`, whose node id this body names.
    pub fn sign(self, owner: &ed25519_dalek::SigningKey) -> ForcedCertificate {
        use ed25519_dalek::Signer;
        let signature = Signature(owner.sign(&self.signed_bytes()).to_bytes());
        ForcedCertificate {
            body: self,
            signature,
        }
    }
}

impl ForcedCertificate {
    /// Whether it is well formed and its owner signed it. Never panics,
    /// whatever decoded.
    pub fn verify(&self) -> Result<(), ForcedError> {
        let b = &self.body;
        if b.version != FORCED_VERSION {
            return Err(ForcedError::Version(b.version));
        }
        for p in [&b.owner, &b.from_host] {
            if p.0.len() > MAX_PEER_ID_BYTES {
                return Err(ForcedError::PeerIdTooLong(p.0.len()));
            }
        }
        if b.epoch <= b.from_epoch {
            return Err(ForcedError::EpochOrder {
                epoch: b.epoch,
                from: b.from_epoch,
            });
        }
        let key = ed25519_key_of(&b.owner).ok_or(ForcedError::NoKey)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&key.0).map_err(|_| ForcedError::NoKey)?;
        let s = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&b.signed_bytes(), &s)
            .map_err(|_| ForcedError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::peer_id_bytes_of;
    use crate::membership::PublicKey;

    fn key(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    fn body(owner: u8) -> ForcedBody {
        ForcedBody {
            version: FORCED_VERSION,
            vessel: VesselId([1; 8]),
            epoch: 3,
            owner: peer_id_bytes_of(&PublicKey::of(&key(owner))),
            from_host: peer_id_bytes_of(&PublicKey::of(&key(9))),
            from_epoch: 2,
        }
    }

    #[test]
    fn only_the_owner_named_signs_a_forced_certificate() {
        let good = body(1).sign(&key(1));
        good.verify().unwrap();
        let by_other = body(1).sign(&key(2));
        assert_eq!(by_other.verify(), Err(ForcedError::BadSignature));
        let mut raised = good.clone();
        raised.body.epoch = 9;
        assert_eq!(raised.verify(), Err(ForcedError::BadSignature));
        let backwards = ForcedBody {
            epoch: 2,
            ..body(1)
        }
        .sign(&key(1));
        assert!(matches!(
            backwards.verify(),
            Err(ForcedError::EpochOrder { .. })
        ));
        let decoded: ForcedCertificate = crate::cbor::decode(&crate::cbor::encode(&good)).unwrap();
        assert_eq!(decoded, good);
    }
}
