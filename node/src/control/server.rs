//! The node's side of the control protocol: nonces, signed commands,
//! invites and joins. Runs inside the node's event loop
//! ([`crate::mesh::node`]), which owns all state ([`NodeState`]).
//!
//! Order of checks for a signed command: signature and addressee
//! (`SignedRequest::verify_for`), then trust in the user key, then the
//! nonce (issued by this node, to this connection's peer, not used, not
//! older than [`CONTROL_NONCE_TTL_SECS`]), then the command. Every refusal is one line, sent to the CLI and logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use libp2p::{PeerId, Swarm};
use protocol::control::{
    secret_hash, Command, ControlRequest, ControlResponse, JoinAccepted, JoinRequest, NodeInfo,
    PeerIdBytes, PeerInfo, SignedRequest,
};
use protocol::limits::{
    CONTROL_NONCE_TTL_SECS, MAX_INVITE_TTL_SECS, MAX_JOIN_TOKEN_ADDRS, MAX_PENDING_INVITES,
    MAX_SPENT_INVITES, MAX_TRUSTED_USERS, MAX_USED_CONTROL_NONCES,
};
use protocol::membership::{InviteGrant, MemberCertificate, Nonce, PublicKey};
use protocol::refusal::{Refusal, RefusalCode};
use tracing::{info, warn};

use crate::identity::peer_public_key;
use crate::mesh::behaviour::NodeBehaviour;
use crate::mesh::commands::control_command;
use crate::mesh::membership::recheck_members;
use crate::mesh::peers::Membership;
use crate::mesh::state::NodeState;

/// Bytes of a control nonce's MAC (the rest is its counter and issue time).
const NONCE_MAC_BYTES: usize = 16;

/// Control nonces. A nonce is `counter || issued_ms || MAC(peer, counter,
/// issued_ms)` under a secret drawn at start, so issuing one (answering an
/// unauthenticated `Challenge`) stores nothing: a stranger's flood of
/// challenges can neither fill memory nor push out a user's nonce, which
/// the one global FIFO of issued nonces it replaces allowed (issue 14,
/// item 5). Only redemption stores something: the counters spent within
/// the TTL, so that each nonce works once.
pub struct ControlServer {
    mac_key: [u8; 32],
    started: Instant,
    next_counter: u64,
    /// Spent counters still inside the TTL, with their issue time (counters
    /// grow with time, so the first entry is the oldest).
    spent: BTreeMap<u64, u64>,
    /// Counters up to this one were forgotten from `spent` (over
    /// [`MAX_USED_CONTROL_NONCES`]): refused as too old.
    forgotten_below: u64,
}

impl Default for ControlServer {
    fn default() -> Self {
        let mut mac_key = [0u8; 32];
        getrandom::fill(&mut mac_key).expect("the OS random source works");
        ControlServer {
            mac_key,
            started: Instant::now(),
            next_counter: 0,
            spent: BTreeMap::new(),
            forgotten_below: 0,
        }
    }
}

