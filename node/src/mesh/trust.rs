//! Revocation and endorsement on the running node (issue 14, item 1): the
//! `revoke` and `endorse` commands, the trust notices gossiped on
//! [`TRUST_TOPIC`], and what follows a change: every peer judged again,
//! revoked ones cut off, and this node's own endorsement adopted.

use libp2p::{gossipsub, PeerId, Swarm};
use protocol::control::ControlResponse;
use protocol::limits::{MAX_ENDORSEMENTS, MAX_STATUS_MESSAGE_BYTES};
use protocol::membership::{MemberCertificate, PublicKey};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::revocation::{verify_endorsement, Revocation, TrustNotice, TRUST_TOPIC};
use tracing::{debug, info, warn};

use super::behaviour::NodeBehaviour;
use super::ledger::{show_key, LedgerError};
use super::membership::{exchange_certificates, recheck_members, set_membership};
use super::peers::Membership;
use super::state::NodeState;
use crate::identity::peer_public_key;

/// A trust notice is published every this many status ticks while the
/// ledger holds anything, so that a node that was away (or restarted
/// without the file) catches up within seconds of reconnecting.
pub const TRUST_REPUBLISH_EVERY_TICKS: u64 = 10;

pub fn trust_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(TRUST_TOPIC)
}

fn refused(code: RefusalCode, detail: impl Into<String>) -> ControlResponse {
    ControlResponse::Refused(Refusal::new(code, detail))
}

fn ledger_refusal(e: LedgerError) -> ControlResponse {
    match e {
        LedgerError::Refused(why) => refused(RefusalCode::Forged, why),
        LedgerError::Full { .. } => refused(RefusalCode::Limit, e.to_string()),
        other => refused(RefusalCode::Internal, other.to_string()),
    }
}

/// `meshnode revoke`: the request's user key signed the revocation too.
pub fn revoke(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    by: PublicKey,
    revocation: Revocation,
) -> ControlResponse {
    if revocation.body.user_key != by {
        return refused(
            RefusalCode::Forged,
            "the revocation is signed by another user key than the request",
        );
    }
    let node = revocation.body.node_key;
    if node == state.identity.public_key() {
        return refused(
            RefusalCode::BadArgument,
            "this node cannot revoke itself: send `revoke` to another member",
        );
    }
    let trusted = state.trusted.clone();
    if let Err(e) = state.ledger.revoke(revocation, &trusted) {
        return ledger_refusal(e);
    }
    warn!(by = %by, "node {} revoked", show_key(&node));
    after_change(swarm, state);
    publish_notice(swarm, state);
    let enrolled = state
        .ledger
        .enrolled_by(&node)
        .iter()
        .filter(|k| state.ledger.endorsement(k).is_none())
        .map(show_key)
        .collect();
    ControlResponse::Revoked {
        node: show_key(&node),
        enrolled,
    }
}

/// `meshnode endorse`: user-signed certificates for nodes to keep.
pub fn endorse(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    by: PublicKey,
    certificates: Vec<MemberCertificate>,
) -> ControlResponse {
    if certificates.is_empty() || certificates.len() > MAX_ENDORSEMENTS {
        return refused(
            RefusalCode::BadArgument,
            format!("endorse between 1 and {MAX_ENDORSEMENTS} nodes at once"),
        );
    }
    if let Some(c) = certificates.iter().find(|c| c.body.user_key != by) {
        return refused(
            RefusalCode::Forged,
            format!(
                "the endorsement of {} is signed by another user key than the request",
                show_key(&c.body.node_key)
            ),
        );
    }
    let trusted = state.trusted.clone();
    for c in certificates {
        let node = c.body.node_key;
        match state.ledger.endorse(c, &trusted) {
            Ok(_) => info!(by = %by, "node {} endorsed", show_key(&node)),
            Err(e) => return ledger_refusal(e),
        }
    }
    after_change(swarm, state);
    publish_notice(swarm, state);
    ControlResponse::Done
}

