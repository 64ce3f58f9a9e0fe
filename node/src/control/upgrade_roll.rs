//! `meshnode upgrade roll`: the fleet, one node at a time (docs/guide.md,
//! "Upgrading"). The CLI drives the roll and talks to each node itself:
//! drain, install and restart, wait until healthy, undrain. It stops at
//! the first node that does not come back healthy, which rolls itself
//! back (`upgrade::probation`) or is told to.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use ed25519_dalek::SigningKey;
use libp2p::Multiaddr;
use protocol::control::{Command, ControlResponse, DrainReport, PeerInfo, StatusReport};
use protocol::refusal::RefusalCode;
use protocol::release::{Cpu, SignedRelease, Version};

use super::cli::{out, parse_duration, runtime, user_key, NodeTarget};
use super::client::{open, ClientError, Session};

/// How often a roll asks a draining node how its drain goes, and a
/// restarting one whether it is back.
const POLL: Duration = Duration::from_millis(500);

/// How long one status question to a restarting node may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct RollArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The release to roll out (default: the newest the node keeps).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Allow a release older than what a node runs.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Do not ask before a release that migrates the data directory one
    /// way (no rollback is possible after it).
    #[arg(long)]
    pub yes: bool,
    /// How long each node has after its restart to be healthy and pass its
    /// probation (`meshnode status` exits 0) before the roll stops, e.g.
    /// 3m.
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One node of the roll.
#[derive(Debug, Clone)]
struct Target {
    peer_id: String,
    shown: String,
    addrs: Vec<Multiaddr>,
    version: Option<String>,
}

/// What happened on one node.
#[derive(Debug, Default, serde::Serialize)]
struct Row {
    node: String,
    state: String,
    drain_ms: u64,
    restart_ms: u64,
    total_ms: u64,
    vessels_moved: usize,
    vessels_stayed: usize,
    /// The longest pause of a vessel moved off it (its migration's
    /// downtime), in milliseconds.
    max_vessel_pause_ms: Option<u64>,
    fetched_chunks: u64,
    fetched_bytes: u64,
}

/// `meshnode upgrade roll`: 0 when every node runs the release.
pub fn run_roll(args: RollArgs) -> Result<i32> {
    let key = user_key(args.target.user_key.as_deref())?;
    runtime()?.block_on(roll(&args, &key))
}

async fn roll(args: &RollArgs, key: &SigningKey) -> Result<i32> {
    let (node, dir) = (args.target.node.as_deref(), args.target.data_dir.as_deref());
    let (mut local, _) = open(node, dir, key).await?;
    let me = local.node().to_string();
    let release = pick(&mut local, key, args.version.as_deref()).await?;
    let ControlResponse::Peers(peers) = local.signed(key, Command::Peers { all: false }).await?
    else {
        bail!("unexpected answer to `peers`");
    };
    drop(local);
    let plan = plan(&peers, &release, &me, args.allow_downgrade)?;
    confirm_one_way(&release, args.yes)?;
    eprintln!(
        "meshnode: rolling {} out to {} node(s), one at a time",
        release.body.version,
        plan.len()
    );
    let mut sources = vec![me];
    let mut rows = Vec::new();
    for t in &plan {
        match upgrade_node(args, key, &release, t, &sources).await {
            Ok(row) => {
                eprintln!("meshnode: {}: {}", t.shown, summary(&row));
                sources.push(t.peer_id.clone());
                rows.push(row);
            }
            Err(e) => {
                rows.push(Row {
                    node: t.shown.clone(),
                    state: format!("failed: {e:#}"),
                    ..Row::default()
                });
                print_rows(&rows, args.json)?;
                bail!("the roll stopped at {}: {e:#}", t.shown);
            }
        }
    }
    print_rows(&rows, args.json)?;
    Ok(0)
}

