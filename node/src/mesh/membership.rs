//! Membership on the running node: the certificate exchange on every
//! connection, judging a peer (its certificate, its protocol version), the
//! peers remembered across restarts, and finishing a `--join`.

use std::time::Instant;

use libp2p::{identify, PeerId, Swarm};
use protocol::control::ControlResponse;
use protocol::membership::{JoinToken, MemberCertificate, MemberRequest};
use tracing::{info, warn};

use super::behaviour::NodeBehaviour;
use super::peers::Membership;
use super::state::{NodeError, NodeState};

/// Where a `--join` stands.
pub(super) enum Joining {
    No,
    /// Dialled the inviter; the request goes out once connected.
    Dialled {
        inviter: PeerId,
        token: JoinToken,
        since: Instant,
    },
    Sent {
        inviter: PeerId,
        since: Instant,
    },
}

/// Writes the addresses of member peers to `known-peers`, for the next start.
pub(super) fn remember_members(state: &NodeState) {
    let addrs: Vec<String> = state
        .peers
        .iter()
        .filter(|(_, e)| matches!(e.membership, Membership::Member(_)))
        .flat_map(|(p, e)| e.addrs.iter().take(2).map(move |a| format!("{a}/p2p/{p}")))
        .collect();
    if addrs.is_empty() {
        return;
    }
    if let Err(e) = state.data_dir.write_known_peers(&addrs) {
        warn!("cannot remember peers: {e}");
    }
}

/// Sends this node's certificate to `peer`, which answers with its own.
pub fn exchange_certificates(swarm: &mut Swarm<NodeBehaviour>, state: &NodeState, peer: PeerId) {
    swarm
        .behaviour_mut()
        .member
        .send_request(&peer, MemberRequest::Certificate(state.certificate.clone()));
}

/// Records `cert` as `peer`'s certificate and judges it.
pub(super) fn learn_certificate(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    cert: Option<MemberCertificate>,
) {
    let reused = note_peer_certificate(state, &peer, cert.as_ref());
    let m = state.judge(&peer, cert.as_ref());
    state.peer(peer).certificate = cert;
    set_membership(swarm, state, peer, m);
    if reused {
        // The invite's first holder, judged before, is refused now too.
        recheck_members(swarm, state);
    }
}

/// Records `peer`'s certificate in the ledger's invite uses; true (and a
/// warning in the log) when it shows an invite enrolling a second node key.
pub(super) fn note_peer_certificate(
    state: &mut NodeState,
    peer: &PeerId,
    cert: Option<&MemberCertificate>,
) -> bool {
    let (Some(cert), Some(key)) = (cert, crate::identity::peer_public_key(peer)) else {
        return false;
    };
    match state.note_certificate(&key, cert) {
        Some(line) => {
            warn!("{line}");
            true
        }
        None => false,
    }
}

pub(super) fn set_membership(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    m: Membership,
) {
    let entry = state.peer(peer);
    let before = std::mem::replace(&mut entry.membership, m.clone());
    if before == m {
        return;
    }
    match &m {
        Membership::Member(user) => {
            info!(%peer, user = %user, "peer is a member");
            // It learns this node's services and room now, not at the
            // next refresh of its status (`status_change`).
            state.status_sent.new_member = true;
            swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
        Membership::Refused(reason)
            if state
                .peers
                .get(&peer)
                .is_some_and(|e| e.certificate.is_none()) =>
        {
            // Usually a device in the middle of `--join`: not alarming.
            info!(%peer, "refused peer as a non-member: {reason}");
            swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        }
        Membership::Refused(reason) => {
            warn!(%peer, "refused peer as a non-member: {reason}");
            swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        }
        Membership::Unknown => {}
    }
}

/// Refuses a meshnode peer that speaks another version of the vessel
/// protocol (its identify lists the protocols it speaks): it could neither
/// send this node a request nor answer one, so it is no member, and the
/// log says which side to upgrade.
pub(super) fn check_vessel_version(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    info: &identify::Info,
) {
    let names = info.protocols.iter().map(|p| p.as_ref());
    let Some(theirs) = protocol::peer::other_vessel_version(names) else {
        return;
    };
    let ours = protocol::peer::VESSEL_PROTOCOL_VERSION;
    let reason = format!(
        "peer {peer} ({}) speaks meshnode vessel protocol /{theirs}, this node speaks /{ours}; upgrade the older one",
        info.agent_version
    );
    if state.peer(peer).incompatible.as_ref() != Some(&reason) {
        warn!(%peer, "{reason}");
    }
    state.peer(peer).incompatible = Some(reason.clone());
    set_membership(swarm, state, peer, Membership::Refused(reason));
}

/// Asks every connected peer for its certificate again (after the trust list
/// changed).
pub fn recheck_members(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState) {
    let peers: Vec<(PeerId, Option<MemberCertificate>)> = state
        .peers
        .iter()
        .map(|(p, e)| (*p, e.certificate.clone()))
        .collect();
    for (p, cert) in peers {
        if cert.is_some() {
            let m = state.judge(&p, cert.as_ref());
            set_membership(swarm, state, p, m);
        }
    }
}

pub(super) fn finish_join(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    joining: &mut Joining,
    peer: PeerId,
    response: ControlResponse,
) -> Result<(), NodeError> {
    let Joining::Sent { inviter, .. } = joining else {
        return Ok(());
    };
    if *inviter != peer {
        return Ok(());
    }
    match response {
        ControlResponse::Joined(accepted) => {
            let own = state.identity.public_key();
            accepted
                .certificate
                .verify_trusted(&own, &accepted.trusted_users)
                .map_err(|e| {
                    NodeError::JoinFailed(format!("the inviting node sent a bad certificate: {e}"))
                })?;
            state.data_dir.write_trusted(&accepted.trusted_users)?;
            state.data_dir.write_certificate(&accepted.certificate)?;
            info!(user = %accepted.certificate.body.user_key, "joined the mesh: enrolled by {peer}");
            state.trusted = accepted.trusted_users;
            state.note_certificate(&own, &accepted.certificate);
            state.certificate = Some(accepted.certificate);
            *joining = Joining::No;
            // Show every peer our new certificate (and see theirs again).
            let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
            for p in connected {
                exchange_certificates(swarm, state, p);
            }
            recheck_members(swarm, state);
            // Find the mesh again after a restart, without the token.
            remember_members(state);
            Ok(())
        }
        ControlResponse::Refused(refusal) => Err(NodeError::JoinRefused(refusal)),
        other => Err(NodeError::JoinFailed(format!(
            "unexpected answer from the inviting node: {other:?}"
        ))),
    }
}
