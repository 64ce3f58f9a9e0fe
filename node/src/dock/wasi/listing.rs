//! `fd_readdir`'s listings: each directory descriptor keeps the listing it
//! is reading, sorted by name, so that a listing continued from a cookie
//! (also after a move, from a rebuilt handle) resumes at the same entry.
//!
//! A listing is the memory the node spends for a vessel outside the
//! vessel's own memory limit, so it is kept compact (the names back to
//! back, 16 bytes of index per entry, no `stat` per entry) and bounded:
//! the listings of one vessel's descriptors together stay under
//! [`MAX_LISTINGS_BYTES`]. A new listing that would go over drops the least
//! recently read listings of other descriptors; one of those that is read
//! again lists its directory again, sorted the same way, so its cookies
//! still hold (issue 14, item 10: 40 `fd_readdir` calls on a directory of
//! 200,000 entries took 705 MB and 16 s of host CPU).
//!
//! Descriptors of one directory share one listing while the directory is
//! unchanged: a listing is taken again only if the directory's inode,
//! modification or change time differ from when it was taken, or it was
//! taken less than [`RACY_MARGIN`] after the directory last changed (as
//! git treats a racily clean index entry), so a listing never misses a
//! change, and 40 descriptors of one directory cost one listing.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::{Dir, FileType, MetadataExt};

use super::abi::*;
use super::ctx::{Handle, WasiCtx};

/// The listings of one vessel's open directories together, in bytes. A
/// directory of 500,000 entries with 16-byte names lists in about 16 MiB
/// (32 bytes an entry); more descriptors do not multiply it, and a
/// directory too big for it is refused with `ENOMEM` rather than making the
/// node spend without bound for one vessel.
pub const MAX_LISTINGS_BYTES: usize = 16 << 20;

/// How long after a directory's last change its listing must have been
/// taken to be shared: a directory's times come from the kernel's coarse
/// clock (a tick of up to 10 ms), so a change made in the tick a listing
/// was taken may leave them unchanged. Ten ticks.
const RACY_MARGIN: Duration = Duration::from_millis(100);

/// What one entry costs besides its name: [`Entry`]'s size.
const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// One listed entry; its name is `names[start..start + len]`.
#[derive(Clone, Copy)]
struct Entry {
    ino: u64,
    start: u32,
    len: u16,
    filetype: u8,
}

