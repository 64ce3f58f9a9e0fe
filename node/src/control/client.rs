//! The CLI's side of the control protocol: a short-lived libp2p peer with a
//! throwaway node key, which dials a node, asks it for a nonce, and sends one
//! command signed with the user key.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{request_response, Multiaddr, PeerId};
use protocol::control::{
    Command, ControlRequest, ControlResponse, RequestBody, SignedRequest, CONTROL_VERSION,
};

use crate::daemon::datadir::DataDir;
use crate::identity::{peer_public_key, NodeIdentity};
use crate::mesh::behaviour::client_swarm;
use crate::mesh::peers::{is_loopback, peer_of};

/// How long a CLI command waits for a node by default.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no node is running with data directory {dir} (start one with `meshnode start`, or pass --node MULTIADDR)"
    )]
    NotRunning { dir: String },
    #[error("`{addr}` is not a multiaddr ({reason}); e.g. /ip4/127.0.0.1/udp/7646/quic-v1")]
    BadAddr { addr: String, reason: String },
    #[error("cannot reach the node at {addrs}: {reason}")]
    Unreachable { addrs: String, reason: String },
    #[error("the node did not answer within {secs} s")]
    Timeout { secs: u64 },
    /// The node refused: `meshnode: the node refused: CODE: DETAIL`.
    #[error("the node refused: {0}")]
    Refused(protocol::refusal::Refusal),
    #[error("the node answered with a key that does not match its PeerId: not talking to the node that was dialled")]
    KeyMismatch,
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
    #[error("cannot set up the client: {0}")]
    Setup(String),
    /// A node given by name or PeerId prefix that is not exactly one member.
    #[error("{0}")]
    Resolve(#[from] super::resolve::ResolveError),
    /// The node reached is not known to be in the user's mesh.
    #[error("{0}")]
    NotMember(String),
    /// `--node NAME` is looked up through the local node, which is not
    /// running.
    #[error("--node {spec}: a name or PeerId is looked up through the local node, and {reason}; give a multiaddr or HOST:PORT instead")]
    NoLocalNode { spec: String, reason: String },
}

/// The node the CLI reached through `--node`, once checked.
#[derive(Debug, Clone)]
pub struct Reached {
    pub peer_id: String,
    pub name: Option<String>,
}

impl Reached {
    /// `kitchen-pi (12D3KooW…)`.
    pub fn shown(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.peer_id),
            None => self.peer_id.clone(),
        }
    }
}

/// Connects to the node a command talks to: the local one (the data
/// directory's), or the one `--node` gives by multiaddr, `HOST:PORT`, name,
/// PeerId or PeerId prefix (names and ids are looked up through the local
/// node). A node reached through `--node` must show a certificate that
/// puts it in the user's mesh (see [`verify_member`]) before the command
/// sends anything; the CLI says on stderr which node it is.
pub async fn open(
    node: Option<&str>,
    data_dir: Option<&Path>,
    user: &SigningKey,
) -> Result<(Session, Option<Reached>), ClientError> {
    use super::resolve::{parse_node_spec, resolve, NodeSpec};
    let Some(spec) = node else {
        let addrs = resolve_target(None, data_dir)?;
        return Ok((Session::connect(&addrs).await?, None));
    };
    let (mut session, pinned, given) = match parse_node_spec(spec)? {
        NodeSpec::Addresses { addrs, given } => {
            let pinned = addrs.first().and_then(peer_of).is_some();
            (Session::connect(&addrs).await?, pinned, given)
        }
        NodeSpec::Peer(name) => {
            let no_local = |e: ClientError| ClientError::NoLocalNode {
                spec: spec.to_string(),
                reason: e.to_string(),
            };
            let local = resolve_target(None, data_dir).map_err(no_local)?;
            let mut local = Session::connect(&local).await?;
            let peers = match local.signed(user, Command::Peers { all: false }).await? {
                ControlResponse::Peers(p) => p,
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            };
            let found = resolve(&name, &peers)?;
            if found.is_self {
                (local, true, name)
            } else {
                let addrs: Vec<Multiaddr> =
                    found.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                if addrs.is_empty() {
                    return Err(ClientError::Unreachable {
                        addrs: found.shown(),
                        reason: "the local node knows no address of it".into(),
                    });
                }
                (Session::connect(&addrs).await?, true, name)
            }
        }
    };
    let reached = verify_member(&mut session, user, pinned, &given).await?;
    eprintln!("meshnode: talking to {}", reached.shown());
    Ok((session, Some(reached)))
}

