//! What `meshnode peers` lists of each peer, and the node status every node
//! gossips on `meshnode/status/1` (docs/protocol.md, "Status gossip"), with
//! its limits. Plain data; re-exported by the control module.

use serde::{Deserialize, Serialize};

use crate::ids::{PeerIdBytes, VesselId};
use crate::limits::{MAX_STATUS_RTTS, MAX_STATUS_STRING_BYTES, MAX_STATUS_VESSELS};
use crate::membership::{MemberCertificate, PublicKey};

/// Version of the control and status messages this build speaks (here, not
/// in `control`, which re-exports it: the status needs it, and `control`
/// uses this module).
pub const CONTROL_VERSION: u32 = 1;

/// One peer as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    /// Smoothed round-trip time, when the peer is connected and pinged.
    pub rtt_us: Option<u64>,
    /// The RTT this node's network coordinate and the peer's estimate
    /// (issue 19), whether or not it was measured; `None` when either
    /// coordinate is missing or not yet settled, and from older nodes.
    #[serde(default)]
    pub estimated_rtt_us: Option<u64>,
    pub member: bool,
    /// Why the peer is not a member, when it is not.
    pub refused: Option<String>,
    pub user_key: Option<PublicKey>,
    pub status: Option<NodeStatus>,
    /// How long ago its last status arrived, in milliseconds.
    pub status_age_ms: Option<u64>,
    /// How long ago its last RTT sample arrived, in milliseconds: a large
    /// value means pings are failing (a partition) and `rtt_us` is stale.
    #[serde(default)]
    pub rtt_age_ms: Option<u64>,
    /// Whether the node hears from the peer (`None` from a node older than
    /// failure detection). When it is not `Up`, `status` is stale: it is
    /// the last one the peer gossiped, `status_age_ms` old.
    #[serde(default)]
    pub liveness: Option<PeerLiveness>,
    /// This entry is the answering node itself (`peers` lists it too,
    /// marked); false from nodes older than node names.
    #[serde(default)]
    pub is_self: bool,
    /// What the SWIM-style membership protocol (issue 19) says of the peer:
    /// its state and incarnation. `None` when the protocol does not know
    /// the peer (yet), and from older nodes. It does not decide leases
    /// (`liveness` does).
    #[serde(default)]
    pub member_state: Option<SwimView>,
}

/// A member as the membership protocol sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwimView {
    pub state: SwimState,
    /// Raised only by the member itself, to refute a suspicion or a death
    /// (a restarted node comes back with a higher one).
    pub incarnation: u32,
}

/// The membership protocol's states. On the wire, its name (`"suspect"`),
/// so that a state a newer node adds decodes as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum SwimState {
    Alive,
    /// Nobody reached it in a probe round; it may still refute.
    Suspect,
    /// The suspicion timed out unrefuted.
    Dead,
    /// It said goodbye (a graceful stop).
    Left,
    /// A state this build does not know (from a newer node).
    Unknown,
}

