//! `meshnode start`: the node daemon.
//!
//! - [`datadir`]: the data directory (keys, certificate, trust list, lock,
//!   address file).
//! - [`config`]: the TOML configuration and its defaults.
//!
//! Start-up: take the data directory's lock (a second node on the same
//! directory is refused), read the config (writing the defaults on first
//! start), load or create the node key, then make sure the node is a member:
//! keep its certificate, or enrol through `--join TOKEN`, or, when the user
//! key is on this machine (created on first use), enrol itself with it.
//! Then run the mesh ([`crate::mesh::node::run`]) until Ctrl-C or SIGTERM.

pub mod config;
pub mod datadir;
pub mod systemd;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use protocol::membership::{JoinToken, MemberCertificate, PublicKey};
use tracing::{info, warn};

use crate::identity::{read_key, read_or_create_key, user_key_path, NodeIdentity};
use crate::mesh::node::{run, NodeParams};
use config::Config;
use datadir::DataDir;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Where the node keeps its key, certificate, config and chunk store
    /// (default: $XDG_DATA_HOME/meshnode or ~/.local/share/meshnode).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Configuration file (default: config.toml in the data directory,
    /// written with the defaults on first start).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen on this multiaddr instead of the configured ones (default: TCP
    /// and QUIC on port 7646). Repeatable.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,

    /// A bootstrap peer, e.g. /ip4/192.0.2.7/udp/7646/quic-v1/p2p/12D3KooW…
    /// Repeatable; added to the configured ones.
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<String>,

    /// Enrol this device with a token from `meshnode invite`.
    #[arg(long, value_name = "TOKEN")]
    pub join: Option<String>,

    /// Do not use mDNS (LAN discovery).
    #[arg(long)]
    pub no_mdns: bool,

    /// Do not use Kademlia.
    #[arg(long)]
    pub no_kademlia: bool,

    /// Ping interval, e.g. 1s or 500ms (default: from the config, 1s).
    #[arg(long, value_name = "DURATION", value_parser = crate::control::cli::parse_duration)]
    pub ping_interval: Option<std::time::Duration>,

    /// Status gossip interval, e.g. 2s (default: from the config, 2s).
    #[arg(long, value_name = "DURATION", value_parser = crate::control::cli::parse_duration)]
    pub status_interval: Option<std::time::Duration>,

    /// How often placement judges the vessels hosted here, e.g. 1s, or 0 to
    /// never move vessels automatically (default: from the config, 1s).
    #[arg(long, value_name = "DURATION", value_parser = crate::control::cli::parse_duration)]
    pub placement_interval: Option<std::time::Duration>,

    /// Fuel per vessel slice (default: from the config, 4000000).
    #[arg(long, value_name = "N")]
    pub fuel_slice: Option<u64>,

    /// IP address on which to accept the clients of the mesh's service
    /// vessels (`deploy --port`), or `none` (default: from the config,
    /// 0.0.0.0). Several nodes on one machine need one address each, e.g.
    /// 127.0.0.2, 127.0.0.3.
    #[arg(long, value_name = "IP")]
    pub service_address: Option<String>,

    /// The user key that enrols this node on first start (default:
    /// ~/.config/meshnode/user.key, created when missing unless --join).
    #[arg(long, value_name = "FILE")]
    pub user_key: Option<PathBuf>,

    /// This node's name, e.g. kitchen-pi: commands accept it wherever they
    /// take a node (`--on`, `--to`, `drain`, `--node`). Lowercase letters,
    /// digits and inner `-`, at most 24 bytes (default: from the config,
    /// else the hostname made to fit). Gossiped to the mesh; a name two
    /// nodes claim names neither, and `peers` says so. Several nodes on one
    /// machine need one name each.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub name: Option<String>,

    /// Where to serve /metrics and the dashboard: HOST:PORT, :PORT (on
    /// 127.0.0.1), or off (default: 127.0.0.1:7680, or a free port when
    /// another node on this machine has it; `meshnode status` shows it).
    #[arg(long, value_name = "ADDR", value_parser = crate::ops::http::parse_http)]
    pub http: Option<crate::ops::http::HttpSetting>,

    /// Allow --http on an address other than loopback. Anyone who reaches
    /// it then sees the mesh's topology and metrics (not logs: those need
    /// a login from `meshnode dashboard`).
    #[arg(long)]
    pub http_expose: bool,

    /// Also write the node's log to this file, rotated daily (7 days kept:
    /// FILE.YYYY-MM-DD).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Also send the node's log to journald, with levels as priorities.
    #[arg(long)]
    pub journald: bool,
}

