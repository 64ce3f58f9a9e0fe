//! Volumes as images: a volume directory packed into a [`VolumeImage`]
//! (files chunked into the store), whole ([`pack_volume`]) or only what
//! changed since the last image ([`pack_volume_changed`], for a
//! checkpoint), and unpacked again ([`unpack_volume`]).
//!
//! Entries are in the order of a depth-first walk with each directory's
//! names sorted bytewise: a directory, then everything beneath it, then
//! its next sibling. So the same files always give the same image, and an
//! incremental pack can be compared with a whole one as is.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use protocol::limits::MAX_VOLUME_BYTES;
use protocol::vessel::{VolumeEntry, VolumeImage};

use crate::dock::wasi::ChangedSet;
use crate::store::{get_image, put_image, ChunkStore};

/// Packs a volume directory into an image (files chunked into the store),
/// in walk order (see the module's doc), so the same files give the same
/// image.
pub fn pack_volume(store: &ChunkStore, dir: &Path, guest: &str) -> Result<VolumeImage, String> {
    let mut packer = Packer::new(store, dir, 0);
    packer.walk("")?;
    Ok(VolumeImage {
        guest: guest.to_string(),
        entries: packer.entries,
    })
}

/// [`pack_volume`] for a volume whose image was `previous` and in which
/// only `changed` may differ since (what the WASI layer tracked,
/// `WasiCtx::take_changed`): the entries of unchanged paths are reused,
/// and only the changed paths are looked at, read and hashed (a removed
/// one disappears, a changed directory is walked again). The result is
/// what [`pack_volume`] would give for the directory as it is now, as long
/// as `changed` names everything that changed. "Everything" packs the
/// whole directory.
pub fn pack_volume_changed(
    store: &ChunkStore,
    dir: &Path,
    guest: &str,
    previous: &VolumeImage,
    changed: &ChangedSet,
) -> Result<VolumeImage, String> {
    let paths = match changed {
        ChangedSet::Everything => return pack_volume(store, dir, guest),
        ChangedSet::Paths(paths) => paths,
    };
    if previous.guest != guest {
        return Err(format!(
            "{}: the previous image is of the volume at {}, not {guest}",
            dir.display(),
            previous.guest
        ));
    }
    let roots = outermost(dir, paths)?;
    let kept = kept_entries(previous, &roots);
    let kept_bytes = kept.iter().map(file_bytes).sum();
    let mut packer = Packer::new(store, dir, kept_bytes);
    for root in &roots {
        // An entry exists only beneath a directory: a path whose parent the
        // image does not hold as one (gone, or now a symlink or a file) is
        // not looked at, so nothing is ever read through a symlink.
        if parent_is_dir(&kept, root) {
            packer.changed_entry(root)?;
        }
    }
    Ok(VolumeImage {
        guest: guest.to_string(),
        entries: merge(kept, packer.entries),
    })
}