/// The release to roll: `--version`, or the newest the node keeps.
async fn pick(
    local: &mut Session,
    key: &SigningKey,
    version: Option<&str>,
) -> Result<SignedRelease> {
    let ControlResponse::Releases(kept) = local.signed(key, Command::Releases).await? else {
        bail!("unexpected answer to the releases the node keeps");
    };
    let found = match version {
        Some(v) => kept.into_iter().find(|r| r.body.version == v),
        None => kept.into_iter().next(),
    };
    found.with_context(|| match version {
        Some(v) => format!("the node keeps no release {v}: publish it with `meshnode upgrade publish` (`meshnode upgrade list` shows what it keeps)"),
        None => "the node keeps no release: publish one with `meshnode upgrade publish`".into(),
    })
}

/// The nodes in roll order (the one the CLI talks to last), after the
/// checks that need no node to change: a binary for each CPU, and version
/// skew within what the release speaks.
fn plan(
    peers: &[PeerInfo],
    release: &SignedRelease,
    me: &str,
    allow_downgrade: bool,
) -> Result<Vec<Target>> {
    let mut plan = Vec::new();
    for p in peers.iter().filter(|p| p.member) {
        let status = p.status.as_ref();
        let shown = match status.and_then(|s| s.name.as_deref()) {
            Some(n) => format!("{n} ({})", super::resolve::short_id(&p.peer_id)),
            None => p.peer_id.clone(),
        };
        let arch = status.map_or("unknown", |s| s.arch.as_str());
        let cpu = cpu_of_arch(arch);
        if cpu.is_none_or(|c| release.binary_for(c).is_none()) {
            bail!(
                "{shown} is {arch}, and release {} has no binary for it: publish one",
                release.body.version
            );
        }
        let software = status.and_then(|s| s.software.as_ref());
        if let Some(s) =
            software.filter(|s| !allow_downgrade && older(&release.body.version, &s.version))
        {
            bail!(
                "{shown} runs {}, newer than release {}: roll with --allow-downgrade to go back",
                s.version,
                release.body.version
            );
        }
        if let Some(s) = software {
            if s.peer_protocol < release.body.min_peer_protocol {
                bail!(
                    "{shown} runs {} (peer protocol {}), older than release {} speaks with (peer protocol {} and up): upgrade through a release in between",
                    s.version, s.peer_protocol, release.body.version, release.body.min_peer_protocol
                );
            }
        }
        plan.push(Target {
            peer_id: p.peer_id.clone(),
            shown,
            addrs: addrs_of(p),
            version: software.map(|s| s.version.clone()),
        });
    }
    // The node the CLI talks to goes last: it keeps the release for the
    // others, and the roll's view of the mesh is through it.
    plan.sort_by_key(|t| (t.peer_id == me, t.shown.clone()));
    Ok(plan)
}

fn cpu_of_arch(arch: &str) -> Option<Cpu> {
    match arch {
        "x86_64" => Some(Cpu::X86_64),
        "aarch64" => Some(Cpu::Aarch64),
        "arm" => Some(Cpu::Armv7),
        "riscv64" => Some(Cpu::Riscv64),
        _ => None,
    }
}

/// A peer's addresses, each naming its PeerId, so that the connection
/// proves it is that node.
fn addrs_of(p: &PeerInfo) -> Vec<Multiaddr> {
    let suffix = format!("/p2p/{}", p.peer_id);
    p.addrs
        .iter()
        .map(|a| match a.ends_with(&suffix) {
            true => a.clone(),
            false => format!("{a}{suffix}"),
        })
        .filter_map(|a| a.parse().ok())
        .collect()
}

fn confirm_one_way(release: &SignedRelease, yes: bool) -> Result<()> {
    let Some(note) = &release.body.one_way_data else {
        return Ok(());
    };
    eprintln!(
        "meshnode: release {} migrates the data directory one way: {note}\n  After a node upgrades, its previous version cannot read its data: no rollback.",
        release.body.version
    );
    if yes {
        return Ok(());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("not rolling a one-way release without --yes (stdin is not a terminal to ask on)");
    }
    eprint!("Roll it out? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not rolled out");
    }
    Ok(())
}

async fn connect(t: &Target) -> Result<Session, ClientError> {
    Session::connect(&t.addrs).await
}

