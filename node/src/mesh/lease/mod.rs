//! The node's driver of the lease protocol (issue 15): it performs what
//! `failover` decides, with real messages, files and the boot clock, as
//! `mesh/migrate.rs` does for `migration::source`. It decides nothing of
//! its own.
//!
//! Stages, each one job:
//! - this file: the node's [`Leases`] handle: its voters (one
//!   `failover::voter::Voter` per vessel it votes for) and the boot clock
//!   they count on;
//! - [`store`]: what a voter must keep through a crash, on disk
//!   (`DATA/leases/ID.voter.cbor`, fsynced before an answer that depends
//!   on it leaves);
//! - [`serve`]: answering a peer's lease request or vote;
//! - [`hold`]: the owner's side: lease rounds to the voters, the vessel's
//!   gate, the lease note, and fencing when a higher certificate shows up;
//! - [`elect`]: collecting votes into a certificate (a deploy's);
//! - [`keep`]: keeping a vessel leased on its owner (its certificate on
//!   disk, or winning one at deployment, then holding);
//! - [`reconfigure`]: changing a vessel's voter set when a voter is down,
//!   left or was revoked, or a replica is not a voter;
//! - [`takeover`]: a replica that votes for a vessel takes it over once
//!   its own grant to the host has run out.

pub mod elect;
pub mod hold;
pub mod keep;
pub mod reconfigure;
pub mod serve;
pub mod store;
pub mod takeover;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use libp2p::PeerId;
use protocol::ids::PeerIdBytes;
use protocol::lease::{LeaseRequest, LeaseResponse};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::vessel::VesselId;

use super::link::{Link, RequestError};

use crate::boot_clock::BootInstant;
use crate::failover::voter::Voter;
use crate::failover::LeaseParams;
use crate::sync::lock;

/// The boot clock in the milliseconds `failover` counts in.
pub fn now_ms() -> u64 {
    BootInstant::now().as_ns() / 1_000_000
}

/// A PeerId as the lease messages name it.
pub fn peer_bytes(peer: &PeerId) -> PeerIdBytes {
    PeerIdBytes(peer.to_bytes())
}

/// Where the lease of a vessel this node owns stands (for `ps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// It runs without a lease, and fails over only by hand: why.
    Unleased(String),
    /// It runs under this certificate while its lease holds.
    Held(protocol::lease::Certificate),
    /// A voter showed a higher epoch: it never runs here again.
    Fenced { by_epoch: u64 },
}

/// This node's voters, one per vessel it votes for, and the lease status
/// of the vessels it owns.
pub struct LeaseBook {
    pub me: PeerIdBytes,
    pub params: LeaseParams,
    /// When this node started, on the boot clock: every voter's boot wait
    /// counts from it (a voter created later forgot nothing since).
    pub started_ms: u64,
    voters: HashMap<VesselId, Voter>,
    status: HashMap<VesselId, LeaseStatus>,
    /// Until when each held lease holds (the holders write it).
    held_until: HashMap<VesselId, BootInstant>,
}

impl LeaseBook {
    /// The voter for `vessel` (a fresh one if this node never voted for it).
    pub fn voter(&mut self, vessel: VesselId) -> &mut Voter {
        let (me, params, started) = (self.me.clone(), self.params, self.started_ms);
        self.voters
            .entry(vessel)
            .or_insert_with(|| Voter::start(me, params, Default::default(), started))
    }

    /// The highest certificate this node's voter for `vessel` learnt, if
    /// it votes for it (creates no voter).
    pub fn known(&self, vessel: VesselId) -> Option<protocol::lease::Certificate> {
        self.voters.get(&vessel).and_then(|v| v.known.clone())
    }
}

/// The node's handle on its leases: cheap to clone, shared by the serving
/// side and the holders.
#[derive(Clone)]
pub struct Leases {
    pub book: Arc<Mutex<LeaseBook>>,
    /// Where voters keep what they must not forget.
    pub dir: PathBuf,
    /// One durable write at a time, so that a later promise is never
    /// overwritten by an earlier one finishing last.
    pub writes: Arc<tokio::sync::Mutex<()>>,
}