impl SwimState {
    pub fn name(self) -> &'static str {
        match self {
            SwimState::Alive => "alive",
            SwimState::Suspect => "suspect",
            SwimState::Dead => "dead",
            SwimState::Left => "left",
            SwimState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for SwimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<SwimState> for String {
    fn from(s: SwimState) -> String {
        s.name().to_string()
    }
}

impl From<String> for SwimState {
    fn from(name: String) -> SwimState {
        [
            SwimState::Alive,
            SwimState::Suspect,
            SwimState::Dead,
            SwimState::Left,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or(SwimState::Unknown)
    }
}

/// What a node's failure detector says of a peer (docs/guide.md, "A node
/// that stops answering").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLiveness {
    pub state: LivenessState,
    /// How long nothing was heard from it (no ping, gossip or answer), in
    /// milliseconds: how long it has been unreachable, when it is.
    pub silent_ms: u64,
    /// When it was last heard from, Unix milliseconds on the answering
    /// node's clock (0 when that clock is before 1970).
    pub last_heard_unix_ms: u64,
}

/// A peer's state as failure detection sees it. On the wire, its name
/// (`"unreachable"`), so that a state a newer node adds decodes as
/// `Unknown` instead of failing the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum LivenessState {
    /// Heard from within the unreachable threshold.
    Up,
    /// Nothing heard for longer than the unreachable threshold (or a failed
    /// exchange and a shorter silence): suspected, not yet given up.
    Unreachable,
    /// Nothing heard for longer than the down threshold, or it left.
    Down,
    /// A state this build does not know (from a newer node).
    Unknown,
}

impl LivenessState {
    pub fn name(self) -> &'static str {
        match self {
            LivenessState::Up => "up",
            LivenessState::Unreachable => "unreachable",
            LivenessState::Down => "down",
            LivenessState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for LivenessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<LivenessState> for String {
    fn from(s: LivenessState) -> String {
        s.name().to_string()
    }
}

impl From<String> for LivenessState {
    fn from(name: String) -> LivenessState {
        [
            LivenessState::Up,
            LivenessState::Unreachable,
            LivenessState::Down,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or(LivenessState::Unknown)
    }
}

/// What each node gossips about itself on the status topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub version: u32,
    /// `std::env::consts::ARCH`, e.g. `x86_64`, `aarch64`.
    pub arch: String,
    /// `std::env::consts::OS`, e.g. `linux`, `macos`.
    pub os: String,
    pub free_memory_bytes: Option<u64>,
    pub total_memory_bytes: Option<u64>,
    /// One-minute load average × 1000.
    pub load_milli: Option<u32>,
    pub cpus: u32,
    /// Ids of the vessels running on the node.
    pub vessels: Vec<String>,
    /// The service ports of the vessels running on the node, so that every
    /// node can accept their clients.
    #[serde(default)]
    pub services: Vec<crate::ingress::ServiceRoute>,
    /// Smoothed RTTs to its nearest connected member peers, for placement
    /// elsewhere (absent from nodes older than placement).
    #[serde(default)]
    pub rtts: Vec<PeerRtt>,
    /// It is being drained: placement moves no vessel to it.
    #[serde(default)]
    pub draining: bool,
    /// The running vessels' names and epochs (the first
    /// [`MAX_STATUS_NAMED_VESSELS`]), so that `ps` can still list a vessel,
    /// by name, on the row of a host that stopped answering (empty from
    /// older nodes).
    #[serde(default)]
    pub named: Vec<StatusVessel>,
    /// The node's human name (`meshnode start --name`, default the
    /// hostname), checked by [`check_node_name`]. A name that two members
    /// claim names neither of them (docs/guide.md, "Node names and
    /// addressing"). `None` from nodes older than node names.
    #[serde(default)]
    pub name: Option<String>,
    /// The release the node runs: its version and peer protocols
    /// (`upgrade roll` checks version skew with them). `None` from nodes
    /// older than releases.
    #[serde(default)]
    pub software: Option<NodeSoftware>,
    /// The node's Vivaldi network coordinate (docs/protocol.md, "Network
    /// coordinates"), from which any node estimates its RTT to any other.
    /// `None` from nodes older than coordinates.
    #[serde(default)]
    pub coordinate: Option<crate::coordinate::NetCoordinate>,
    /// The node sends its status at least once in this many status
    /// intervals, and at once when something in it changed that others
    /// act on (issue 19: a status every interval was nine tenths of an
    /// idle fleet's traffic). A receiver counts the status stale only after
    /// that many intervals and two more. `None` from nodes that send one
    /// every interval. At most [`MAX_STATUS_REFRESH_INTERVALS`].
    #[serde(default)]
    pub refresh_intervals: Option<u32>,
}

/// What a node sends in [`NodeStatus::refresh_intervals`]: 10 × the
/// default 2 s interval. A status is how a node that missed one (gossip is
/// best-effort) catches up; a peer that died is judged by failure
/// detection, not by its status's age.
pub const STATUS_REFRESH_INTERVALS: u32 = 10;

/// The most a status may claim: a peer claiming more would keep its last
/// status looking fresh to placement for far too long.
pub const MAX_STATUS_REFRESH_INTERVALS: u32 = 60;

/// A peer's status is stale after this many of its status intervals
/// without a new one: its refresh (1 for a node that does not say), and
/// two more for gossip's delivery and a lost message.
pub fn stale_after_intervals(refresh_intervals: Option<u32>) -> u32 {
    refresh_intervals
        .unwrap_or(1)
        .clamp(1, MAX_STATUS_REFRESH_INTERVALS)
        + 2
}

/// What release a node runs (its binary's release marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSoftware {
    pub version: String,
    pub peer_protocol: u32,
    pub min_peer_protocol: u32,
}

/// Most vessels a status names ([`NodeStatus::named`]): 64 names of up to
/// `MAX_NAME_BYTES` keep a status well under `MAX_STATUS_MESSAGE_BYTES`
/// beside its 512 ids, and a small board runs tens of vessels.
pub const MAX_STATUS_NAMED_VESSELS: usize = 64;

/// One running vessel as a status names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusVessel {
    pub id: VesselId,
    pub name: String,
    pub epoch: u64,
    /// Its lease's voters, in the certificate's order (the order a
    /// takeover ranks them in), if it is leased: so that `ps` elsewhere can
    /// say, once this host stops answering, who takes it over or why no
    /// one can (issue 15). Empty from older nodes and for the vessels past
    /// [`MAX_STATUS_FAILOVER_VESSELS`].
    #[serde(default)]
    pub voters: Vec<PeerIdBytes>,
    /// The replicas that hold a checkpoint of it (empty likewise).
    #[serde(default)]
    pub replicas: Vec<PeerIdBytes>,
}

/// Most vessels a status gives voters and replicas for: each costs up to
/// 2 × `MAX_VOTERS_PER_VESSEL` PeerIds of about 40 bytes, and 24 of them
/// (17 KiB) keep a status under `MAX_STATUS_MESSAGE_BYTES` beside its
/// names and ids; the rest are listed without them.
pub const MAX_STATUS_FAILOVER_VESSELS: usize = 24;

/// Longest PeerId a status names: an ed25519 PeerId is 38 bytes; 64
/// leaves room for another key type without letting a status grow.
pub const MAX_STATUS_PEER_ID_BYTES: usize = 64;

/// One peer's smoothed RTT, as a status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRtt {
    /// The peer's PeerId.
    pub peer: String,
    pub rtt_us: u64,
}

