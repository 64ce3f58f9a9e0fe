//! `meshnode upgrade publish | list | rollback` (issue 17 item 4;
//! docs/guide.md, "Upgrading"). `upgrade roll` is in `upgrade_roll`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use protocol::control::{Command, ControlResponse, UpgradeReport};
use protocol::ids::ChunkBytes;
use protocol::release::{
    read_marker, Cpu, Release, ReleaseBinary, SignedRelease, MAX_RELEASE_BINARIES,
    MAX_RELEASE_BINARY_BYTES, MAX_RELEASE_NOTE_BYTES, RELEASE_FORMAT_VERSION,
};
use protocol::snapshot::{Hash, CHUNK_SIZE_BYTES};

use super::cli::{out, runtime, user_key, NodeTarget};
use super::client::{open, Session};

/// Most bytes of chunks sent in one `ReleaseChunks` request: a quarter of
/// the control protocol's request limit, so a slow link finishes each
/// within the client's timeout.
pub const UPLOAD_BATCH_BYTES: usize = 12 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

#[derive(Subcommand, Debug)]
pub enum UpgradeCommand {
    /// Sign a release with your user key and store it in the mesh.
    ///
    /// Give one meshnode binary per CPU (x86_64, aarch64, armv7, riscv64),
    /// all of one version: the version and protocols are read from each
    /// binary's release marker and the CPU from its ELF header, so nothing
    /// is run. The node you talk to keeps the release and its binaries as
    /// content-addressed chunks (only the chunks it lacks are sent), and
    /// serves them to the others during `upgrade roll`.
    ///
    /// Example: meshnode upgrade publish target/release/meshnode
    /// dist/meshnode-aarch64 dist/meshnode-armv7
    Publish(PublishArgs),
    /// Upgrade every node of the mesh to a published release, one node at
    /// a time, with no vessel stopping for longer than a live migration.
    ///
    /// For each node: drain its vessels live to the others; install the
    /// release's binary for its CPU (fetched as chunks, verified against
    /// the signed hash) keeping the previous one; restart into it; wait
    /// until it is healthy (`meshnode status`); undrain. A node that is not
    /// healthy in time is rolled back and the roll stops. The node you talk
    /// to goes last.
    ///
    /// Example: meshnode upgrade roll
    Roll(super::upgrade_roll::RollArgs),
    /// List the releases the node keeps, newest first.
    List(ListArgs),
    /// Put a node's previous binary back and restart it into it.
    ///
    /// Example: meshnode upgrade rollback --node kitchen-pi
    Rollback(RollbackArgs),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The release's binaries: one meshnode binary per CPU, one version.
    #[arg(value_name = "BINARY", required = true)]
    pub binaries: Vec<PathBuf>,
    /// The release migrates the data directory one way, so that the
    /// previous version cannot read it: say why. `upgrade roll` shows it
    /// and asks before it goes on, and no rollback is possible.
    #[arg(long, value_name = "NOTE")]
    pub one_way_data: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: NodeTarget,
}

/// `meshnode upgrade …`.
pub fn run_upgrade(args: UpgradeArgs) -> Result<i32> {
    match args.command {
        UpgradeCommand::Publish(a) => run_publish(a),
        UpgradeCommand::Roll(a) => super::upgrade_roll::run_roll(a),
        UpgradeCommand::List(a) => run_list(a),
        UpgradeCommand::Rollback(a) => run_rollback(a),
    }
}

/// One binary read from disk, described for the release.
struct Read {
    path: PathBuf,
    bytes: Vec<u8>,
    binary: ReleaseBinary,
    marker: protocol::release::Marker,
}

