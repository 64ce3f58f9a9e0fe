//! Changing a leased vessel's voter set (issue 15, "Voters"; rule 5 of
//! `failover::voter`, and docs/protocol.md for why it is safe): the holder
//! looks every [`CHANGE_CHECK`] at its voters, and when one is down for
//! good (liveness's `down`) or no longer a member (it left, or was
//! revoked), or a replica placement chose is not a voter while a witness
//! is, it proposes a `Reconfigure` of the next epoch that follows its own
//! certificate: the same owner, the new set, signed by a majority of the
//! old one. Its own voter signs first (so that a change it binds voters to
//! is one this node asks for again, after a restart too), then the others.
//!
//! What the holder does with the certificate (`hold`): it shuts the gate
//! before the certificate leaves this node, writes it and the record at
//! the new epoch, and holds the new set's lease; the vessel runs again
//! once a majority of the new set granted it.

use std::time::Duration;

use libp2p::PeerId;
use protocol::control::PeerInfo;
use protocol::ids::PeerIdBytes;
use protocol::lease::{AssignmentBody, AssignmentKind, Certificate, LeaseRequest, LEASE_VERSION};
use protocol::limits::MIN_VOTERS_FOR_FAILOVER;
use protocol::status::LivenessState;
use protocol::vessel::VesselId;

use super::elect::{elect, ELECTION_TIMEOUT};
use super::{peer_bytes, LeaseDriver};
use crate::mesh::link::MEMBER_RTT_FRESH_MS;
use crate::sync::lock;

/// How often a holder looks at its voter set: a voter is `down` only after
/// liveness's down threshold (30 s by default), so a few seconds more are
/// nothing, and a change costs a vote and a lease round.
pub const CHANGE_CHECK: Duration = Duration::from_secs(2);

/// The voter set vessel `current` should have now, or `None` to keep it:
/// every voter that is `gone` (down or no longer a member) is replaced,
/// replicas first, then the nearest members in reach; a replica that is
/// not a voter replaces a witness (a voter that is neither this node nor a
/// replica). The size stays (fewer when too few members are left, never
/// below [`MIN_VOTERS_FOR_FAILOVER`]); the order of the voters kept stays
/// (it ranks takeovers).
pub fn wanted_voters(
    me: &PeerIdBytes,
    current: &[PeerIdBytes],
    replicas: &[PeerIdBytes],
    nearest: &[PeerIdBytes],
    gone: impl Fn(&PeerIdBytes) -> bool,
) -> Option<Vec<PeerIdBytes>> {
    let mut set: Vec<PeerIdBytes> = current
        .iter()
        .filter(|v| *v == me || !gone(v))
        .cloned()
        .collect();
    let mut fresh = replicas
        .iter()
        .chain(nearest)
        .filter(|p| !set.contains(p) && !gone(p))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter();
    while set.len() < current.len() {
        match fresh.next() {
            Some(p) => set.push(p),
            None => break,
        }
    }
    for r in replicas.iter().filter(|r| !gone(r)) {
        if set.contains(r) {
            continue;
        }
        let witness = set.iter().position(|v| v != me && !replicas.contains(v));
        if let Some(i) = witness {
            set[i] = r.clone();
        }
    }
    let changed = set.len() != current.len() || set.iter().any(|v| !current.contains(v));
    (changed && set.len() >= MIN_VOTERS_FOR_FAILOVER).then_some(set)
}

/// Whether a peer is gone for a voter set: not a member any more (it left,
/// or was revoked), down by liveness, or unknown to this node.
fn gone_of(infos: &[PeerInfo]) -> impl Fn(&PeerIdBytes) -> bool + '_ {
    move |p: &PeerIdBytes| {
        let Some(i) = infos.iter().find(|i| id_of(i).as_ref() == Some(p)) else {
            return true;
        };
        let down = i
            .liveness
            .as_ref()
            .is_some_and(|l| l.state == LivenessState::Down);
        !i.member || down
    }
}

