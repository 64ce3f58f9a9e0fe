//! Status gossip on the running node: publishing this node's status and
//! judging the statuses other members publish. A member's status, when the
//! member itself sent it here, is also a sign of life for failure detection
//! (`mesh::liveness`), and it names the vessels the member runs, which `ps`
//! shows on its row if it stops answering.

use std::time::Instant;

use libp2p::{gossipsub, Swarm};
use protocol::control::{
    NodeStatus, StatusMessage, StatusVessel, MAX_STATUS_NAMED_VESSELS, STATUS_REFRESH_INTERVALS,
};
use protocol::limits::MAX_STATUS_MESSAGE_BYTES;
use tracing::debug;

use super::behaviour::NodeBehaviour;
use super::liveness::Event;
use super::membership::{note_peer_certificate, recheck_members, set_membership};
use super::peers::{note_liveness, Membership};
use super::state::NodeState;
use super::status_change::why_send;

/// Every status interval: samples this node's status and gossips it if
/// `status_change::why_send` says so.
pub(super) fn publish_status(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    topic: &gossipsub::IdentTopic,
) {
    let Some(cert) = state.certificate.clone() else {
        return;
    };
    let status = sample_status(state);
    let sent = &mut state.status_sent;
    sent.intervals_since = sent.intervals_since.saturating_add(1);
    let refresh = refresh_intervals(&state.peers);
    let last = sent.last.as_ref().filter(|(_, c)| *c == cert);
    let last_status = last.map(|(s, _)| s);
    let Some(why) = why_send(
        last_status,
        &status,
        sent.intervals_since,
        sent.new_member,
        refresh,
    ) else {
        return;
    };
    debug!(?why, "sending this node's status");
    let msg = StatusMessage {
        certificate: cert.clone(),
        status: status.clone(),
    };
    sent.last = Some((status, cert));
    sent.intervals_since = 0;
    sent.new_member = false;
    match swarm
        .behaviour_mut()
        .gossipsub
        .publish(topic.clone(), protocol::cbor::encode(&msg))
    {
        Ok(_) => {}
        Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
        | Err(gossipsub::PublishError::Duplicate) => {}
        Err(e) => debug!("cannot publish status: {e}"),
    }
}

/// How many intervals may pass between two statuses: the refresh, or 1
/// while a member sends statuses without one (an older release, which
/// counts a status stale after 3 intervals).
fn refresh_intervals(peers: &super::peers::PeerTable) -> u32 {
    let older = peers.values().any(|e| {
        matches!(e.membership, Membership::Member(_))
            && e.status
                .as_ref()
                .is_some_and(|(s, _)| s.refresh_intervals.is_none())
    });
    if older {
        1
    } else {
        STATUS_REFRESH_INTERVALS
    }
}

/// This node's status now.
fn sample_status(state: &NodeState) -> NodeStatus {
    let (running, services) = {
        let mut h = state.host.lock().unwrap_or_else(|p| p.into_inner());
        h.reap();
        let running: Vec<_> = h
            .list()
            .into_iter()
            .filter(|v| v.state == "running" || v.state == "migrating")
            .take(protocol::limits::MAX_STATUS_VESSELS)
            .collect();
        (running, super::ingress::local_routes(&h))
    };
    let mut status = super::status::sample(running.iter().map(|v| v.id.to_hex()).collect());
    status.named = running
        .into_iter()
        .take(MAX_STATUS_NAMED_VESSELS)
        .map(|v| StatusVessel {
            id: v.id,
            name: v.name,
            epoch: v.epoch,
            voters: Vec::new(),
            replicas: Vec::new(),
        })
        .collect();
    let (leases, replication) = (&state.migration.leases, &state.migration.replication);
    super::outlook::facts(leases, replication, &mut status.named);
    status.rtts = state.placer.own_rtts(&state.peers);
    status.draining = state.placer.draining();
    status.services = services;
    status.name = Some(state.name.clone());
    status.coordinate = Some(state.placer.coordinate());
    status
}

pub(super) fn judge_status(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    message: &gossipsub::Message,
    propagated_by: libp2p::PeerId,
) -> gossipsub::MessageAcceptance {
    let Some(source) = message.source else {
        return gossipsub::MessageAcceptance::Reject;
    };
    let decoded: Result<StatusMessage, _> =
        super::codec::decode_limited(&message.data, MAX_STATUS_MESSAGE_BYTES);
    let msg = match decoded {
        Ok(m) => m,
        Err(e) => {
            debug!(%source, "undecodable status: {e}");
            return gossipsub::MessageAcceptance::Reject;
        }
    };
    if let Err(e) = msg.status.check() {
        debug!(%source, "status refused: {e}");
        return gossipsub::MessageAcceptance::Reject;
    }
    // Every status shows a certificate: the ledger sees every member's
    // invite, not only those of the peers connected here.
    let known = state
        .peers
        .get(&source)
        .and_then(|e| e.certificate.as_ref());
    let reused = known != Some(&msg.certificate)
        && note_peer_certificate(state, &source, Some(&msg.certificate));
    if reused {
        recheck_members(swarm, state);
    }
    match state.judge(&source, Some(&msg.certificate)) {
        m @ Membership::Member(_) => {
            if propagated_by == source {
                // Not one relayed by another peer: gossip may deliver a
                // dead node's last status seconds later, which is no sign
                // that it lives (dead_node caught `ps` flapping on it).
                note_liveness(&mut state.peers, &source, Event::Heard, &state.liveness);
            }
            state.ingress.learn(source, &msg.status.services);
            for v in &msg.status.named {
                super::remove::push_if_stale(&state.host, &state.link, source, v.id, v.epoch);
            }
            state.peer(source).status = Some((msg.status, Instant::now()));
            if state.peer(source).membership != m {
                state.peer(source).certificate = Some(msg.certificate);
                set_membership(swarm, state, source, m);
            }
            gossipsub::MessageAcceptance::Accept
        }
        Membership::Refused(reason) => {
            debug!(%source, "status from a non-member refused: {reason}");
            gossipsub::MessageAcceptance::Reject
        }
        Membership::Unknown => gossipsub::MessageAcceptance::Ignore,
    }
}
