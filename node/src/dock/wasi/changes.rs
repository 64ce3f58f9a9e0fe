//! Which paths beneath each preopened directory the vessel changed since
//! someone last asked ([`WasiCtx::take_changed`]), so that a checkpoint
//! re-reads only those files of a volume instead of all of them
//! (`vessel::image::pack_volume_changed`).
//!
//! A recorded path names an entry relative to its preopen's root, as the
//! host resolves it (symlinks and `..` followed, as the kernel reports an
//! open descriptor's path): "the entry at this path, and everything beneath
//! it, may differ". The image of a volume holds only names, contents and
//! symlink targets (no times, no modes), so only calls that change those
//! are recorded: writes and size changes through a descriptor, creating or
//! truncating opens, unlink, mkdir, rmdir, rename (both ends), symlink and
//! link. `set_times` changes nothing the image holds.
//!
//! When the tracker cannot name what changed it says "everything" for that
//! preopen: after more than [`MAX_TRACKED_PATHS`] paths, when a path cannot
//! be resolved beneath its root, and for every write through a descriptor
//! once a file in that preopen may have several names (a hard link: a write
//! under one name changes the others, which the tracker cannot name
//! without a syscall per write).
//!
//! The baseline is the directory as the context found it (when it was made
//! or rebuilt), then each take. Changes made beside the WASI layer (by the
//! node itself) are not seen.

use std::collections::{BTreeSet, HashSet};

use protocol::wasi::DescriptorKind;

use super::ctx::{Handle, WasiCtx};
use super::path::host_relative_path;

/// Changed paths remembered per preopen before the tracker gives up and
/// says "everything": past this, stat-ing each path at the checkpoint
/// costs about what re-listing the volume does, and the set's memory
/// (paths up to `MAX_PATH_BYTES`) must stay bounded between checkpoints.
pub const MAX_TRACKED_PATHS: usize = 10_000;

/// What changed beneath one preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedSet {
    /// Paths relative to the root, `/`-separated, no `.` or `..`: each
    /// entry, and everything beneath it, may differ from the baseline.
    /// Nothing else does.
    Paths(BTreeSet<Vec<u8>>),
    /// Anything may differ: pack the whole directory again.
    Everything,
}

impl ChangedSet {
    pub fn is_empty(&self) -> bool {
        matches!(self, ChangedSet::Paths(p) if p.is_empty())
    }

    /// Adds what changed later, so that a set taken for a checkpoint that
    /// was then not written can be carried into the next one. Past
    /// [`MAX_TRACKED_PATHS`] it becomes "everything", as the tracker does.
    pub fn absorb(&mut self, later: ChangedSet) {
        let ChangedSet::Paths(mine) = self else {
            return;
        };
        match later {
            ChangedSet::Everything => *self = ChangedSet::Everything,
            ChangedSet::Paths(theirs) => {
                mine.extend(theirs);
                if mine.len() > MAX_TRACKED_PATHS {
                    *self = ChangedSet::Everything;
                }
            }
        }
    }
}

/// [`ChangedSet::Everything`], to hand out by reference.
static EVERYTHING: ChangedSet = ChangedSet::Everything;

/// What [`WasiCtx::take_changed`] returns: one set per preopen, by guest
/// path (a volume's `VolumeImage::guest`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangedPaths {
    pub preopens: Vec<(String, ChangedSet)>,
}

impl ChangedPaths {
    /// Adds what changed later ([`ChangedSet::absorb`], per guest path).
    /// A guest path only one side knows becomes "everything": the other
    /// side did not track it.
    pub fn absorb(&mut self, later: ChangedPaths) {
        let mut later = later.preopens;
        for (guest, set) in self.preopens.iter_mut() {
            match later.iter().position(|(g, _)| g == guest) {
                Some(i) => set.absorb(later.swap_remove(i).1),
                None => *set = ChangedSet::Everything,
            }
        }
        self.preopens.extend(
            later
                .into_iter()
                .map(|(guest, _)| (guest, ChangedSet::Everything)),
        );
    }

