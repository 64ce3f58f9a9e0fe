//! The `path_*` calls: opening, creating, removing, renaming and linking
//! beneath a directory descriptor. Resolution goes through cap-std, which
//! refuses `..` and absolute symlinks that would leave the directory.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
use cap_std::fs::{Dir, File, MetadataExt, OpenOptions, OpenOptionsExt};
use protocol::limits::MAX_PATH_BYTES;
use protocol::wasi::{Descriptor, DescriptorKind};

use super::abi::*;
use super::ctx::{Handle, WasiCtx};
use super::rights::{self, Op};
use super::stat::{encode_filestat, time_specs};

impl WasiCtx {
    /// Checks a guest path and turns it into a host path relative to `fd`.
    pub(super) fn guest_path<'p>(
        &self,
        fd: u32,
        path: &'p [u8],
    ) -> Result<(&Dir, &'p Path), Errno> {
        let dir = self.dir(fd)?;
        if path.contains(&0) {
            return Err(Errno::INVAL);
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(Errno::NAMETOOLONG);
        }
        if path.is_empty() {
            return Err(Errno::NOENT);
        }
        Ok((dir, rel_path(path)))
    }

    /// The arguments of preview1's `path_open`, decoded.
    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        dirfd: u32,
        lookup: u32,
        path: &[u8],
        oflags: u16,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u16,
    ) -> Result<u32, Errno> {
        let (preopen, dir_rel) = self.dir_location(dirfd)?;
        if oflags & !(OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC) != 0
            || fdflags & !FDFLAGS_ALL != 0
        {
            return Err(Errno::INVAL);
        }
        self.require_rights(dirfd, path_open_needs(oflags))?;
        let (rights_base, rights_inheriting) =
            rights::inherited(self.desc(dirfd)?, rights_base, rights_inheriting, fdflags)?;
        let (dir, p) = self.guest_path(dirfd, path)?;
        let req = OpenRequest {
            preopen,
            lexical: join_lexical(&dir_rel, path),
            follow: lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0,
            read: rights_base & (RIGHT_FD_READ | RIGHT_FD_READDIR) != 0,
            write: rights::opens_for_write(rights_base),
            oflags,
            rights_base,
            rights_inheriting,
            fdflags,
        };
        let fd = self.alloc_fd()?;
        let opened = if oflags & OFLAGS_DIRECTORY != 0 {
            Opened::Dir(open_dir_only(dir, p, &req)?)
        } else {
            open_file_or_dir(dir, p, &req)?
        };
        let root_canon = &self.roots[preopen as usize].canonical;
        let (desc, handle, links, named_by_host) = match opened {
            Opened::Dir(dir) => (
                req.dir_descriptor(&dir, root_canon),
                Handle::Dir { dir, listing: None },
                1,
                true,
            ),
            Opened::File { file, links } => {
                let (desc, named_by_host) = req.file_descriptor(&file, root_canon);
                (desc, Handle::File(file), links, named_by_host)
            }
        };
        self.insert(fd, desc, handle);
        // Creating or truncating changed the file; a writable file under
        // several names (or under a name the host could not confirm) makes
        // writes through it unattributable to one path.
        self.note_opened_file(
            fd,
            oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0,
            req.write && (links > 1 || !named_by_host),
        );
        Ok(fd)
    }

    pub fn path_create_directory(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        self.require(fd, Op::PathCreateDirectory)?;
        let (dir, p) = self.guest_path(fd, path)?;
        let at = self.entry_location(fd, path);
        dir.create_dir(p).map_err(Errno::from)?;
        self.note_entry_change(at);
        Ok(())
    }

    pub fn path_remove_directory(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        self.require(fd, Op::PathRemoveDirectory)?;
        let (dir, p) = self.guest_path(fd, path)?;
        let at = self.entry_location(fd, path);
        dir.remove_dir(p).map_err(Errno::from)?;
        self.note_entry_change(at);
        Ok(())
    }

    pub fn path_unlink_file(&mut self, fd: u32, path: &[u8]) -> Result<(), Errno> {
        self.require(fd, Op::PathUnlinkFile)?;
        let (dir, p) = self.guest_path(fd, path)?;
        // A trailing slash names a directory, which unlink refuses.
        if path.ends_with(b"/") {
            let m = dir.symlink_metadata(p).map_err(Errno::from)?;
            return Err(if m.is_dir() {
                Errno::ISDIR
            } else {
                Errno::NOTDIR
            });
        }
        let at = self.entry_location(fd, path);
        dir.remove_file_or_symlink(p).map_err(Errno::from)?;
        self.note_entry_change(at);
        Ok(())
    }

    pub fn path_rename(
        &mut self,
        fd: u32,
        old: &[u8],
        new_fd: u32,
        new: &[u8],
    ) -> Result<(), Errno> {
        self.require(fd, Op::PathRenameSource)?;
        self.require(new_fd, Op::PathRenameTarget)?;
        let (old_dir, op) = self.guest_path(fd, old)?;
        let (new_dir, np) = self.guest_path(new_fd, new)?;
        let (from, to) = (
            self.entry_location(fd, old),
            self.entry_location(new_fd, new),
        );
        old_dir.rename(op, new_dir, np).map_err(Errno::from)?;
        self.note_entry_change(from);
        self.note_entry_change(to);
        self.refresh_paths();
        Ok(())
    }

    /// After a rename, open descriptors may live under new names; ask the
    /// host where each one is now.
    fn refresh_paths(&mut self) {
        for (fd, desc) in self.state.fds.iter_mut() {
            let (preopen, path) = match &mut desc.kind {
                DescriptorKind::File {
                    preopen,
                    path,
                    detached_contents: None,
                    ..
                } => (*preopen, path),
                DescriptorKind::Directory { preopen, path } => (*preopen, path),
                _ => continue,
            };
            let root = &self.roots[preopen as usize].canonical;
            let fresh = match self.handles.get(fd) {
                Some(Handle::File(f)) => host_relative_path(f, root),
                Some(Handle::Dir { dir, .. }) => host_relative_path(dir, root),
                _ => None,
            };
            if let Some(p) = fresh {
                *path = p;
            }
        }
    }

    pub fn path_symlink(&mut self, target: &[u8], fd: u32, link: &[u8]) -> Result<(), Errno> {
        if target.contains(&0) {
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::PathSymlink)?;
        let (dir, p) = self.guest_path(fd, link)?;
        // Symlinks with absolute targets are refused, as wasmtime does: they
        // can never be followed inside the sandbox.
        if target.starts_with(b"/") {
            return Err(Errno::PERM);
        }
        let at = self.entry_location(fd, link);
        dir.symlink(rel_path(target), p).map_err(Errno::from)?;
        self.note_entry_change(at);
        Ok(())
    }

    pub fn path_readlink(&mut self, fd: u32, path: &[u8]) -> Result<Vec<u8>, Errno> {
        self.require(fd, Op::PathReadlink)?;
        let (dir, p) = self.guest_path(fd, path)?;
        let target = dir.read_link_contents(p).map_err(Errno::from)?;
        Ok(target.as_os_str().as_bytes().to_vec())
    }

    pub fn path_link(
        &mut self,
        fd: u32,
        lookup: u32,
        old: &[u8],
        new_fd: u32,
        new: &[u8],
    ) -> Result<(), Errno> {
        if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            // cap-std links the symlink itself; following is not offered.
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::PathLinkSource)?;
        self.require(new_fd, Op::PathLinkTarget)?;
        let (old_dir, op) = self.guest_path(fd, old)?;
        let (new_dir, np) = self.guest_path(new_fd, new)?;
        let at = self.entry_location(new_fd, new);
        old_dir.hard_link(op, new_dir, np).map_err(Errno::from)?;
        // The file now has two names: a write through a descriptor changes
        // both, and the tracker knows only the descriptor's.
        self.note_link_made(at);
        Ok(())
    }

    pub fn path_filestat(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &[u8],
    ) -> Result<[u8; FILESTAT_SIZE], Errno> {
        self.require(fd, Op::PathFilestatGet)?;
        let (dir, p) = self.guest_path(fd, path)?;
        let m = if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.metadata(p)
        } else {
            dir.symlink_metadata(p)
        }
        .map_err(Errno::from)?;
        Ok(encode_filestat(&m))
    }

    pub fn path_filestat_set_times(
        &mut self,
        fd: u32,
        lookup: u32,
        path: &[u8],
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> Result<(), Errno> {
        let (a, m) = time_specs(atim, mtim, fst)?;
        self.require(fd, Op::PathFilestatSetTimes)?;
        let (dir, p) = self.guest_path(fd, path)?;
        if lookup & LOOKUPFLAGS_SYMLINK_FOLLOW != 0 {
            dir.set_times(p, a, m)
        } else {
            dir.set_symlink_times(p, a, m)
        }
        .map_err(Errno::from)
    }
}