impl ControlServer {
    fn mac(&self, peer: &PeerId, counter: u64, issued_ms: u64) -> [u8; NONCE_MAC_BYTES] {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(&peer.to_bytes());
        h.update(&counter.to_le_bytes());
        h.update(&issued_ms.to_le_bytes());
        let mut out = [0u8; NONCE_MAC_BYTES];
        out.copy_from_slice(&h.finalize().as_bytes()[..NONCE_MAC_BYTES]);
        out
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn issue(&mut self, peer: PeerId) -> Nonce {
        let counter = self.next_counter;
        self.next_counter += 1;
        self.issue_at(peer, counter, self.now_ms())
    }

    fn issue_at(&self, peer: PeerId, counter: u64, issued_ms: u64) -> Nonce {
        let mut n = [0u8; 32];
        n[..8].copy_from_slice(&counter.to_le_bytes());
        n[8..16].copy_from_slice(&issued_ms.to_le_bytes());
        n[16..].copy_from_slice(&self.mac(&peer, counter, issued_ms));
        Nonce(n)
    }

    /// Consumes `nonce` if this node issued it to `peer` less than
    /// [`CONTROL_NONCE_TTL_SECS`] ago and it was not used yet.
    pub fn redeem(&mut self, nonce: &Nonce, peer: &PeerId) -> Result<(), Refusal> {
        let counter = u64::from_le_bytes(nonce.0[..8].try_into().expect("8 bytes"));
        let issued_ms = u64::from_le_bytes(nonce.0[8..16].try_into().expect("8 bytes"));
        if nonce.0[16..] != self.mac(peer, counter, issued_ms) {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "unknown nonce, or one issued to another connection: a replayed request, or the node restarted; retry",
            ));
        }
        let ttl_ms = CONTROL_NONCE_TTL_SECS * 1000;
        let now_ms = self.now_ms();
        if now_ms.saturating_sub(issued_ms) > ttl_ms {
            return Err(Refusal::new(
                RefusalCode::NonceExpired,
                format!("the nonce expired (older than {CONTROL_NONCE_TTL_SECS} s); retry"),
            ));
        }
        if self.spent.contains_key(&counter) || counter < self.forgotten_below {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "unknown or already used nonce: a replayed request; retry",
            ));
        }
        self.spent.insert(counter, issued_ms);
        // Expired nonces are refused by their time: no need to remember them.
        while let Some((&c, &at)) = self.spent.first_key_value() {
            let over = self.spent.len() > MAX_USED_CONTROL_NONCES;
            if !over && now_ms.saturating_sub(at) <= ttl_ms {
                break;
            }
            self.spent.pop_first();
            if over {
                self.forgotten_below = self.forgotten_below.max(c + 1);
            }
        }
        Ok(())
    }
}

/// One invite this node holds.
enum InviteState {
    Open {
        grant: InviteGrant,
        expires_at: Instant,
        ttl_secs: u64,
    },
    Used {
        by: PeerId,
    },
    Expired {
        ttl_secs: u64,
    },
}

/// Open invites, and recently used or expired ones (to tell a replayed
/// token from an unknown one).
#[derive(Default)]
pub struct InviteBook {
    invites: HashMap<Nonce, InviteState>,
    order: VecDeque<Nonce>,
}

impl InviteBook {
    fn open_count(&self) -> usize {
        self.invites
            .values()
            .filter(|s| matches!(s, InviteState::Open { .. }))
            .count()
    }

    fn insert(&mut self, id: Nonce, state: InviteState) {
        if !self.invites.contains_key(&id) {
            self.order.push_back(id);
        }
        self.invites.insert(id, state);
        while self.order.len() > MAX_SPENT_INVITES + MAX_PENDING_INVITES {
            if let Some(old) = self.order.pop_front() {
                self.invites.remove(&old);
            }
        }
    }

    /// Holds `grant` open for `ttl_secs` on this node's monotonic clock.
    pub fn open(&mut self, grant: InviteGrant, ttl_secs: u64) -> Result<(), Refusal> {
        if self.open_count() >= MAX_PENDING_INVITES {
            // Drop the oldest open invite to make room.
            let oldest = self
                .order
                .iter()
                .find(|id| matches!(self.invites.get(id), Some(InviteState::Open { .. })))
                .copied();
            if let Some(id) = oldest {
                self.invites
                    .insert(id, InviteState::Expired { ttl_secs: 0 });
            }
        }
        if self.invites.contains_key(&grant.body.invite_id) {
            return Err(Refusal::new(
                RefusalCode::Exists,
                "an invite with this id exists already",
            ));
        }
        let expires_at = Instant::now() + Duration::from_secs(ttl_secs);
        self.insert(
            grant.body.invite_id,
            InviteState::Open {
                grant,
                expires_at,
                ttl_secs,
            },
        );
        Ok(())
    }

