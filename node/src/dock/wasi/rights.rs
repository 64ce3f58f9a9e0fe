//! preview1 rights, enforced: which right each call needs, which rights a
//! kind of descriptor can have at all, and how `path_open` passes rights
//! on. Every call checks through [`WasiCtx::require`].
//!
//! The model (docs/wasi.md, *Rights*):
//! - A descriptor's base rights say what it may do. A call that needs a
//!   right the descriptor lacks fails with `ENOTCAPABLE`.
//! - Rights that can never apply to a kind of descriptor (reading a
//!   directory as a stream, seeking stdout) are not a capability question:
//!   the call answers as it would for that kind (`EBADF`, `ESPIPE`,
//!   `ENOTDIR`, ...), as wasmtime does.
//! - `fd_fdstat_set_rights` can only drop rights (`ENOTCAPABLE` otherwise).
//! - `path_open` needs `PATH_OPEN` (and `PATH_CREATE_FILE` for `O_CREAT`,
//!   `PATH_FILESTAT_SET_SIZE` for `O_TRUNC`) of the directory; the rights
//!   it asks for must be among the directory's inheriting rights.
//! - Rights are plain data in the state, so they travel with the vessel.

use protocol::wasi::{Descriptor, DescriptorKind};

use super::abi::*;
use super::ctx::WasiCtx;
use super::sockets::{RIGHTS_CONNECTION, RIGHTS_LISTENER};

/// A call (or part of one) that needs rights of the descriptor it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    FdAdvise,
    FdAllocate,
    FdDatasync,
    FdSync,
    FdFdstatSetFlags,
    FdFilestatGet,
    FdFilestatSetSize,
    FdFilestatSetTimes,
    FdRead,
    FdPread,
    FdWrite,
    FdPwrite,
    /// `fd_seek` that moves the offset.
    FdSeek,
    /// `fd_tell`, and `fd_seek(0, WHENCE_CUR)`.
    FdTell,
    FdReaddir,
    PathOpen,
    /// `path_open` with `O_CREAT`, in addition to `PathOpen`.
    PathOpenCreate,
    /// `path_open` with `O_TRUNC`, in addition to `PathOpen`.
    PathOpenTruncate,
    PathCreateDirectory,
    PathFilestatGet,
    PathFilestatSetTimes,
    PathLinkSource,
    PathLinkTarget,
    PathReadlink,
    PathRemoveDirectory,
    PathRenameSource,
    PathRenameTarget,
    PathSymlink,
    PathUnlinkFile,
    /// A `poll_oneoff` subscription to `EVENTTYPE_FD_READ`.
    PollRead,
    /// A `poll_oneoff` subscription to `EVENTTYPE_FD_WRITE`.
    PollWrite,
    SockAccept,
    SockRecv,
    SockSend,
    SockShutdown,
}