fn id_of(info: &PeerInfo) -> Option<PeerIdBytes> {
    info.peer_id.parse::<PeerId>().ok().map(|p| peer_bytes(&p))
}

/// The members in reach, nearest first (as `Link::members_by_rtt`).
fn nearest_of(infos: &[PeerInfo]) -> Vec<PeerIdBytes> {
    let mut near: Vec<(u64, PeerIdBytes)> = infos
        .iter()
        .filter(|p| p.member && p.rtt_age_ms.is_some_and(|a| a < MEMBER_RTT_FRESH_MS))
        .filter_map(|p| Some((p.rtt_us?, id_of(p)?)))
        .collect();
    near.sort_by_key(|(rtt_us, _)| *rtt_us);
    near.into_iter().map(|(_, p)| p).collect()
}

/// Proposes the change vessel `id` needs, if any, and returns its
/// certificate. `current` is the certificate this node holds the lease
/// under; a new change is proposed only while that lease holds
/// (`running`). A change this node's voter signed earlier and that never
/// formed is asked for again whether it runs or not (the voters that signed
/// it grant nothing below it, so its old lease may be gone for good), above
/// every epoch its voter knows of.
pub async fn change(
    driver: LeaseDriver,
    id: VesselId,
    current: Certificate,
    running: bool,
) -> Result<Option<Certificate>, String> {
    let me = peer_bytes(&driver.me);
    let (promised, earlier) = {
        let mut book = lock(&driver.leases.book);
        let v = book.voter(id);
        let known = v.known.as_ref().map_or(0, |k| k.body.epoch);
        let promised = v.durable.promised.as_ref().map_or(0, |p| p.epoch);
        let earlier = v
            .durable
            .change
            .clone()
            .filter(|c| c.owner == me && c.previous_epoch == current.body.epoch);
        (promised.max(known), earlier)
    };
    let voters = match earlier {
        Some(c) => c.voters,
        None if !running => return Ok(None),
        None => {
            let replicas: Vec<PeerIdBytes> = driver
                .replication
                .book()
                .shipping
                .get(&id)
                .map(|s| s.replicas.iter().map(|r| peer_bytes(&r.peer)).collect())
                .unwrap_or_default();
            let infos = driver.link.peer_infos().await;
            let wanted = wanted_voters(
                &me,
                &current.body.voters,
                &replicas,
                &nearest_of(&infos),
                gone_of(&infos),
            );
            let Some(v) = wanted else { return Ok(None) };
            v
        }
    };
    let body = AssignmentBody {
        version: LEASE_VERSION,
        vessel: id,
        epoch: promised.max(current.body.epoch) + 1,
        owner: me.clone(),
        kind: AssignmentKind::Reconfigure,
        previous_epoch: current.body.epoch,
        voters,
        signers: current.body.voters.clone(),
    };
    // Its own voter first: it refuses while its boot wait or a grant to
    // another node runs, and then nothing is asked of the others. A node
    // that is not a signer (it came by a handoff from outside the set)
    // keeps the change it asks for all the same.
    if current.body.voters.contains(&me) {
        let own = LeaseRequest::Vote {
            body: body.clone(),
            proof: Some(current.clone()),
        };
        driver
            .ask(&me, own, ELECTION_TIMEOUT)
            .await
            .map_err(|e| format!("its own voter: {e}"))?;
    } else {
        remember(&driver, id, &body).await?;
    }
    elect(&driver, body, Some(current), ELECTION_TIMEOUT)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Makes the change this node asks for, as its owner but not a signer,
/// durable in its voter's file before any voter is asked.
async fn remember(driver: &LeaseDriver, id: VesselId, body: &AssignmentBody) -> Result<(), String> {
    let leases = &driver.leases;
    let _turn = leases.writes.lock().await;
    let durable = lock(&leases.book).voter(id).ask_change(body);
    let Some(durable) = durable else {
        return Ok(());
    };
    let dir = leases.dir.clone();
    tokio::task::spawn_blocking(move || super::store::write(&dir, id, &durable))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot keep the change it asks for: {e}"))
}

/// This node was fenced at the epoch its own change followed: its voter
/// drops the change (`Voter::drop_change`), durably.
pub async fn drop_own_change(driver: &LeaseDriver, id: VesselId, fenced_by: u64) {
    let leases = &driver.leases;
    let _turn = leases.writes.lock().await;
    let Some(durable) = lock(&leases.book).voter(id).drop_change(fenced_by) else {
        return;
    };
    let dir = leases.dir.clone();
    let written =
        tokio::task::spawn_blocking(move || super::store::write(&dir, id, &durable)).await;
    if !matches!(written, Ok(Ok(()))) {
        // Still dropped in memory; a restart finds it bound again, which
        // is safe.
        tracing::warn!(vessel = %id, "cannot write its dropped change: {written:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> PeerIdBytes {
        PeerIdBytes(vec![n])
    }

    #[test]
    fn a_gone_voter_is_replaced_by_a_replica_first_then_the_nearest() {
        let current = [p(0), p(1), p(2)];
        let gone = |v: &PeerIdBytes| *v == p(2) || *v == p(9);
        assert_eq!(
            wanted_voters(&p(0), &current, &[p(5)], &[p(9), p(7)], gone),
            Some(vec![p(0), p(1), p(5)])
        );
        assert_eq!(
            wanted_voters(&p(0), &current, &[], &[p(9), p(7)], gone),
            Some(vec![p(0), p(1), p(7)]),
            "a gone member is never chosen"
        );
        assert_eq!(
            wanted_voters(&p(0), &current, &[], &[p(9)], gone),
            None,
            "two voters are too few: the set stays"
        );
        let none_gone = |_: &PeerIdBytes| false;
        assert_eq!(
            wanted_voters(&p(0), &current, &[p(1)], &[p(7)], none_gone),
            None,
            "nothing to change"
        );
    }

    #[test]
    fn a_replica_that_is_not_a_voter_replaces_a_witness() {
        let current = [p(0), p(1), p(2)];
        let none_gone = |_: &PeerIdBytes| false;
        assert_eq!(
            wanted_voters(&p(0), &current, &[p(1), p(6)], &[], none_gone),
            Some(vec![p(0), p(1), p(6)]),
            "p2 was a witness, p1 a replica already"
        );
        assert_eq!(
            wanted_voters(&p(0), &current, &[p(1), p(2), p(6)], &[], none_gone),
            None,
            "no witness left to replace"
        );
    }

    #[test]
    fn gone_means_not_a_member_down_or_unknown() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let info = |peer: &PeerId, member: bool, state: LivenessState| PeerInfo {
            peer_id: peer.to_string(),
            addrs: Vec::new(),
            rtt_us: Some(1_000),
            estimated_rtt_us: None,
            member,
            refused: None,
            user_key: None,
            status: None,
            status_age_ms: None,
            rtt_age_ms: Some(10),
            liveness: Some(protocol::status::PeerLiveness {
                state,
                silent_ms: 0,
                last_heard_unix_ms: 0,
            }),
            is_self: false,
            member_state: None,
        };
        let infos = vec![
            info(&a, true, LivenessState::Unreachable),
            info(&b, false, LivenessState::Up),
            info(&c, true, LivenessState::Down),
        ];
        let gone = gone_of(&infos);
        assert!(!gone(&peer_bytes(&a)), "unreachable is not gone yet");
        assert!(gone(&peer_bytes(&b)), "revoked or left");
        assert!(gone(&peer_bytes(&c)), "down");
        assert!(gone(&peer_bytes(&PeerId::random())), "unknown");
        assert_eq!(nearest_of(&infos).len(), 2, "members in reach");
    }
}