    /// Redeems a join request from `peer`: the grant under which to sign its
    /// certificate, or why not.
    pub fn redeem(&mut self, req: &JoinRequest, peer: PeerId) -> Result<InviteGrant, Refusal> {
        let again = "run `meshnode invite` again for a new token";
        let expired = |ttl_secs: u64| {
            Refusal::new(
                RefusalCode::TokenExpired,
                format!("join token expired (it was valid for {ttl_secs} s on the inviting node's clock); {again}"),
            )
        };
        match self.invites.get(&req.invite_id) {
            None => Err(Refusal::new(RefusalCode::UnknownToken, format!(
                "unknown join token: this node did not issue it, or it restarted since (invites do not survive a restart); {again}"
            ))),
            Some(InviteState::Used { by }) => Err(Refusal::new(
                RefusalCode::TokenUsed,
                format!("join token already used (by {by}): a token enrols one device only; {again}"),
            )),
            Some(InviteState::Expired { ttl_secs }) => Err(expired(*ttl_secs)),
            Some(InviteState::Open { grant, expires_at, ttl_secs }) => {
                if Instant::now() > *expires_at {
                    let ttl_secs = *ttl_secs;
                    self.insert(req.invite_id, InviteState::Expired { ttl_secs });
                    return Err(expired(ttl_secs));
                }
                if secret_hash(&req.secret) != grant.body.secret_hash {
                    return Err(Refusal::new(
                        RefusalCode::WrongSecret,
                        "wrong secret for this join token (damaged token?)",
                    ));
                }
                let grant = grant.clone();
                self.insert(req.invite_id, InviteState::Used { by: peer });
                Ok(grant)
            }
        }
    }
}

fn refused(code: RefusalCode, detail: impl Into<String>) -> ControlResponse {
    ControlResponse::Refused(Refusal::new(code, detail))
}

/// Answers one control request from `peer`: returns the answer to send
/// now, or `None` when a task took the channel and answers later (vessel
/// commands, which ask peers).
pub fn handle(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: ControlRequest,
    channel: ResponseChannel<ControlResponse>,
) -> Option<(ResponseChannel<ControlResponse>, ControlResponse)> {
    if let ControlRequest::Signed(req) = &request {
        if crate::upgrade::command::is_upgrade_command(&req.body.command) {
            let ControlRequest::Signed(req) = request else {
                unreachable!("matched above")
            };
            if let Err(response) = authorize(state, peer, &req) {
                return Some((channel, *response));
            }
            crate::upgrade::command::run(state, req.body.command, channel);
            return None;
        }
        if is_vessel_command(&req.body.command) {
            let ControlRequest::Signed(req) = request else {
                unreachable!("matched above")
            };
            // Signed for another member (after its `SignFor`): relayed.
            let (req, channel) = crate::mesh::relay::relay_for_cli(state, *req, channel)?;
            return match authorize(state, peer, &req) {
                Err(response) => {
                    if let ControlResponse::Refused(refusal) = &*response {
                        warn!(%peer, "control request refused: {refusal}");
                    }
                    Some((channel, *response))
                }
                Ok(()) => {
                    let SignedRequest { user_key, body, .. } = req;
                    control_command(state, user_key, body.command, channel);
                    None
                }
            };
        }
    }
    Some((channel, handle_now(swarm, state, peer, request)))
}

fn is_vessel_command(c: &Command) -> bool {
    matches!(
        c,
        Command::Deploy { .. }
            | Command::Ps
            | Command::Logs { .. }
            | Command::Migrate { .. }
            | Command::MigrationStatus { .. }
            | Command::Stop { .. }
            | Command::Pin { .. }
            | Command::Unpin { .. }
            | Command::Drain { .. }
            | Command::DrainStatus { .. }
            | Command::Checkpoint { .. }
            | Command::Recover { .. }
            | Command::Undrain { .. }
            | Command::Rm { .. }
            | Command::Volumes { .. }
            | Command::VolumeList { .. }
            | Command::VolumeRead { .. }
    )
}

/// Signature, addressee, nonce, trust: the checks every signed command
/// passes before its command is looked at.
pub(crate) fn authorize(
    state: &mut NodeState,
    peer: PeerId,
    req: &SignedRequest,
) -> Result<(), Box<ControlResponse>> {
    let own = state.identity.public_key();
    req.verify_for(&own)
        .map_err(|e| Box::new(ControlResponse::Refused(e.into())))?;
    // Trust before the nonce: only a trusted user's request spends one, so
    // a stranger cannot fill the spent set (and push its bound).
    if !state.trusted.contains(&req.user_key) {
        return Err(Box::new(refused(RefusalCode::Untrusted, format!(
            "user key {} is not trusted by this node (a trusted user can run `meshnode trust add {}`)",
            req.user_key, req.user_key
        ))));
    }
    state
        .control
        .redeem(&req.body.nonce, &peer)
        .map_err(|e| Box::new(ControlResponse::Refused(e)))
}