async fn upgrade_node(
    args: &RollArgs,
    key: &SigningKey,
    release: &SignedRelease,
    t: &Target,
    sources: &[String],
) -> Result<Row> {
    let version = &release.body.version;
    let mut row = Row {
        node: t.shown.clone(),
        ..Row::default()
    };
    if t.version.as_deref() == Some(version.as_str()) {
        row.state = format!("already runs {version}");
        return Ok(row);
    }
    let started = Instant::now();
    let mut s = connect(t).await?;
    eprintln!("meshnode: {}: draining", t.shown);
    let drained = drain(&mut s, key).await?;
    row.vessels_moved = drained
        .vessels
        .iter()
        .filter(|v| v.state == "moved")
        .count();
    row.vessels_stayed = drained
        .vessels
        .iter()
        .filter(|v| v.state != "moved" && v.state != "ended")
        .count();
    row.drain_ms = started.elapsed().as_millis() as u64;
    row.max_vessel_pause_ms = max_pause(&mut s, key, &t.peer_id, &drained).await;
    for v in drained
        .vessels
        .iter()
        .filter(|v| v.state != "moved" && v.state != "ended")
    {
        eprintln!(
            "meshnode: {}: vessel {} ({}) stays ({}): written down at the restart and resumed after it",
            t.shown, v.name, v.id, v.state
        );
    }
    let apply = Command::UpgradeApply {
        release: Box::new(release.clone()),
        sources: sources.to_vec(),
        allow_downgrade: args.allow_downgrade,
    };
    let report = match s.signed(key, apply).await {
        Ok(ControlResponse::Upgrade(r)) => r,
        Ok(other) => bail!("unexpected answer to the install: {other:?}"),
        Err(e) => {
            undrain(&mut s, key).await;
            return Err(e.into());
        }
    };
    (row.fetched_chunks, row.fetched_bytes) = (report.fetched_chunks, report.fetched_bytes);
    if !report.restarting {
        undrain(&mut s, key).await;
        row.state = report.detail;
        return Ok(row);
    }
    eprintln!(
        "meshnode: {}: {} ({} chunks fetched, {} the node had); waiting until it is healthy",
        t.shown, report.detail, report.fetched_chunks, report.had_chunks
    );
    drop(s);
    let restarted = Instant::now();
    if let Err(e) = wait_healthy(t, key, version, &report.running, args.health_timeout).await {
        let rolled = roll_back(t, key, version).await;
        bail!("{e:#}; {rolled}");
    }
    row.restart_ms = restarted.elapsed().as_millis() as u64;
    let mut s = connect(t).await?;
    undrain(&mut s, key).await;
    row.total_ms = started.elapsed().as_millis() as u64;
    row.state = format!("upgraded {} -> {version}", report.running);
    Ok(row)
}

/// Drains the node (pinned vessels too) and follows the drain to its end.
async fn drain(s: &mut Session, key: &SigningKey) -> Result<DrainReport> {
    let command = Command::Drain {
        node: "self".into(),
        include_pinned: true,
    };
    let ControlResponse::Drain(mut report) = s.signed(key, command).await? else {
        bail!("unexpected answer to the drain");
    };
    while !report.done {
        tokio::time::sleep(POLL).await;
        let status = Command::DrainStatus {
            node: "self".into(),
        };
        let ControlResponse::Drain(r) = s.signed(key, status).await? else {
            bail!("unexpected answer to the drain's status");
        };
        report = r;
    }
    Ok(report)
}

/// The longest downtime of the migrations that moved the vessels off
/// (each asked of the node as their source); `None` when none moved or the
/// node did not say.
async fn max_pause(
    s: &mut Session,
    key: &SigningKey,
    source: &str,
    drained: &DrainReport,
) -> Option<u64> {
    let mut max = None;
    for v in drained.vessels.iter().filter(|v| v.state == "moved") {
        let ask = Command::MigrationStatus {
            vessel: v.id,
            source: source.to_string(),
        };
        if let Ok(ControlResponse::Migration(m)) = s.signed(key, ask).await {
            let ms = m.downtime_us.map(|us| us / 1000);
            max = max.max(ms);
        }
    }
    max
}