/// Checks that the node `session` reached is in the user's mesh: it shows
/// a member certificate for its own key (the connection proved it holds
/// that key), certified under the user's key. A node certified under
/// another user key that trusts this one is accepted only when the user
/// named it by PeerId (`pinned`): reached by `HOST:PORT` or a bare
/// multiaddr, it could be anyone's node posing as a member, and nothing,
/// volumes included, goes to it.
pub async fn verify_member(
    session: &mut Session,
    user: &SigningKey,
    pinned: bool,
    given: &str,
) -> Result<Reached, ClientError> {
    let info = match session.signed(user, Command::Info).await? {
        ControlResponse::Info(info) => info,
        other => return Err(ClientError::Unexpected(format!("{other:?}"))),
    };
    let peer = session.node();
    let reached = Reached {
        peer_id: peer.to_string(),
        name: info.name.clone(),
    };
    let not_member = |why: String| {
        ClientError::NotMember(format!(
            "the node at {given} is {} and {why}: not known to be in your mesh, so nothing was sent to it",
            reached.shown()
        ))
    };
    let mine = protocol::membership::PublicKey::of(user);
    let Some(cert) = &info.certificate else {
        if pinned {
            return Ok(reached);
        }
        return Err(not_member(
            "shows no member certificate (not enrolled, or older than node names)".into(),
        ));
    };
    let key = peer_public_key(&peer).ok_or(ClientError::KeyMismatch)?;
    cert.verify_for(&key)
        .map_err(|e| not_member(format!("its certificate does not hold: {e}")))?;
    if cert.body.user_key == mine || pinned {
        return Ok(reached);
    }
    Err(not_member(format!(
        "is certified by user key {}, not by yours ({mine}); to talk to it anyway, give its PeerId (a multiaddr ending in /p2p/{peer})",
        cert.body.user_key
    )))
}

/// Resolves a node the user gave by name, PeerId or PeerId prefix
/// (`--on`, `--to`, `drain`, `recover --on`) through the `peers` answer of
/// the node `session` talks to; `self` is that node.
pub async fn resolve_node(
    session: &mut Session,
    user: &SigningKey,
    spec: &str,
) -> Result<super::resolve::Resolved, ClientError> {
    let peers = match session.signed(user, Command::Peers { all: false }).await? {
        ControlResponse::Peers(p) => p,
        other => return Err(ClientError::Unexpected(format!("{other:?}"))),
    };
    if spec.trim() == "self" {
        let clashes = super::resolve::clashes(&peers);
        let me = peers.iter().find(|p| p.is_self);
        return Ok(super::resolve::Resolved {
            // An older node does not list itself: it is still `self`.
            peer_id: me.map_or_else(|| "self".to_string(), |p| p.peer_id.clone()),
            name: me.and_then(|p| super::resolve::unique_name(p, &clashes).map(str::to_string)),
            addrs: Vec::new(),
            is_self: true,
        });
    }
    Ok(super::resolve::resolve(spec, &peers)?)
}

/// Finds the node to talk to: `--node`, else the address file of the node
/// running with the data directory (`--data-dir` or the default).
pub fn resolve_target(
    node: Option<&str>,
    data_dir: Option<&Path>,
) -> Result<Vec<Multiaddr>, ClientError> {
    if let Some(n) = node {
        let addr: Multiaddr =
            n.trim()
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| ClientError::BadAddr {
                    addr: n.to_string(),
                    reason: e.to_string(),
                })?;
        return Ok(vec![addr]);
    }
    let dir = DataDir::locate(data_dir).map_err(|e| ClientError::Setup(e.to_string()))?;
    let not_running = || ClientError::NotRunning {
        dir: dir.root.display().to_string(),
    };
    // The node holds the lock while it runs: a lock we can take means the
    // address file is stale.
    if dir.lock_path().exists() {
        if let Ok(f) = std::fs::File::open(dir.lock_path()) {
            if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok() {
                return Err(not_running());
            }
        }
    } else {
        return Err(not_running());
    }
    let mut addrs: Vec<Multiaddr> = dir
        .read_addrs()
        .map_err(|_| not_running())?
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if addrs.is_empty() {
        return Err(not_running());
    }
    addrs.sort_by_key(|a| !is_loopback(a));
    Ok(addrs)
}

fn strip_p2p(mut a: Multiaddr) -> Multiaddr {
    if peer_of(&a).is_some() {
        a.pop();
    }
    a
}

/// Sends `command`, signed by `user`, to the node at `addrs`, and returns
/// its answer (a `Refused` answer is an error).
pub async fn call(
    addrs: Vec<Multiaddr>,
    user: &SigningKey,
    command: Command,
    timeout: Duration,
) -> Result<ControlResponse, ClientError> {
    match tokio::time::timeout(timeout, call_inner(&addrs, user, command)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            secs: timeout.as_secs(),
        }),
    }
}

async fn call_inner(
    addrs: &[Multiaddr],
    user: &SigningKey,
    command: Command,
) -> Result<ControlResponse, ClientError> {
    let mut session = Session::connect(addrs).await?;
    session.signed(user, command).await
}

/// One connection to a node, over which requests go one at a time.
pub struct Session {
    swarm: libp2p::Swarm<request_response::Behaviour<crate::mesh::behaviour::ControlCodec>>,
    node: PeerId,
    shown: String,
}

