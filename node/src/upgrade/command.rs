//! The upgrade commands as a node runs them: `upgrade publish` (which
//! chunks it lacks, the chunks, the signed release), `upgrade roll` (the
//! releases kept, and installing one here), and `upgrade rollback`. The
//! CLI talks to each node of a roll itself; nothing here is forwarded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use protocol::control::{Command, ControlResponse, UpgradeReport};
use protocol::membership::PublicKey;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::release::{Cpu, ReleaseBinary, SignedRelease, Version};
use tracing::{info, warn};

use super::bins::{try_run, BinDir};
use super::releases::{refuse, Releases};
use super::{probation, restart, running_version};
use crate::mesh::link::Link;
use crate::mesh::state::NodeState;

/// How long the node waits after answering before it stops to restart,
/// so that the answer reaches the CLI first.
pub const RESTART_AFTER_ANSWER: Duration = Duration::from_millis(500);

pub fn is_upgrade_command(c: &Command) -> bool {
    matches!(
        c,
        Command::ReleaseLacking { .. }
            | Command::ReleaseChunks { .. }
            | Command::ReleasePublish { .. }
            | Command::UpgradeApply { .. }
            | Command::UpgradeRollback
            | Command::Releases
    )
}

/// What an upgrade command needs of the node.
struct Ctx {
    releases: Arc<Releases>,
    link: Link,
    trusted: Vec<PublicKey>,
    data_root: PathBuf,
}

/// Runs a verified user's upgrade command; answers through `channel` from
/// a task.
pub fn run(state: &NodeState, command: Command, channel: ResponseChannel<ControlResponse>) {
    let ctx = Ctx {
        releases: state.releases.clone(),
        link: state.link.clone(),
        trusted: state.trusted.clone(),
        data_root: state.data_dir.root.clone(),
    };
    let tx = state.link.tx.clone();
    tokio::spawn(async move {
        let response = match answer(&ctx, command).await {
            Ok(r) => r,
            Err(refusal) => {
                warn!("upgrade command refused: {refusal}");
                ControlResponse::Refused(refusal)
            }
        };
        crate::mesh::commands::respond_control(&tx, channel, response);
    });
}

async fn answer(ctx: &Ctx, command: Command) -> Result<ControlResponse, Refusal> {
    match command {
        Command::ReleaseLacking { hashes } => {
            Ok(ControlResponse::Lacking(ctx.releases.lacking(&hashes)?))
        }
        Command::ReleaseChunks { chunks } => {
            let releases = ctx.releases.clone();
            blocking(move || releases.upload(&chunks)).await?;
            Ok(ControlResponse::Done)
        }
        Command::ReleasePublish { release } => publish(ctx, *release).await,
        Command::Releases => Ok(ControlResponse::Releases(ctx.releases.list())),
        Command::UpgradeApply {
            release,
            sources,
            allow_downgrade,
        } => apply(ctx, *release, &sources, allow_downgrade).await,
        Command::UpgradeRollback => rollback(ctx),
        other => Err(refuse(
            RefusalCode::Internal,
            format!("not an upgrade command: {other:?}"),
        )),
    }
}

/// A release's signature, limits, and signer (a user key this node
/// trusts).
fn check(ctx: &Ctx, release: &SignedRelease) -> Result<(), Refusal> {
    release.verify().map_err(|e| {
        refuse(
            RefusalCode::BadRelease,
            format!("release {}: {e}", release.body.version),
        )
    })?;
    if !ctx.trusted.contains(&release.user_key) {
        return Err(refuse(
            RefusalCode::Untrusted,
            format!(
                "release {} is signed by {}, a user key this node does not trust",
                release.body.version, release.user_key
            ),
        ));
    }
    Ok(())
}

/// Keeps a release whose every binary is here, whole and as named.
async fn publish(ctx: &Ctx, release: SignedRelease) -> Result<ControlResponse, Refusal> {
    check(ctx, &release)?;
    let releases = ctx.releases.clone();
    let r = release.clone();
    blocking(move || {
        for b in &r.body.binaries {
            verify_stored(releases.store(), b)?;
        }
        releases.keep(&r, &[])?;
        releases.end_upload();
        Ok(())
    })
    .await?;
    let cpus: Vec<&str> = release.body.binaries.iter().map(|b| b.cpu.name()).collect();
    info!(version = %release.body.version, "release kept: {}", cpus.join(", "));
    Ok(ControlResponse::Upgrade(report(
        false,
        None,
        super::fetch::Fetched::default(),
        format!(
            "kept release {} ({})",
            release.body.version,
            cpus.join(", ")
        ),
    )))
}

/// Every chunk of `b` is stored and they hash, together, to `b.hash`.
fn verify_stored(store: &crate::store::ChunkStore, b: &ReleaseBinary) -> Result<(), Refusal> {
    let mut hasher = blake3::Hasher::new();
    for h in &b.chunks {
        let bytes = store.get_chunk(h).map_err(|e| {
            refuse(
                RefusalCode::MissingChunks,
                format!("the {} binary: {e}", b.cpu),
            )
        })?;
        hasher.update(&bytes);
    }
    if protocol::snapshot::Hash(*hasher.finalize().as_bytes()) != b.hash {
        return Err(refuse(
            RefusalCode::BadRelease,
            format!(
                "the {} binary's chunks do not hash to the release's {}",
                b.cpu, b.hash
            ),
        ));
    }
    Ok(())
}