fn handle_now(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    request: ControlRequest,
) -> ControlResponse {
    match request {
        ControlRequest::Unread(refusal) => {
            warn!(%peer, "control request not read: {refusal}");
            ControlResponse::Refused(refusal)
        }
        ControlRequest::Challenge => ControlResponse::Challenge {
            nonce: state.control.issue(peer),
            node: state.identity.public_key(),
        },
        ControlRequest::Join(req) => {
            let response = join(state, peer, &req);
            match &response {
                ControlResponse::Refused(refusal) => warn!(%peer, "join refused: {refusal}"),
                _ => {
                    info!(%peer, "enrolled a new member through an invite");
                    // The new member shows its certificate to every peer
                    // (this one too) once it has stored it.
                }
            }
            response
        }
        ControlRequest::Signed(req) => {
            let response = signed(swarm, state, peer, *req);
            if let ControlResponse::Refused(refusal) = &response {
                warn!(%peer, "control request refused: {refusal}");
            }
            response
        }
    }
}

fn join(state: &mut NodeState, peer: PeerId, req: &JoinRequest) -> ControlResponse {
    let Some(key) = peer_public_key(&peer) else {
        return refused(
            RefusalCode::BadArgument,
            "the joining node's PeerId is not an ed25519 key",
        );
    };
    let grant = match state.invites.redeem(req, peer) {
        Ok(g) => g,
        Err(refusal) => return ControlResponse::Refused(refusal),
    };
    if !state.trusted.contains(&grant.body.user_key) {
        return refused(
            RefusalCode::Untrusted,
            format!(
                "the invite's user key {} is no longer trusted by this node",
                grant.body.user_key
            ),
        );
    }
    let certificate = MemberCertificate::by_invite(&state.identity.signing, grant, key);
    // Recorded at once: a second certificate under this invite (its grant
    // is public in this one) is then refused here, and wherever it shows.
    if let Some(line) = state.note_certificate(&key, &certificate) {
        warn!("{line}");
    }
    ControlResponse::Joined(Box::new(JoinAccepted {
        certificate,
        trusted_users: state.trusted.clone(),
    }))
}

