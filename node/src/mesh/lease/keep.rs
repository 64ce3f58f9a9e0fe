//! Keeping a vessel leased on its owner: find its certificate (one it was
//! deployed or handed over with, kept beside its record), or win one at
//! deployment, then hold the lease ([`super::hold`]) for as long as the
//! vessel is owned here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use protocol::ids::PeerIdBytes;
use protocol::lease::{AssignmentBody, AssignmentKind, Certificate, LEASE_VERSION};
use protocol::limits::{MAX_VOTERS_PER_VESSEL, MIN_VOTERS_FOR_FAILOVER};
use protocol::vessel::VesselId;
use tracing::info;

use super::elect::{elect, ElectError, ELECTION_TIMEOUT};
use super::hold::hold;
use super::{peer_bytes, LeaseDriver, LeaseStatus};
use crate::migration::record::Record;
use crate::sync::lock;
use crate::vessel::Host;

/// How long a deployment waits before it tries again to win its first
/// certificate (too few members answered, or too few members yet).
pub const ELECTION_RETRY: Duration = Duration::from_secs(2);

/// The voters of a vessel deployed here: this node, its replicas, then the
/// members nearest this node, `wanted` in all (at least
/// [`MIN_VOTERS_FOR_FAILOVER`], odd, at most [`MAX_VOTERS_PER_VESSEL`]).
/// `None` when the mesh has fewer members than that: the vessel runs
/// without a lease, and does not fail over by itself.
pub fn choose_voters(
    me: &PeerId,
    replicas: &[PeerId],
    nearest_members: &[PeerId],
    replicas_wanted: usize,
) -> Option<Vec<PeerIdBytes>> {
    let mut wanted = (1 + replicas_wanted).max(MIN_VOTERS_FOR_FAILOVER);
    if wanted.is_multiple_of(2) {
        wanted += 1;
    }
    let wanted = wanted.min(MAX_VOTERS_PER_VESSEL);
    let mut voters = vec![*me];
    for p in replicas.iter().chain(nearest_members) {
        if voters.len() == wanted {
            break;
        }
        if !voters.contains(p) {
            voters.push(*p);
        }
    }
    (voters.len() >= MIN_VOTERS_FOR_FAILOVER).then(|| voters.iter().map(peer_bytes).collect())
}

/// What the keeper found of the vessel on this node.
enum Found {
    /// Not owned here (any more): nothing to keep.
    Gone,
    /// Owned at this epoch, with a certificate for it.
    Certified(Certificate, Arc<crate::vessel::lease_gate::LeaseGate>),
    /// Owned at this epoch, with none.
    Bare(u64),
}

fn find(host: &Mutex<Host>, id: VesselId, me: &PeerIdBytes) -> Found {
    let h = lock(host);
    let Some(l) = h.vessels.get(&id).filter(|l| !l.stopped) else {
        return Found::Gone;
    };
    let Record::Owned { epoch, .. } = l.record else {
        return Found::Gone;
    };
    match h.certificate(id) {
        Some(c) if c.body.epoch == epoch && c.body.owner == *me => {
            Found::Certified(c, l.gate.clone())
        }
        _ => Found::Bare(epoch),
    }
}

/// Keeps vessel `id` leased for as long as it is owned here: holds the
/// lease of its certificate, or, for a vessel deployed here (epoch 1)
/// without one, wins one first. `replicas_wanted` is its deployment's.
pub async fn keep(driver: LeaseDriver, host: Arc<Mutex<Host>>, id: VesselId, replicas_wanted: u32) {
    let me = peer_bytes(&driver.me);
    loop {
        let epoch = match find(&host, id, &me) {
            Found::Gone => return,
            Found::Certified(cert, gate) => {
                driver.set_status(id, LeaseStatus::Held(cert.clone()));
                match hold(driver.clone(), host.clone(), id, cert, gate).await {
                    super::hold::Held::Changed => continue,
                    super::hold::Held::Over => return,
                }
            }
            Found::Bare(epoch) => epoch,
        };
        if replicas_wanted == 0 || epoch != 1 {
            let why = match replicas_wanted {
                0 => "no replicas asked for".to_string(),
                _ => format!("it came to epoch {epoch} without a certificate"),
            };
            driver.set_status(id, LeaseStatus::Unleased(why));
            return;
        }
        match win_deployment(&driver, &host, id, replicas_wanted).await {
            Ok(()) => continue,
            Err(why) => driver.set_status(id, LeaseStatus::Unleased(why)),
        }
        tokio::time::sleep(ELECTION_RETRY).await;
    }
}

/// Before a move of a leased vessel: wins the certificate that hands
/// epoch `epoch` to `to` (its voters sign it because this node, the owner
/// of the epoch before, asks). The source offers it with its final offer,
/// and passes its commit point only with it, so a vessel moved never runs
/// at an epoch its voters did not give. `Ok(None)`: the vessel has no
/// lease here, nothing to hand over. A refusal that reports a known epoch
/// tells the caller to offer above it next time.
pub async fn win_handoff(
    driver: &LeaseDriver,
    host: &Mutex<Host>,
    id: VesselId,
    epoch: u64,
    to: PeerId,
) -> Result<Option<Certificate>, protocol::refusal::Refusal> {
    use protocol::refusal::{Refusal, RefusalCode};
    let me = peer_bytes(&driver.me);
    let Found::Certified(current, _) = find(host, id, &me) else {
        return Ok(None);
    };
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: id,
        epoch,
        owner: peer_bytes(&to),
        kind: AssignmentKind::Handoff,
        previous_epoch: current.body.epoch,
        voters: current.body.voters.clone(),
        signers: current.body.voters.clone(),
    };
    match elect(driver, body, Some(current), ELECTION_TIMEOUT).await {
        Ok(cert) => Ok(Some(cert)),
        Err(ElectError::Superseded(c)) => Err(Refusal::new(
            RefusalCode::StaleEpoch,
            format!("its voters know epoch {} already", c.body.epoch),
        )
        .with_known_epoch(c.body.epoch)),
        Err(e @ ElectError::NoMajority { known_epoch, .. }) => {
            let r = Refusal::new(
                RefusalCode::Unreachable,
                format!("its voters did not hand it over: {e}"),
            );
            Err(match known_epoch {
                Some(k) => Refusal::new(RefusalCode::StaleEpoch, r.detail).with_known_epoch(k),
                None => r,
            })
        }
    }
}