impl Leases {
    /// Opens the voters' directory under `data_dir` and loads what they
    /// made durable before; the node starts now.
    pub fn open(data_dir: &std::path::Path, me: &PeerId, params: LeaseParams) -> Leases {
        let dir = data_dir.join("leases");
        let started_ms = now_ms();
        let mut known = store::load_known(&dir);
        let mut voters: HashMap<VesselId, Voter> = store::load_all(&dir)
            .into_iter()
            .map(|(id, durable)| {
                (
                    id,
                    Voter::start(peer_bytes(me), params, durable, started_ms),
                )
            })
            .collect();
        // What each voter was shown before the restart: a replica whose
        // host died meanwhile takes it over from there.
        for (id, cert) in known.drain() {
            voters
                .entry(id)
                .or_insert_with(|| {
                    Voter::start(peer_bytes(me), params, Default::default(), started_ms)
                })
                .known = Some(cert);
        }
        Leases {
            book: Arc::new(Mutex::new(LeaseBook {
                me: peer_bytes(me),
                params,
                started_ms,
                voters,
                status: HashMap::new(),
                held_until: HashMap::new(),
            })),
            dir,
            writes: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn params(&self) -> LeaseParams {
        lock(&self.book).params
    }

    /// A status in words, for `ps`.
    pub fn describe(&self, status: &LeaseStatus) -> String {
        match status {
            LeaseStatus::Unleased(why) => format!("none ({why}); it fails over only by hand"),
            LeaseStatus::Fenced { by_epoch } => {
                format!("fenced: another node owns it at epoch {by_epoch}")
            }
            LeaseStatus::Held(cert) => {
                let voters = cert.body.voters.len();
                let epoch = cert.body.epoch;
                match self.held_until(cert.body.vessel) {
                    Some(until) if until > BootInstant::now() => format!(
                        "held at epoch {epoch} from {voters} voters, {:.1} s left",
                        until.since(BootInstant::now()).as_secs_f64()
                    ),
                    _ => format!("not held: too few of its {voters} voters answer (epoch {epoch})"),
                }
            }
        }
    }

    /// Until when this node's lease of `vessel` holds, if it holds one.
    pub fn held_until(&self, vessel: VesselId) -> Option<BootInstant> {
        lock(&self.book).held_until.get(&vessel).copied()
    }

    /// The lease status of a vessel this node owns (or owned), if any.
    pub fn status(&self, vessel: VesselId) -> Option<LeaseStatus> {
        lock(&self.book).status.get(&vessel).cloned()
    }
}

/// What the owner's side and the elections need: the leases, a link to
/// the voters, and the node's key (a vote is signed with it).
#[derive(Clone)]
pub struct LeaseDriver {
    pub leases: Leases,
    pub link: Link,
    pub me: PeerId,
    pub signing: ed25519_dalek::SigningKey,
    /// Where the host's chosen replicas are (they are voters first).
    pub replication: Arc<super::replica_book::Replication>,
}

impl LeaseDriver {
    pub fn set_status(&self, vessel: VesselId, status: LeaseStatus) {
        lock(&self.leases.book).status.insert(vessel, status);
    }

    pub fn set_held_until(&self, vessel: VesselId, until: BootInstant) {
        lock(&self.leases.book).held_until.insert(vessel, until);
    }

    /// Asks one voter, this node's own through its voter directly, and
    /// waits at most `timeout`: a voter that does not answer in time is
    /// one that did not grant (the rounds are the retries).
    pub async fn ask(
        &self,
        voter: &PeerIdBytes,
        request: LeaseRequest,
        timeout: Duration,
    ) -> Result<LeaseResponse, AskFailed> {
        if *voter == peer_bytes(&self.me) {
            return serve::serve(&self.leases, &self.signing, self.me, request)
                .await
                .map_err(|r| AskFailed::refused(format!("this node refused: {r}"), r));
        }
        let peer =
            PeerId::from_bytes(&voter.0).map_err(|e| AskFailed::other(format!("voter id: {e}")))?;
        let asked = self.link.request_once(peer, PeerRequest::Lease(request));
        match tokio::time::timeout(timeout, asked).await {
            Err(_) => Err(AskFailed::other(format!(
                "{peer} did not answer within {timeout:?}"
            ))),
            Ok(Err(RequestError::Refused { peer, refusal })) => Err(AskFailed::refused(
                format!("{peer} refused: {refusal}"),
                refusal,
            )),
            Ok(Err(e)) => Err(AskFailed::other(e.to_string())),
            Ok(Ok(PeerResponse::Lease(r))) => Ok(r),
            Ok(Ok(other)) => Err(AskFailed::other(format!("{peer} answered {other:?}"))),
        }
    }
}

/// Why a voter's answer did not come.
#[derive(Debug, Clone)]
pub struct AskFailed {
    pub why: String,
    /// The voter's refusal, when it refused.
    pub refusal: Option<protocol::refusal::Refusal>,
}

impl AskFailed {
    fn other(why: String) -> AskFailed {
        AskFailed { why, refusal: None }
    }

    fn refused(why: String, refusal: protocol::refusal::Refusal) -> AskFailed {
        AskFailed {
            why,
            refusal: Some(refusal),
        }
    }
}

impl std::fmt::Display for AskFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}
