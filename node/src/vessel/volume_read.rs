//! Reading a vessel's volumes from outside (`meshnode volumes`, `meshnode
//! cp`, issue 16) on the node that holds them: `vessels/ID/volN/`.
//!
//! A guest path is split by `protocol::volumes::split_guest_path` (`..`
//! refused, never resolved), then walked component by component below the
//! volume's directory without following a symlink, so nothing outside the
//! volume is ever read. Listings and pages are bounded
//! (`MAX_LISTED_ENTRIES`, `MAX_LISTED_PATH_BYTES`, `VOLUME_PAGE_BYTES`),
//! and a page's buffer is sized from the file's length before it is
//! allocated. The files are read as they are now: a running vessel may be
//! writing them (stop it, or copy what it has closed).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;
use protocol::volumes::{
    split_guest_path, EntryKind, ListedEntry, VolumeInfo, VolumeListing, VolumePage,
    MAX_LISTED_ENTRIES, MAX_LISTED_PATH_BYTES, VOLUME_PAGE_BYTES,
};

use super::{Host, Record};

/// Most entries counted for `meshnode volumes` in one volume: a volume
/// holds at most `MAX_VOLUME_ENTRIES` when it travels, so this is reached
/// only by a vessel that wrote more since; the count then stops there, and
/// its figures are lower bounds.
pub const MAX_COUNTED_ENTRIES: u64 = protocol::limits::MAX_VOLUME_ENTRIES as u64 * 2;

/// Where a vessel's volumes are on this node: their guest paths and
/// directories. Refused for a vessel not here, or whose volumes left with
/// it.
pub fn volumes_of(h: &Host, id: VesselId) -> Result<Vec<(String, PathBuf)>, Refusal> {
    let l = h.vessels.get(&id).ok_or_else(|| {
        Refusal::new(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    if matches!(l.record, Record::Left { .. } | Record::Fenced { .. }) {
        return Err(Refusal::new(
            RefusalCode::NotOwner,
            format!("vessel {id} moved on from this node, and its volumes with it"),
        ));
    }
    let guests: Vec<String> = l
        .deployment
        .body
        .volumes
        .iter()
        .map(|v| v.guest.clone())
        .collect();
    let dirs = super::image::volume_dirs(&h.vessel_dir(id), guests.len());
    Ok(guests.into_iter().zip(dirs).collect())
}

fn io_refusal(what: &str, e: std::io::Error) -> Refusal {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => RefusalCode::BadArgument,
        _ => RefusalCode::Internal,
    };
    Refusal::new(code, format!("{what}: {e}"))
}

/// `meshnode volumes`: each volume's guest path, files, directories and
/// bytes (symlinks are not followed).
pub fn summary(volumes: &[(String, PathBuf)]) -> Vec<VolumeInfo> {
    volumes
        .iter()
        .map(|(guest, dir)| {
            let mut info = VolumeInfo {
                guest: guest.clone(),
                files: 0,
                dirs: 0,
                size_bytes: 0,
            };
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    if info.files + info.dirs >= MAX_COUNTED_ENTRIES {
                        return info;
                    }
                    let Ok(m) = e.path().symlink_metadata() else {
                        continue;
                    };
                    if m.is_dir() {
                        info.dirs += 1;
                        stack.push(e.path());
                    } else if m.is_file() {
                        info.files += 1;
                        info.size_bytes += m.len();
                    }
                }
            }
            info
        })
        .collect()
}

/// The host path of `guest_path`, walked below its volume's directory
/// without following a symlink; refused outside every volume, with `..`,
/// or where nothing is.
pub fn host_path(volumes: &[(String, PathBuf)], guest_path: &str) -> Result<PathBuf, Refusal> {
    let guests: Vec<String> = volumes.iter().map(|(g, _)| g.clone()).collect();
    let (i, parts) = split_guest_path(guest_path, &guests)
        .map_err(|e| Refusal::new(RefusalCode::BadArgument, e.to_string()))?;
    let mut at = volumes[i].1.clone();
    for p in &parts {
        at.push(p);
        match at.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Refusal::new(
                    RefusalCode::BadArgument,
                    format!("`{guest_path}`: `{p}` is a symlink, which cp does not follow"),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Refusal::new(
                    RefusalCode::BadArgument,
                    format!(
                        "no file or directory `{guest_path}` in the vessel's volume {}",
                        volumes[i].0
                    ),
                ))
            }
            Err(e) => return Err(io_refusal(guest_path, e)),
        }
    }
    Ok(at)
}

