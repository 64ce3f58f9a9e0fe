//! `pack_volume_changed` against its oracle, `pack_volume`, with the
//! changes tracked by the real WASI layer.

use super::*;
use crate::dock::wasi::abi::*;
use crate::dock::wasi::{ChangedSet, DirMapping, WasiCtx, WasiOptions};

const GUEST: &str = "/data";
/// The preopen's descriptor in a context with no service ports.
const ROOT_FD: u32 = 3;

fn store() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    (dir, store)
}

fn ctx_on(dir: &Path) -> WasiCtx {
    WasiCtx::new(WasiOptions {
        dirs: vec![DirMapping {
            host: dir.to_path_buf(),
            guest: GUEST.into(),
        }],
        ..Default::default()
    })
    .unwrap()
}

/// xorshift64*: a seeded sequence, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Names that exercise the walk's order (`a` and its contents before
/// `a-b`), symlinked directories (`s`) and `..`.
const NAMES: &[&str] = &[
    "a", "b", "a-b", "s", "f", "c", "x", "y", "a", "b", "c", "x", "..", ".",
];
const TARGETS: &[&str] = &["a", "b", "../a", "a/b", "f", "nowhere", "..", "s"];

fn random_path(rng: &mut Rng) -> Vec<u8> {
    // Mostly shallow, so that parents exist and most calls succeed.
    let depth = *rng.pick(&[1, 1, 1, 2, 2, 3]);
    let parts: Vec<&str> = (0..depth).map(|_| *rng.pick(NAMES)).collect();
    parts.join("/").into_bytes()
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    // Empty, small, and more than a chunk (64 KiB).
    let len = *rng.pick(&[0usize, 1, 17, 300, 70_000]);
    let fill = rng.next() as u8;
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// A vessel's view of the volume: the context and what it holds open.
struct Guest {
    ctx: WasiCtx,
    files: Vec<u32>,
    dirs: Vec<u32>,
    links: bool,
}

impl Guest {
    fn dirfd(&self, rng: &mut Rng) -> u32 {
        *rng.pick(&self.dirs)
    }

    fn open(&mut self, rng: &mut Rng, oflags: u16) -> Option<u32> {
        let dirfd = self.dirfd(rng);
        let lookup = if rng.below(4) == 0 {
            0
        } else {
            LOOKUPFLAGS_SYMLINK_FOLLOW
        };
        let fdflags = if rng.below(4) == 0 { FDFLAGS_APPEND } else { 0 };
        let path = random_path(rng);
        // A directory cannot be opened with write rights (EISDIR), so
        // O_DIRECTORY asks for a directory's rights.
        let base = if oflags & OFLAGS_DIRECTORY != 0 {
            RIGHTS_DIRECTORY
        } else {
            RIGHTS_ALL
        };
        let fd = self
            .ctx
            .path_open(dirfd, lookup, &path, oflags, base, RIGHTS_ALL, fdflags)
            .ok()?;
        if oflags & OFLAGS_DIRECTORY != 0 || self.ctx.fd_fdstat(fd).unwrap().0 == FILETYPE_DIRECTORY
        {
            self.dirs.push(fd);
        } else {
            self.files.push(fd);
        }
        Some(fd)
    }

    fn write_through_fd(&mut self, rng: &mut Rng) {
        let Some(&fd) = self
            .files
            .get(rng.below(self.files.len().max(1) as u64) as usize)
        else {
            return;
        };
        let data = random_bytes(rng);
        let _ = match rng.below(4) {
            0 => self.ctx.fd_write(fd, &data, &[]).map(drop),
            1 => self.ctx.fd_pwrite(fd, &data, rng.below(100_000)).map(drop),
            2 => self.ctx.fd_filestat_set_size(fd, rng.below(100_000)),
            _ => self.ctx.fd_allocate(fd, rng.below(1000), rng.below(80_000)),
        };
    }

    fn close_one(&mut self, rng: &mut Rng) {
        if rng.below(2) == 0 && !self.files.is_empty() {
            let i = rng.below(self.files.len() as u64) as usize;
            self.ctx.fd_close(self.files.swap_remove(i)).unwrap();
        } else if self.dirs.len() > 1 {
            let i = 1 + rng.below(self.dirs.len() as u64 - 1) as usize;
            self.ctx.fd_close(self.dirs.swap_remove(i)).unwrap();
        }
    }

    /// One random call; failures are part of the sequence (they must
    /// record nothing wrong either).
    fn step(&mut self, rng: &mut Rng) -> &'static str {
        let (d1, d2) = (self.dirfd(rng), self.dirfd(rng));
        let (p1, p2) = (random_path(rng), random_path(rng));
        match rng.below(15) {
            0..=2 => {
                let oflags = *rng.pick(&[
                    OFLAGS_CREAT,
                    OFLAGS_CREAT | OFLAGS_TRUNC,
                    OFLAGS_TRUNC,
                    OFLAGS_CREAT | OFLAGS_EXCL,
                    0,
                ]);
                if let Some(fd) = self.open(rng, oflags) {
                    let _ = self.ctx.fd_write(fd, &random_bytes(rng), &[]);
                }
                "open and write"
            }
            3 | 4 => {
                self.write_through_fd(rng);
                "write through an open file"
            }
            5 | 6 => {
                let _ = self.ctx.path_create_directory(d1, &p1);
                "mkdir"
            }
            7 => {
                let _ = self.ctx.path_remove_directory(d1, &p1);
                "rmdir"
            }
            8 => {
                let _ = self.ctx.path_unlink_file(d1, &p1);
                "unlink"
            }
            9 => {
                let _ = self.ctx.path_rename(d1, &p1, d2, &p2);
                "rename"
            }
            10 => {
                let target = rng.pick(TARGETS).as_bytes();
                let _ = self.ctx.path_symlink(target, d1, &p1);
                "symlink"
            }
            11 if self.links => {
                let _ = self.ctx.path_link(d1, 0, &p1, d2, &p2);
                "link"
            }
            11 | 12 => {
                if self.dirs.len() < 6 {
                    self.open(rng, OFLAGS_DIRECTORY);
                }
                "open a directory"
            }
            _ => {
                self.close_one(rng);
                "close"
            }
        }
    }
}

