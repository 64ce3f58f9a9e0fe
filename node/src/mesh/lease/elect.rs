//! Collecting votes into a certificate: every signer of an assignment is
//! asked at once (this node through its own voter), and the certificate is
//! there when a majority signed.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use protocol::lease::{AssignmentBody, Certificate, LeaseRequest, LeaseResponse};

use super::LeaseDriver;
use crate::failover::cert::Ballot;

/// How long an election waits for the voters: a vote is one round trip
/// and, at most, one fsync of a small file on a slow SD card.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no certificate came of an election.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectError {
    /// A voter knows a higher certificate: this assignment's epoch is over.
    #[error("a voter knows epoch {} already (owner {})", .0.body.epoch, short(&.0.body.owner.0))]
    Superseded(Box<Certificate>),
    /// Too few signed: each voter's answer, in words.
    #[error("{signed} of {asked} voters signed, {needed} needed: {}", .why.join("; "))]
    NoMajority {
        signed: usize,
        asked: usize,
        needed: usize,
        why: Vec<String>,
        /// The highest epoch a voter said it knows, refusing this one as
        /// stale: a proposer tries above it next time.
        known_epoch: Option<u64>,
    },
}

fn short(b: &[u8]) -> String {
    libp2p::PeerId::from_bytes(b)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Asks every signer of `body` to sign it, with `proof` (the certificate of
/// the epoch it follows; none for a deploy).
pub async fn elect(
    driver: &LeaseDriver,
    body: AssignmentBody,
    proof: Option<Certificate>,
    timeout: Duration,
) -> Result<Certificate, ElectError> {
    let mut ballot = Ballot::new(body.clone());
    let needed = protocol::lease::majority(body.signers.len());
    let mut asks: FuturesUnordered<_> = body
        .signers
        .iter()
        .map(|voter| {
            let request = LeaseRequest::Vote {
                body: body.clone(),
                proof: proof.clone(),
            };
            async move { (voter.clone(), driver.ask(voter, request, timeout).await) }
        })
        .collect();
    let mut why = Vec::new();
    let mut known_epoch: Option<u64> = None;
    let mut signed = 0;
    while let Some((voter, answer)) = asks.next().await {
        match answer {
            Ok(LeaseResponse::Voted(sig)) if sig.voter == voter => {
                signed += 1;
                if let Some(cert) = ballot.add(sig) {
                    return Ok(cert);
                }
            }
            Ok(LeaseResponse::Superseded(cert)) => {
                return Err(ElectError::Superseded(Box::new(cert)));
            }
            Ok(other) => why.push(format!("{}: answered {other:?}", short(&voter.0))),
            Err(e) => {
                if let Some(known) = e.refusal.as_ref().and_then(|r| r.known_epoch) {
                    known_epoch = Some(known_epoch.map_or(known, |k| k.max(known)));
                }
                why.push(e.why);
            }
        }
    }
    Err(ElectError::NoMajority {
        signed,
        asked: body.signers.len(),
        needed,
        why,
        known_epoch,
    })
}