/// Judges every peer again, cuts revoked ones off and adopts this node's
/// own endorsement.
pub fn after_change(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState) {
    adopt_endorsement(swarm, state);
    recheck_members(swarm, state);
    let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for peer in connected {
        cut_off_if_revoked(swarm, state, peer);
    }
}

/// Closes every connection of `peer` if a trusted user revoked it, and
/// lists it as refused with the reason; true when it did.
pub fn cut_off_if_revoked(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
) -> bool {
    let Some(reason) = peer_public_key(&peer).and_then(|k| state.revoked_reason(&k)) else {
        return false;
    };
    set_membership(swarm, state, peer, Membership::Refused(reason));
    debug!(%peer, "disconnecting a revoked node");
    let _ = swarm.disconnect_peer_id(peer);
    true
}

/// Takes a user-signed certificate for this node's key in place of its
/// invite certificate, and shows it to every peer.
fn adopt_endorsement(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState) {
    let own = state.identity.public_key();
    let Some(e) = state.ledger.endorsement(&own).cloned() else {
        return;
    };
    if state.certificate.as_ref() == Some(&e) {
        return;
    }
    if let Err(err) = state.data_dir.write_certificate(&e) {
        warn!("cannot save this node's endorsement: {err}");
        return;
    }
    info!(user = %e.body.user_key, "this node was endorsed by the user key: it now holds the user's own certificate");
    state.certificate = Some(e);
    let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for p in connected {
        exchange_certificates(swarm, state, p);
    }
}

/// Publishes every revocation and endorsement this node holds.
pub fn publish_notice(swarm: &mut Swarm<NodeBehaviour>, state: &NodeState) {
    if state.ledger.is_empty() {
        return;
    }
    let bytes = protocol::cbor::encode(&state.ledger.notice());
    match swarm
        .behaviour_mut()
        .gossipsub
        .publish(trust_topic(), bytes)
    {
        Ok(_)
        | Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
        | Err(gossipsub::PublishError::Duplicate) => {}
        Err(e) => debug!("cannot publish the trust notice: {e}"),
    }
}

/// Takes in a gossiped trust notice: entries that verify and whose user key
/// this node trusts are added; a forged entry rejects the message.
pub fn learn_notice(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    message: &gossipsub::Message,
) -> gossipsub::MessageAcceptance {
    let decoded: Result<TrustNotice, _> =
        super::codec::decode_limited(&message.data, MAX_STATUS_MESSAGE_BYTES);
    let notice = match decoded.map_err(|e| e.to_string()).and_then(|n| {
        n.check().map_err(|e| e.to_string())?;
        Ok(n)
    }) {
        Ok(n) => n,
        Err(e) => {
            debug!(source = ?message.source, "trust notice refused: {e}");
            return gossipsub::MessageAcceptance::Reject;
        }
    };
    let forged = notice.revocations.iter().any(|r| r.verify().is_err())
        || notice
            .endorsements
            .iter()
            .any(|c| verify_endorsement(c).is_err());
    if forged {
        debug!(source = ?message.source, "trust notice with a forged entry refused");
        return gossipsub::MessageAcceptance::Reject;
    }
    let trusted = state.trusted.clone();
    let mut changed = false;
    for r in notice.revocations {
        let node = r.body.node_key;
        match state.ledger.revoke(r, &trusted) {
            Ok(true) => {
                warn!("node {} revoked (learned from the mesh)", show_key(&node));
                changed = true;
            }
            Ok(false) | Err(LedgerError::Refused(_)) => {}
            Err(e) => warn!("revocation of {} not kept: {e}", show_key(&node)),
        }
    }
    for c in notice.endorsements {
        let node = c.body.node_key;
        match state.ledger.endorse(c, &trusted) {
            Ok(true) => {
                info!("node {} endorsed (learned from the mesh)", show_key(&node));
                changed = true;
            }
            Ok(false) | Err(LedgerError::Refused(_)) => {}
            Err(e) => warn!("endorsement of {} not kept: {e}", show_key(&node)),
        }
    }
    if changed {
        after_change(swarm, state);
    }
    gossipsub::MessageAcceptance::Accept
}