/// One `path_open`, decoded: where it opens and with which rights.
struct OpenRequest {
    preopen: u32,
    /// The path joined lexically to its directory's: used only when the
    /// host cannot say where the opened handle really is.
    lexical: Vec<u8>,
    follow: bool,
    read: bool,
    write: bool,
    oflags: u16,
    rights_base: u64,
    rights_inheriting: u64,
    fdflags: u16,
}

/// What a `path_open` opened: a directory, however it was asked for, or a
/// file.
enum Opened {
    Dir(Dir),
    /// A file, and how many names it has.
    File {
        file: File,
        links: u64,
    },
}

impl OpenRequest {
    /// A directory, however it was opened: where the host says it is, with
    /// directory rights the parent lets it inherit.
    fn dir_descriptor(&self, dir: &Dir, root_canon: &Path) -> Descriptor {
        Descriptor {
            kind: DescriptorKind::Directory {
                preopen: self.preopen,
                path: host_relative_path(dir, root_canon).unwrap_or_else(|| self.lexical.clone()),
            },
            rights_base: self.rights_base & RIGHTS_DIRECTORY,
            rights_inheriting: self.rights_inheriting,
            fdflags: self.fdflags,
        }
    }

    /// A file: where the host says it is, with the file rights asked for
    /// that its host handle allows; and whether the host said where it is
    /// (otherwise its path is the lexical one).
    fn file_descriptor(&self, file: &File, root_canon: &Path) -> (Descriptor, bool) {
        let readable = self.read || !self.write;
        let host_path = host_relative_path(file, root_canon);
        let named_by_host = host_path.is_some();
        let desc = Descriptor {
            kind: DescriptorKind::File {
                preopen: self.preopen,
                path: host_path.unwrap_or_else(|| self.lexical.clone()),
                offset: 0,
                read: readable,
                write: self.write,
                detached_contents: None,
            },
            rights_base: rights::file_base(self.rights_base, self.write),
            rights_inheriting: self.rights_inheriting,
            fdflags: self.fdflags,
        };
        (desc, named_by_host)
    }
}