    /// The set of the preopen at `guest`; "everything" for a guest path the
    /// context does not know (nothing was tracked for it).
    pub fn for_guest(&self, guest: &str) -> &ChangedSet {
        self.preopens
            .iter()
            .find(|(g, _)| g == guest)
            .map_or(&EVERYTHING, |(_, s)| s)
    }
}

/// One preopen's changes since the last take.
#[derive(Default)]
struct PreopenChanges {
    paths: HashSet<Vec<u8>>,
    everything: bool,
    /// A write through a descriptor cannot be named by its path alone: a
    /// file may have more than one name (a hard link), or an open file's
    /// path could not be had from the host. Sticky for the context's life.
    fd_writes_unattributable: bool,
}

impl PreopenChanges {
    fn note(&mut self, path: &[u8]) {
        if self.everything || self.paths.contains(path) {
            return;
        }
        if self.paths.len() >= MAX_TRACKED_PATHS {
            self.give_up();
            return;
        }
        self.paths.insert(path.to_vec());
    }

    fn give_up(&mut self) {
        self.everything = true;
        // Frees the memory; nothing more is remembered until the take.
        self.paths = HashSet::new();
    }

    fn take(&mut self) -> ChangedSet {
        let set = if self.everything {
            ChangedSet::Everything
        } else {
            ChangedSet::Paths(self.paths.drain().collect())
        };
        self.everything = false;
        set
    }
}

/// The changes of every preopen, by preopen index.
#[derive(Default)]
pub(super) struct ChangeTracker {
    preopens: Vec<PreopenChanges>,
}

impl ChangeTracker {
    pub(super) fn new(preopen_count: usize) -> Self {
        ChangeTracker {
            preopens: (0..preopen_count).map(|_| Default::default()).collect(),
        }
    }

    /// `path` beneath preopen `preopen` may have changed.
    pub(super) fn note(&mut self, preopen: u32, path: &[u8]) {
        if let Some(p) = self.preopens.get_mut(preopen as usize) {
            p.note(path);
        }
    }

    /// Something beneath `preopen` changed that cannot be named.
    pub(super) fn note_everything(&mut self, preopen: u32) {
        if let Some(p) = self.preopens.get_mut(preopen as usize) {
            p.give_up();
        }
    }

    /// From now on a write through a descriptor beneath `preopen` may
    /// change more than the descriptor's own path.
    pub(super) fn fd_writes_unattributable(&mut self, preopen: u32) {
        if let Some(p) = self.preopens.get_mut(preopen as usize) {
            p.fd_writes_unattributable = true;
        }
    }

    /// A write through a descriptor whose file is at `path`.
    fn note_fd_write(&mut self, preopen: u32, path: &[u8]) {
        let Some(p) = self.preopens.get_mut(preopen as usize) else {
            return;
        };
        if p.fd_writes_unattributable {
            p.give_up();
        } else {
            p.note(path);
        }
    }
}

impl WasiCtx {
    /// What changed beneath each preopened directory since the context was
    /// made or this was last called; the tracking starts over. Call it in
    /// the pause, together with capturing the memory, so that the files it
    /// names (read before the vessel runs on) agree with the memory.
    pub fn take_changed(&mut self) -> ChangedPaths {
        let preopens = self
            .state
            .preopens
            .iter()
            .zip(self.changes.preopens.iter_mut())
            .map(|(p, c)| (p.guest_path.clone(), c.take()))
            .collect();
        ChangedPaths { preopens }
    }