/// Re-creates a volume's files under `dir` (which must not exist): the
/// directories and files first, symlinks last.
///
/// The image comes from another node and is not signed, so every entry is
/// created beneath `dir` one path component at a time, each directory
/// opened with `O_NOFOLLOW | O_DIRECTORY` relative to its parent's
/// descriptor (what `openat2`'s `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`
/// gives, on every kernel a board runs). A symlink is never followed,
/// whether the image made it or not: an image with a symlink `a` → `/etc`
/// and a second entry `a/x` is refused when it reaches `a/x`, and nothing
/// is created outside `dir`.
pub fn unpack_volume(store: &ChunkStore, vol: &VolumeImage, dir: &Path) -> Result<(), String> {
    vol.check().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let root = beneath::open_root(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let at = |path: &str, e: io::Error| format!("{}: {e}", dir.join(path).display());
    for e in &vol.entries {
        match e {
            VolumeEntry::Dir { path } => {
                beneath::open_dir(&root, path, true).map_err(|e| at(path, e))?;
            }
            VolumeEntry::File { path, content } => {
                let bytes =
                    get_image(store, content, MAX_VOLUME_BYTES).map_err(|e| e.to_string())?;
                beneath::write_file(&root, path, &bytes).map_err(|e| at(path, e))?;
            }
            VolumeEntry::Symlink { .. } => {}
        }
    }
    for e in &vol.entries {
        if let VolumeEntry::Symlink { path, target } = e {
            beneath::symlink(&root, path, target).map_err(|e| at(path, e))?;
        }
    }
    Ok(())
}

/// Creating entries beneath a directory descriptor without ever following
/// a symlink (see [`unpack_volume`]). Paths are relative and `/`-separated,
/// already checked by `check_volume_path` (no `..`, `.` or empty part).
mod beneath {
    use std::io::{self, Write};
    use std::os::fd::OwnedFd;
    use std::path::Path;

    use rustix::fs::{mkdirat, openat, symlinkat, Mode, OFlags};
    use rustix::io::Errno;

    /// What an image's directories and files get: the process's umask
    /// decides, as for any file the node creates.
    const DIR_MODE: u32 = 0o777;
    const FILE_MODE: u32 = 0o666;

    fn dir_flags() -> OFlags {
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
    }

    pub fn open_root(dir: &Path) -> io::Result<OwnedFd> {
        Ok(openat(rustix::fs::CWD, dir, dir_flags(), Mode::empty())?)
    }

    /// The directory `path` beneath `root`, each missing part created when
    /// `create`. A part that is a symlink (or not a directory) is an error.
    pub fn open_dir(root: &OwnedFd, path: &str, create: bool) -> io::Result<OwnedFd> {
        let mut cur = root.try_clone()?;
        for part in path.split('/') {
            cur = match openat(&cur, part, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match mkdirat(&cur, part, Mode::from_raw_mode(DIR_MODE)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&cur, part, dir_flags(), Mode::empty()).map_err(not_beneath)?
                }
                Err(e) => return Err(not_beneath(e)),
            };
        }
        Ok(cur)
    }

    /// `path`'s parent directory (opened as [`open_dir`] does, creating
    /// it) and its last part.
    fn parent<'p>(root: &OwnedFd, path: &'p str) -> io::Result<(OwnedFd, &'p str)> {
        match path.rsplit_once('/') {
            Some((dir, name)) => Ok((open_dir(root, dir, true)?, name)),
            None => Ok((root.try_clone()?, path)),
        }
    }

    /// A new file: `O_EXCL | O_NOFOLLOW`, so nothing that already stands
    /// at `path` (a symlink above all) is written through or replaced.
    pub fn write_file(root: &OwnedFd, path: &str, bytes: &[u8]) -> io::Result<()> {
        let (dir, name) = parent(root, path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = openat(
            &dir,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(not_beneath)?;
        std::fs::File::from(fd).write_all(bytes)
    }

    pub fn symlink(root: &OwnedFd, path: &str, target: &str) -> io::Result<()> {
        let (dir, name) = parent(root, path)?;
        Ok(symlinkat(target, &dir, name)?)
    }

    /// `ELOOP` and `ENOTDIR` from a `NOFOLLOW` open mean a symlink (or a
    /// file) stands where the image needs a directory: said in words.
    fn not_beneath(e: Errno) -> io::Error {
        match e {
            Errno::LOOP | Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symlink or a file stands where the image needs a directory; \
                 volume entries are never created through a symlink",
            ),
            Errno::EXIST => io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the image holds this path twice",
            ),
            e => e.into(),
        }
    }
}

/// Walks a volume directory, appending entries in walk order.
struct Packer {
    store: ChunkStore,
    root: PathBuf,
    entries: Vec<VolumeEntry>,
    /// File bytes in the image so far, against `MAX_VOLUME_BYTES`.
    total_bytes: u64,
}

impl Packer {
    fn new(store: &ChunkStore, root: &Path, total_bytes: u64) -> Self {
        Packer {
            store: store.clone(),
            root: root.to_path_buf(),
            entries: Vec::new(),
            total_bytes,
        }
    }

    /// Every entry beneath the directory `rel` ("" for the root), sorted.
    fn walk(&mut self, rel: &str) -> Result<(), String> {
        let dir = self.full(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let name = name
                .to_str()
                .ok_or_else(|| format!("{}: a file name that is not UTF-8", dir.display()))?;
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let full = self.root.join(&path);
            let meta =
                std::fs::symlink_metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
            self.entry(path, &meta)?;
        }
        Ok(())
    }

    /// A path that changed: packed as the walk would (with everything
    /// beneath it), or nothing when it is gone.
    fn changed_entry(&mut self, path: &str) -> Result<(), String> {
        let full = self.root.join(path);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) => self.entry(path.to_string(), &meta),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(format!("{}: {e}", full.display())),
        }
    }

    fn entry(&mut self, path: String, meta: &std::fs::Metadata) -> Result<(), String> {
        let full = self.root.join(&path);
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(|e| format!("{}: {e}", full.display()))?;
            self.entries.push(VolumeEntry::Symlink {
                path,
                target: target.to_string_lossy().to_string(),
            });
        } else if meta.is_dir() {
            self.entries.push(VolumeEntry::Dir { path: path.clone() });
            self.walk(&path)?;
        } else if meta.is_file() {
            self.total_bytes += meta.len();
            if self.total_bytes > MAX_VOLUME_BYTES {
                return Err(format!(
                    "{}: the volume holds more than {MAX_VOLUME_BYTES} bytes",
                    self.root.display()
                ));
            }
            let bytes =
                read_without_atime(&full).map_err(|e| format!("{}: {e}", full.display()))?;
            let content = put_image(&mut self.store, &bytes).map_err(|e| e.to_string())?;
            self.entries.push(VolumeEntry::File { path, content });
        }
        // Anything else (a socket, a fifo, a device) is not part of a
        // volume's image.
        Ok(())
    }

    fn full(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

/// Reads a volume file without touching its access time: a checkpoint
/// packs the files a vessel changed while it runs, and a read would move
/// their atime (relatime moves it when it is older than the mtime or a day
/// old), which the vessel can see (`fd_filestat_get`). Regression: the
/// corpus program fd_ops set a file's times, a checkpoint read it, and its
/// "atim kept" check failed. `O_NOATIME` needs the file's owner, which the
/// node is; otherwise it reads as before.
fn read_without_atime(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EPERM) => std::fs::File::open(path),
            _ => Err(e),
        })?;
    let mut bytes = Vec::new();
    (&file).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A path that is not there: missing, or beneath something that is no