/// Installs `release` here and restarts into it (see
/// [`Command::UpgradeApply`]).
async fn apply(
    ctx: &Ctx,
    release: SignedRelease,
    sources: &[String],
    allow_downgrade: bool,
) -> Result<ControlResponse, Refusal> {
    if restart::is_requested() || probation::is_on_probation() {
        return Err(refuse(
            RefusalCode::UpgradePending,
            "an upgrade is under way on this node (restarting, or on probation); wait for it",
        ));
    }
    check(ctx, &release)?;
    let version = release.body.version.clone();
    let binary = binary_here(&release)?;
    match compare(&version)? {
        std::cmp::Ordering::Equal => {
            let detail = format!("already runs {version}");
            return Ok(ControlResponse::Upgrade(report(
                false,
                None,
                Default::default(),
                detail,
            )));
        }
        std::cmp::Ordering::Less if !allow_downgrade => {
            return Err(refuse(
                RefusalCode::Downgrade,
                format!("release {version} is older than {} that this node runs; roll with --allow-downgrade to go back", running_version()),
            ));
        }
        _ => {}
    }
    let sources = parse_sources(sources)?;
    let store = ctx.releases.store().clone();
    let _pin = store.pin();
    let fetched =
        super::fetch::fetch_binary(&ctx.link, &store, release.id(), &binary, &sources).await?;
    let (releases, root, v) = (ctx.releases.clone(), ctx.data_root.clone(), version.clone());
    blocking(move || {
        let bins = BinDir::new(&root);
        let path = bins.install(releases.store(), &v, &binary)?;
        try_run(&path, &v)?;
        releases.keep(&release, &[])?;
        probation::begin(&root, running_version(), &v)?;
        bins.switch_to(&path)?;
        Ok(())
    })
    .await?;
    info!(from = running_version(), to = %version, "upgrade installed: restarting into it");
    restart_soon(BinDir::new(&ctx.data_root).current());
    let detail = format!("installed {version}; restarting into it");
    Ok(ControlResponse::Upgrade(report(
        true,
        Some(version),
        fetched,
        detail,
    )))
}

/// The release's binary for this node's CPU.
fn binary_here(release: &SignedRelease) -> Result<ReleaseBinary, Refusal> {
    let cpu = Cpu::this().ok_or_else(|| {
        refuse(
            RefusalCode::BadRelease,
            format!(
                "meshnode makes no releases for this CPU ({})",
                std::env::consts::ARCH
            ),
        )
    })?;
    release.binary_for(cpu).cloned().ok_or_else(|| {
        let has: Vec<&str> = release.body.binaries.iter().map(|b| b.cpu.name()).collect();
        refuse(
            RefusalCode::BadRelease,
            format!(
                "release {} has no binary for {cpu} (it has {})",
                release.body.version,
                has.join(", ")
            ),
        )
    })
}

/// The release's version against the running one.
fn compare(version: &str) -> Result<std::cmp::Ordering, Refusal> {
    let bad = |e: protocol::release::ReleaseError| refuse(RefusalCode::BadRelease, e.to_string());
    let target = Version::parse(version).map_err(bad)?;
    let running = Version::parse(running_version()).map_err(bad)?;
    Ok(target.cmp(&running))
}

fn parse_sources(sources: &[String]) -> Result<Vec<PeerId>, Refusal> {
    sources
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                refuse(
                    RefusalCode::BadArgument,
                    format!("source `{s}` is not a PeerId"),
                )
            })
        })
        .collect()
}

/// Puts the previous binary back and restarts into it.
fn rollback(ctx: &Ctx) -> Result<ControlResponse, Refusal> {
    if restart::is_requested() {
        return Err(refuse(
            RefusalCode::UpgradePending,
            "this node is restarting already",
        ));
    }
    let bins = BinDir::new(&ctx.data_root);
    let previous = bins.roll_back()?;
    probation::clear(&ctx.data_root);
    warn!(to = %previous.display(), "rolled back: restarting into the previous binary");
    restart_soon(bins.current());
    let detail = format!("rolled back to {}; restarting into it", previous.display());
    Ok(ControlResponse::Upgrade(report(
        true,
        None,
        Default::default(),
        detail,
    )))
}

fn restart_soon(binary: PathBuf) {
    tokio::spawn(async move {
        tokio::time::sleep(RESTART_AFTER_ANSWER).await;
        restart::request(binary);
    });
}

fn report(
    restarting: bool,
    into_version: Option<String>,
    f: super::fetch::Fetched,
    detail: String,
) -> UpgradeReport {
    UpgradeReport {
        running: running_version().to_string(),
        restarting,
        into_version,
        fetched_chunks: f.fetched_chunks,
        fetched_bytes: f.fetched_bytes,
        had_chunks: f.had_chunks,
        detail,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| refuse(RefusalCode::Internal, e.to_string()))?
}
