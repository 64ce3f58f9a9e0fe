//! Why a voter or a holder refuses: typed, each with the protocol code its
//! refusal carries.

use protocol::lease::CertificateError;
use protocol::refusal::{Refusal, RefusalCode};

/// A refusal of the lease protocol, or a bad configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverError {
    #[error("this node is not a voter of the vessel")]
    NotVoter,
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("the certificate for epoch {epoch} names another owner than the sender")]
    NotOwner { epoch: u64 },
    #[error("epoch {epoch} is not above epoch {known}, which this voter promised or knows")]
    StaleEpoch { epoch: u64, known: u64 },
    #[error("this voter granted the lease for {remaining_ms} ms more")]
    GrantRunning { remaining_ms: u64 },
    #[error("this voter restarted and waits {remaining_ms} ms more for the grants it forgot")]
    BootWait { remaining_ms: u64 },
    #[error("the signers are not the voters of epoch {epoch} this node knows")]
    WrongSigners { epoch: u64 },
    #[error("a takeover or handoff changes the voter set, or a reconfiguration keeps it (only a reconfiguration changes it)")]
    VoterSetChange,
    #[error("{found} voters; an automatic failover needs {needed}")]
    TooFewVoters { found: usize, needed: usize },
    #[error("this voter knows the vessel already")]
    Exists,
    #[error("the certificate shown for the previous epoch is not epoch {epoch}")]
    WrongProof { epoch: u64 },
    #[error("lease parameters: {0}")]
    Params(String),
    #[error("this voter signed a reconfiguration at epoch {reconfigured} and signs nothing that follows an epoch below it (this follows {follows})")]
    BelowReconfiguration { follows: u64, reconfigured: u64 },
}

impl FailoverError {
    /// The code a refusal of this carries.
    pub fn code(&self) -> RefusalCode {
        match self {
            FailoverError::NotVoter => RefusalCode::NotVoter,
            FailoverError::Certificate(CertificateError::BadSignature)
            | FailoverError::Certificate(CertificateError::NoKey) => RefusalCode::Forged,
            FailoverError::Certificate(CertificateError::TooMany { .. }) => RefusalCode::Limit,
            FailoverError::Certificate(CertificateError::Version(_)) => RefusalCode::Version,
            FailoverError::Certificate(_)
            | FailoverError::WrongSigners { .. }
            | FailoverError::VoterSetChange
            | FailoverError::TooFewVoters { .. }
            | FailoverError::WrongProof { .. } => RefusalCode::Invalid,
            FailoverError::NotOwner { .. } => RefusalCode::NotOwner,
            FailoverError::StaleEpoch { .. } | FailoverError::BelowReconfiguration { .. } => {
                RefusalCode::StaleEpoch
            }
            FailoverError::GrantRunning { .. } | FailoverError::BootWait { .. } => {
                RefusalCode::LeaseHeld
            }
            FailoverError::Exists => RefusalCode::Exists,
            FailoverError::Params(_) => RefusalCode::BadArgument,
        }
    }

    /// The refusal on the wire (a stale epoch reports the epoch known, for
    /// the asker to propose above it).
    pub fn refusal(&self) -> Refusal {
        let r = Refusal::new(self.code(), self.to_string());
        match self {
            FailoverError::StaleEpoch { known, .. } => r.with_known_epoch(*known),
            FailoverError::BelowReconfiguration { reconfigured, .. } => {
                r.with_known_epoch(*reconfigured)
            }
            _ => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_code() {
        let stale = FailoverError::StaleEpoch { epoch: 3, known: 4 }.refusal();
        assert_eq!(stale.code, RefusalCode::StaleEpoch);
        assert_eq!(stale.known_epoch, Some(4));
        let held = FailoverError::GrantRunning { remaining_ms: 9 };
        assert_eq!(held.code(), RefusalCode::LeaseHeld);
        let forged = FailoverError::from(CertificateError::BadSignature);
        assert_eq!(forged.code(), RefusalCode::Forged);
        assert_eq!(FailoverError::NotVoter.code(), RefusalCode::NotVoter);
    }
}