    /// Records a write through `fd`, by the path the descriptor holds: a
    /// hash-set lookup, no syscall. Descriptors that are not files beneath
    /// a preopen (stdio, sockets, files that lost their name) change no
    /// volume.
    pub(super) fn note_fd_write(&mut self, fd: u32) {
        if let Some(DescriptorKind::File {
            preopen,
            path,
            detached_contents: None,
            ..
        }) = self.state.fds.get(&fd).map(|d| &d.kind)
        {
            self.changes.note_fd_write(*preopen, path);
        }
    }

    /// Where a change to the entry `path` names beneath directory
    /// descriptor `fd` lands. Resolved before the call that changes it (a
    /// rename may take away the path it was named by), recorded with
    /// [`note_entry_change`](Self::note_entry_change) once the call
    /// succeeded (a failed one changed nothing). The last component is the
    /// entry itself (not followed); the components before it are resolved
    /// as the host sees them, so that a path through a symlink or `..`
    /// records where the change really lands.
    pub(super) fn entry_location(&self, fd: u32, path: &[u8]) -> Option<EntryLocation> {
        let (preopen, dir_rel) = self.dir_location(fd).ok()?;
        Some(EntryLocation {
            preopen,
            path: self.resolve_entry(fd, preopen, &dir_rel, path),
        })
    }

    pub(super) fn note_entry_change(&mut self, at: Option<EntryLocation>) {
        match at {
            Some(EntryLocation {
                preopen,
                path: Some(p),
            }) => self.changes.note(preopen, &p),
            Some(EntryLocation {
                preopen,
                path: None,
            }) => self.changes.note_everything(preopen),
            None => {}
        }
    }

    /// Where the entry `path` names beneath `fd` (at `dir_rel` in its
    /// preopen) lives, relative to the preopen's root; `None` when the host
    /// cannot say (then the caller records "everything").
    fn resolve_entry(&self, fd: u32, preopen: u32, dir_rel: &[u8], path: &[u8]) -> Option<Vec<u8>> {
        let trimmed = trim_trailing_slashes(path);
        let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        if name.is_empty() || name == b"." || name == b".." || trimmed.starts_with(b"/") {
            return None;
        }
        let parent_rel = if parent
            .split(|&b| b == b'/')
            .all(|c| c.is_empty() || c == b".")
        {
            // The directory itself: its path is the host's already (taken
            // when it was opened, refreshed after renames).
            dir_rel.to_vec()
        } else {
            // Through other directories, which may be symlinks: ask the
            // host where they lead (an open and a readlink; only the calls
            // that change names pay this, not writes).
            let Some(Handle::Dir { dir, .. }) = self.handles.get(&fd) else {
                return None;
            };
            let opened = dir.open_dir(super::path::rel_path(parent)).ok()?;
            host_relative_path(&opened, &self.roots.get(preopen as usize)?.canonical)?
        };
        let mut rel = parent_rel;
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name);
        Some(rel)
    }

    /// A hard link was made at `at`: recorded, and from now on writes
    /// through descriptors beneath its preopen are unattributable.
    pub(super) fn note_link_made(&mut self, at: Option<EntryLocation>) {
        if let Some(preopen) = at.as_ref().map(|a| a.preopen) {
            self.changes.fd_writes_unattributable(preopen);
        }
        self.note_entry_change(at);
    }

    /// A file was opened: a creating or truncating open changed it (named
    /// by the path the host gave the new descriptor), and a writable file
    /// with more than one name makes later writes unattributable.
    pub(super) fn note_opened_file(&mut self, fd: u32, changed: bool, multi_linked: bool) {
        let Some(DescriptorKind::File { preopen, path, .. }) =
            self.state.fds.get(&fd).map(|d| &d.kind)
        else {
            return;
        };
        let preopen = *preopen;
        if multi_linked {
            self.changes.fd_writes_unattributable(preopen);
        }
        if changed {
            self.changes.note(preopen, path);
        }
    }
}

/// Where a change beneath a preopen lands: the path relative to its root,
/// or `None` when the host could not say (then: "everything").
pub(super) struct EntryLocation {
    preopen: u32,
    path: Option<Vec<u8>>,
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dock::wasi::abi::*;
    use crate::dock::wasi::{DirMapping, WasiOptions};