impl Session {
    /// Dials the node at `addrs` (checking its PeerId when the first
    /// address ends in `/p2p/ID`).
    pub async fn connect(addrs: &[Multiaddr]) -> Result<Session, ClientError> {
        let id = NodeIdentity::ephemeral().map_err(|e| ClientError::Setup(e.to_string()))?;
        let mut swarm = client_swarm(&id).map_err(|e| ClientError::Setup(e.to_string()))?;
        let shown = addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let Some(first) = addrs.first() else {
            return Err(ClientError::Unreachable {
                addrs: shown,
                reason: "no address".into(),
            });
        };
        // With a PeerId, one dial tries every address; without one (`--node
        // HOST:PORT` gives QUIC and TCP), each address is a dial of its own,
        // and the first connection wins.
        let dials: Vec<DialOpts> = match peer_of(first) {
            Some(p) => vec![DialOpts::peer_id(p)
                .addresses(addrs.iter().cloned().map(strip_p2p).collect())
                .build()],
            None => addrs
                .iter()
                .map(|a| DialOpts::unknown_peer_id().address(a.clone()).build())
                .collect(),
        };
        let mut pending = 0usize;
        let mut reasons = Vec::new();
        for opts in dials {
            match swarm.dial(opts) {
                Ok(()) => pending += 1,
                Err(e) => reasons.push(e.to_string()),
            }
        }
        while pending > 0 {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    return Ok(Session {
                        swarm,
                        node: peer_id,
                        shown,
                    })
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    pending -= 1;
                    reasons.push(error.to_string());
                }
                _ => {}
            }
        }
        Err(ClientError::Unreachable {
            addrs: shown,
            reason: reasons.join("; "),
        })
    }

    /// The node's PeerId.
    pub fn node(&self) -> PeerId {
        self.node
    }

    /// Sends one raw request and waits for its answer (`Refused` included).
    pub async fn request(
        &mut self,
        request: ControlRequest,
    ) -> Result<ControlResponse, ClientError> {
        let id = self.swarm.behaviour_mut().send_request(&self.node, request);
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => {
                    return Err(ClientError::Unreachable {
                        addrs: self.shown.clone(),
                        reason: error.to_string(),
                    });
                }
                SwarmEvent::ConnectionClosed {
                    peer_id,
                    cause,
                    num_established: 0,
                    ..
                } if peer_id == self.node => {
                    let reason = cause
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "the connection closed".into());
                    return Err(ClientError::Unreachable {
                        addrs: self.shown.clone(),
                        reason,
                    });
                }
                _ => {}
            }
        }
    }

    /// Asks for a nonce and signs `command` for it with `user`: the request
    /// that [`Session::signed`] sends.
    pub async fn sign(
        &mut self,
        user: &SigningKey,
        command: Command,
    ) -> Result<SignedRequest, ClientError> {
        match self.request(ControlRequest::Challenge).await? {
            ControlResponse::Challenge {
                nonce,
                node: node_key,
            } => sign_for_peer(user, &self.node, node_key, nonce, command),
            ControlResponse::Refused(refusal) => Err(ClientError::Refused(refusal)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends `command`, signed by `user` for a fresh nonce; a `Refused`
    /// answer is an error. When the node answers `SignFor` (another node
    /// acts, and checks the user's signature itself), signs the command
    /// again for that node and its nonce and sends it once more.
    pub async fn signed(
        &mut self,
        user: &SigningKey,
        command: Command,
    ) -> Result<ControlResponse, ClientError> {
        // A deployment is never relayed this way (and is large).
        let again = (!matches!(
            command,
            Command::Deploy { .. } | Command::ReleaseChunks { .. }
        ))
        .then(|| command.clone());
        let req = self.sign(user, command).await?;
        let answer = match self.request(ControlRequest::Signed(Box::new(req))).await? {
            ControlResponse::SignFor {
                node,
                node_key,
                nonce,
            } => {
                let command = again.ok_or_else(|| {
                    ClientError::Unexpected("a node asked to sign a deployment again".into())
                })?;
                let req = sign_for(user, &node, node_key, nonce, command)?;
                self.request(ControlRequest::Signed(Box::new(req))).await?
            }
            other => other,
        };
        match answer {
            ControlResponse::Refused(refusal) => Err(ClientError::Refused(refusal)),
            other => Ok(other),
        }
    }
}

/// Signs `command` for `node` (a PeerId, whose key must be `node_key`)
/// and the nonce it issued, for a `SignFor` answer.
pub fn sign_for(
    user: &SigningKey,
    node: &str,
    node_key: protocol::membership::PublicKey,
    nonce: protocol::membership::Nonce,
    command: Command,
) -> Result<SignedRequest, ClientError> {
    let peer: PeerId = node
        .parse()
        .map_err(|_| ClientError::Unexpected(format!("`{node}` is not a PeerId")))?;
    sign_for_peer(user, &peer, node_key, nonce, command)
}

/// Signs `command` for `peer` and the nonce it issued, once `node_key` is
/// checked to be the key of that PeerId.
fn sign_for_peer(
    user: &SigningKey,
    peer: &PeerId,
    node_key: protocol::membership::PublicKey,
    nonce: protocol::membership::Nonce,
    command: Command,
) -> Result<SignedRequest, ClientError> {
    if peer_public_key(peer) != Some(node_key) {
        return Err(ClientError::KeyMismatch);
    }
    let body = RequestBody {
        version: CONTROL_VERSION,
        node: node_key,
        nonce,
        command,
    };
    Ok(SignedRequest::sign(user, body))
}