fn signed(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    peer: PeerId,
    req: SignedRequest,
) -> ControlResponse {
    let own = state.identity.public_key();
    if let Err(response) = authorize(state, peer, &req) {
        return *response;
    }
    match req.body.command {
        Command::Peers { all } => ControlResponse::Peers(peers_and_self(state, all)),
        Command::TrustList => ControlResponse::Trust(state.trusted.clone()),
        Command::TrustAdd { user_key } => {
            if state.trusted.contains(&user_key) {
                return ControlResponse::Trust(state.trusted.clone());
            }
            if state.trusted.len() >= MAX_TRUSTED_USERS {
                return refused(
                    RefusalCode::Limit,
                    format!("this node trusts {MAX_TRUSTED_USERS} user keys already"),
                );
            }
            let mut next = state.trusted.clone();
            next.push(user_key);
            if let Err(e) = state.data_dir.write_trusted(&next) {
                return refused(
                    RefusalCode::Internal,
                    format!("cannot save the trust list: {e}"),
                );
            }
            info!(by = %req.user_key, "trusted user key {user_key}");
            state.trusted = next;
            recheck_members(swarm, state);
            ControlResponse::Trust(state.trusted.clone())
        }
        Command::TrustRemove { user_key } => {
            if !state.trusted.contains(&user_key) {
                return refused(
                    RefusalCode::BadArgument,
                    format!("user key {user_key} is not in this node's trust list"),
                );
            }
            if state.trusted.len() == 1 {
                return refused(
                    RefusalCode::BadArgument,
                    "refusing to remove the last trusted user key: nobody could administer this node any more",
                );
            }
            let next: Vec<PublicKey> = state
                .trusted
                .iter()
                .copied()
                .filter(|k| k != &user_key)
                .collect();
            if let Err(e) = state.data_dir.write_trusted(&next) {
                return refused(
                    RefusalCode::Internal,
                    format!("cannot save the trust list: {e}"),
                );
            }
            info!(by = %req.user_key, "no longer trusts user key {user_key}");
            state.trusted = next;
            recheck_members(swarm, state);
            ControlResponse::Trust(state.trusted.clone())
        }
        Command::CreateInvite { grant, ttl_secs } => {
            if state.certificate.is_none() {
                return refused(
                    RefusalCode::NotEnrolled,
                    "this node is not a member of a mesh yet, so it cannot invite",
                );
            }
            if let Err(e) = grant.verify() {
                return refused(RefusalCode::Forged, e.to_string());
            }
            if grant.body.user_key != req.user_key {
                return refused(
                    RefusalCode::Forged,
                    "the invite grant is signed by another user key than the request",
                );
            }
            if grant.body.issuer_node != own {
                return refused(
                    RefusalCode::Misdirected,
                    "the invite grant names another node as the inviting node",
                );
            }
            if ttl_secs == 0 || ttl_secs > MAX_INVITE_TTL_SECS {
                return refused(
                    RefusalCode::BadArgument,
                    format!("an invite lasts between 1 and {MAX_INVITE_TTL_SECS} seconds"),
                );
            }
            if let Err(refusal) = state.invites.open(grant, ttl_secs) {
                return ControlResponse::Refused(refusal);
            }
            info!(by = %req.user_key, ttl_secs, "invite created");
            // Without `/p2p/ID`: the token names the inviter once, which
            // keeps it short.
            let mut addrs: Vec<String> = state.listen_addrs.iter().map(|a| a.to_string()).collect();
            // Non-loopback addresses first: the token is for another device.
            addrs.sort_by_key(|a| a.contains("/127.0.0.1/") || a.contains("/::1/"));
            addrs.truncate(MAX_JOIN_TOKEN_ADDRS);
            ControlResponse::InviteCreated {
                inviter: PeerIdBytes(state.identity.peer_id.to_bytes()),
                addrs,
                ttl_secs,
            }
        }
        Command::Revoke { revocation } => {
            crate::mesh::trust::revoke(swarm, state, req.user_key, revocation)
        }
        Command::Endorse { certificates } => {
            crate::mesh::trust::endorse(swarm, state, req.user_key, certificates)
        }
        Command::Status => ControlResponse::Status(Box::new(crate::ops::status::report(state))),
        Command::Info => ControlResponse::Info(NodeInfo {
            peer_id: state.identity.peer_id.to_string(),
            addrs: state.own_addrs(),
            user_key: state.certificate.as_ref().map(|c| c.body.user_key),
            version: crate::upgrade::running_version().to_string(),
            name: Some(state.name.clone()),
            certificate: state.certificate.clone().map(Box::new),
        }),
        other => refused(
            RefusalCode::Internal,
            format!("not handled here: {other:?}"),
        ),
    }
}

/// The peer table as the `peers` command shows it: members, or (`all`)
/// every known peer with why it is not a member; each with what failure
/// detection says of it (its status is stale when it is not up).
pub fn list_peers(state: &NodeState, all: bool) -> Vec<PeerInfo> {
    state
        .peers
        .iter()
        .filter(|(_, e)| all || matches!(e.membership, Membership::Member(_)))
        .map(|(p, e)| PeerInfo {
            peer_id: p.to_string(),
            addrs: e.addrs.iter().map(|a| a.to_string()).collect(),
            rtt_us: if e.connections > 0 {
                e.rtt.srtt_us()
            } else {
                None
            },
            estimated_rtt_us: estimated_rtt_us(state, e),
            member: matches!(e.membership, Membership::Member(_)),
            refused: match &e.membership {
                Membership::Refused(r) => Some(r.clone()),
                _ => None,
            },
            user_key: match &e.membership {
                Membership::Member(u) => Some(*u),
                _ => None,
            },
            status: e.status.as_ref().map(|(s, _)| s.clone()),
            status_age_ms: e
                .status
                .as_ref()
                .map(|(_, at)| at.elapsed().as_millis() as u64),
            rtt_age_ms: if e.connections > 0 {
                e.rtt.age().map(|a| a.as_millis() as u64)
            } else {
                None
            },
            liveness: Some(crate::mesh::liveness::peer_liveness(&e.liveness)),
            is_self: false,
            member_state: state.swim.view(p).map(crate::mesh::swim::shown),
        })
        .collect()
}