fn read_binary(path: &Path) -> Result<Read> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .with_context(|| format!("{shown}"))?
        .len();
    if size > MAX_RELEASE_BINARY_BYTES {
        bail!("{shown}: {size} bytes, more than a release's limit of {MAX_RELEASE_BINARY_BYTES}");
    }
    let bytes = std::fs::read(path).with_context(|| format!("{shown}"))?;
    let cpu = Cpu::of_elf(&bytes).with_context(|| format!("{shown}"))?;
    let marker = read_marker(&bytes).with_context(|| format!("{shown}"))?;
    let chunks = bytes
        .chunks(CHUNK_SIZE_BYTES as usize)
        .map(Hash::of)
        .collect();
    let binary = ReleaseBinary {
        cpu,
        size_bytes: size,
        hash: Hash::of(&bytes),
        chunks,
    };
    Ok(Read {
        path: path.to_path_buf(),
        bytes,
        binary,
        marker,
    })
}

/// The release the binaries make: one version and protocol, one per CPU.
fn release_of(read: &[Read], one_way_data: Option<String>) -> Result<Release> {
    if read.len() > MAX_RELEASE_BINARIES {
        bail!(
            "{} binaries given; a release holds at most {MAX_RELEASE_BINARIES}",
            read.len()
        );
    }
    let first = &read[0];
    for r in &read[1..] {
        if r.marker != first.marker {
            bail!(
                "{} is meshnode {} (peer protocol {}) but {} is {} (peer protocol {}): a release is one version",
                first.path.display(), first.marker.version, first.marker.peer_protocol,
                r.path.display(), r.marker.version, r.marker.peer_protocol
            );
        }
        if let Some(o) = read
            .iter()
            .find(|o| o.binary.cpu == r.binary.cpu && o.path != r.path)
        {
            bail!(
                "{} and {} are both for {}: give one binary per CPU",
                o.path.display(),
                r.path.display(),
                r.binary.cpu
            );
        }
    }
    if one_way_data
        .as_ref()
        .is_some_and(|n| n.len() > MAX_RELEASE_NOTE_BYTES)
    {
        bail!("--one-way-data: at most {MAX_RELEASE_NOTE_BYTES} bytes");
    }
    let published_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(Release {
        format: RELEASE_FORMAT_VERSION,
        version: first.marker.version.clone(),
        peer_protocol: first.marker.peer_protocol,
        min_peer_protocol: first.marker.min_peer_protocol,
        one_way_data,
        published_unix_ms,
        binaries: read.iter().map(|r| r.binary.clone()).collect(),
    })
}

fn run_publish(args: PublishArgs) -> Result<i32> {
    let read: Vec<Read> = args
        .binaries
        .iter()
        .map(|p| read_binary(p))
        .collect::<Result<_>>()?;
    let release = release_of(&read, args.one_way_data.clone())?;
    let key = user_key(args.target.user_key.as_deref())?;
    let signed = SignedRelease::sign(&key, release);
    let rt = runtime()?;
    let (sent, had, report) = rt.block_on(async {
        let (node, dir) = (args.target.node.as_deref(), args.target.data_dir.as_deref());
        let (mut session, _) = open(node, dir, &key).await?;
        let (sent, had) = upload(&mut session, &key, &read).await?;
        let answer = session
            .signed(
                &key,
                Command::ReleasePublish {
                    release: Box::new(signed.clone()),
                },
            )
            .await?;
        let ControlResponse::Upgrade(report) = answer else {
            bail!("unexpected answer to a release: {answer:?}");
        };
        Ok::<_, anyhow::Error>((sent, had, report))
    })?;
    if args.json {
        out(serde_json::json!({
            "version": signed.body.version,
            "release": signed.id().to_string(),
            "binaries": signed.body.binaries.iter().map(|b| serde_json::json!({
                "cpu": b.cpu.name(), "size_bytes": b.size_bytes, "hash": b.hash.to_string(),
            })).collect::<Vec<_>>(),
            "chunks_sent": sent,
            "chunks_already_there": had,
        }))?;
        return Ok(0);
    }
    out(format_args!(
        "published meshnode {} ({})",
        signed.body.version, report.detail
    ))?;
    for b in &signed.body.binaries {
        out(format_args!(
            "  {:<8} {:>6.1} MiB  {}",
            b.cpu.name(),
            b.size_bytes as f64 / 1048576.0,
            b.hash
        ))?;
    }
    out(format_args!(
        "{sent} chunks sent, {had} the node had; roll it out with `meshnode upgrade roll`"
    ))?;
    Ok(0)
}

