//! The `fd_*` calls: reading, writing, seeking, syncing, flags, rights,
//! metadata and directory listings of open descriptors. All file I/O is
//! positional, at the offset kept in the state.

use std::io;

use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::fs::{File, FileExt};
use protocol::wasi::DescriptorKind;

use super::abi::*;
use super::ctx::{Handle, WasiCtx};
use super::mem::MAX_IO_BYTES;
use super::rights::Op;
use super::stat::{encode_filestat, filetype_of, time_specs};

impl WasiCtx {
    /// `memory`: the guest's memory, for the owner while a socket read
    /// waits.
    pub fn fd_read(&mut self, fd: u32, len: usize, memory: &[u8]) -> Result<Vec<u8>, Errno> {
        self.require(fd, Op::FdRead)?;
        // A socket's descriptor holds its unread bytes: not cloned.
        match &self.desc(fd)?.kind {
            DescriptorKind::Connection(_) => return self.sock_recv(fd, len, 0, memory),
            // Reading a listener: EBADF, as wasmtime (Linux: ENOTCONN).
            DescriptorKind::Listener(_) => return Err(Errno::BADF),
            _ => {}
        }
        let desc = self.desc(fd)?.clone();
        match desc.kind {
            DescriptorKind::Stdin => self.read_stdin(len),
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => Err(Errno::BADF),
            // A directory is not readable as a stream: EBADF, as in
            // wasmtime (Linux says EISDIR, Node ENOTCAPABLE; docs/wasi.md).
            DescriptorKind::Stdout
            | DescriptorKind::Stderr
            | DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. } => Err(Errno::BADF),
            DescriptorKind::File { offset, read, .. } => {
                if !read {
                    return Err(Errno::BADF);
                }
                let data = pread_up_to(self.file(fd)?, offset, len)?;
                if let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind {
                    *offset += data.len() as u64;
                }
                Ok(data)
            }
        }
    }

    pub fn fd_pread(&mut self, fd: u32, len: usize, offset: u64) -> Result<Vec<u8>, Errno> {
        self.require(fd, Op::FdPread)?;
        match self.desc(fd)?.kind {
            DescriptorKind::File { read, .. } => {
                if !read {
                    return Err(Errno::BADF);
                }
                pread_up_to(self.file(fd)?, offset, len)
            }
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    /// `memory`: the guest's memory, for the owner while a socket write
    /// waits.
    pub fn fd_write(&mut self, fd: u32, data: &[u8], memory: &[u8]) -> Result<usize, Errno> {
        self.require(fd, Op::FdWrite)?;
        match &self.desc(fd)?.kind {
            DescriptorKind::Connection(_) => return self.sock_send(fd, data, memory),
            DescriptorKind::Listener(_) => return Err(Errno::BADF),
            _ => {}
        }
        let desc = self.desc(fd)?.clone();
        match &desc.kind {
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => Err(Errno::BADF),
            DescriptorKind::Stdout | DescriptorKind::Stderr => self.write_stdio(&desc.kind, data),
            DescriptorKind::Stdin
            | DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. } => Err(Errno::BADF),
            DescriptorKind::File { offset, write, .. } => {
                if !write {
                    return Err(Errno::BADF);
                }
                self.note_fd_write(fd);
                let file = self.file(fd)?;
                let at = if desc.fdflags & FDFLAGS_APPEND != 0 {
                    file.metadata().map_err(Errno::from)?.len()
                } else {
                    *offset
                };
                file.write_all_at(data, at).map_err(Errno::from)?;
                if let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind {
                    *offset = at + data.len() as u64;
                }
                Ok(data.len())
            }
        }
    }

    pub fn fd_pwrite(&mut self, fd: u32, data: &[u8], offset: u64) -> Result<usize, Errno> {
        self.require(fd, Op::FdPwrite)?;
        match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => {
                if !write {
                    return Err(Errno::BADF);
                }
                self.note_fd_write(fd);
                self.file(fd)?
                    .write_all_at(data, offset)
                    .map_err(Errno::from)?;
                Ok(data.len())
            }
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_seek(&mut self, fd: u32, delta: i64, whence: u8) -> Result<u64, Errno> {
        if whence > WHENCE_END {
            return Err(Errno::INVAL);
        }
        // Asking where the offset is needs only FD_TELL (the spec's rights).
        let moves = !(delta == 0 && whence == WHENCE_CUR);
        self.require(fd, if moves { Op::FdSeek } else { Op::FdTell })?;
        let size = match &self.desc(fd)?.kind {
            DescriptorKind::File { .. } => self.file(fd)?.metadata().map_err(Errno::from)?.len(),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        };
        let DescriptorKind::File { offset, .. } = &mut self.desc_mut(fd)?.kind else {
            unreachable!()
        };
        let base = match whence {
            WHENCE_SET => 0i128,
            WHENCE_CUR => *offset as i128,
            WHENCE_END => size as i128,
            _ => return Err(Errno::INVAL),
        };
        let target = base + delta as i128;
        if target < 0 || target > i64::MAX as i128 {
            return Err(Errno::INVAL);
        }
        *offset = target as u64;
        Ok(*offset)
    }

    pub fn fd_tell(&mut self, fd: u32) -> Result<u64, Errno> {
        self.require(fd, Op::FdTell)?;
        match &self.desc(fd)?.kind {
            DescriptorKind::File { offset, .. } => Ok(*offset),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_close(&mut self, fd: u32) -> Result<(), Errno> {
        let desc = self.state.fds.remove(&fd).ok_or(Errno::BADF)?;
        self.handles.remove(&fd);
        self.release_socket(&desc);
        Ok(())
    }

    pub fn fd_renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        if !self.state.fds.contains_key(&from) || !self.state.fds.contains_key(&to) {
            return Err(Errno::BADF);
        }
        if from == to {
            return Ok(());
        }
        let desc = self.state.fds.remove(&from).unwrap();
        let handle = self.handles.remove(&from).unwrap();
        if let Some(replaced) = self.state.fds.remove(&to) {
            self.release_socket(&replaced);
        }
        self.insert(to, desc, handle);
        Ok(())
    }

    pub fn fd_sync(&mut self, fd: u32, data_only: bool) -> Result<(), Errno> {
        self.require(
            fd,
            if data_only {
                Op::FdDatasync
            } else {
                Op::FdSync
            },
        )?;
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => if data_only {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(Errno::from),
            // Directories are synced through a handle of their own.
            Some(Handle::Dir { .. }) => Ok(()),
            // Nothing to sync; wasmtime says 0 too (Linux: EINVAL).
            Some(Handle::Socket) => Ok(()),
            // As wasmtime; Linux says EINVAL for a terminal or pipe.
            Some(Handle::Stdio) => Err(Errno::BADF),
            None => Err(Errno::BADF),
        }
    }

    pub fn fd_advise(&mut self, fd: u32, _offset: u64, _len: u64, advice: u8) -> Result<(), Errno> {
        if advice > 5 {
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::FdAdvise)?;
        match self.desc(fd)?.kind {
            DescriptorKind::File { .. } => Ok(()),
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => Err(Errno::BADF),
            _ => Err(Errno::SPIPE),
        }
    }

    pub fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> Result<(), Errno> {
        self.require(fd, Op::FdAllocate)?;
        let write = match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => write,
            DescriptorKind::PreopenRoot { .. }
            | DescriptorKind::Directory { .. }
            | DescriptorKind::Listener(_)
            | DescriptorKind::Connection(_) => return Err(Errno::BADF),
            _ => return Err(Errno::SPIPE),
        };
        if !write {
            return Err(Errno::BADF);
        }
        let end = offset.checked_add(len).ok_or(Errno::FBIG)?;
        if end > i64::MAX as u64 {
            return Err(Errno::FBIG);
        }
        self.note_fd_write(fd);
        let f = self.file(fd)?;
        if f.metadata().map_err(Errno::from)?.len() < end {
            f.set_len(end).map_err(Errno::from)?;
        }
        Ok(())
    }

    pub fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> Result<(), Errno> {
        self.require(fd, Op::FdFilestatSetSize)?;
        let write = match self.desc(fd)?.kind {
            DescriptorKind::File { write, .. } => write,
            // Directories and stdio: EBADF, as wasmtime.
            _ => return Err(Errno::BADF),
        };
        // Not open for writing: EINVAL, as ftruncate(2) on Linux and wasmtime.
        if !write {
            return Err(Errno::INVAL);
        }
        if size > i64::MAX as u64 {
            return Err(Errno::INVAL);
        }
        self.note_fd_write(fd);
        self.file(fd)?.set_len(size).map_err(Errno::from)
    }

    /// `(filetype, fdflags, rights_base, rights_inheriting)`.
    pub fn fd_fdstat(&self, fd: u32) -> Result<(u8, u16, u64, u64), Errno> {
        let desc = self.desc(fd)?;
        let filetype = match &desc.kind {
            DescriptorKind::Stdin | DescriptorKind::Stdout | DescriptorKind::Stderr => {
                FILETYPE_CHARACTER_DEVICE
            }
            DescriptorKind::PreopenRoot { .. } | DescriptorKind::Directory { .. } => {
                FILETYPE_DIRECTORY
            }
            DescriptorKind::File { .. } => {
                filetype_of(&self.file(fd)?.metadata().map_err(Errno::from)?)
            }
            DescriptorKind::Listener(_) | DescriptorKind::Connection(_) => FILETYPE_SOCKET_STREAM,
        };
        Ok((
            filetype,
            desc.fdflags,
            desc.rights_base,
            desc.rights_inheriting,
        ))
    }

    pub fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u16) -> Result<(), Errno> {
        if flags & !FDFLAGS_ALL != 0 {
            return Err(Errno::INVAL);
        }
        self.require(fd, Op::FdFdstatSetFlags)?;
        let desc = self.desc_mut(fd)?;
        // Only append and nonblock can change on an open descriptor; the sync
        // flags are chosen at open time, as on Linux.
        let changeable = FDFLAGS_APPEND | FDFLAGS_NONBLOCK;
        // EINVAL, as wasmtime.
        if (flags ^ desc.fdflags) & !changeable != 0 {
            return Err(Errno::INVAL);
        }
        desc.fdflags = flags;
        Ok(())
    }

    pub fn fd_fdstat_set_rights(
        &mut self,
        fd: u32,
        base: u64,
        inheriting: u64,
    ) -> Result<(), Errno> {
        let desc = self.desc_mut(fd)?;
        // Rights can only be dropped, never gained; what remains is
        // enforced (rights.rs).
        if base & !desc.rights_base != 0 || inheriting & !desc.rights_inheriting != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        desc.rights_base = base;
        desc.rights_inheriting = inheriting;
        Ok(())
    }

    pub fn fd_filestat(&self, fd: u32) -> Result<[u8; FILESTAT_SIZE], Errno> {
        self.require(fd, Op::FdFilestatGet)?;
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => Ok(encode_filestat(&f.metadata().map_err(Errno::from)?)),
            Some(Handle::Dir { dir, .. }) => {
                Ok(encode_filestat(&dir.dir_metadata().map_err(Errno::from)?))
            }
            Some(Handle::Stdio) => {
                let mut out = [0u8; FILESTAT_SIZE];
                out[16] = FILETYPE_CHARACTER_DEVICE;
                out[24..32].copy_from_slice(&1u64.to_le_bytes());
                Ok(out)
            }
            Some(Handle::Socket) => {
                let mut out = [0u8; FILESTAT_SIZE];
                out[16] = FILETYPE_SOCKET_STREAM;
                out[24..32].copy_from_slice(&1u64.to_le_bytes());
                Ok(out)
            }
            None => Err(Errno::BADF),
        }
    }

    pub fn fd_filestat_set_times(
        &mut self,
        fd: u32,
        atim: u64,
        mtim: u64,
        fst: u16,
    ) -> Result<(), Errno> {
        let (a, m) = time_specs(atim, mtim, fst)?;
        self.require(fd, Op::FdFilestatSetTimes)?;
        match self.handles.get(&fd) {
            Some(Handle::File(f)) => {
                let plain = |t: Option<SystemTimeSpec>| {
                    t.map(|t| match t {
                        SystemTimeSpec::SymbolicNow => fs_set_times::SystemTimeSpec::SymbolicNow,
                        SystemTimeSpec::Absolute(at) => {
                            fs_set_times::SystemTimeSpec::Absolute(at.into_std())
                        }
                    })
                };
                fs_set_times::SetTimes::set_times(f, plain(a), plain(m)).map_err(Errno::from)
            }
            Some(Handle::Dir { dir, .. }) => dir.set_times(".", a, m).map_err(Errno::from),
            Some(Handle::Stdio | Handle::Socket) => Err(Errno::BADF),
            None => Err(Errno::BADF),
        }
    }

    pub fn prestat_name(&self, fd: u32) -> Result<&str, Errno> {
        match self.desc(fd)?.kind {
            DescriptorKind::PreopenRoot { preopen } => {
                Ok(&self.state.preopens[preopen as usize].guest_path)
            }
            _ => Err(Errno::BADF),
        }
    }
}

/// Reads up to `len` bytes at `offset`, stopping early only at end of file.
fn pread_up_to(f: &File, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
    // One read never buffers more than this; the guest asks again for more.
    let mut buf = vec![0u8; len.min(MAX_IO_BYTES)];
    let mut filled = 0;
    while filled < buf.len() {
        match f.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