/// A gossiped status: the sender's certificate travels with it, so that a
/// status forwarded by other peers can still be checked for membership. The
/// gossipsub envelope's own signature proves who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub certificate: MemberCertificate,
    pub status: NodeStatus,
}

/// Why a node status was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("status lists {found} vessels, over the limit of {limit}")]
    TooManyVessels { found: usize, limit: usize },
    #[error("status lists {found} RTTs, over the limit of {limit}")]
    TooManyRtts { found: usize, limit: usize },
    #[error("vessel {vessel} has {found} service ports, over the limit of {limit}")]
    TooManyPorts {
        vessel: String,
        found: usize,
        limit: usize,
    },
    #[error(
        "vessel {vessel} has {found} voters or replicas in a status, over the limit of {limit}"
    )]
    TooManyVoters {
        vessel: String,
        found: usize,
        limit: usize,
    },
    #[error("status has a string of {found} bytes, over the limit of {limit}")]
    StringTooLong { found: usize, limit: usize },
    #[error("status names its node badly: {0}")]
    BadNodeName(NodeNameError),
    #[error("status has a bad network coordinate: {0}")]
    BadCoordinate(crate::coordinate::CoordinateError),
    #[error("status claims a refresh of {found} intervals, over the limit of {limit}")]
    RefreshTooLong { found: u32, limit: u32 },
}

impl NodeStatus {
    pub fn check(&self) -> Result<(), StatusError> {
        if self.version != CONTROL_VERSION {
            return Err(StatusError::Version {
                found: self.version,
                expected: CONTROL_VERSION,
            });
        }
        if self.vessels.len() > MAX_STATUS_VESSELS {
            return Err(StatusError::TooManyVessels {
                found: self.vessels.len(),
                limit: MAX_STATUS_VESSELS,
            });
        }
        if let Some(found) = self
            .refresh_intervals
            .filter(|r| *r > MAX_STATUS_REFRESH_INTERVALS)
        {
            return Err(StatusError::RefreshTooLong {
                found,
                limit: MAX_STATUS_REFRESH_INTERVALS,
            });
        }
        if self.rtts.len() > MAX_STATUS_RTTS {
            return Err(StatusError::TooManyRtts {
                found: self.rtts.len(),
                limit: MAX_STATUS_RTTS,
            });
        }
        if self.services.len() > MAX_STATUS_VESSELS {
            return Err(StatusError::TooManyVessels {
                found: self.services.len(),
                limit: MAX_STATUS_VESSELS,
            });
        }
        if self.named.len() > MAX_STATUS_NAMED_VESSELS {
            return Err(StatusError::TooManyVessels {
                found: self.named.len(),
                limit: MAX_STATUS_NAMED_VESSELS,
            });
        }
        if let Some(v) = self
            .named
            .iter()
            .find(|v| v.name.len() > crate::limits::MAX_NAME_BYTES)
        {
            return Err(StatusError::StringTooLong {
                found: v.name.len(),
                limit: crate::limits::MAX_NAME_BYTES,
            });
        }
        if let Some(name) = &self.name {
            check_node_name(name).map_err(StatusError::BadNodeName)?;
        }
        if let Some(c) = &self.coordinate {
            c.check().map_err(StatusError::BadCoordinate)?;
        }
        self.check_failover_facts()?;
        if let Some(bad) = self.services.iter().find(|s| s.check().is_err()) {
            return Err(StatusError::TooManyPorts {
                vessel: bad.vessel.to_hex(),
                found: bad.ports.len(),
                limit: crate::limits::MAX_SERVICE_PORTS,
            });
        }
        for s in [&self.arch, &self.os]
            .into_iter()
            .chain(self.software.iter().map(|s| &s.version))
            .chain(self.vessels.iter())
            .chain(self.rtts.iter().map(|r| &r.peer))
        {
            if s.len() > MAX_STATUS_STRING_BYTES {
                return Err(StatusError::StringTooLong {
                    found: s.len(),
                    limit: MAX_STATUS_STRING_BYTES,
                });
            }
        }
        Ok(())
    }