/// Sends the chunks the node lacks, in batches; returns how many were
/// sent and how many it had.
async fn upload(
    session: &mut Session,
    key: &ed25519_dalek::SigningKey,
    read: &[Read],
) -> Result<(usize, usize)> {
    let mut unique = std::collections::HashMap::new();
    for r in read {
        for (i, h) in r.binary.chunks.iter().enumerate() {
            let at = i * CHUNK_SIZE_BYTES as usize;
            let end = (at + CHUNK_SIZE_BYTES as usize).min(r.bytes.len());
            unique.entry(*h).or_insert(&r.bytes[at..end]);
        }
    }
    let hashes: Vec<Hash> = unique.keys().copied().collect();
    let answer = session
        .signed(key, Command::ReleaseLacking { hashes })
        .await?;
    let ControlResponse::Lacking(lacking) = answer else {
        bail!("unexpected answer to which chunks the node lacks: {answer:?}");
    };
    let (total, mut sent) = (lacking.len(), 0);
    for batch in lacking.chunks(UPLOAD_BATCH_BYTES / CHUNK_SIZE_BYTES as usize) {
        let chunks = batch
            .iter()
            .filter_map(|h| unique.get(h).map(|b| ChunkBytes(b.to_vec())))
            .collect();
        session
            .signed(key, Command::ReleaseChunks { chunks })
            .await?;
        sent += batch.len();
        eprintln!("meshnode: sent {sent} of {total} chunks");
    }
    Ok((sent, unique.len() - total))
}

fn run_list(args: ListArgs) -> Result<i32> {
    let key = user_key(args.target.user_key.as_deref())?;
    let releases = runtime()?.block_on(async {
        let (node, dir) = (args.target.node.as_deref(), args.target.data_dir.as_deref());
        let (mut session, _) = open(node, dir, &key).await?;
        match session.signed(&key, Command::Releases).await? {
            ControlResponse::Releases(r) => Ok(r),
            other => bail!("unexpected answer to `upgrade list`: {other:?}"),
        }
    })?;
    if args.json {
        let rows: Vec<_> = releases.iter().map(release_json).collect();
        out(serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    if releases.is_empty() {
        eprintln!(
            "meshnode: the node keeps no release; publish one with `meshnode upgrade publish`"
        );
    }
    for r in &releases {
        let cpus: Vec<&str> = r.body.binaries.iter().map(|b| b.cpu.name()).collect();
        out(format_args!(
            "{:<12} {}  signed by {}",
            r.body.version,
            cpus.join(","),
            r.user_key
        ))?;
    }
    Ok(0)
}

pub(super) fn release_json(r: &SignedRelease) -> serde_json::Value {
    serde_json::json!({
        "version": r.body.version,
        "release": r.id().to_string(),
        "peer_protocol": r.body.peer_protocol,
        "min_peer_protocol": r.body.min_peer_protocol,
        "one_way_data": r.body.one_way_data,
        "user_key": r.user_key.to_string(),
        "cpus": r.body.binaries.iter().map(|b| b.cpu.name()).collect::<Vec<_>>(),
    })
}

fn run_rollback(args: RollbackArgs) -> Result<i32> {
    let key = user_key(args.target.user_key.as_deref())?;
    let report: UpgradeReport = runtime()?.block_on(async {
        let (node, dir) = (args.target.node.as_deref(), args.target.data_dir.as_deref());
        let (mut session, _) = open(node, dir, &key).await?;
        match session.signed(&key, Command::UpgradeRollback).await? {
            ControlResponse::Upgrade(r) => Ok(r),
            other => bail!("unexpected answer to `upgrade rollback`: {other:?}"),
        }
    })?;
    out(format_args!("{} (was {})", report.detail, report.running))?;
    Ok(0)
}
