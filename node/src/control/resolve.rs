//! Node names and addressing (issue 16, item 1): what a user may type
//! wherever a command takes a node, and how it becomes one PeerId.
//!
//! A node is named by `start --name` (default: the hostname, made to fit
//! [`check_node_name`]) and gossips the name in its status. Every command
//! that takes a node (`--on`, `--to`, `drain`, `recover --on`, `revoke`,
//! `--node`) accepts:
//!
//! - its name, if exactly one member claims it: a name two members claim
//!   names neither (so no node can take over another's name by claiming
//!   it too), and the error lists the claimants;
//! - a PeerId, or a prefix of one that fits a single member (`ps` and
//!   `peers` show [`SHORT_ID_CHARS`] of it);
//! - for `--node` only: a multiaddr, or `HOST:PORT` (both TCP and QUIC are
//!   tried). The CLI then checks the certificate of the node it reached
//!   (`control::client::verify_member`).
//!
//! Input that is both a name and another member's PeerId prefix is
//! ambiguous, not silently one of them. Resolution is done by the CLI,
//! against the `peers` answer of the node it talks to (which lists itself
//! too), so nodes need nothing new to accept names.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use protocol::control::{check_node_name, PeerInfo, MAX_NODE_NAME_BYTES};

/// How much of a PeerId tables show, and a prefix that long is unique in
/// practice: every ed25519 PeerId starts with the same `12D3KooW`, and the
/// next 8 base58 characters carry about 46 bits.
pub const SHORT_ID_CHARS: usize = 16;

/// The name of a node whose hostname has nothing usable in it.
pub const FALLBACK_NODE_NAME: &str = "node";

/// Most candidates an error lists: enough to pick from, short enough to
/// read on a large mesh.
pub const MAX_CANDIDATES_SHOWN: usize = 8;

/// Why a node given by the user was not found, or not only one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "no member is called `{spec}` or has a PeerId starting with it; the members are: {known}"
    )]
    NoMatch { spec: String, known: String },
    #[error("`{spec}` fits more than one member: {candidates}; give more of the PeerId")]
    Ambiguous { spec: String, candidates: String },
    #[error("the name `{name}` is claimed by more than one node ({claimants}), so it names neither: use a PeerId (or its prefix), and give one of them another name (`meshnode start --name`)")]
    NameClash { name: String, claimants: String },
    #[error("`{spec}` is not an address: {reason}")]
    BadAddress { spec: String, reason: String },
}

/// A node the user named, as the mesh knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub peer_id: String,
    /// Its name, when exactly it claims it.
    pub name: Option<String>,
    /// Where to reach it, each ending in `/p2p/PEERID` (from `peers`).
    pub addrs: Vec<String>,
    /// It is the node that answered the listing.
    pub is_self: bool,
}

impl Resolved {
    /// `kitchen-pi (12D3KooW…)`, or the PeerId alone.
    pub fn shown(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.peer_id),
            None => self.peer_id.clone(),
        }
    }
}

/// What `--node` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSpec {
    /// Addresses to dial: a multiaddr, or `HOST:PORT` as TCP and QUIC.
    Addresses {
        addrs: Vec<Multiaddr>,
        given: String,
    },
    /// A name, a PeerId or a PeerId prefix: resolved through the local node.
    Peer(String),
}

/// The node's name: the configured one (already checked), else
/// [`default_name`].
pub fn own_name(configured: Option<&str>) -> String {
    configured.map_or_else(default_name, str::to_string)
}

/// The hostname, made into a valid node name.
pub fn default_name() -> String {
    let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    sanitise_hostname(&hostname)
}

/// A hostname's first label, lowercased, with any other character made
/// `-`, cut to [`MAX_NODE_NAME_BYTES`]; [`FALLBACK_NODE_NAME`] when nothing
/// is left or what is left is not a valid name.
pub fn sanitise_hostname(hostname: &str) -> String {
    let label = hostname.trim().split('.').next().unwrap_or_default();
    let mut name = String::new();
    for c in label.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
        if name.len() == MAX_NODE_NAME_BYTES {
            break;
        }
    }
    let name = name.trim_end_matches('-').to_string();
    if check_node_name(&name).is_ok() {
        name
    } else {
        FALLBACK_NODE_NAME.to_string()
    }
}