/// The RTT this node's coordinate and the peer's last gossiped one
/// estimate, when both are settled enough for placement to use
/// ([`crate::placement::MAX_ESTIMATE_ERROR`]).
fn estimated_rtt_us(state: &NodeState, e: &crate::mesh::peers::PeerEntry) -> Option<u64> {
    let theirs = e.status.as_ref()?.0.coordinate.as_ref()?;
    let ours = state.placer.vivaldi.coordinate();
    let settled =
        |c: &protocol::coordinate::NetCoordinate| c.error <= crate::placement::MAX_ESTIMATE_ERROR;
    if !settled(ours) || !settled(theirs) {
        return None;
    }
    ours.estimate_ms(theirs)
        .map(|ms| (ms * 1000.0).round() as u64)
}

/// What `peers` answers: this node first, marked, then [`list_peers`].
/// The node's own row carries its name and a fresh status, so that names
/// resolve (and clash) against every member, itself included.
pub fn peers_and_self(state: &NodeState, all: bool) -> Vec<PeerInfo> {
    let running = {
        let h = state.host.lock().unwrap_or_else(|p| p.into_inner());
        h.list()
            .into_iter()
            .filter(|v| v.state == "running" || v.state == "migrating")
            .take(protocol::limits::MAX_STATUS_VESSELS)
            .map(|v| v.id.to_hex())
            .collect()
    };
    let mut status = crate::mesh::status::sample(running);
    status.name = Some(state.name.clone());
    status.draining = state.placer.draining();
    status.coordinate = Some(state.placer.coordinate());
    let me = PeerInfo {
        peer_id: state.identity.peer_id.to_string(),
        addrs: state.own_addrs(),
        rtt_us: None,
        estimated_rtt_us: None,
        member: state.certificate.is_some(),
        refused: None,
        user_key: state.certificate.as_ref().map(|c| c.body.user_key),
        status: Some(status),
        status_age_ms: Some(0),
        rtt_age_ms: None,
        liveness: Some(protocol::control::PeerLiveness {
            state: protocol::control::LivenessState::Up,
            silent_ms: 0,
            last_heard_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }),
        is_self: true,
        member_state: Some(crate::mesh::swim::shown(state.swim.own_view())),
    };
    std::iter::once(me).chain(list_peers(state, all)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn peer(seed: u8) -> PeerId {
        crate::identity::NodeIdentity::from_signing_key(SigningKey::from_bytes(&[seed; 32])).peer_id
    }

    #[test]
    fn a_nonce_is_good_once_and_only_for_its_peer() {
        let mut s = ControlServer::default();
        let n = s.issue(peer(1));
        s.redeem(&n, &peer(1)).unwrap();
        let err = s.redeem(&n, &peer(1)).unwrap_err();
        assert_eq!(err.code, RefusalCode::Replayed, "{err}");
        assert!(err.detail.contains("already used"), "{err}");
        let n = s.issue(peer(1));
        let err = s.redeem(&n, &peer(2)).unwrap_err();
        assert_eq!(err.code, RefusalCode::Replayed, "{err}");
        assert!(err.detail.contains("issued to another connection"), "{err}");
        // A forged one: another node's (or a changed) MAC.
        let mut forged = s.issue(peer(1));
        forged.0[31] ^= 1;
        assert_eq!(
            s.redeem(&forged, &peer(1)).unwrap_err().code,
            RefusalCode::Replayed
        );
        // An expired nonce (backdated rather than waited for).
        s.started -= Duration::from_secs(CONTROL_NONCE_TTL_SECS + 5);
        let old = s.issue_at(peer(1), 1000, 0);
        let err = s.redeem(&old, &peer(1)).unwrap_err();
        assert_eq!(err.code, RefusalCode::NonceExpired, "{err}");
    }

    /// Issue 14, item 5: a stranger's flood of challenges used to push a
    /// user's outstanding nonce out of the one global FIFO of 1024.
    #[test]
    fn a_flood_of_challenges_does_not_evict_a_users_nonce() {
        let mut s = ControlServer::default();
        let users = s.issue(peer(1));
        for _ in 0..10 * 1024 {
            s.issue(peer(2));
        }
        s.redeem(&users, &peer(1)).unwrap();
        assert!(s.spent.len() == 1, "issuing stores nothing");
    }

    #[test]
    fn spent_nonces_are_bounded_and_forgotten_ones_stay_refused() {
        let mut s = ControlServer::default();
        let first = s.issue(peer(1));
        let kept: Vec<Nonce> = (0..MAX_USED_CONTROL_NONCES + 1)
            .map(|_| s.issue(peer(1)))
            .collect();
        for n in &kept {
            s.redeem(n, &peer(1)).unwrap();
        }
        assert!(s.spent.len() <= MAX_USED_CONTROL_NONCES);
        // The oldest spent one was forgotten, and so was everything issued
        // before it: refused, not accepted twice.
        assert_eq!(
            s.redeem(&kept[0], &peer(1)).unwrap_err().code,
            RefusalCode::Replayed
        );
        assert_eq!(
            s.redeem(&first, &peer(1)).unwrap_err().code,
            RefusalCode::Replayed
        );
        // Spent nonces past their TTL are dropped (they fail on time).
        s.started -= Duration::from_secs(CONTROL_NONCE_TTL_SECS + 5);
        let fresh = s.issue(peer(1));
        s.redeem(&fresh, &peer(1)).unwrap();
        assert_eq!(s.spent.len(), 1);
    }

    fn grant(id: u8, secret: &Nonce) -> InviteGrant {
        let user = SigningKey::from_bytes(&[1; 32]);
        InviteGrant::sign(
            &user,
            PublicKey([2; 32]),
            Nonce([id; 32]),
            secret_hash(secret),
        )
    }

    #[test]
    fn an_invite_enrols_one_device_within_its_time() {
        let secret = Nonce([9; 32]);
        let mut book = InviteBook::default();
        book.open(grant(1, &secret), 60).unwrap();
        let wrong = JoinRequest {
            invite_id: Nonce([1; 32]),
            secret: Nonce([8; 32]),
        };
        let err = book.redeem(&wrong, peer(3)).unwrap_err();
        assert_eq!(err.code, RefusalCode::WrongSecret, "{err}");
        assert!(err.detail.contains("wrong secret"), "{err}");
        let right = JoinRequest {
            invite_id: Nonce([1; 32]),
            secret,
        };
        book.redeem(&right, peer(3)).unwrap();
        let err = book.redeem(&right, peer(4)).unwrap_err();
        assert_eq!(err.code, RefusalCode::TokenUsed, "{err}");
        assert!(
            err.detail.starts_with("join token already used (by "),
            "{err}"
        );
        let unknown = JoinRequest {
            invite_id: Nonce([5; 32]),
            secret,
        };
        let err = book.redeem(&unknown, peer(4)).unwrap_err();
        assert_eq!(err.code, RefusalCode::UnknownToken, "{err}");
        assert!(err.detail.starts_with("unknown join token"), "{err}");
    }

    #[test]
    fn an_expired_invite_is_refused_and_stays_refused() {
        let secret = Nonce([9; 32]);
        let mut book = InviteBook::default();
        book.open(grant(1, &secret), 1).unwrap();
        // Backdate it rather than sleep.
        if let Some(InviteState::Open { expires_at, .. }) = book.invites.get_mut(&Nonce([1; 32])) {
            *expires_at = Instant::now() - Duration::from_millis(1);
        }
        let req = JoinRequest {
            invite_id: Nonce([1; 32]),
            secret,
        };
        for _ in 0..2 {
            let err = book.redeem(&req, peer(3)).unwrap_err();
            assert_eq!(err.code, RefusalCode::TokenExpired, "{err}");
            assert!(
                err.detail
                    .starts_with("join token expired (it was valid for 1 s"),
                "{err}"
            );
        }
    }

    #[test]
    fn open_invites_are_bounded() {
        let mut book = InviteBook::default();
        for i in 0..(MAX_PENDING_INVITES + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let user = SigningKey::from_bytes(&[1; 32]);
            let g = InviteGrant::sign(
                &user,
                PublicKey([2; 32]),
                Nonce(id),
                secret_hash(&Nonce([0; 32])),
            );
            book.open(g, 60).unwrap();
        }
        assert!(book.open_count() <= MAX_PENDING_INVITES);
    }
}