/// How many replicas a vessel's deployment asks for (`deploy --replicas`;
/// `protocol::replica::DEFAULT_REPLICAS` when it does not say).
fn replicas_wanted(host: &Mutex<Host>, id: VesselId) -> u32 {
    lock(host)
        .vessels
        .get(&id)
        .and_then(|l| l.deployment.body.replicas)
        .unwrap_or(protocol::replica::DEFAULT_REPLICAS)
}

/// How long a deployment waits for its first replicas to be chosen before
/// it elects its voters without them: replicas are chosen when the first
/// checkpoint ships (an interval, 1 s by default), and a replica that is a
/// voter already knows the vessel's certificate when it must take over.
pub const REPLICAS_WAIT: Duration = Duration::from_secs(3);

/// The replicas the host ships vessel `id` to, waiting up to
/// [`REPLICAS_WAIT`] for the first ones to be chosen.
async fn chosen_replicas(driver: &LeaseDriver, id: VesselId) -> Vec<PeerId> {
    let deadline = tokio::time::Instant::now() + REPLICAS_WAIT;
    loop {
        let chosen: Vec<PeerId> = driver
            .replication
            .book()
            .shipping
            .get(&id)
            .map(|s| s.replicas.iter().map(|r| r.peer).collect())
            .unwrap_or_default();
        if !chosen.is_empty() || tokio::time::Instant::now() >= deadline {
            return chosen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs for as long as the node: keeps the lease of every vessel that
/// starts here (a deployment, an arrival, a restart, a resume after a
/// failed move). A keeper whose vessel starts again ends by itself: its
/// holder sees another gate.
pub async fn keep_every_start(
    driver: LeaseDriver,
    host: Arc<Mutex<Host>>,
    mut started: tokio::sync::mpsc::UnboundedReceiver<VesselId>,
) {
    while let Some(id) = started.recv().await {
        let wanted = replicas_wanted(&host, id);
        tokio::spawn(keep(driver.clone(), host.clone(), id, wanted));
    }
}

/// Wins the first certificate of a vessel deployed here and keeps it.
async fn win_deployment(
    driver: &LeaseDriver,
    host: &Mutex<Host>,
    id: VesselId,
    replicas_wanted: u32,
) -> Result<(), String> {
    let replicas = chosen_replicas(driver, id).await;
    let nearest = driver.link.members_by_rtt().await;
    let Some(voters) = choose_voters(&driver.me, &replicas, &nearest, replicas_wanted as usize)
    else {
        return Err(format!(
            "{} member(s) in reach; a lease needs {MIN_VOTERS_FOR_FAILOVER} voters",
            nearest.len() + 1
        ));
    };
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: id,
        epoch: 1,
        owner: peer_bytes(&driver.me),
        kind: AssignmentKind::Deploy,
        previous_epoch: 0,
        voters: voters.clone(),
        signers: voters,
    };
    let cert = match elect(driver, body, None, ELECTION_TIMEOUT).await {
        Ok(c) => c,
        Err(ElectError::Superseded(c)) => {
            return Err(format!("a voter knows epoch {} already", c.body.epoch))
        }
        Err(e) => return Err(format!("no certificate yet: {e}")),
    };
    let dir = lock(host).vessel_dir(id);
    let kept = cert.clone();
    tokio::task::spawn_blocking(move || crate::vessel::certificate::write(&dir, &kept))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot keep its certificate: {e}"))?;
    info!(vessel = %id, voters = cert.body.voters.len(), "leased: its voters signed epoch 1");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn voters_are_me_the_replicas_then_the_nearest_an_odd_number_of_at_least_three() {
        let me = PeerId::random();
        let near = peers(10);
        let v = choose_voters(&me, &[], &near, 1).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], peer_bytes(&me));
        assert_eq!(v[1], peer_bytes(&near[0]));
        let replicas = vec![near[5]];
        let v = choose_voters(&me, &replicas, &near, 1).unwrap();
        assert_eq!(v[1], peer_bytes(&near[5]), "the replica first");
        assert_eq!(v[2], peer_bytes(&near[0]));
        assert_eq!(
            choose_voters(&me, &[], &near, 3).unwrap().len(),
            5,
            "4 rounds up to 5"
        );
        assert_eq!(
            choose_voters(&me, &[], &near, 100).unwrap().len(),
            MAX_VOTERS_PER_VESSEL
        );
        assert_eq!(
            choose_voters(&me, &[], &near[..1], 1),
            None,
            "two nodes: no lease"
        );
        assert!(
            choose_voters(&me, &[me], &near[..2], 1).is_some(),
            "me once"
        );
    }
}
