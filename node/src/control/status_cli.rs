//! `meshnode status` and `meshnode dashboard` (issue 16).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use protocol::control::{
    Command, ControlResponse, DashboardLogin, DashboardLoginBody, OpsEventKind, StatusReport,
};
use protocol::membership::{Nonce, PublicKey};

use super::cli::{out, runtime, user_key, NodeTarget};
use super::client::{call, resolve_target, DEFAULT_CLIENT_TIMEOUT};

/// `status` exits with this when the node answered and is unhealthy (1 is
/// any other failure, such as no answer).
pub const EXIT_UNHEALTHY: i32 = 2;

/// Events `status` prints (the report has more; `--json` gives them all).
const EVENTS_SHOWN: usize = 8;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Open the URL in a browser (xdg-open) as well as printing it.
    #[arg(long)]
    pub open: bool,
}

fn fetch(target: &NodeTarget) -> Result<StatusReport> {
    let addrs = resolve_target(target.node.as_deref(), target.data_dir.as_deref())?;
    let key = user_key(target.user_key.as_deref())?;
    let timeout = if target.timeout.is_zero() {
        DEFAULT_CLIENT_TIMEOUT
    } else {
        target.timeout
    };
    match runtime()?.block_on(call(addrs, &key, Command::Status, timeout))? {
        ControlResponse::Status(r) => Ok(*r),
        other => bail!("unexpected answer to `status` (an older node?): {other:?}"),
    }
}

/// `meshnode status`: 0 healthy, [`EXIT_UNHEALTHY`] unhealthy.
pub fn run_status(args: StatusArgs) -> Result<i32> {
    let report = fetch(&args.target)?;
    if args.json {
        out(serde_json::to_string_pretty(&report)?)?;
    } else {
        out(render(&report))?;
    }
    Ok(if report.unhealthy.is_empty() {
        0
    } else {
        EXIT_UNHEALTHY
    })
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn ago(at_unix_ms: u64) -> String {
    let now = crate::ops::unix_ms();
    fmt_duration(Duration::from_millis(now.saturating_sub(at_unix_ms)))
}

/// A duration for people: `4.2s`, `3m12s`, `2h05m`, `3d04h`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn short(peer: &str) -> &str {
    peer.get(peer.len().saturating_sub(8)..).unwrap_or(peer)
}

/// The report as one screen of text.
pub fn render(r: &StatusReport) -> String {
    let mut s = String::new();
    let health = if r.unhealthy.is_empty() {
        "healthy".to_string()
    } else {
        format!("UNHEALTHY: {}", r.unhealthy.join("; "))
    };
    let name = r
        .name
        .as_deref()
        .map(|n| format!("{n} "))
        .unwrap_or_default();
    s += &format!(
        "node     {name}{} (…{})  {health}\n",
        r.peer_id,
        short(&r.peer_id)
    );
    s += &format!(
        "version  {}, up {}, event loop lag {} ms\n",
        r.version,
        fmt_duration(Duration::from_millis(r.uptime_ms)),
        r.loop_lag_ms
    );
    if let Some(a) = &r.http_addr {
        s += &format!("http     http://{a}/metrics, dashboard: meshnode dashboard\n");
    }
    let up = r.members.iter().filter(|m| m.state == "up").count();
    let others: Vec<String> = r
        .members
        .iter()
        .filter(|m| m.state != "up")
        .map(|m| format!("…{} {}", short(&m.peer_id), m.state))
        .collect();
    s += &format!("members  {up} up of {}", r.members.len());
    if !others.is_empty() {
        s += &format!(" ({})", others.join(", "));
    }
    s += "\n";
    let running = r
        .vessels_here
        .iter()
        .filter(|v| v.state == "running")
        .count();
    s += &format!(
        "vessels  {running} running here ({} known here), {} in the mesh\n",
        r.vessels_here.len(),
        r.vessels_in_mesh
    );
    s += &format!(
        "disk     store {} of {}\n",
        mib(r.disk.store_bytes),
        r.disk
            .budget_bytes
            .map_or("no budget".into(), |b| format!("{} budget", mib(b)))
    );
    s += &format!(
        "memory   vessels {} (each at most {}); machine {} available of {}\n",
        mib(r.memory.vessels_bytes),
        mib(r.memory.vessel_budget_bytes),
        r.memory.available_bytes.map_or("-".into(), mib),
        r.memory.total_bytes.map_or("-".into(), mib),
    );
    let shown = r.events.len().saturating_sub(EVENTS_SHOWN);
    if !r.events[shown..].is_empty() {
        s += "recent\n";
    }
    for e in &r.events[shown..] {
        s += &format!(
            "  {:>7} ago  {} ({})  {}\n",
            ago(e.at_unix_ms),
            e.name,
            &e.vessel[..8.min(e.vessel.len())],
            event_text(e)
        );
    }
    for w in &r.warnings {
        s += &format!("warning  {w}\n");
    }
    s.trim_end().to_string()
}

fn event_text(e: &protocol::control::OpsEvent) -> String {
    let to = e.to.as_deref().map(short).unwrap_or("?");
    match e.kind {
        OpsEventKind::Migrated => format!(
            "moved to …{to}, downtime {}: {}",
            e.downtime_us
                .map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            e.reason
        ),
        OpsEventKind::MigrationAborted => format!("move to …{to} {}", e.reason),
        OpsEventKind::Placement => format!("placement: {}", e.reason),
    }
}

/// `meshnode dashboard`: prints a one-time login URL for the node's
/// dashboard, signed by the user key for that node.
pub fn run_dashboard(args: DashboardArgs) -> Result<i32> {
    let report = fetch(&args.target)?;
    let Some(addr) = &report.http_addr else {
        bail!("the node serves no dashboard (it was started with --http off)");
    };
    let peer: libp2p::PeerId = report
        .peer_id
        .parse()
        .with_context(|| format!("the node's PeerId {} does not parse", report.peer_id))?;
    let node = crate::identity::peer_public_key(&peer)
        .context("the node's PeerId is not an ed25519 key")?;
    let user = user_key(args.target.user_key.as_deref())?;
    let url = login_url(&user, node, addr)?;
    out(&url)?;
    eprintln!(
        "meshnode: open it within {} s; it works once, then the browser keeps a session",
        crate::ops::login::LOGIN_TTL.as_secs()
    );
    if args.open {
        if let Err(e) = std::process::Command::new("xdg-open").arg(&url).spawn() {
            eprintln!("meshnode: cannot open a browser ({e}); open the URL above");
        }
    }
    Ok(0)
}

/// A login URL for the dashboard at `addr` of the node with key `node`.
pub fn login_url(user: &ed25519_dalek::SigningKey, node: PublicKey, addr: &str) -> Result<String> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let login = DashboardLogin::sign(
        user,
        DashboardLoginBody {
            node,
            user_key: PublicKey::of(user),
            expires_unix_ms: crate::ops::unix_ms()
                + crate::ops::login::LOGIN_TTL.as_millis() as u64,
            nonce: Nonce(nonce),
        },
    );
    Ok(format!(
        "http://{addr}/login?token={}",
        crate::ops::login::encode_token(&login)
    ))
}