/// The oracle: after every few calls through the WASI layer, the volume
/// packed from the tracked changes and the previous image equals the
/// volume packed whole. Without hard links the tracker must also always
/// name the paths (never fall back to "everything"), or the test would
/// pass with a tracker that gave up.
#[test]
fn packing_only_the_tracked_changes_gives_the_whole_pack() {
    let (_s, store) = store();
    for seed in 1..=12u64 {
        let vol = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut guest = Guest {
            ctx: ctx_on(vol.path()),
            files: Vec::new(),
            dirs: vec![ROOT_FD],
            links: seed % 4 == 0,
        };
        let mut previous = pack_volume(&store, vol.path(), GUEST).unwrap();
        let mut ops = Vec::new();
        let (mut named, mut everything, mut most_entries) = (0, 0, 0);
        for step in 0..400 {
            ops.push(guest.step(&mut rng));
            // Sometimes several calls between two checkpoints.
            if rng.below(3) == 0 {
                continue;
            }
            let changed = guest.ctx.take_changed();
            let set = changed.for_guest(GUEST);
            match set {
                ChangedSet::Everything => everything += 1,
                ChangedSet::Paths(p) => named += p.len(),
            }
            assert!(
                guest.links || *set != ChangedSet::Everything,
                "seed {seed} step {step}: gave up without hard links after {ops:?}"
            );
            let incremental = pack_volume_changed(&store, vol.path(), GUEST, &previous, set);
            let whole = pack_volume(&store, vol.path(), GUEST);
            assert_eq!(
                incremental, whole,
                "seed {seed} step {step}: after {ops:?}, changed {set:?}"
            );
            ops.clear();
            if let Ok(whole) = whole {
                most_entries = most_entries.max(whole.entries.len());
                previous = whole;
            }
        }
        eprintln!("seed {seed}: {named} paths named, {everything} times everything");
        // The sequence really changed things, and named them.
        assert!(named > 30, "seed {seed}: only {named} paths named");
        assert!(
            most_entries > 5,
            "seed {seed}: at most {most_entries} entries"
        );
        if !guest.links {
            assert_eq!(everything, 0);
        }
        // A resumed vessel's first checkpoint starts from the image its
        // volume was unpacked from: unpacking then packing gives it back.
        let again = tempfile::tempdir().unwrap();
        let unpacked = again.path().join("vol");
        unpack_volume(&store, &previous, &unpacked).unwrap();
        assert_eq!(pack_volume(&store, &unpacked, GUEST).unwrap(), previous);
    }
}

/// Unchanged paths are not read again: a file changed behind the
/// tracker's back keeps its old entry, and only the named path is read.
#[test]
fn unchanged_paths_keep_their_entries_without_being_read() {
    let (_s, store) = store();
    let vol = tempfile::tempdir().unwrap();
    std::fs::create_dir(vol.path().join("d")).unwrap();
    std::fs::write(vol.path().join("d/kept"), b"old").unwrap();
    std::fs::write(vol.path().join("named"), b"old").unwrap();
    let previous = pack_volume(&store, vol.path(), GUEST).unwrap();
    std::fs::write(vol.path().join("d/kept"), b"new, untracked").unwrap();
    std::fs::write(vol.path().join("named"), b"new").unwrap();
    let set = ChangedSet::Paths([b"named".to_vec()].into());
    let got = pack_volume_changed(&store, vol.path(), GUEST, &previous, &set).unwrap();
    assert_eq!(got.entries[..2], previous.entries[..2]);
    let VolumeEntry::File { path, content } = &got.entries[2] else {
        panic!("{got:?}")
    };
    assert_eq!(path, "named");
    assert_eq!(get_image(&store, content, 100).unwrap(), b"new");
    // "Everything" packs the directory whole, untracked change included.
    let all = pack_volume_changed(
        &store,
        vol.path(),
        GUEST,
        &previous,
        &ChangedSet::Everything,
    );
    assert_eq!(all, pack_volume(&store, vol.path(), GUEST));
}