    const ROOT_FD: u32 = 3;

    fn ctx_on(dir: &std::path::Path) -> WasiCtx {
        WasiCtx::new(WasiOptions {
            dirs: vec![DirMapping {
                host: dir.to_path_buf(),
                guest: "/data".into(),
            }],
            ..Default::default()
        })
        .unwrap()
    }

    fn paths(list: &[&str]) -> ChangedSet {
        ChangedSet::Paths(list.iter().map(|p| p.as_bytes().to_vec()).collect())
    }

    fn create(ctx: &mut WasiCtx, dirfd: u32, path: &str) -> u32 {
        ctx.path_open(
            dirfd,
            LOOKUPFLAGS_SYMLINK_FOLLOW,
            path.as_bytes(),
            OFLAGS_CREAT,
            RIGHTS_ALL,
            RIGHTS_ALL,
            0,
        )
        .unwrap()
    }

    fn take(ctx: &mut WasiCtx) -> ChangedSet {
        ctx.take_changed().for_guest("/data").clone()
    }

    /// A change through a symlinked directory, `..` or a subdirectory's
    /// descriptor is recorded where it lands, as the host resolves it.
    #[test]
    fn changes_are_recorded_where_they_land() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_on(dir.path());
        ctx.path_create_directory(ROOT_FD, b"a").unwrap();
        ctx.path_symlink(b"a", ROOT_FD, b"s").unwrap();
        assert_eq!(take(&mut ctx), paths(&["a", "s"]));

        let fd = create(&mut ctx, ROOT_FD, "s/f");
        assert_eq!(take(&mut ctx), paths(&["a/f"]));
        ctx.fd_write(fd, b"x", &[]).unwrap();
        assert_eq!(take(&mut ctx), paths(&["a/f"]));

        ctx.path_create_directory(ROOT_FD, b"s/d/").unwrap();
        ctx.path_rename(ROOT_FD, b"a/../s/d", ROOT_FD, b"s/e")
            .unwrap();
        assert_eq!(take(&mut ctx), paths(&["a/d", "a/e"]));

