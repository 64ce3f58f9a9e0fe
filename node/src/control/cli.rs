//! The `meshnode peers | keygen | invite | trust | revoke | endorse`
//! subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use protocol::control::{secret_hash, Command, ControlResponse, LivenessState, PeerInfo};
use protocol::limits::MAX_INVITE_TTL_SECS;
use protocol::membership::{InviteGrant, JoinToken, Nonce, PublicKey, MEMBERSHIP_VERSION};

use super::client::{call, resolve_target, DEFAULT_CLIENT_TIMEOUT};
use crate::identity::{read_or_create_key, user_key_path};

/// Which node a command talks to, and as whom.
#[derive(Args, Debug, Clone)]
pub struct NodeTarget {
    /// Talk to the node at this multiaddr (e.g.
    /// /ip4/192.0.2.7/udp/7646/quic-v1/p2p/12D3KooW…) instead of the local one.
    #[arg(long, value_name = "MULTIADDR")]
    pub node: Option<String>,

    /// Data directory of the local node to talk to (default: the platform's,
    /// e.g. ~/.local/share/meshnode).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The user key to sign with (default: ~/.config/meshnode/user.key,
    /// created on first use).
    #[arg(long, value_name = "FILE")]
    pub user_key: Option<PathBuf>,

    /// How long to wait for the node, e.g. 15s.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list peers that are not members (with why).
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where the user key is (default: ~/.config/meshnode/user.key).
    #[arg(long, value_name = "FILE")]
    pub user_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// How long the token stays valid, measured by the inviting node's clock
    /// (e.g. 10m, 1h; at most 24h).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub ttl: Duration,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Trust a user key (64 hex digits, as `meshnode keygen` prints it).
    Add {
        key: String,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Stop trusting a user key.
    Remove {
        key: String,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// List the user keys the node trusts.
    List {
        #[command(flatten)]
        target: NodeTarget,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The node to revoke: its PeerId, as `meshnode peers` lists it.
    pub peer_id: String,
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EndorseArgs {
    /// The nodes to keep: their PeerIds, as `meshnode revoke` listed them.
    #[arg(required = true, num_args = 1..)]
    pub peer_ids: Vec<String>,
    #[command(flatten)]
    pub target: NodeTarget,
}

/// The one duration parser (`500ms`, `1.5s`, `10m`, `1h`, bare seconds),
/// here for the flags of `meshnode start` and `meshnode demo` too.
pub use protocol::duration::parse_duration;

/// Prints a line to stdout; a closed pipe (`meshnode peers | head`) is not
/// an error.
pub(crate) fn out(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn user_key(explicit: Option<&std::path::Path>) -> Result<ed25519_dalek::SigningKey> {
    let path = crate::identity::command_user_key_path(explicit)?;
    let (key, created) = read_or_create_key(&path)?;
    if created {
        eprintln!(
            "meshnode: created your user key {} in {}",
            PublicKey::of(&key),
            path.display()
        );
    }
    Ok(key)
}

fn send(target: &NodeTarget, command: Command) -> Result<ControlResponse> {
    let addrs = resolve_target(target.node.as_deref(), target.data_dir.as_deref())?;
    let key = user_key(target.user_key.as_deref())?;
    let timeout = if target.timeout.is_zero() {
        DEFAULT_CLIENT_TIMEOUT
    } else {
        target.timeout
    };
    Ok(runtime()?.block_on(call(addrs, &key, command, timeout))?)
}

/// `meshnode peers`.
pub fn run_peers(args: PeersArgs) -> Result<i32> {
    let ControlResponse::Peers(peers) = send(&args.target, Command::Peers { all: args.all })?
    else {
        bail!("unexpected answer to `peers`");
    };
    if args.json {
        out(serde_json::to_string_pretty(&peers_json(&peers))?)?;
        return Ok(0);
    }
    out(format_args!(
        "{:<54} {:<17} {:>9} {:<8} {:<7} {:>6} {:>9} {:<8} ADDRESS",
        "PEER", "STATE", "RTT", "ARCH", "OS", "LOAD", "FREE MEM", "VESSELS"
    ))?;
    for p in &peers {
        // The load of a node that does not answer is stale: shown below,
        // with its age, not in the columns.
        let s = p.status.as_ref().filter(|_| is_up(p));
        out(format_args!(
            "{:<54} {:<17} {:>9} {:<8} {:<7} {:>6} {:>9} {:<8} {}",
            p.peer_id,
            state_column(p),
            p.rtt_us
                .map_or("-".into(), |us| format!("{:.2}ms", us as f64 / 1000.0)),
            s.map_or("-", |s| s.arch.as_str()),
            s.map_or("-", |s| s.os.as_str()),
            s.and_then(|s| s.load_milli)
                .map_or("-".into(), |l| format!("{:.2}", l as f64 / 1000.0)),
            s.and_then(|s| s.free_memory_bytes)
                .map_or("-".into(), |b| format!("{}MiB", b / (1024 * 1024))),
            s.map_or("-".into(), |s| s.vessels.len().to_string()),
            p.addrs.first().map_or("-", |a| a.as_str()),
        ))?;
        if let Some(r) = &p.refused {
            out(format_args!("    not a member: {r}"))?;
        }
        if let Some(line) = stale_status_line(p) {
            out(format_args!("    {line}"))?;
        }
    }
    Ok(0)
}

/// Up, or from a node older than failure detection (it does not say).
fn is_up(p: &PeerInfo) -> bool {
    p.liveness
        .as_ref()
        .is_none_or(|l| l.state == LivenessState::Up)
}

/// `up`, `unreachable 4.2s`, `down 41s` (how long it has been silent).
pub fn state_column(p: &PeerInfo) -> String {
    match &p.liveness {
        None => "-".to_string(),
        Some(l) if l.state == LivenessState::Up => "up".to_string(),
        Some(l) => format!("{} {}", l.state, human_silence(l.silent_ms)),
    }
}

fn human_silence(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// For a peer that is not up: when it was last heard from, and its last
/// status, marked stale with its age.
pub fn stale_status_line(p: &PeerInfo) -> Option<String> {
    let l = p.liveness.as_ref().filter(|_| !is_up(p))?;
    let heard = std::time::UNIX_EPOCH + Duration::from_millis(l.last_heard_unix_ms);
    let mut line = format!(
        "last heard from at {} UTC",
        crate::mesh::liveness::clock_utc(heard)
    );
    if let (Some(s), Some(age)) = (&p.status, p.status_age_ms) {
        line.push_str(&format!(
            "; its last status is stale ({} old): load {}, {} free, {} vessel(s)",
            human_silence(age),
            s.load_milli
                .map_or("-".into(), |l| format!("{:.2}", l as f64 / 1000.0)),
            s.free_memory_bytes
                .map_or("-".into(), |b| format!("{}MiB", b / (1024 * 1024))),
            s.vessels.len()
        ));
    }
    Some(line)
}

/// The JSON shape of `peers --json`: one object per peer.
pub fn peers_json(peers: &[PeerInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        peers
            .iter()
            .map(|p| {
                let s = p.status.as_ref();
                serde_json::json!({
                    "peer_id": p.peer_id,
                    "addresses": p.addrs,
                    "member": p.member,
                    "refused": p.refused,
                    "user_key": p.user_key.map(|k| k.to_hex()),
                    "rtt_ms": p.rtt_us.map(|us| us as f64 / 1000.0),
                    "arch": s.map(|s| s.arch.clone()),
                    "os": s.map(|s| s.os.clone()),
                    "cpus": s.map(|s| s.cpus),
                    "load": s.and_then(|s| s.load_milli).map(|l| l as f64 / 1000.0),
                    "free_memory_bytes": s.and_then(|s| s.free_memory_bytes),
                    "total_memory_bytes": s.and_then(|s| s.total_memory_bytes),
                    "vessels": s.map(|s| s.vessels.clone()).unwrap_or_default(),
                    "status_age_ms": p.status_age_ms,
                    "rtt_age_ms": p.rtt_age_ms,
                    "state": p.liveness.as_ref().map(|l| l.state.name()),
                    "silent_ms": p.liveness.as_ref().map(|l| l.silent_ms),
                    "last_heard_unix_ms": p.liveness.as_ref().map(|l| l.last_heard_unix_ms),
                    "status_stale": !is_up(p),
                })
            })
            .collect(),
    )
}

/// `meshnode keygen`: prints the user's public key, creating the key if
/// needed.
pub fn run_keygen(args: KeygenArgs) -> Result<i32> {
    let path = user_key_path(args.user_key.as_deref())?;
    let (key, created) = read_or_create_key(&path)?;
    let public = PublicKey::of(&key);
    if args.json {
        out(serde_json::json!({ "user_key": public.to_hex(), "path": path, "created": created }))?;
    } else {
        let what = if created { "created" } else { "exists" };
        eprintln!("meshnode: user key {what}: {}", path.display());
        out(public)?;
    }
    Ok(0)
}

/// `meshnode invite`: prints a one-time join token.
pub fn run_invite(args: InviteArgs) -> Result<i32> {
    let ttl_secs = args.ttl.as_secs();
    if ttl_secs == 0 || ttl_secs > MAX_INVITE_TTL_SECS {
        bail!("--ttl must be between 1s and 24h");
    }
    let addrs = resolve_target(args.target.node.as_deref(), args.target.data_dir.as_deref())?;
    let key = user_key(args.target.user_key.as_deref())?;
    let rt = runtime()?;
    // Which node is it? Its key goes into the grant.
    let ControlResponse::Info(info) = rt.block_on(call(
        addrs.clone(),
        &key,
        Command::Info,
        args.target.timeout,
    ))?
    else {
        bail!("unexpected answer to `info`");
    };
    let peer: libp2p::PeerId = info.peer_id.parse().context("the node sent a bad PeerId")?;
    let node_key = crate::identity::peer_public_key(&peer)
        .context("the node's PeerId is not an ed25519 key")?;
    let mut id = [0u8; 32];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let (invite_id, secret) = (Nonce(id), Nonce(secret));
    let grant = InviteGrant::sign(&key, node_key, invite_id, secret_hash(&secret));
    let response = rt.block_on(call(
        addrs,
        &key,
        Command::CreateInvite { grant, ttl_secs },
        args.target.timeout,
    ))?;
    let ControlResponse::InviteCreated {
        inviter,
        addrs,
        ttl_secs,
    } = response
    else {
        bail!("unexpected answer to `invite`");
    };
    let token = JoinToken {
        version: MEMBERSHIP_VERSION,
        inviter: inviter.0,
        addrs,
        invite_id,
        secret,
    };
    eprintln!(
        "meshnode: on the new device, within {}, run:\n  meshnode start --join <token>\nThe token enrols one device; keep it secret until then.",
        human_secs(ttl_secs)
    );
    out(token.encode())?;
    Ok(0)
}

fn human_secs(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn parse_key(s: &str) -> Result<PublicKey> {
    PublicKey::from_hex(s).with_context(|| {
        format!("`{s}` is not a user key (expected 64 hex digits, as `meshnode keygen` prints)")
    })
}

/// `meshnode trust add|remove|list`.
pub fn run_trust(args: TrustArgs) -> Result<i32> {
    let (target, command, json) = match &args.command {
        TrustCommand::Add { key, target } => (
            target,
            Command::TrustAdd {
                user_key: parse_key(key)?,
            },
            false,
        ),
        TrustCommand::Remove { key, target } => (
            target,
            Command::TrustRemove {
                user_key: parse_key(key)?,
            },
            false,
        ),
        TrustCommand::List { target, json } => (target, Command::TrustList, *json),
    };
    let ControlResponse::Trust(keys) = send(target, command)? else {
        bail!("unexpected answer to `trust`");
    };
    if json {
        out(serde_json::json!(keys
            .iter()
            .map(|k| k.to_hex())
            .collect::<Vec<_>>()))?;
    } else {
        for k in keys {
            out(k)?;
        }
    }
    Ok(0)
}

/// The node key inside a PeerId given on the command line.
fn node_key_of(peer_id: &str) -> Result<PublicKey> {
    let peer: libp2p::PeerId = peer_id.trim().parse().with_context(|| {
        format!("`{peer_id}` is not a PeerId (copy it from `meshnode peers --all`)")
    })?;
    crate::identity::peer_public_key(&peer)
        .with_context(|| format!("PeerId `{peer_id}` is not an ed25519 node key"))
}

/// `meshnode revoke PEER_ID`.
pub fn run_revoke(args: RevokeArgs) -> Result<i32> {
    let node_key = node_key_of(&args.peer_id)?;
    let key = user_key(args.target.user_key.as_deref())?;
    let revocation = protocol::revocation::Revocation::sign(&key, node_key);
    let ControlResponse::Revoked { node, enrolled } =
        send(&args.target, Command::Revoke { revocation })?
    else {
        bail!("unexpected answer to `revoke`");
    };
    if args.json {
        out(serde_json::json!({ "revoked": node, "enrolled": enrolled }))?;
        return Ok(0);
    }
    out(format_args!("revoked {node}"))?;
    if !enrolled.is_empty() {
        eprintln!(
            "meshnode: {node} enrolled these nodes, which are refused until you vouch for them; `meshnode endorse` the ones that are yours:"
        );
        for e in &enrolled {
            out(format_args!("  {e}"))?;
        }
    }
    Ok(0)
}

/// `meshnode endorse PEER_ID...`.
pub fn run_endorse(args: EndorseArgs) -> Result<i32> {
    let keys = args
        .peer_ids
        .iter()
        .map(|p| node_key_of(p))
        .collect::<Result<Vec<_>>>()?;
    let user = user_key(args.target.user_key.as_deref())?;
    let certificates = keys
        .into_iter()
        .map(|k| protocol::membership::MemberCertificate::self_enrol(&user, k))
        .collect();
    send(&args.target, Command::Endorse { certificates })?;
    for p in &args.peer_ids {
        out(format_args!("endorsed {}", p.trim()))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(state: LivenessState, silent_ms: u64) -> PeerInfo {
        PeerInfo {
            peer_id: "12D3KooWtest".into(),
            addrs: vec![],
            rtt_us: None,
            member: true,
            refused: None,
            user_key: None,
            status: Some(crate::mesh::status::sample(vec!["v1".into()])),
            status_age_ms: Some(12_300),
            rtt_age_ms: None,
            liveness: Some(protocol::control::PeerLiveness {
                state,
                silent_ms,
                // 07:41:02 UTC.
                last_heard_unix_ms: (1_796_601_600 + 7 * 3600 + 41 * 60 + 2) * 1000,
            }),
        }
    }

    #[test]
    fn a_peer_that_is_not_up_shows_its_state_and_its_status_as_stale() {
        let up = peer(LivenessState::Up, 200);
        assert_eq!(state_column(&up), "up");
        assert_eq!(stale_status_line(&up), None);
        let gone = peer(LivenessState::Unreachable, 4_210);
        assert_eq!(state_column(&gone), "unreachable 4.2s");
        let line = stale_status_line(&gone).unwrap();
        assert!(
            line.starts_with(
                "last heard from at 07:41:02 UTC; its last status is stale (12s old): load "
            ),
            "{line}"
        );
        assert!(line.ends_with(", 1 vessel(s)"), "{line}");
        assert_eq!(state_column(&peer(LivenessState::Down, 41_900)), "down 41s");
        let json = peers_json(&[gone]);
        assert_eq!(json[0]["state"], "unreachable");
        assert_eq!(json[0]["silent_ms"], 4210);
        assert_eq!(json[0]["status_stale"], true);
        // A node older than failure detection says nothing: not stale.
        let old = PeerInfo {
            liveness: None,
            ..peer(LivenessState::Up, 0)
        };
        assert_eq!(
            (state_column(&old).as_str(), stale_status_line(&old)),
            ("-", None)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("x").is_err());
    }
}