/// Bad input is refused by name, not packed into a wrong image.
#[test]
fn a_changed_path_that_is_not_plain_or_a_foreign_image_is_refused() {
    let (_s, store) = store();
    let vol = tempfile::tempdir().unwrap();
    let previous = pack_volume(&store, vol.path(), GUEST).unwrap();
    for bad in [&b"../x"[..], b"/abs", b"a//b", b"", b"a/./b"] {
        let set = ChangedSet::Paths([bad.to_vec()].into());
        let err = pack_volume_changed(&store, vol.path(), GUEST, &previous, &set).unwrap_err();
        assert!(err.contains("not a plain relative path"), "{err}");
    }
    let set = ChangedSet::Paths(Default::default());
    let err = pack_volume_changed(&store, vol.path(), "/other", &previous, &set).unwrap_err();
    assert!(
        err.contains("previous image is of the volume at /data"),
        "{err}"
    );
}

/// The size limit holds for the image as a whole, reused entries
/// included, as for a whole pack.
#[test]
fn the_volume_size_limit_counts_the_reused_entries() {
    let (_s, store) = store();
    let vol = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(vol.path().join("big")).unwrap();
    big.set_len(MAX_VOLUME_BYTES - 10).unwrap();
    let previous = pack_volume(&store, vol.path(), GUEST).unwrap();
    std::fs::write(vol.path().join("more"), [1u8; 11]).unwrap();
    let set = ChangedSet::Paths([b"more".to_vec()].into());
    let err = pack_volume_changed(&store, vol.path(), GUEST, &previous, &set).unwrap_err();
    assert_eq!(Err(err), pack_volume(&store, vol.path(), GUEST));
}

/// Issue 14, item 3: an unsigned image from another node with a symlink
/// `a` → a directory outside, and a second symlink `a/x`, must not get
/// `x` created outside the vessel's directory (symlinks are created last,
/// so the second was once made through the first). Nor may a file be
/// written through a symlink that already stands in the directory.
#[test]
fn volume_entries_are_never_created_through_a_symlink() {
    let (_s, store) = store();
    let outside = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let hostile = VolumeImage {
        guest: GUEST.into(),
        entries: vec![
            VolumeEntry::Symlink {
                path: "a".into(),
                target: target.clone(),
            },
            VolumeEntry::Symlink {
                path: "a/x".into(),
                target: "/etc/passwd".into(),
            },
        ],
    };
    let dir = base.path().join("v1");
    let err = unpack_volume(&store, &hostile, &dir).unwrap_err();
    assert!(err.contains("never created through a symlink"), "{err}");
    assert!(std::fs::symlink_metadata(outside.path().join("x")).is_err());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // A directory symlink then a file beneath it: the file comes first
    // (into a real directory `b`), and the symlink then cannot replace it.
    let content = put_image(&mut store.clone(), b"owned").unwrap();
    let hostile = VolumeImage {
        guest: GUEST.into(),
        entries: vec![
            VolumeEntry::Symlink {
                path: "b".into(),
                target,
            },
            VolumeEntry::File {
                path: "b/f".into(),
                content,
            },
        ],
    };
    let dir = base.path().join("v2");
    assert!(unpack_volume(&store, &hostile, &dir).is_err());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read(dir.join("b/f")).unwrap(), b"owned");
}

/// A plain image still unpacks as before: nested directories, files, and
/// symlinks (relative or pointing anywhere: they are only ever resolved by
/// the vessel, inside its sandbox).
#[test]
fn a_plain_volume_unpacks_to_what_was_packed() {
    let (_s, store) = store();
    let vol = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(vol.path().join("d/e")).unwrap();
    std::fs::write(vol.path().join("d/e/f"), b"hello").unwrap();
    std::fs::write(vol.path().join("top"), b"").unwrap();
    std::os::unix::fs::symlink("d/e/f", vol.path().join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", vol.path().join("d/abs")).unwrap();
    let image = pack_volume(&store, vol.path(), GUEST).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("v");
    unpack_volume(&store, &image, &dir).unwrap();
    assert_eq!(pack_volume(&store, &dir, GUEST).unwrap(), image);
}

/// Regression: packing a file (as every checkpoint does with the files a
/// vessel changed) moved its access time, which the vessel can read; the
/// corpus program fd_ops's "atim kept" check failed when a checkpoint fell
/// between its two `fd_filestat_set_times`.
#[test]
fn packing_a_volume_leaves_access_times_alone() {
    let (_s, store) = store();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"hello").unwrap();
    // Two days old: relatime moves an atime that old on any read.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(old)
            .set_modified(old),
    )
    .unwrap();
    drop(f);
    let before = std::fs::metadata(&file).unwrap().accessed().unwrap();
    pack_volume(&store, dir.path(), GUEST).unwrap();
    let after = std::fs::metadata(&file).unwrap().accessed().unwrap();
    assert_eq!(before, after, "packing moved the file's atime");
}
