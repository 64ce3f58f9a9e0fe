//! Reading a vessel's volumes from outside (`meshnode volumes`, `meshnode
//! cp`, issue 16): what a volume holds, a listing of a path in one, and a
//! page of one file's bytes. Plain data, its limits, and the one check of
//! a guest path a user typed.
//!
//! A copy is paged: the CLI lists the path first ([`VolumeListing`], at
//! most [`MAX_LISTED_ENTRIES`] entries), then reads each file in pages of
//! at most [`VOLUME_PAGE_BYTES`] from an offset ([`VolumePage`]), so neither
//! side ever holds more than a page of a large file.

use serde::{Deserialize, Serialize};

use crate::ids::serde_bytes_vec;
use crate::limits::MAX_PATH_BYTES;

/// Most bytes of a file one page carries: well under a control message's
/// limit, and few enough round trips for a 256 MiB volume (256 pages).
pub const VOLUME_PAGE_BYTES: u64 = 1024 * 1024;

/// Most entries one listing names: a listing is one control answer (at
/// most `MAX_CONTROL_RESPONSE_BYTES`, 4 MiB), so a directory with more is
/// refused and its subdirectories are copied one by one.
pub const MAX_LISTED_ENTRIES: usize = 10_000;

/// Most bytes of paths one listing carries, for the same reason.
pub const MAX_LISTED_PATH_BYTES: usize = 2 * 1024 * 1024;

/// One volume of a vessel, as its host holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The guest path the vessel sees it at.
    pub guest: String,
    pub files: u64,
    pub dirs: u64,
    /// Bytes of its files on the host.
    pub size_bytes: u64,
}

/// What a path in a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One entry of a listing, its path relative to the listed path (empty:
/// the listed path itself, when it is a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    pub path: String,
    pub kind: EntryKind,
    pub size_bytes: u64,
}

/// A path in a volume: itself when a file, else everything under it,
/// parents before children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeListing {
    pub node: String,
    pub kind: EntryKind,
    pub entries: Vec<ListedEntry>,
}

/// Bytes of a file from `offset`; `size_bytes` is the whole file's size
/// when the page was read (the copy ends at the first short page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePage {
    pub offset: u64,
    pub size_bytes: u64,
    #[serde(with = "serde_bytes_vec")]
    pub bytes: Vec<u8>,
}

/// Why a guest path is not one a volume can be read at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestPathError {
    #[error("`{0}`: a guest path starts with `/` (as the vessel sees it, e.g. /data/out.txt)")]
    Relative(String),
    #[error("`{0}`: `..` is not allowed in a guest path")]
    DotDot(String),
    #[error("a guest path of {0} bytes is over the limit of {MAX_PATH_BYTES}")]
    TooLong(usize),
    #[error("`{path}` is in none of the vessel's volumes ({volumes})")]
    OutsideVolumes { path: String, volumes: String },
}

/// Splits `path` (absolute, as the vessel sees it) into the index of the
/// volume it is in and its components below that volume's root. `.` and
/// empty components are dropped; `..` is refused, never resolved.
pub fn split_guest_path(
    path: &str,
    guests: &[String],
) -> Result<(usize, Vec<String>), GuestPathError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(GuestPathError::TooLong(path.len()));
    }
    if !path.starts_with('/') {
        return Err(GuestPathError::Relative(path.to_string()));
    }
    let parts = |p: &str| -> Result<Vec<String>, GuestPathError> {
        let mut out = Vec::new();
        for c in p.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(GuestPathError::DotDot(path.to_string())),
                c => out.push(c.to_string()),
            }
        }
        Ok(out)
    };
    let wanted = parts(path)?;
    // The deepest volume that holds it (volumes may nest).
    let best = guests
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let root = parts(g).ok()?;
            wanted.starts_with(&root).then_some((i, root.len()))
        })
        .max_by_key(|(_, depth)| *depth);
    match best {
        Some((i, depth)) => Ok((i, wanted[depth..].to_vec())),
        None => Err(GuestPathError::OutsideVolumes {
            path: path.to_string(),
            volumes: if guests.is_empty() {
                "it has none".into()
            } else {
                guests.join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_split_by_volume_and_escapes_refused() {
        let guests = vec![
            "/data".to_string(),
            "/data/cache".to_string(),
            "/".to_string(),
        ];
        assert_eq!(
            split_guest_path("/data/a/b.txt", &guests).unwrap(),
            (0, vec!["a".to_string(), "b.txt".to_string()])
        );
        assert_eq!(
            split_guest_path("/data/cache/x", &guests).unwrap(),
            (1, vec!["x".to_string()])
        );
        assert_eq!(split_guest_path("/data/./", &guests).unwrap(), (0, vec![]));
        assert_eq!(split_guest_path("/etc/passwd", &guests).unwrap().0, 2);
        assert!(matches!(
            split_guest_path("/data/../etc", &guests),
            Err(GuestPathError::DotDot(_))
        ));
        assert!(matches!(
            split_guest_path("data/x", &guests),
            Err(GuestPathError::Relative(_))
        ));
        let only = vec!["/data".to_string()];
        let e = split_guest_path("/database", &only).unwrap_err();
        assert!(
            e.to_string()
                .contains("none of the vessel's volumes (/data)"),
            "{e}"
        );
    }
}