/// The first [`SHORT_ID_CHARS`] of a PeerId.
pub fn short_id(peer_id: &str) -> &str {
    match peer_id.char_indices().nth(SHORT_ID_CHARS) {
        Some((i, _)) => &peer_id[..i],
        None => peer_id,
    }
}

/// The name a peer's status claims (`None` from nodes older than names,
/// and before its first status).
pub fn claimed_name(p: &PeerInfo) -> Option<&str> {
    p.status.as_ref()?.name.as_deref()
}

/// The names that more than one member claims, each with its claimants'
/// PeerIds: they name none of them.
pub fn clashes(peers: &[PeerInfo]) -> BTreeMap<String, Vec<String>> {
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in peers.iter().filter(|p| p.member) {
        if let Some(n) = claimed_name(p) {
            let claimants = claims.entry(n.to_string()).or_default();
            if !claimants.contains(&p.peer_id) {
                claimants.push(p.peer_id.clone());
            }
        }
    }
    claims.retain(|_, c| c.len() > 1);
    claims
}

/// The name a peer goes by: its claimed name unless another member claims
/// it too.
pub fn unique_name<'a>(
    p: &'a PeerInfo,
    clashes: &BTreeMap<String, Vec<String>>,
) -> Option<&'a str> {
    claimed_name(p).filter(|n| !clashes.contains_key(*n))
}

/// How tables and messages show a node: its name, or its short id when it
/// has none of its own.
pub fn label(p: &PeerInfo, clashes: &BTreeMap<String, Vec<String>>) -> String {
    unique_name(p, clashes).map_or_else(|| short_id(&p.peer_id).to_string(), str::to_string)
}

