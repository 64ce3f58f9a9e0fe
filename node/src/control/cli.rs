//! The `meshnode peers | keygen | invite | trust | revoke | endorse`
//! subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use protocol::control::{secret_hash, Command, ControlResponse};
use protocol::limits::MAX_INVITE_TTL_SECS;
use protocol::membership::{InviteGrant, JoinToken, Nonce, PublicKey, MEMBERSHIP_VERSION};

use super::client::{open, resolve_node, Session, DEFAULT_CLIENT_TIMEOUT};
use super::tables::{peers_json, peers_table};
use crate::identity::{read_or_create_key, user_key_path};

/// Which node a command talks to, and as whom.
#[derive(Args, Debug, Clone)]
pub struct NodeTarget {
    /// Talk to this node instead of the local one: its name (kitchen-pi),
    /// its PeerId or a unique prefix of it (looked up through the local
    /// node), HOST:PORT (192.0.2.7:7646), or a multiaddr
    /// (/ip4/192.0.2.7/udp/7646/quic-v1/p2p/12D3KooW…). The node must show
    /// a certificate of your mesh before anything is sent to it, and its
    /// name and PeerId are printed on stderr.
    #[arg(long, value_name = "NODE")]
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
    /// `table` fits within 100 columns (names, short PeerIds); `wide`
    /// shows full PeerIds, the estimated RTT, the OS and an address of each.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: super::tables::Output,
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
    /// Trust a user key: the node then takes commands signed by it.
    ///
    /// Example: meshnode trust add 3f9c…e1 (the other user's public key,
    /// which `meshnode keygen` prints on their machine).
    Add {
        /// The other user's public key: 64 hex digits, as `meshnode keygen`
        /// prints it on their machine. Never a private key file.
        #[arg(value_name = "PUBLIC_KEY")]
        key: String,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Stop trusting a user key.
    Remove {
        /// The public key to stop trusting: 64 hex digits, as `meshnode
        /// trust list` lists them.
        #[arg(value_name = "PUBLIC_KEY")]
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
    /// The node to revoke: its name, its PeerId or a unique prefix of it,
    /// as `meshnode peers` lists them.
    #[arg(value_name = "NODE")]
    pub peer_id: String,
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EndorseArgs {
    /// The nodes to keep: their PeerIds, as `meshnode revoke` listed them
    /// (a name or a unique PeerId prefix works too).
    #[arg(required = true, num_args = 1.., value_name = "NODE")]
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
    let key = user_key(target.user_key.as_deref())?;
    session(target, &key, |session, key| {
        Box::pin(async move { session.signed(key, command).await })
    })
}

fn timeout_of(target: &NodeTarget) -> Duration {
    if target.timeout.is_zero() {
        DEFAULT_CLIENT_TIMEOUT
    } else {
        target.timeout
    }
}

type Step<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, super::client::ClientError>> + 'a>,
>;

/// Opens the command's node (`--node` or the local one, checked as
/// [`open`] does) and runs `steps` on it, all within the timeout.
fn session<T>(
    target: &NodeTarget,
    key: &ed25519_dalek::SigningKey,
    steps: impl for<'a> FnOnce(&'a mut Session, &'a ed25519_dalek::SigningKey) -> Step<'a, T>,
) -> Result<T> {
    let timeout = timeout_of(target);
    let (node, data_dir) = (target.node.as_deref(), target.data_dir.as_deref());
    let run = async {
        let (mut session, _) = open(node, data_dir, key).await?;
        steps(&mut session, key).await
    };
    match runtime()?.block_on(async { tokio::time::timeout(timeout, run).await }) {
        Ok(r) => Ok(r?),
        Err(_) => bail!(
            "the node did not answer within {} s (--timeout)",
            timeout.as_secs()
        ),
    }
}

/// PeerIds for nodes the user gave by name, PeerId or prefix: a whole
/// PeerId as it is (a revoked node's enrollees are no members to look up),
/// the rest looked up through the command's node.
fn node_ids(
    target: &NodeTarget,
    key: &ed25519_dalek::SigningKey,
    specs: &[String],
) -> Result<Vec<String>> {
    let whole = |s: &str| s.trim().parse::<libp2p::PeerId>().is_ok();
    if specs.iter().all(|s| whole(s)) {
        return Ok(specs.iter().map(|s| s.trim().to_string()).collect());
    }
    let specs = specs.to_vec();
    session(target, key, |session, key| {
        Box::pin(async move {
            let mut ids = Vec::new();
            for spec in &specs {
                ids.push(match whole(spec) {
                    true => spec.trim().to_string(),
                    false => resolve_node(session, key, spec).await?.peer_id,
                });
            }
            Ok(ids)
        })
    })
}

/// `meshnode peers` (rendering: `control::tables`).
pub fn run_peers(args: PeersArgs) -> Result<i32> {
    let ControlResponse::Peers(peers) = send(&args.target, Command::Peers { all: args.all })?
    else {
        bail!("unexpected answer to `peers`");
    };
    if args.json {
        out(serde_json::to_string_pretty(&peers_json(&peers))?)?;
        return Ok(0);
    }
    for line in peers_table(&peers, args.output) {
        out(line)?;
    }
    Ok(0)
}

/// `meshnode keygen`: prints the user's public key, creating the key if
/// needed; the private key never leaves its file.
pub fn run_keygen(args: KeygenArgs) -> Result<i32> {
    let path = user_key_path(args.user_key.as_deref())?;
    let (key, created) = read_or_create_key(&path)?;
    let public = PublicKey::of(&key);
    if args.json {
        out(serde_json::json!({ "user_key": public.to_hex(), "path": path, "created": created }))?;
    } else {
        let what = if created { "created" } else { "exists" };
        eprintln!(
            "meshnode: your user key {what} in {} (private: it stays there). Its public key, \
             safe to share (another mesh's owner gives it to `meshnode trust add`):",
            path.display()
        );
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
    let key = user_key(args.target.user_key.as_deref())?;
    let mut id = [0u8; 32];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let (invite_id, secret) = (Nonce(id), Nonce(secret));
    let response = session(&args.target, &key, |session, key| {
        Box::pin(async move {
            // The node's key goes into the grant: the one of the node
            // reached (the connection proved it holds that key).
            let node_key = crate::identity::peer_public_key(&session.node())
                .ok_or(super::client::ClientError::KeyMismatch)?;
            let grant = InviteGrant::sign(key, node_key, invite_id, secret_hash(&secret));
            session
                .signed(key, Command::CreateInvite { grant, ttl_secs })
                .await
        })
    })?;
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
    let key = user_key(args.target.user_key.as_deref())?;
    let ids = node_ids(&args.target, &key, std::slice::from_ref(&args.peer_id))?;
    let node_key = node_key_of(&ids[0])?;
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
    let user = user_key(args.target.user_key.as_deref())?;
    let ids = node_ids(&args.target, &user, &args.peer_ids)?;
    let keys = ids
        .iter()
        .map(|p| node_key_of(p))
        .collect::<Result<Vec<_>>>()?;
    let certificates = keys
        .into_iter()
        .map(|k| protocol::membership::MemberCertificate::self_enrol(&user, k))
        .collect();
    send(&args.target, Command::Endorse { certificates })?;
    for p in &ids {
        out(format_args!("endorsed {p}"))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