impl Op {
    /// The rights table: what the descriptor must have, as the preview1
    /// specification's `rights` type describes each right.
    pub(super) const fn needs(self) -> u64 {
        match self {
            Op::FdAdvise => RIGHT_FD_ADVISE,
            Op::FdAllocate => RIGHT_FD_ALLOCATE,
            Op::FdDatasync => RIGHT_FD_DATASYNC,
            Op::FdSync => RIGHT_FD_SYNC,
            Op::FdFdstatSetFlags => RIGHT_FD_FDSTAT_SET_FLAGS,
            Op::FdFilestatGet => RIGHT_FD_FILESTAT_GET,
            Op::FdFilestatSetSize => RIGHT_FD_FILESTAT_SET_SIZE,
            Op::FdFilestatSetTimes => RIGHT_FD_FILESTAT_SET_TIMES,
            // "If FD_SEEK is set, includes the right to invoke fd_pread."
            Op::FdRead | Op::SockRecv => RIGHT_FD_READ,
            Op::FdPread => RIGHT_FD_READ | RIGHT_FD_SEEK,
            Op::FdWrite | Op::SockSend => RIGHT_FD_WRITE,
            Op::FdPwrite => RIGHT_FD_WRITE | RIGHT_FD_SEEK,
            Op::FdSeek => RIGHT_FD_SEEK,
            // FD_SEEK implies FD_TELL (see `has_rights`).
            Op::FdTell => RIGHT_FD_TELL,
            Op::FdReaddir => RIGHT_FD_READDIR,
            Op::PathOpen => RIGHT_PATH_OPEN,
            Op::PathOpenCreate => RIGHT_PATH_CREATE_FILE,
            Op::PathOpenTruncate => RIGHT_PATH_FILESTAT_SET_SIZE,
            Op::PathCreateDirectory => RIGHT_PATH_CREATE_DIRECTORY,
            Op::PathFilestatGet => RIGHT_PATH_FILESTAT_GET,
            Op::PathFilestatSetTimes => RIGHT_PATH_FILESTAT_SET_TIMES,
            Op::PathLinkSource => RIGHT_PATH_LINK_SOURCE,
            Op::PathLinkTarget => RIGHT_PATH_LINK_TARGET,
            Op::PathReadlink => RIGHT_PATH_READLINK,
            Op::PathRemoveDirectory => RIGHT_PATH_REMOVE_DIRECTORY,
            Op::PathRenameSource => RIGHT_PATH_RENAME_SOURCE,
            Op::PathRenameTarget => RIGHT_PATH_RENAME_TARGET,
            Op::PathSymlink => RIGHT_PATH_SYMLINK,
            Op::PathUnlinkFile => RIGHT_PATH_UNLINK_FILE,
            // "If FD_READ is set, POLL_FD_READWRITE includes the right to
            // subscribe to FD_READ" (and FD_WRITE likewise).
            Op::PollRead => RIGHT_POLL_FD_READWRITE | RIGHT_FD_READ,
            Op::PollWrite => RIGHT_POLL_FD_READWRITE | RIGHT_FD_WRITE,
            Op::SockAccept => RIGHT_SOCK_ACCEPT,
            Op::SockShutdown => RIGHT_SOCK_SHUTDOWN,
        }
    }
}

/// Every right a regular file can have.
pub(super) const RIGHTS_FILE: u64 = RIGHTS_FILE_READ | RIGHTS_FILE_WRITE;

/// The rights of a file that need a host handle open for writing.
pub(super) const RIGHTS_FILE_NEEDS_WRITE: u64 =
    RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE;

/// The rights a `path_open` can ever hand out (to a file or a directory).
/// Others it is asked for (socket rights, undefined bits) never apply to
/// what it opens and are dropped, as the specification allows.
pub(super) const RIGHTS_OPENABLE: u64 = RIGHTS_DIRECTORY | RIGHTS_FILE;

/// Every right a descriptor of this kind can have. A right outside it is
/// never a capability question (see the module docs).
pub(super) fn rights_of_kind(kind: &DescriptorKind) -> u64 {
    match kind {
        DescriptorKind::Stdin => RIGHTS_STDIN,
        DescriptorKind::Stdout | DescriptorKind::Stderr => RIGHTS_STDOUT,
        DescriptorKind::PreopenRoot { .. } | DescriptorKind::Directory { .. } => RIGHTS_DIRECTORY,
        DescriptorKind::File { .. } => RIGHTS_FILE,
        DescriptorKind::Listener(_) => RIGHTS_LISTENER,
        DescriptorKind::Connection(_) => RIGHTS_CONNECTION,
    }
}

/// Whether `desc` has every right of `needs` that its kind can have.
pub(super) fn has_rights(desc: &Descriptor, needs: u64) -> bool {
    let mut have = desc.rights_base;
    // "FD_SEEK ... implies FD_TELL."
    if have & RIGHT_FD_SEEK != 0 {
        have |= RIGHT_FD_TELL;
    }
    needs & rights_of_kind(&desc.kind) & !have == 0
}