/// `path_open` with `O_DIRECTORY`: only a directory will do.
fn open_dir_only(dir: &Dir, p: &Path, req: &OpenRequest) -> Result<Dir, Errno> {
    if req.oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 {
        return Err(Errno::INVAL);
    }
    let opened = if req.follow {
        dir.open_dir(p).map_err(Errno::from)?
    } else {
        dir.open_dir_nofollow(p).map_err(|e| {
            // A symlink where no symlink may be followed is ELOOP, as for
            // files (O_NOFOLLOW); cap-std reports ENOTDIR here.
            match dir.symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => Errno::LOOP,
                _ => Errno::from(e),
            }
        })?
    };
    // A directory cannot be opened for writing, as open(2) with O_RDWR.
    if req.write {
        return Err(Errno::ISDIR);
    }
    Ok(opened)
}

/// `path_open` without `O_DIRECTORY`: a file, or a directory when one is
/// there and the open does not write.
/// Every open of a guest path is non-blocking. Opening a FIFO (a host's
/// mount may hold one) for reading blocks in the kernel until a writer
/// comes, where neither a stop nor a node's shutdown can reach the call
/// (issue 14, item 9); with `O_NONBLOCK` it returns at once. Regular files
/// and directories ignore the flag, and the dock reads and writes
/// positionally, so a FIFO opened this way answers `ESPIPE`, never blocks.
pub(super) const OPEN_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

fn open_file_or_dir(dir: &Dir, p: &Path, req: &OpenRequest) -> Result<Opened, Errno> {
    let (oflags, write) = (req.oflags, req.write);
    let mut o = OpenOptions::new();
    o.read(req.read || !write)
        .write(write)
        .create(oflags & OFLAGS_CREAT != 0 && oflags & OFLAGS_EXCL == 0)
        .create_new(oflags & OFLAGS_CREAT != 0 && oflags & OFLAGS_EXCL != 0)
        .truncate(oflags & OFLAGS_TRUNC != 0)
        .follow(if req.follow {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        })
        .maybe_dir(!write)
        .custom_flags(OPEN_NONBLOCK);
    if (oflags & (OFLAGS_CREAT | OFLAGS_TRUNC)) != 0 && !write {
        // Creating or truncating needs a writable open on Linux.
        o.write(true);
    }
    let f = dir.open_with(p, &o).map_err(Errno::from)?;
    let meta = f.metadata().map_err(Errno::from)?;
    if !meta.is_dir() {
        return Ok(Opened::File {
            file: f,
            links: meta.nlink(),
        });
    }
    if write {
        return Err(Errno::ISDIR);
    }
    Ok(Opened::Dir(Dir::from_std_file(f.into_std())))
}

/// What `path_open` with `oflags` needs of its directory.
fn path_open_needs(oflags: u16) -> u64 {
    let mut needs = Op::PathOpen.needs();
    if oflags & OFLAGS_CREAT != 0 {
        needs |= Op::PathOpenCreate.needs();
    }
    if oflags & OFLAGS_TRUNC != 0 {
        needs |= Op::PathOpenTruncate.needs();
    }
    needs
}

pub(super) fn rel_path(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// A path from the state, relative to a preopen's root. Empty is the root
/// itself (a directory opened as "."). It is resolved with cap-std like any
/// guest path, so a state that names `..` or an absolute path cannot reach
/// outside either.
pub(super) fn state_path(bytes: &[u8]) -> &Path {
    if bytes.is_empty() {
        Path::new(".")
    } else {
        rel_path(bytes)
    }
}

/// `dir/path`, with empty and `.` components dropped. Used only when the
/// host cannot say where a handle really is.
fn join_lexical(dir: &[u8], path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in dir.split(|&b| b == b'/').chain(path.split(|&b| b == b'/')) {
        if !c.is_empty() && c != b"." {
            parts.push(c);
        }
    }
    parts.join(&b'/')
}

/// Where an open handle lives now, relative to a preopen's canonical root,
/// as the kernel reports it. `None` when the host cannot say (not Linux) or
/// the handle is no longer beneath the root.
pub(super) fn host_relative_path(handle: &impl AsFd, root: &Path) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd())).ok()?;
    let rel = link.strip_prefix(root).ok()?;
    Some(rel.as_os_str().as_bytes().to_vec())
}