/// Which directory, as it stood: equal versions list equally, unless the
/// listing was taken racily ([`RACY_MARGIN`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Version {
    fn of(dir: &Dir) -> Result<Version, Errno> {
        let m = dir.dir_metadata().map_err(Errno::from)?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ok(Version {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// One directory's entries: `.` and `..` first, then the rest sorted by
/// name by byte value.
pub(super) struct Listing {
    names: Vec<u8>,
    entries: Vec<Entry>,
    /// The directory as it stood before it was read.
    version: Version,
    /// Whether it was taken long enough after the directory's last change
    /// to be shared by another descriptor (see [`RACY_MARGIN`]).
    settled: bool,
}

/// A descriptor's listing, shared by descriptors of the same directory.
pub(super) struct HeldListing {
    listing: Arc<Listing>,
    /// When it was last read through this descriptor
    /// ([`WasiCtx::listing_tick`]): the least recently read are dropped
    /// first.
    last_read: u64,
}

impl Listing {
    /// Lists `dir` as it stands at `version`, refusing with `ENOMEM` once
    /// it would pass `budget` bytes.
    fn of(dir: &Dir, version: Version, budget: usize) -> Result<Listing, Errno> {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let changed_ns = version.mtime_ns.max(version.ctime_ns);
        let mut l = Listing {
            names: b"...".to_vec(),
            entries: vec![
                entry(version.ino, 0, 1, FILETYPE_DIRECTORY),
                entry(0, 1, 2, FILETYPE_DIRECTORY),
            ],
            version,
            settled: now_ns - changed_ns > RACY_MARGIN.as_nanos() as i128,
        };
        for e in dir.entries().map_err(Errno::from)? {
            let e = e.map_err(Errno::from)?;
            let name = e.file_name();
            let name = name.as_bytes();
            // The type from the directory itself (no stat per entry); an
            // entry that vanished meanwhile is still listed.
            let filetype = e.file_type().map_or(FILETYPE_UNKNOWN, |t| filetype_of(&t));
            let len = u16::try_from(name.len()).map_err(|_| Errno::NAMETOOLONG)?;
            let start = u32::try_from(l.names.len()).map_err(|_| Errno::NOMEM)?;
            l.names.extend_from_slice(name);
            l.entries.push(entry(e.ino(), start, len, filetype));
            if l.bytes() > budget {
                return Err(Errno::NOMEM);
            }
        }
        let Listing { names, entries, .. } = &mut l;
        // Names are unique within a directory: an unstable sort is exact.
        entries[2..].sort_unstable_by(|a, b| name_of(names, a).cmp(name_of(names, b)));
        l.names.shrink_to_fit();
        l.entries.shrink_to_fit();
        Ok(l)
    }

    /// What it holds, in bytes.
    pub(super) fn bytes(&self) -> usize {
        self.names.capacity() + self.entries.capacity() * ENTRY_BYTES
    }

    /// Preview1 dirents from `cookie` on, at most `buf_len` bytes. The
    /// cookie of an entry is its index + 1. A record that does not fit is
    /// cut; the guest sees a full buffer and asks again from that entry's
    /// cookie with a bigger one.
    fn dirents(&self, cookie: u64, buf_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf_len.min(64 * 1024));
        let from = usize::try_from(cookie).unwrap_or(usize::MAX);
        for (i, e) in self.entries.iter().enumerate().skip(from) {
            if out.len() >= buf_len {
                break;
            }
            let name = name_of(&self.names, e);
            let mut rec = [0u8; DIRENT_SIZE];
            rec[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            rec[8..16].copy_from_slice(&e.ino.to_le_bytes());
            rec[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            rec[20] = e.filetype;
            let room = buf_len - out.len();
            out.extend_from_slice(&rec[..DIRENT_SIZE.min(room)]);
            let room = buf_len - out.len();
            out.extend_from_slice(&name[..name.len().min(room)]);
        }
        out
    }
}

fn entry(ino: u64, start: u32, len: u16, filetype: u8) -> Entry {
    Entry {
        ino,
        start,
        len,
        filetype,
    }
}

fn name_of<'a>(names: &'a [u8], e: &Entry) -> &'a [u8] {
    &names[e.start as usize..e.start as usize + e.len as usize]
}

/// The preview1 filetype of a directory entry's type.
fn filetype_of(t: &FileType) -> u8 {
    use cap_std::fs::FileTypeExt;
    if t.is_dir() {
        FILETYPE_DIRECTORY
    } else if t.is_file() {
        FILETYPE_REGULAR_FILE
    } else if t.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if t.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if t.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if t.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

impl WasiCtx {
    /// `fd_readdir`: fills `buf_len` bytes of preview1 dirents starting at
    /// `cookie`. Cookie 0 takes a fresh listing (or shares one of the
    /// unchanged directory); later cookies continue the descriptor's
    /// listing, or take one again if it was dropped for the budget.
    pub fn fd_readdir(&mut self, fd: u32, cookie: u64, buf_len: usize) -> Result<Vec<u8>, Errno> {
        // Listing something that is not a directory: EBADF, as in wasmtime
        // (Linux's getdents says ENOTDIR, Node ENOTCAPABLE; docs/wasi.md).
        self.require(fd, super::rights::Op::FdReaddir)?;
        let Some(Handle::Dir { listing, .. }) = self.handles.get_mut(&fd) else {
            return Err(Errno::BADF);
        };
        if cookie == 0 {
            // Dropped first, so that its bytes do not count against the
            // new one.
            *listing = None;
        }
        if listing.is_none() {
            self.take_listing(fd)?;
        }
        self.listing_tick += 1;
        let tick = self.listing_tick;
        let Some(Handle::Dir {
            listing: Some(held),
            ..
        }) = self.handles.get_mut(&fd)
        else {
            return Err(Errno::BADF);
        };
        held.last_read = tick;
        Ok(held.listing.dirents(cookie, buf_len))
    }

    /// Gives `fd` a listing of its directory: another descriptor's of the
    /// same directory unchanged, or a new one, for which the least
    /// recently read listings of other descriptors are dropped until the
    /// listings fit the budget ([`MAX_LISTINGS_BYTES`]).
    fn take_listing(&mut self, fd: u32) -> Result<(), Errno> {
        let Some(Handle::Dir { dir, .. }) = self.handles.get(&fd) else {
            return Err(Errno::BADF);
        };
        let version = Version::of(dir)?;
        let listing = match self.shareable_listing(version) {
            Some(shared) => shared,
            None => {
                let fresh = Arc::new(Listing::of(dir, version, self.listings_budget)?);
                self.drop_listings_for(fd, fresh.bytes());
                fresh
            }
        };
        if let Some(Handle::Dir { listing: l, .. }) = self.handles.get_mut(&fd) {
            *l = Some(HeldListing {
                listing,
                last_read: 0,
            });
        }
        Ok(())
    }

    /// A listing some descriptor holds of the directory at `version`, if
    /// it was taken safely after the directory's last change.
    fn shareable_listing(&self, version: Version) -> Option<Arc<Listing>> {
        self.held_listings()
            .map(|(_, held)| &held.listing)
            .find(|l| l.settled && l.version == version)
            .cloned()
    }

    /// Drops the least recently read listings of descriptors other than
    /// `fd` until `more` bytes fit the budget.
    fn drop_listings_for(&mut self, fd: u32, more: usize) {
        let mut by_age: Vec<(u64, u32)> = self
            .held_listings()
            .filter(|&(other, _)| other != fd)
            .map(|(other, held)| (held.last_read, other))
            .collect();
        by_age.sort_unstable();
        for (_, other) in by_age {
            if self.listings_bytes() + more <= self.listings_budget {
                break;
            }
            if let Some(Handle::Dir { listing, .. }) = self.handles.get_mut(&other) {
                *listing = None;
            }
        }
    }

    fn held_listings(&self) -> impl Iterator<Item = (u32, &HeldListing)> {
        self.handles.iter().filter_map(|(&fd, h)| match h {
            Handle::Dir {
                listing: Some(held),
                ..
            } => Some((fd, held)),
            _ => None,
        })
    }

    /// The bytes the listings of this vessel's descriptors hold, each
    /// shared one once.
    fn listings_bytes(&self) -> usize {
        let mut seen: Vec<*const Listing> = Vec::new();
        let mut bytes = 0;
        for (_, held) in self.held_listings() {
            let at = Arc::as_ptr(&held.listing);
            if !seen.contains(&at) {
                seen.push(at);
                bytes += held.listing.bytes();
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dock::wasi::{DirMapping, WasiOptions};

    const ROOT_FD: u32 = 3;
    /// A page of a few entries, so that a listing takes many calls.
    const PAGE_BYTES: usize = 200;

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

    fn open_dir(ctx: &mut WasiCtx, path: &str) -> u32 {
        let flags = OFLAGS_DIRECTORY;
        ctx.path_open(
            ROOT_FD,
            0,
            path.as_bytes(),
            flags,
            RIGHTS_DIRECTORY,
            RIGHTS_DIRECTORY_INHERITING,
            0,
        )
        .unwrap()
    }

    /// One page from `*cookie`: the whole records' names; moves `*cookie`
    /// on. `None` at the end of the listing.
    fn page(ctx: &mut WasiCtx, fd: u32, cookie: &mut u64) -> Option<Vec<String>> {
        let out = ctx.fd_readdir(fd, *cookie, PAGE_BYTES).unwrap();
        let mut names = Vec::new();
        let mut at = 0;
        while at + DIRENT_SIZE <= out.len() {
            let next = u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
            let len = u32::from_le_bytes(out[at + 16..at + 20].try_into().unwrap()) as usize;
            if at + DIRENT_SIZE + len > out.len() {
                break;
            }
            let name = &out[at + DIRENT_SIZE..at + DIRENT_SIZE + len];
            names.push(String::from_utf8(name.to_vec()).unwrap());
            *cookie = next;
            at += DIRENT_SIZE + len;
        }
        (out.len() == PAGE_BYTES || !names.is_empty()).then_some(names)
    }

    fn held(ctx: &WasiCtx) -> Vec<u32> {
        ctx.held_listings().map(|(fd, _)| fd).collect()
    }

    fn dirs_of(n: usize) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
            for i in 0..n {
                std::fs::write(root.path().join(d).join(format!("{d}{i:04}")), b"").unwrap();
            }
        }
        root
    }

    /// A descriptor whose listing was dropped for the budget (another
    /// descriptor listed a directory meanwhile) lists its directory again
    /// and continues from its cookie: every entry exactly once, in order.
    #[test]
    fn a_listing_dropped_for_the_budget_continues_where_it_was() {
        let root = dirs_of(60);
        let mut ctx = ctx_on(root.path());
        let (a, b) = (open_dir(&mut ctx, "a"), open_dir(&mut ctx, "b"));
        let mut seen = Vec::new();
        let mut cookie = 0;
        seen.extend(page(&mut ctx, a, &mut cookie).unwrap());
        // Room for one listing, not two.
        ctx.listings_budget = ctx.listings_bytes() * 3 / 2;
        page(&mut ctx, b, &mut 0).unwrap();
        assert_eq!(held(&ctx), [b], "a's listing was not dropped for b's");
        while let Some(names) = page(&mut ctx, a, &mut cookie) {
            seen.extend(names);
        }
        let want: Vec<String> = [".", ".."]
            .into_iter()
            .map(String::from)
            .chain((0..60).map(|i| format!("a{i:04}")))
            .collect();
        assert_eq!(seen, want);
        assert_eq!(held(&ctx), [a]);
    }

    /// A directory whose listing would not fit the budget alone is refused
    /// with ENOMEM, before it is held.
    #[test]
    fn a_directory_over_the_budget_is_refused() {
        let root = dirs_of(60);
        let mut ctx = ctx_on(root.path());
        let a = open_dir(&mut ctx, "a");
        ctx.listings_budget = 500;
        assert_eq!(ctx.fd_readdir(a, 0, PAGE_BYTES), Err(Errno::NOMEM));
        assert!(held(&ctx).is_empty());
    }

    /// A change made after one descriptor's listing is seen by another
    /// descriptor's next cookie 0: the changed directory's listing is not
    /// shared.
    #[test]
    fn a_directory_that_just_changed_is_listed_again() {
        let root = dirs_of(3);
        let mut ctx = ctx_on(root.path());
        let (a1, a2) = (open_dir(&mut ctx, "a"), open_dir(&mut ctx, "a"));
        page(&mut ctx, a1, &mut 0).unwrap();
        let one = ctx.listings_bytes();
        std::fs::write(root.path().join("a/a9999"), b"").unwrap();
        let names = page(&mut ctx, a2, &mut 0).unwrap();
        assert!(names.contains(&"a9999".to_string()), "{names:?}");
        assert!(ctx.listings_bytes() > one, "the stale listing was shared");
    }
}