/// What a `path_open` through `dir` gives the new descriptor: checks that
/// every right asked for (and any that the sync flags need) is among the
/// directory's inheriting rights, and returns `(base, inheriting)` as
/// asked for, without rights that never apply to an opened descriptor.
/// The caller narrows `base` further to the kind it opened.
pub(super) fn inherited(
    dir: &Descriptor,
    base: u64,
    inheriting: u64,
    fdflags: u16,
) -> Result<(u64, u64), Errno> {
    let (base, inheriting) = (base & RIGHTS_OPENABLE, inheriting & RIGHTS_OPENABLE);
    let mut wanted = base | inheriting;
    // "If PATH_OPEN is set, FD_DATASYNC includes the right to invoke
    // path_open with FDFLAGS_DSYNC", and FD_SYNC with RSYNC and SYNC.
    if fdflags & FDFLAGS_DSYNC != 0 {
        wanted |= RIGHT_FD_DATASYNC;
    }
    if fdflags & (FDFLAGS_RSYNC | FDFLAGS_SYNC) != 0 {
        wanted |= RIGHT_FD_SYNC;
    }
    if wanted & !dir.rights_inheriting != 0 {
        return Err(Errno::NOTCAPABLE);
    }
    Ok((base, inheriting))
}

/// The base rights of a file opened with `asked`, as far as its host
/// handle allows (a read-only handle cannot write).
pub(super) fn file_base(asked: u64, host_write: bool) -> u64 {
    let mut base = asked & RIGHTS_FILE;
    if !host_write {
        base &= !RIGHTS_FILE_NEEDS_WRITE;
    }
    base
}

/// Whether a `path_open` asking for `base` needs a host handle open for
/// writing. `FD_DATASYNC` does not: `fdatasync` works on a read-only
/// handle, and directories have it (a preopen's own rights open `.`).
pub(super) fn opens_for_write(base: u64) -> bool {
    base & RIGHTS_FILE_NEEDS_WRITE != 0
}

impl WasiCtx {
    /// The one rights check: `fd` must exist (`EBADF`) and have what `op`
    /// needs (`ENOTCAPABLE`), as far as its kind can have it.
    pub(super) fn require(&self, fd: u32, op: Op) -> Result<(), Errno> {
        self.require_rights(fd, op.needs())
    }

    /// As [`require`](Self::require), for a union of several ops' needs.
    pub(super) fn require_rights(&self, fd: u32, needs: u64) -> Result<(), Errno> {
        if has_rights(self.desc(fd)?, needs) {
            Ok(())
        } else {
            Err(Errno::NOTCAPABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(base: u64) -> Descriptor {
        Descriptor {
            kind: DescriptorKind::File {
                preopen: 0,
                path: b"f".to_vec(),
                offset: 0,
                read: true,
                write: true,
                detached_contents: None,
            },
            rights_base: base,
            rights_inheriting: 0,
            fdflags: 0,
        }
    }

    #[test]
    fn a_missing_right_fails_and_an_inapplicable_one_is_not_asked() {
        assert!(has_rights(&file(RIGHT_FD_READ), Op::FdRead.needs()));
        assert!(!has_rights(&file(RIGHT_FD_WRITE), Op::FdRead.needs()));
        // pread needs seek too
        assert!(!has_rights(&file(RIGHT_FD_READ), Op::FdPread.needs()));
        // seek implies tell
        assert!(has_rights(&file(RIGHT_FD_SEEK), Op::FdTell.needs()));
        // path rights never apply to a file: the call itself says ENOTDIR
        assert!(has_rights(&file(0), Op::PathOpen.needs()));
    }

    #[test]
    fn path_open_asks_only_for_what_the_directory_passes_on() {
        let mut dir = file(0);
        dir.kind = DescriptorKind::PreopenRoot { preopen: 0 };
        dir.rights_inheriting = RIGHT_FD_READ | RIGHT_FD_SEEK;
        assert_eq!(
            inherited(&dir, RIGHT_FD_READ | RIGHT_SOCK_ACCEPT, 0, 0),
            Ok((RIGHT_FD_READ, 0))
        );
        assert_eq!(
            inherited(&dir, RIGHT_FD_WRITE, 0, 0),
            Err(Errno::NOTCAPABLE)
        );
        assert_eq!(
            inherited(&dir, 0, RIGHT_FD_WRITE, 0),
            Err(Errno::NOTCAPABLE)
        );
        assert_eq!(
            inherited(&dir, RIGHT_FD_READ, 0, FDFLAGS_DSYNC),
            Err(Errno::NOTCAPABLE)
        );
    }
}