/// `--name`: a valid node name, or an error that says the rule.
fn parse_node_name(s: &str) -> Result<String, String> {
    protocol::control::check_node_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// `meshnode start`. Returns the exit code.
pub fn run_start(args: StartArgs) -> Result<i32> {
    crate::ops::logfile::init(&crate::ops::logfile::LogOptions {
        file: args.log_file.clone(),
        journald: args.journald,
    })?;
    let data_dir = DataDir::open(args.data_dir.as_deref())?;
    let lock = data_dir.lock()?;
    // A new binary that has used up its starts on probation gives way to
    // the previous one before anything else can fail.
    if let Some(previous) = crate::upgrade::probation::at_start(&data_dir.root) {
        drop(lock);
        let e = crate::upgrade::restart::exec(&previous);
        bail!("cannot roll back to {}: {e}", previous.display());
    }

    let (config_path, write_default) = match &args.config {
        Some(p) => (p.clone(), false),
        None => (data_dir.config(), true),
    };
    let mut config = Config::load(&config_path, write_default)?;
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    config.peers.extend(args.peers.iter().cloned());
    // Members seen on the last run (written by the node when it stops).
    for p in data_dir.read_known_peers() {
        if !config.peers.contains(&p) {
            config.peers.push(p);
        }
    }
    if args.no_mdns {
        config.mdns = false;
    }
    if args.no_kademlia {
        config.kademlia = false;
    }
    if let Some(d) = args.ping_interval {
        config.ping_interval_ms = (d.as_millis() as u64).max(10);
    }
    if let Some(d) = args.placement_interval {
        // 0 is off; anything else at least what the config file allows.
        config.placement_interval_ms = match d.as_millis() as u64 {
            0 => 0,
            ms => ms.max(100),
        };
    }
    if let Some(n) = args.fuel_slice {
        config.vessel_fuel_slice = n.max(1);
    }
    if let Some(a) = &args.service_address {
        config.service_address = a.clone();
    }
    if let Some(n) = &args.name {
        config.name = Some(n.clone());
    }
    if let Some(d) = args.status_interval {
        config.status_interval_ms = (d.as_millis() as u64).max(100);
    }

    let (node_key, created) = read_or_create_key(&data_dir.node_key())?;
    let identity = NodeIdentity::from_signing_key(node_key);
    if created {
        info!(peer_id = %identity.peer_id, "created the node identity in {}", data_dir.root.display());
    }
    let own = identity.public_key();

    let mut trusted = data_dir.read_trusted()?;
    let mut certificate = data_dir.read_certificate()?;
    if let Some(cert) = &certificate {
        cert.verify_for(&own).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; refusing to start with it (remove the file to enrol this node again)",
                data_dir.certificate().display()
            )
        })?;
        if args.join.is_some() {
            bail!(
                "this node is already a member (it has {}); --join is for a device that is not enrolled yet",
                data_dir.certificate().display()
            );
        }
        if !trusted.contains(&cert.body.user_key) {
            warn!(user = %cert.body.user_key, "this node's own user key is not in its trust list");
        }
    }

    let join = match &args.join {
        Some(t) => Some(JoinToken::decode(t).context("--join")?),
        None => None,
    };
    if certificate.is_none() && join.is_none() {
        // Enrol with the user key on this machine, creating it on first use.
        let path = user_key_path(args.user_key.as_deref())?;
        let (user, created) = match read_key(&path)? {
            Some(k) => (k, false),
            None => read_or_create_key(&path)?,
        };
        let user_pub = PublicKey::of(&user);
        if created {
            info!(user = %user_pub, "created your user key in {}", path.display());
        }
        let cert = MemberCertificate::self_enrol(&user, own);
        if !trusted.contains(&user_pub) {
            trusted.push(user_pub);
            data_dir.write_trusted(&trusted)?;
        }
        data_dir.write_certificate(&cert)?;
        info!(user = %user_pub, "enrolled this node with the user key in {}", path.display());
        certificate = Some(cert);
    }

    let dock = crate::dock::DockConfig {
        fuel_slice: Some(config.vessel_fuel_slice.max(1)),
        // Not `as`: on a 32-bit host that would wrap 4 GiB to 0.
        max_memory_bytes: usize::try_from(config.vessel_max_memory_bytes).unwrap_or(usize::MAX),
        ..Default::default()
    };
    let memory = dock.memory_limit();
    if memory.bytes < config.vessel_max_memory_bytes {
        warn!(
            "vessel_max_memory_bytes = {} is more than this host can give a vessel: vessels run under {} {}",
            config.vessel_max_memory_bytes, memory.bytes, memory.limit
        );
    }
    let mut host = crate::vessel::Host::open(
        &data_dir.root,
        identity.peer_id.to_string(),
        dock,
        config.mounts.clone(),
    )?;
    host.configure_retention(config.retention(&data_dir.root));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let host = std::sync::Arc::new(std::sync::Mutex::new(host));
    let http = args
        .http
        .clone()
        .unwrap_or(crate::ops::http::HttpSetting::Default);
    runtime.block_on(async {
        let stop = shutdown_signal();
        crate::ops::http::start(&http, args.http_expose, host.clone(), own).await?;
        run(
            NodeParams {
                identity,
                data_dir,
                config,
                certificate,
                trusted,
                join,
                commands: None,
                host,
            },
            stop,
        )
        .await
        .map_err(anyhow::Error::from)
    })?;
    if let Some(binary) = crate::upgrade::restart::take() {
        // Nothing of this run may outlive the exec: the runtime's threads
        // (a blocking task is given a moment) and the data directory's
        // lock go first.
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        drop(lock);
        info!("restarting into {}", binary.display());
        let e = crate::upgrade::restart::exec(&binary);
        bail!("cannot restart into {}: {e}", binary.display());
    }
    info!("stopped");
    Ok(0)
}

/// What stops the node: SIGTERM, Ctrl-C, or an upgrade's restart. SIGTERM
/// is watched from the call, not from the first poll: the event loop polls
/// this only once it runs, after `node.addrs` is written, and a SIGTERM in
/// between killed the process with the default action, with no clean stop
/// (`it::systemd_notify` failed so under load). Call it inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let mut term = match term {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot watch SIGTERM: {e}");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = crate::upgrade::restart::requested() => {}
                }
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            // An upgrade or a rollback: stop as on SIGTERM, then exec.
            _ = crate::upgrade::restart::requested() => {}
        }
    }
}
