//! `meshnode volumes` and `meshnode cp` (issue 16): a vessel's volumes as
//! its host holds them, and a file or directory copied out of one, from
//! wherever the vessel is, through the node the CLI talks to.
//!
//! A copy lists the path first, then reads each file in pages of at most
//! `protocol::volumes::VOLUME_PAGE_BYTES`, written as they come: neither
//! side holds more than a page. Every path a listing names is checked
//! (`vessel::check_volume_path`) before anything is created under LOCAL.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse};
use protocol::volumes::{EntryKind, VolumeListing};

use super::cli::{out, NodeTarget};
use super::tables::human_bytes;
use super::vessel_cli::Client;

#[derive(Args, Debug)]
pub struct VolumesArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to copy: VESSEL:/guest/path, the vessel (id, id prefix or
    /// name) and a path in one of its volumes as the vessel sees it (see
    /// `meshnode volumes VESSEL`). A directory is copied with everything
    /// under it.
    #[arg(value_name = "VESSEL:PATH")]
    pub source: String,
    /// Where to: a new file or directory, or an existing directory to copy
    /// into (under the source's own name).
    #[arg(value_name = "LOCAL")]
    pub local: PathBuf,
}

/// `meshnode volumes VESSEL`.
pub fn run_volumes(args: VolumesArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let ControlResponse::Volumes { node, volumes } =
        client.call_through_failover(Command::Volumes {
            vessel: args.vessel.clone(),
        })?
    else {
        bail!("unexpected answer to `volumes`");
    };
    if args.json {
        let rows: Vec<_> = volumes
            .iter()
            .map(|v| {
                serde_json::json!({
                    "guest": v.guest, "files": v.files, "dirs": v.dirs,
                    "size_bytes": v.size_bytes, "node": node,
                })
            })
            .collect();
        out(serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    if volumes.is_empty() {
        eprintln!(
            "meshnode: {} has no volumes (`deploy --volume GUEST=DIR` gives it one)",
            args.vessel
        );
        return Ok(0);
    }
    out(format_args!(
        "{:<32} {:>10} {:>8} {:>8}",
        "GUEST PATH", "SIZE", "FILES", "DIRS"
    ))?;
    for v in &volumes {
        out(format_args!(
            "{:<32} {:>10} {:>8} {:>8}",
            v.guest,
            human_bytes(v.size_bytes),
            v.files,
            v.dirs
        ))?;
    }
    eprintln!("(on node {node})");
    Ok(0)
}

/// `meshnode cp VESSEL:/guest/path LOCAL`.
pub fn run_cp(args: CpArgs) -> Result<i32> {
    let Some((vessel, path)) = args.source.split_once(':') else {
        bail!(
            "`{}`: give VESSEL:/guest/path, e.g. counter:/data/out.txt",
            args.source
        );
    };
    if vessel.is_empty() || !path.starts_with('/') {
        bail!(
            "`{}`: give VESSEL:/guest/path, with the path as the vessel sees it (starting with /)",
            args.source
        );
    }
    let mut client = Client::connect(&args.target)?;
    let listing = match client.call_through_failover(Command::VolumeList {
        vessel: vessel.to_string(),
        path: path.to_string(),
    })? {
        ControlResponse::VolumeListing(l) => l,
        _ => bail!("unexpected answer to `cp`"),
    };
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let dest = if args.local.is_dir() && !name.is_empty() {
        args.local.join(name)
    } else {
        args.local.clone()
    };
    let (files, bytes) = copy(&mut client, vessel, path, &listing, &dest)?;
    eprintln!(
        "meshnode: copied {files} file(s), {} from {vessel}:{path} on node {} to {}",
        human_bytes(bytes),
        listing.node,
        dest.display()
    );
    Ok(0)
}

/// Creates what `listing` names under `dest` and fills its files page by
/// page. Returns the files and bytes copied.
fn copy(
    client: &mut Client,
    vessel: &str,
    path: &str,
    listing: &VolumeListing,
    dest: &Path,
) -> Result<(u64, u64)> {
    if listing.kind == EntryKind::File {
        let bytes = copy_file(client, vessel, path, dest)?;
        return Ok((1, bytes));
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let (mut files, mut bytes) = (0, 0);
    for e in &listing.entries {
        protocol::vessel::check_volume_path(path, &e.path).with_context(|| {
            format!("the node listed a path that cannot be copied: `{}`", e.path)
        })?;
        let local = dest.join(&e.path);
        let guest = format!("{}/{}", path.trim_end_matches('/'), e.path);
        match e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&local)
                .with_context(|| format!("cannot create {}", local.display()))?,
            EntryKind::File => {
                bytes += copy_file(client, vessel, &guest, &local)?;
                files += 1;
            }
            EntryKind::Symlink => eprintln!("meshnode: {guest}: a symlink, not copied"),
        }
    }
    Ok((files, bytes))
}

/// One file, page by page, into `local` (created or truncated).
fn copy_file(client: &mut Client, vessel: &str, guest: &str, local: &Path) -> Result<u64> {
    let mut f = std::fs::File::create(local)
        .with_context(|| format!("cannot create {}", local.display()))?;
    let mut offset = 0u64;
    loop {
        let page = match client.call_through_failover(Command::VolumeRead {
            vessel: vessel.to_string(),
            path: guest.to_string(),
            offset,
        })? {
            ControlResponse::VolumePage(p) => p,
            _ => bail!("unexpected answer to `cp`"),
        };
        if page.offset != offset || page.bytes.len() as u64 > protocol::volumes::VOLUME_PAGE_BYTES {
            bail!("{guest}: the node answered a page that was not asked for");
        }
        f.write_all(&page.bytes)
            .with_context(|| format!("cannot write {}", local.display()))?;
        offset += page.bytes.len() as u64;
        if page.bytes.is_empty() || offset >= page.size_bytes {
            return Ok(offset);
        }
    }
}
