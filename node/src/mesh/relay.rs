//! The user's signature end to end (issue 14, item 2). A command that acts
//! on a vessel on another node reaches it as the user's own
//! `SignedRequest`, signed for a nonce that node issued:
//!
//! 1. the CLI sends its signed command to node X, which checks it and
//!    finds that node H must act; X asks H for a nonce
//!    (`ForwardRequest::Challenge`) and answers the CLI `SignFor {H, nonce}`;
//! 2. the CLI signs the same command for H and that nonce and sends it to
//!    X, which relays it unchanged (`ForwardRequest::Signed`);
//! 3. H checks the signature, that it is the addressee, its own trust list
//!    and its nonce (issued to X, once), and runs the command on its own
//!    vessels; its answer goes back through X.
//!
//! A member that sends H a vessel command without the user's signature is
//! refused (`unsigned`); a replayed signed command is refused (`replayed`).

use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use protocol::control::{ControlResponse, SignedRequest};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::{Refusal, RefusalCode};
use tracing::warn;

use super::behaviour::NodeBehaviour;
use super::commands::{respond_control, run_control, Control};
use super::link::NodeCommand;
use super::peers::Membership;
use super::state::NodeState;
use super::vessels::refuse;
use crate::control::server::authorize;
use crate::identity::peer_public_key;

/// Answers the vessel-protocol requests that concern the user's authority:
/// a nonce for the user, the user's signed command, and the refusal of a
/// vessel command that a member sent on its own word. Gives any other
/// request back.
pub fn serve_user_forward(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: PeerRequest,
    channel: ResponseChannel<PeerResponse>,
) -> Option<(PeerRequest, ResponseChannel<PeerResponse>)> {
    let PeerRequest::Forward(forward) = request else {
        return Some((request, channel));
    };
    let response = match forward {
        ForwardRequest::Challenge => ForwardResponse::Challenge {
            nonce: state.control.issue(peer),
            node: state.identity.public_key(),
        }
        .into(),
        ForwardRequest::Signed(req) => {
            run_signed(state, peer, *req, channel);
            return None;
        }
        f if f.needs_user_signature() => {
            let refusal = refuse(
                RefusalCode::Unsigned,
                "a vessel command from a member node needs the user's signature for this node (a member's word is not the user's)",
            );
            warn!(%peer, "vessel request refused: {refusal}");
            PeerResponse::Refused(refusal)
        }
        other => return Some((PeerRequest::Forward(other), channel)),
    };
    let _ = swarm
        .behaviour_mut()
        .vessel
        .send_response(channel, response);
    None
}

/// Checks the user's signed command that `peer` relayed, as the control
/// server checks one from the CLI, and runs it on this node's vessels.
fn run_signed(
    state: &mut NodeState,
    peer: PeerId,
    req: SignedRequest,
    channel: ResponseChannel<PeerResponse>,
) {
    let tx = state.link.tx.clone();
    let send = move |response: PeerResponse| {
        let _ = tx.try_send(NodeCommand::RespondPeer { channel, response });
    };
    if let Err(response) = authorize(state, peer, &req) {
        if let ControlResponse::Refused(refusal) = &*response {
            warn!(%peer, "relayed command refused: {refusal}");
        }
        send(ForwardResponse::Signed(response).into());
        return;
    }
    let mut control = Control::of(state);
    control.relay = false;
    let user = req.user_key;
    tokio::spawn(async move {
        // No peers: the command acts here or nowhere.
        let response = match run_control(&control, &[], user, req.body.command).await {
            Ok(r) => r,
            Err(refusal) => {
                warn!(%peer, "relayed command refused: {refusal}");
                ControlResponse::Refused(refusal)
            }
        };
        send(ForwardResponse::Signed(Box::new(response)).into());
    });
}

/// The connected member whose node key `req` is signed for, if any.
fn addressee(state: &NodeState, req: &SignedRequest) -> Option<PeerId> {
    state
        .peers
        .iter()
        .filter(|(_, e)| e.connections > 0 && matches!(e.membership, Membership::Member(_)))
        .map(|(p, _)| *p)
        .find(|p| peer_public_key(p) == Some(req.body.node))
}

/// A CLI's signed command for another member: checked as far as this node
/// can (signature, trust), then relayed to that member, which checks the
/// rest. `None`: the request is not for another member; handle it here.
pub fn relay_for_cli(
    state: &mut NodeState,
    req: SignedRequest,
    channel: ResponseChannel<ControlResponse>,
) -> Option<(SignedRequest, ResponseChannel<ControlResponse>)> {
    if req.body.node == state.identity.public_key() {
        return Some((req, channel));
    }
    let Some(target) = addressee(state, &req) else {
        return Some((req, channel));
    };
    if let Err(e) = req.verify_for(&req.body.node) {
        let response = ControlResponse::Refused(e.into());
        respond_control(&state.link.tx, channel, response);
        return None;
    }
    if !state.trusted.contains(&req.user_key) {
        let refusal = Refusal::new(
            RefusalCode::Untrusted,
            format!("user key {} is not trusted by this node", req.user_key),
        );
        respond_control(&state.link.tx, channel, ControlResponse::Refused(refusal));
        return None;
    }
    let (link, tx) = (state.link.clone(), state.link.tx.clone());
    tokio::spawn(async move {
        let response = match link
            .forward(target, ForwardRequest::Signed(Box::new(req)))
            .await
        {
            Ok(ForwardResponse::Signed(r)) => *r,
            Ok(other) => ControlResponse::Refused(Refusal::new(
                RefusalCode::Internal,
                format!("unexpected answer from {target}: {other:?}"),
            )),
            Err(e) => ControlResponse::Refused(e.into()),
        };
        respond_control(&tx, channel, response);
    });
    None
}