        let sub = ctx
            .path_open(
                ROOT_FD,
                0,
                b"a/e",
                OFLAGS_DIRECTORY,
                RIGHTS_DIRECTORY,
                RIGHTS_DIRECTORY_INHERITING,
                0,
            )
            .unwrap();
        create(&mut ctx, sub, "g");
        ctx.path_create_directory(sub, b"h").unwrap();
        ctx.path_unlink_file(sub, b"h/../g").unwrap();
        ctx.path_unlink_file(ROOT_FD, b"s/f").unwrap();
        assert_eq!(take(&mut ctx), paths(&["a/e/g", "a/e/h", "a/f"]));
        assert_eq!(take(&mut ctx), paths(&[]));
    }

    /// Calls that fail, read, or change only times record nothing.
    #[test]
    fn calls_that_change_no_name_or_content_record_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_on(dir.path());
        let fd = create(&mut ctx, ROOT_FD, "f");
        take(&mut ctx);
        assert!(ctx.path_unlink_file(ROOT_FD, b"missing").is_err());
        assert!(ctx.path_create_directory(ROOT_FD, b"f").is_err());
        assert!(ctx.path_remove_directory(ROOT_FD, b"f").is_err());
        assert!(ctx.path_rename(ROOT_FD, b"missing", ROOT_FD, b"g").is_err());
        ctx.fd_pread(fd, 10, 0).unwrap();
        ctx.fd_filestat_set_times(fd, 5, 5, FSTFLAGS_ATIM | FSTFLAGS_MTIM)
            .unwrap();
        ctx.path_open(ROOT_FD, 0, b"f", 0, RIGHTS_ALL, RIGHTS_ALL, 0)
            .unwrap();
        assert_eq!(take(&mut ctx), paths(&[]));
    }

    /// Once a file has two names, a write through a descriptor opened
    /// before the link changes both: the tracker says "everything".
    #[test]
    fn a_hard_link_makes_descriptor_writes_unattributable() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_on(dir.path());
        let fd = create(&mut ctx, ROOT_FD, "f");
        ctx.path_link(ROOT_FD, 0, b"f", ROOT_FD, b"g").unwrap();
        assert_eq!(take(&mut ctx), paths(&["f", "g"]));
        ctx.fd_write(fd, b"both names", &[]).unwrap();
        assert_eq!(take(&mut ctx), ChangedSet::Everything);
        // Name changes are still named.
        ctx.path_unlink_file(ROOT_FD, b"g").unwrap();
        assert_eq!(take(&mut ctx), paths(&["g"]));

        // A file with two names already, opened for writing in a fresh
        // context, likewise.
        std::fs::hard_link(dir.path().join("f"), dir.path().join("h")).unwrap();
        let mut fresh = ctx_on(dir.path());
        let fd = fresh
            .path_open(ROOT_FD, 0, b"h", 0, RIGHTS_ALL, RIGHTS_ALL, 0)
            .unwrap();
        fresh.fd_pwrite(fd, b"x", 0).unwrap();
        assert_eq!(take(&mut fresh), ChangedSet::Everything);
    }

    /// Past the named limit the tracker gives up for that preopen until
    /// the next take, and starts naming again after it.
    #[test]
    fn too_many_paths_become_everything_until_the_next_take() {
        let mut t = ChangeTracker::new(2);
        for i in 0..MAX_TRACKED_PATHS {
            t.note(0, format!("f{i}").as_bytes());
        }
        t.note(1, b"other");
        assert!(!t.preopens[0].everything);
        t.note(0, b"f0");
        assert!(!t.preopens[0].everything, "a path already named is free");
        t.note(0, b"one more");
        assert_eq!(t.preopens[0].take(), ChangedSet::Everything);
        assert_eq!(t.preopens[1].take(), paths(&["other"]));
        t.note(0, b"again");
        assert_eq!(t.preopens[0].take(), paths(&["again"]));
    }

    /// Changes taken for a checkpoint that was not written are carried
    /// into the next one.
    #[test]
    fn a_skipped_checkpoints_changes_are_absorbed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_on(dir.path());
        create(&mut ctx, ROOT_FD, "f");
        let mut skipped = ctx.take_changed();
        ctx.path_create_directory(ROOT_FD, b"d").unwrap();
        skipped.absorb(ctx.take_changed());
        assert_eq!(skipped.for_guest("/data"), &paths(&["d", "f"]));

        let mut set = paths(&["a"]);
        set.absorb(ChangedSet::Everything);
        assert_eq!(set, ChangedSet::Everything);
        let many = (0..=MAX_TRACKED_PATHS).map(|i| format!("f{i}").into_bytes());
        let mut set = paths(&[]);
        set.absorb(ChangedSet::Paths(many.collect()));
        assert_eq!(set, ChangedSet::Everything);

        // A guest path only one side tracked: everything.
        let mut one = ChangedPaths {
            preopens: vec![("/a".into(), paths(&["x"]))],
        };
        one.absorb(ChangedPaths {
            preopens: vec![("/b".into(), paths(&["y"]))],
        });
        assert_eq!(one.for_guest("/a"), &ChangedSet::Everything);
        assert_eq!(one.for_guest("/b"), &ChangedSet::Everything);
    }

    /// A guest path the context does not know is "everything".
    #[test]
    fn an_unknown_guest_path_is_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx_on(dir.path());
        let changed = ctx.take_changed();
        assert_eq!(changed.for_guest("/data"), &paths(&[]));
        assert_eq!(changed.for_guest("/elsewhere"), &ChangedSet::Everything);
    }
}