/// Ends the node's drain; a node that is not draining (it restarted) is
/// fine.
async fn undrain(s: &mut Session, key: &SigningKey) {
    match s
        .signed(
            key,
            Command::Undrain {
                node: "self".into(),
            },
        )
        .await
    {
        Ok(_) => {}
        Err(ClientError::Refused(r)) if r.code == RefusalCode::NotDraining => {}
        Err(e) => eprintln!("meshnode: could not end the drain: {e}"),
    }
}

/// Waits until the node runs `version`, is healthy and has passed its
/// probation. Fails at once when it comes back on `old` (it rolled back).
async fn wait_healthy(
    t: &Target,
    key: &SigningKey,
    version: &str,
    old: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("it has not answered since its restart");
    let mut seen_down = false;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let report = match status(t, key).await {
            Ok(r) => r,
            Err(e) => {
                seen_down = true;
                last = format!("it does not answer ({e})");
                continue;
            }
        };
        if report.version == version && report.unhealthy.is_empty() && report.upgrade.is_none() {
            return Ok(());
        }
        if report.version == old && seen_down && version != old {
            bail!("it came back on {old}: it rolled itself back");
        }
        last = match (&report.upgrade, report.unhealthy.is_empty()) {
            _ if report.version != version => format!("it still runs {}", report.version),
            (_, false) => format!("unhealthy: {}", report.unhealthy.join("; ")),
            (Some(p), true) => p.clone(),
            (None, true) => "healthy".into(),
        };
    }
    bail!(
        "not healthy on {version} within {} s: {last}",
        timeout.as_secs()
    )
}

async fn status(t: &Target, key: &SigningKey) -> Result<StatusReport> {
    let ask = async {
        let mut s = connect(t).await?;
        s.signed(key, Command::Status).await
    };
    match tokio::time::timeout(STATUS_TIMEOUT, ask).await {
        Ok(Ok(ControlResponse::Status(r))) => Ok(*r),
        Ok(Ok(other)) => bail!("unexpected answer to `status`: {other:?}"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("no answer within {} s", STATUS_TIMEOUT.as_secs()),
    }
}

/// After a failed wait: tells a node that runs the new version to put the
/// previous one back. Says what it did.
async fn roll_back(t: &Target, key: &SigningKey, version: &str) -> String {
    match status(t, key).await {
        Ok(r) if r.version == version => {}
        Ok(r) => return format!("it runs {}", r.version),
        Err(_) => {
            return "it does not answer; it rolls itself back when it starts unhealthy".into()
        }
    }
    let ask = async {
        let mut s = connect(t).await?;
        s.signed(key, Command::UpgradeRollback).await
    };
    match ask.await {
        Ok(_) => "told it to roll back to its previous binary".into(),
        Err(e) => format!("could not tell it to roll back: {e}"),
    }
}

fn summary(row: &Row) -> String {
    if row.total_ms == 0 {
        return row.state.clone();
    }
    let pause = row
        .max_vessel_pause_ms
        .map_or(String::new(), |ms| format!(", paused at most {ms} ms"));
    format!(
        "{} in {:.1} s (drain {:.1} s, {} vessel(s) moved{pause}, {} stayed; restart until healthy {:.1} s)",
        row.state,
        row.total_ms as f64 / 1000.0,
        row.drain_ms as f64 / 1000.0,
        row.vessels_moved,
        row.vessels_stayed,
        row.restart_ms as f64 / 1000.0
    )
}

fn print_rows(rows: &[Row], json: bool) -> Result<()> {
    if json {
        return out(serde_json::to_string_pretty(rows)?);
    }
    for r in rows {
        out(format_args!("{}\t{}", r.node, summary(r)))?;
    }
    Ok(())
}

/// Whether version `a` is older than `b` (either unparsable: no).
fn older(a: &str, b: &str) -> bool {
    matches!((Version::parse(a), Version::parse(b)), (Ok(a), Ok(b)) if a < b)
}