/// longer a directory.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

/// The changed paths that no other changed path lies beneath (those are
/// covered by their ancestor's walk), as UTF-8, in walk order. A changed
/// name that is not UTF-8 is refused as [`pack_volume`] refuses it when it
/// exists, and is nothing when it does not (no image holds it).
fn outermost(dir: &Path, paths: &BTreeSet<Vec<u8>>) -> Result<Vec<String>, String> {
    let mut roots = Vec::new();
    for p in paths {
        let ok = !p.is_empty()
            && p.split(|&b| b == b'/')
                .all(|c| !c.is_empty() && c != b"." && c != b"..");
        if !ok {
            return Err(format!(
                "{}: changed path {:?} is not a plain relative path",
                dir.display(),
                String::from_utf8_lossy(p)
            ));
        }
        match std::str::from_utf8(p) {
            Ok(s) => roots.push(s.to_string()),
            Err(_) => refuse_if_present(dir, p)?,
        }
    }
    roots.sort_by(|a, b| walk_order(a, b));
    let set: BTreeSet<&str> = roots.iter().map(String::as_str).collect();
    let covered = |p: &str| ancestors(p).any(|a| set.contains(a));
    Ok(roots.iter().filter(|p| !covered(p)).cloned().collect())
}

fn refuse_if_present(dir: &Path, path: &[u8]) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let full = dir.join(std::ffi::OsStr::from_bytes(path));
    match std::fs::symlink_metadata(&full) {
        Err(e) if is_absent(&e) => Ok(()),
        _ => Err(format!(
            "{}: a file name that is not UTF-8",
            full.parent().unwrap_or(dir).display()
        )),
    }
}

/// The proper ancestors of a `/`-separated path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.char_indices()
        .rev()
        .filter(|&(_, c)| c == '/')
        .map(move |(i, _)| &path[..i])
}

/// The order of a walk: component by component, each compared bytewise.
/// (Plain string order would put `a-b` before `a/c`, the walk puts the
/// directory `a`'s contents before its sibling `a-b`.)
fn walk_order(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.bytes(), b.bytes());
    // Compared lazily: only the common prefix and one byte more are read.
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p == q => continue,
            // A separator sorts before every byte of a name.
            (Some(p), Some(q)) => {
                let slash_low = |c: u8| if c == b'/' { 0 } else { c };
                return slash_low(p).cmp(&slash_low(q));
            }
        }
    }
}

/// `previous`'s entries that lie beneath none of `roots`, in walk order.
fn kept_entries(previous: &VolumeImage, roots: &[String]) -> Vec<VolumeEntry> {
    let set: BTreeSet<&str> = roots.iter().map(String::as_str).collect();
    let mut kept: Vec<VolumeEntry> = previous
        .entries
        .iter()
        .filter(|e| {
            let p = e.path();
            !set.contains(p) && !ancestors(p).any(|a| set.contains(a))
        })
        .cloned()
        .collect();
    // An image from pack_volume is in walk order already; one from
    // elsewhere is put in it.
    if !kept
        .windows(2)
        .all(|w| walk_order(w[0].path(), w[1].path()) == Ordering::Less)
    {
        kept.sort_by(|a, b| walk_order(a.path(), b.path()));
    }
    kept
}

fn file_bytes(e: &VolumeEntry) -> u64 {
    match e {
        VolumeEntry::File { content, .. } => content.size_bytes,
        _ => 0,
    }
}

/// Whether `path`'s parent is the root or a directory in `kept` (which is
/// in walk order).
fn parent_is_dir(kept: &[VolumeEntry], path: &str) -> bool {
    let Some(parent) = ancestors(path).next() else {
        return true;
    };
    kept.binary_search_by(|e| walk_order(e.path(), parent))
        .is_ok_and(|i| matches!(kept[i], VolumeEntry::Dir { .. }))
}

/// Two runs of entries, each in walk order and at disjoint paths, as one.
/// `fresh` holds whole subtrees of disjoint roots, packed in root order.
fn merge(kept: Vec<VolumeEntry>, fresh: Vec<VolumeEntry>) -> Vec<VolumeEntry> {
    let mut out = Vec::with_capacity(kept.len() + fresh.len());
    let (mut a, mut b) = (kept.into_iter().peekable(), fresh.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => walk_order(x.path(), y.path()) == Ordering::Less,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

#[cfg(test)]
#[path = "volume_tests.rs"]
mod tests;
