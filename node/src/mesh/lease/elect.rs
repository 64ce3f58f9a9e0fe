//! Collecting votes into a certificate: every signer of an assignment is
//! asked at once (this node through its own voter), and the certificate is
//! there when a majority signed.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use protocol::ids::PeerIdBytes;
use protocol::lease::{AssignmentBody, AssignmentKind, Certificate, LeaseRequest, LeaseResponse};

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
    // A candidate for a takeover asks its own voter last, as the vote that
    // completes the majority (`Ballot::signs_last`): a ballot the others
    // refuse then leaves no promise of its own behind.
    let me = super::peer_bytes(&driver.me);
    let last = (body.kind == AssignmentKind::Takeover && body.signers.contains(&me)).then_some(me);
    let ask = |voter: PeerIdBytes| {
        let request = LeaseRequest::Vote {
            body: body.clone(),
            proof: proof.clone(),
        };
        async move {
            let answer = driver.ask(&voter, request, timeout).await;
            (voter, answer)
        }
    };
    let mut asks: FuturesUnordered<_> = body
        .signers
        .iter()
        .filter(|v| Some(*v) != last.as_ref())
        .map(|v| ask(v.clone()))
        .collect();
    if last.is_some() && ballot.signs_last() {
        asks.push(ask(last.clone().expect("checked")));
    }
    let mut own_asked = last.is_none() || ballot.signs_last();
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
                if !own_asked && ballot.signs_last() {
                    own_asked = true;
                    asks.push(ask(last.clone().expect("not asked yet")));
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