/// A listing of `path`: itself when it is a file, else everything under
/// it, parents first; refused past the listing's limits.
pub fn list(path: &Path, guest_path: &str, node: String) -> Result<VolumeListing, Refusal> {
    let m = path
        .symlink_metadata()
        .map_err(|e| io_refusal(guest_path, e))?;
    if m.is_file() {
        return Ok(VolumeListing {
            node,
            kind: EntryKind::File,
            entries: vec![ListedEntry {
                path: String::new(),
                kind: EntryKind::File,
                size_bytes: m.len(),
            }],
        });
    }
    let mut entries = Vec::new();
    let mut path_bytes = 0usize;
    let mut queue = std::collections::VecDeque::from([String::new()]);
    while let Some(rel) = queue.pop_front() {
        let dir = if rel.is_empty() {
            path.to_path_buf()
        } else {
            path.join(&rel)
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| io_refusal(guest_path, e))?
            .flatten()
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            let kind = if m.file_type().is_symlink() {
                EntryKind::Symlink
            } else if m.is_dir() {
                queue.push_back(child.clone());
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            path_bytes += child.len();
            if entries.len() >= MAX_LISTED_ENTRIES || path_bytes > MAX_LISTED_PATH_BYTES {
                return Err(Refusal::new(
                    RefusalCode::Limit,
                    format!("`{guest_path}` holds over {MAX_LISTED_ENTRIES} entries (or {MAX_LISTED_PATH_BYTES} bytes of paths), the most one copy lists: copy its subdirectories one by one"),
                ));
            }
            let size_bytes = if kind == EntryKind::File { m.len() } else { 0 };
            entries.push(ListedEntry {
                path: child,
                kind,
                size_bytes,
            });
        }
    }
    Ok(VolumeListing {
        node,
        kind: EntryKind::Dir,
        entries,
    })
}

/// At most [`VOLUME_PAGE_BYTES`] of the file at `path` from `offset`.
pub fn read_page(path: &Path, guest_path: &str, offset: u64) -> Result<VolumePage, Refusal> {
    let m = path
        .symlink_metadata()
        .map_err(|e| io_refusal(guest_path, e))?;
    if !m.is_file() {
        return Err(Refusal::new(
            RefusalCode::BadArgument,
            format!("`{guest_path}` is not a file"),
        ));
    }
    let mut f = std::fs::File::open(path).map_err(|e| io_refusal(guest_path, e))?;
    let size_bytes = f.metadata().map_err(|e| io_refusal(guest_path, e))?.len();
    // Counted before the buffer is allocated: never more than a page.
    let want = size_bytes.saturating_sub(offset).min(VOLUME_PAGE_BYTES);
    let mut bytes = Vec::with_capacity(want as usize);
    if want > 0 {
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_refusal(guest_path, e))?;
        f.take(want)
            .read_to_end(&mut bytes)
            .map_err(|e| io_refusal(guest_path, e))?;
    }
    Ok(VolumePage {
        offset,
        size_bytes,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_their_volume_and_pages_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol0");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        let big = vec![7u8; VOLUME_PAGE_BYTES as usize + 10];
        std::fs::write(vol.join("sub/big.bin"), &big).unwrap();
        std::fs::write(tmp.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), vol.join("link")).unwrap();
        let volumes = vec![("/data".to_string(), vol.clone())];

        let p = host_path(&volumes, "/data/sub/big.bin").unwrap();
        let first = read_page(&p, "/data/sub/big.bin", 0).unwrap();
        assert_eq!(first.bytes.len() as u64, VOLUME_PAGE_BYTES);
        let rest = read_page(&p, "/data/sub/big.bin", VOLUME_PAGE_BYTES).unwrap();
        assert_eq!(rest.bytes.len(), 10);
        assert_eq!(rest.size_bytes, big.len() as u64);

        for bad in ["/data/../secret", "/data/link", "/etc/passwd", "/data/nope"] {
            assert!(host_path(&volumes, bad).is_err(), "{bad}");
        }
        let listing = list(&host_path(&volumes, "/data").unwrap(), "/data", "n".into()).unwrap();
        let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["link", "sub", "sub/big.bin"]);
        assert_eq!(listing.entries[0].kind, EntryKind::Symlink);
        let s = summary(&volumes);
        assert_eq!(
            (s[0].files, s[0].dirs, s[0].size_bytes),
            (1, 1, big.len() as u64)
        );
    }
}