    /// The voters and replicas of [`StatusVessel`]: on few vessels, few
    /// and short each.
    fn check_failover_facts(&self) -> Result<(), StatusError> {
        let with = self
            .named
            .iter()
            .filter(|v| !v.voters.is_empty() || !v.replicas.is_empty())
            .count();
        if with > MAX_STATUS_FAILOVER_VESSELS {
            return Err(StatusError::TooManyVessels {
                found: with,
                limit: MAX_STATUS_FAILOVER_VESSELS,
            });
        }
        for v in &self.named {
            for list in [&v.voters, &v.replicas] {
                if list.len() > crate::limits::MAX_VOTERS_PER_VESSEL {
                    return Err(StatusError::TooManyVoters {
                        vessel: v.id.to_hex(),
                        found: list.len(),
                        limit: crate::limits::MAX_VOTERS_PER_VESSEL,
                    });
                }
                if let Some(p) = list.iter().find(|p| p.0.len() > MAX_STATUS_PEER_ID_BYTES) {
                    return Err(StatusError::StringTooLong {
                        found: p.0.len(),
                        limit: MAX_STATUS_PEER_ID_BYTES,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Longest node name, in bytes: long enough for a hostname's first label
/// (at most 63 by RFC 1035) cut to something a table column can show, short
/// enough that `ps` and `peers` fit within 100 columns with it.
pub const MAX_NODE_NAME_BYTES: usize = 24;

/// A word that commands give a meaning of their own (`drain self`), so no
/// node may be called it.
pub const RESERVED_NODE_NAMES: &[&str] = &["self"];

/// Why a node name is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    #[error("a node name cannot be empty")]
    Empty,
    #[error("node name `{name}` is {found} bytes long, over the limit of {limit}")]
    TooLong {
        name: String,
        found: usize,
        limit: usize,
    },
    #[error("node name `{name}` has `{found}`: use lowercase letters a-z, digits and `-` (not first or last)")]
    BadCharacter { name: String, found: char },
    #[error("`{0}` is a word commands reserve (e.g. `drain self`), not a node name")]
    Reserved(String),
}

/// The rule for a node name: 1 to [`MAX_NODE_NAME_BYTES`] bytes of
/// lowercase ASCII letters, digits and inner `-` (a hostname label in one
/// case, so that `Kitchen` cannot pass for `kitchen`), and no reserved
/// word. It never contains `:` or `/`, so it is never taken for a
/// `HOST:PORT` or a multiaddr; and with its limit it is shorter than any
/// PeerId.
pub fn check_node_name(name: &str) -> Result<(), NodeNameError> {
    if name.is_empty() {
        return Err(NodeNameError::Empty);
    }
    if name.len() > MAX_NODE_NAME_BYTES {
        return Err(NodeNameError::TooLong {
            name: name.chars().take(MAX_NODE_NAME_BYTES).collect::<String>() + "…",
            found: name.len(),
            limit: MAX_NODE_NAME_BYTES,
        });
    }
    let bad = |c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if let Some(found) = name.chars().find(|&c| bad(c)) {
        return Err(NodeNameError::BadCharacter {
            name: name.to_string(),
            found,
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NodeNameError::BadCharacter {
            name: name.to_string(),
            found: '-',
        });
    }
    if RESERVED_NODE_NAMES.contains(&name) {
        return Err(NodeNameError::Reserved(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn node_names_are_short_lowercase_labels() {
        assert_eq!(check_node_name("kitchen-pi"), Ok(()));
        assert_eq!(check_node_name("n1"), Ok(()));
        assert_eq!(check_node_name(""), Err(NodeNameError::Empty));
        assert!(matches!(
            check_node_name("Kitchen"),
            Err(NodeNameError::BadCharacter { found: 'K', .. })
        ));
        for bad in ["a:b", "a/b", "a b", "a.b", "-a", "a-", "ä"] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            check_node_name(&"a".repeat(MAX_NODE_NAME_BYTES + 1)),
            Err(NodeNameError::TooLong { .. })
        ));
        assert_eq!(check_node_name(&"a".repeat(MAX_NODE_NAME_BYTES)), Ok(()));
        assert_eq!(
            check_node_name("self"),
            Err(NodeNameError::Reserved("self".into()))
        );
    }
}