/// Parses what `--node` was given: a multiaddr, `HOST:PORT` (the host's
/// addresses looked up now), or else a name or PeerId (prefix).
pub fn parse_node_spec(spec: &str) -> Result<NodeSpec, ResolveError> {
    let spec = spec.trim();
    let bad = |reason: String| ResolveError::BadAddress {
        spec: spec.to_string(),
        reason,
    };
    if spec.starts_with('/') {
        let addr: Multiaddr = spec.parse().map_err(|e| bad(format!("{e}")))?;
        return Ok(NodeSpec::Addresses {
            addrs: vec![addr],
            given: spec.to_string(),
        });
    }
    let Some((host, port)) = spec.rsplit_once(':') else {
        return Ok(NodeSpec::Peer(spec.to_string()));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("`{port}` is not a port (expected HOST:PORT)")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ips: Vec<std::net::IpAddr> = match host.parse() {
        Ok(ip) => vec![ip],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| bad(format!("cannot look up `{host}`: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if ips.is_empty() {
        return Err(bad(format!("`{host}` has no address")));
    }
    Ok(NodeSpec::Addresses {
        addrs: ips
            .iter()
            .flat_map(|ip| host_port_addrs(*ip, port))
            .collect(),
        given: spec.to_string(),
    })
}

/// QUIC and TCP multiaddrs for one IP and port (a node listens on both by
/// default, and on the same port).
pub fn host_port_addrs(ip: std::net::IpAddr, port: u16) -> [Multiaddr; 2] {
    use libp2p::multiaddr::Protocol;
    let base = Multiaddr::empty().with(match ip {
        std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
        std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
    });
    [
        base.clone()
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
        base.with(Protocol::Tcp(port)),
    ]
}

/// Finds the node `spec` names among `peers` (a `peers` answer: its
/// members and the answering node): by name, PeerId or PeerId prefix.
/// A full PeerId that no member has is returned as it is, without
/// addresses, for the node to judge.
pub fn resolve(spec: &str, peers: &[PeerInfo]) -> Result<Resolved, ResolveError> {
    let spec = spec.trim();
    let members: Vec<&PeerInfo> = peers.iter().filter(|p| p.member).collect();
    let clashes = clashes(peers);
    if let Some(p) = members.iter().find(|p| p.peer_id == spec) {
        return Ok(resolved(p, &clashes));
    }
    if let Some(claimants) = clashes.get(spec) {
        return Err(ResolveError::NameClash {
            name: spec.to_string(),
            claimants: list(claimants.iter().map(String::as_str)),
        });
    }
    let fits: Vec<&PeerInfo> = members
        .iter()
        .filter(|p| claimed_name(p) == Some(spec) || p.peer_id.starts_with(spec))
        .copied()
        .collect();
    match fits.as_slice() {
        [one] => Ok(resolved(one, &clashes)),
        [] if spec.parse::<libp2p::PeerId>().is_ok() => Ok(Resolved {
            peer_id: spec.to_string(),
            name: None,
            addrs: Vec::new(),
            is_self: false,
        }),
        [] => Err(ResolveError::NoMatch {
            spec: spec.to_string(),
            known: list(members.iter().map(|p| shown(p, &clashes))),
        }),
        many => Err(ResolveError::Ambiguous {
            spec: spec.to_string(),
            candidates: list(many.iter().map(|p| shown(p, &clashes))),
        }),
    }
}

fn resolved(p: &PeerInfo, clashes: &BTreeMap<String, Vec<String>>) -> Resolved {
    Resolved {
        peer_id: p.peer_id.clone(),
        name: unique_name(p, clashes).map(str::to_string),
        addrs: p.addrs.clone(),
        is_self: p.is_self,
    }
}

/// `name (12D3KooWAbCdEfGh)` for a candidate list.
fn shown(p: &PeerInfo, clashes: &BTreeMap<String, Vec<String>>) -> String {
    match claimed_name(p) {
        Some(n) if clashes.contains_key(n) => format!("{} (claims `{n}`)", p.peer_id),
        Some(n) => format!("{n} ({})", p.peer_id),
        None => p.peer_id.clone(),
    }
}

fn list<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let all: Vec<String> = items.map(|s| s.as_ref().to_string()).collect();
    if all.is_empty() {
        return "none".to_string();
    }
    let mut text = all
        .iter()
        .take(MAX_CANDIDATES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_CANDIDATES_SHOWN {
        text.push_str(&format!(" and {} more", all.len() - MAX_CANDIDATES_SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: u8, name: Option<&str>) -> PeerInfo {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let id = crate::identity::NodeIdentity::from_signing_key(key).peer_id;
        let mut status = crate::mesh::status::sample(vec![]);
        status.name = name.map(str::to_string);
        PeerInfo {
            peer_id: id.to_string(),
            addrs: vec![format!("/ip4/127.0.0.1/udp/1/quic-v1/p2p/{id}")],
            rtt_us: None,
            estimated_rtt_us: None,
            member: true,
            refused: None,
            user_key: None,
            status: Some(status),
            status_age_ms: None,
            rtt_age_ms: None,
            liveness: None,
            is_self: seed == 1,
            member_state: None,
        }
    }

    #[test]
    fn a_name_a_peer_id_or_a_unique_prefix_resolve() {
        let peers = [
            peer(1, Some("kitchen-pi")),
            peer(2, Some("garage")),
            peer(3, None),
        ];
        let r = resolve("kitchen-pi", &peers).unwrap();
        assert_eq!(r.peer_id, peers[0].peer_id);
        assert_eq!(r.name.as_deref(), Some("kitchen-pi"));
        assert!(r.is_self);
        assert_eq!(
            resolve(&peers[2].peer_id, &peers).unwrap().peer_id,
            peers[2].peer_id
        );
        let prefix = &peers[1].peer_id[..SHORT_ID_CHARS];
        assert_eq!(
            resolve(prefix, &peers).unwrap().name.as_deref(),
            Some("garage")
        );
        // A PeerId no member has goes to the node as it is.
        let stranger = peer(9, None).peer_id;
        let r = resolve(&stranger, &peers).unwrap();
        assert_eq!((r.peer_id.as_str(), r.addrs.len()), (stranger.as_str(), 0));
    }

    #[test]
    fn no_match_and_ambiguity_list_the_candidates() {
        let peers = [peer(1, Some("a")), peer(2, Some("b"))];
        let err = resolve("nowhere", &peers).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ResolveError::NoMatch { .. }), "{text}");
        assert!(
            text.contains(&format!("a ({})", peers[0].peer_id)),
            "{text}"
        );
        assert!(
            text.contains(&format!("b ({})", peers[1].peer_id)),
            "{text}"
        );
        // Every ed25519 PeerId starts with 12D3KooW.
        let err = resolve("12D3KooW", &peers).unwrap_err();
        assert!(matches!(err, ResolveError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains(&peers[1].peer_id), "{err}");
    }

    #[test]
    fn a_name_two_nodes_claim_names_neither() {
        let peers = [
            peer(1, Some("pi")),
            peer(2, Some("pi")),
            peer(3, Some("nas")),
        ];
        let err = resolve("pi", &peers).unwrap_err();
        assert!(matches!(err, ResolveError::NameClash { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&peers[0].peer_id) && text.contains(&peers[1].peer_id),
            "{text}"
        );
        // Each is still reachable by its PeerId, and is shown by it.
        let r = resolve(&peers[1].peer_id, &peers).unwrap();
        assert_eq!(r.name, None);
        let c = clashes(&peers);
        assert_eq!(label(&peers[0], &c), short_id(&peers[0].peer_id));
        assert_eq!(label(&peers[2], &c), "nas");
        // A non-member's claim does not count.
        let mut refused = peer(4, Some("nas"));
        refused.member = false;
        let more = [peers[2].clone(), refused];
        assert!(clashes(&more).is_empty());
        assert_eq!(resolve("nas", &more).unwrap().peer_id, peers[2].peer_id);
    }

    #[test]
    fn a_name_that_is_another_nodes_prefix_is_ambiguous() {
        // Every PeerId starts with `12`, a valid name: a node called so
        // does not capture `--to 12…`.
        let peers = [peer(1, Some("12")), peer(2, None)];
        let err = resolve("12", &peers).unwrap_err();
        assert!(matches!(err, ResolveError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains(&peers[1].peer_id), "{err}");
    }

    #[test]
    fn hostnames_become_valid_names() {
        assert_eq!(sanitise_hostname("Kitchen-Pi.local\n"), "kitchen-pi");
        assert_eq!(sanitise_hostname("my_box 2"), "my-box-2");
        assert_eq!(sanitise_hostname("--x--"), "x");
        assert_eq!(sanitise_hostname(""), FALLBACK_NODE_NAME);
        assert_eq!(sanitise_hostname("self"), FALLBACK_NODE_NAME);
        assert_eq!(sanitise_hostname("ÄÖ"), FALLBACK_NODE_NAME);
        let long = sanitise_hostname(&"ab-".repeat(30));
        assert!(long.len() <= MAX_NODE_NAME_BYTES, "{long}");
        assert_eq!(check_node_name(&long), Ok(()));
        assert_eq!(check_node_name(&default_name()), Ok(()));
    }

    #[test]
    fn node_specs() {
        match parse_node_spec("127.0.0.1:7646").unwrap() {
            NodeSpec::Addresses { addrs, .. } => assert_eq!(
                addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                ["/ip4/127.0.0.1/udp/7646/quic-v1", "/ip4/127.0.0.1/tcp/7646"]
            ),
            other => panic!("{other:?}"),
        }
        match parse_node_spec("[::1]:9").unwrap() {
            NodeSpec::Addresses { addrs, .. } => {
                assert_eq!(addrs[1].to_string(), "/ip6/::1/tcp/9")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_node_spec("/ip4/127.0.0.1/tcp/1").unwrap(),
            NodeSpec::Addresses { .. }
        ));
        assert_eq!(
            parse_node_spec("kitchen-pi").unwrap(),
            NodeSpec::Peer("kitchen-pi".into())
        );
        let err = parse_node_spec("host:notaport").unwrap_err().to_string();
        assert!(err.contains("`notaport` is not a port"), "{err}");
        assert!(parse_node_spec("/nonsense").is_err());
    }
}
