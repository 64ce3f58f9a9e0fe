//! The wasmi side of `wasi_snapshot_preview1`: decodes each call's arguments
//! from linear memory, calls [`WasiCtx`], and encodes the results back.

use wasmi::{Caller, Error, Linker, Memory, Val};

use super::abi::*;
use super::ctx::WasiCtx;
use super::mem::GuestMemory;
use super::poll::Subscription;

/// The module name every preview1 import uses.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// What the host functions need from the store's data.
pub trait WasiView {
    fn wasi(&mut self) -> &mut WasiCtx;
    /// The vessel's exported memory, once instantiated.
    fn memory(&self) -> Option<Memory>;
    /// Called before a call that may block (`poll_oneoff`, `fd_read`), so
    /// that the dock can account for it.
    fn before_blocking(&mut self) {}
    /// A blocking import was re-issued by a rewind (state 2): the rewind is
    /// over, so check that every frame was handed out (docs/rewriter.md
    /// §3.7).
    fn rewind_reissued(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Runs `f` with the guest's memory and the WASI context; turns its errno
/// into the i32 the guest gets back.
fn with_mem<T: WasiView>(
    caller: &mut Caller<'_, T>,
    f: impl FnOnce(&mut GuestMemory<'_>, &mut WasiCtx) -> Result<(), Errno>,
) -> Result<i32, Error> {
    let Some(memory) = caller.data().memory() else {
        return Err(Error::new(
            "the module exports no memory named \"memory\", which WASI needs",
        ));
    };
    let (bytes, data) = memory.data_and_store_mut(caller);
    let mut mem = GuestMemory::new(bytes);
    let r = f(&mut mem, data.wasi());
    // The call gave up its wait for an owner that wants the vessel gone:
    // whatever the call, the run ends here (wait.rs, `Attend::End`).
    if std::mem::take(&mut data.wasi().ended) {
        return Err(Error::new(super::wait::ENDED_BY_OWNER));
    }
    Ok(match r {
        Ok(()) => 0,
        Err(e) => e.0 as i32,
    })
}

/// Runs a blocking import of the rewriter (`poll_oneoff`, `fd_read`,
/// `sock_accept`, `sock_recv`; docs/rewriter.md §3.4) like [`with_mem`],
/// and lets its wait be given up for the vessel's owner: then the call did
/// nothing the guest can see, and the vessel unwinds from inside it (state
/// 1, dummy result). On resume the same call is re-issued (state 2): it
/// sets the state to 0 and runs for real, waiting only for what was left.
fn blocking<T: WasiView>(
    caller: &mut Caller<'_, T>,
    f: impl FnOnce(&mut GuestMemory<'_>, &mut WasiCtx) -> Result<(), Errno>,
) -> Result<i32, Error> {
    use wasm_rewriter::abi::{STATE_EXPORT, STATE_REWINDING, STATE_RUNNING, STATE_UNWINDING};
    let state = caller
        .get_export(STATE_EXPORT)
        .and_then(|e| e.into_global());
    if let Some(g) = state {
        if g.get(&*caller).i32() == Some(STATE_REWINDING) {
            g.set(&mut *caller, Val::I32(STATE_RUNNING))?;
            caller.data_mut().rewind_reissued()?;
        }
    }
    caller.data_mut().wasi().interruptible = state.is_some();
    let r = with_mem(caller, f);
    let ctx = caller.data_mut().wasi();
    ctx.interruptible = false;
    if std::mem::take(&mut ctx.interrupted) {
        if let Some(g) = state {
            g.set(&mut *caller, Val::I32(STATE_UNWINDING))?;
        }
        return Ok(0);
    }
    r
}

/// `poll_oneoff`: reads the subscriptions, waits ([`WasiCtx::poll`]) and
/// writes the events.
fn poll_oneoff(
    mem: &mut GuestMemory<'_>,
    ctx: &mut WasiCtx,
    subs_ptr: u32,
    events_ptr: u32,
    nsubs: u32,
    nevents: u32,
) -> Result<(), Errno> {
    // Each subscription is 48 bytes; a bigger list than this is a guest
    // bug, not a real wait.
    const MAX_SUBSCRIPTIONS: u32 = 4096;
    if nsubs == 0 || nsubs > MAX_SUBSCRIPTIONS {
        return Err(Errno::INVAL);
    }
    mem.slice(subs_ptr, nsubs * SUBSCRIPTION_SIZE)?;
    mem.slice(events_ptr, nsubs * EVENT_SIZE)?;
    mem.slice(nevents, 4)?;
    let mut subs = Vec::with_capacity(nsubs as usize);
    for i in 0..nsubs {
        let at = subs_ptr + i * SUBSCRIPTION_SIZE;
        let userdata = mem.read_u64(at)?;
        let sub = match mem.read_u8(at + 8)? {
            EVENTTYPE_CLOCK => Subscription::Clock {
                id: mem.read_u32(at + 16)?,
                timeout_ns: mem.read_u64(at + 24)?,
                absolute: mem.read_u16(at + 40)? & SUBCLOCKFLAGS_ABSTIME != 0,
            },
            EVENTTYPE_FD_READ => Subscription::FdRead(mem.read_u32(at + 16)?),
            EVENTTYPE_FD_WRITE => Subscription::FdWrite(mem.read_u32(at + 16)?),
            _ => return Err(Errno::INVAL),
        };
        subs.push((userdata, sub));
    }
    let events = ctx.poll(&subs, mem.bytes())?;
    for (i, (userdata, errno, ty, nbytes, flags)) in events.iter().enumerate() {
        let at = events_ptr + i as u32 * EVENT_SIZE;
        let mut rec = [0u8; EVENT_SIZE as usize];
        rec[0..8].copy_from_slice(&userdata.to_le_bytes());
        rec[8..10].copy_from_slice(&errno.0.to_le_bytes());
        rec[10] = *ty;
        rec[16..24].copy_from_slice(&nbytes.to_le_bytes());
        rec[24..26].copy_from_slice(&flags.to_le_bytes());
        mem.write_bytes(at, &rec)?;
    }
    mem.write_u32(nevents, events.len() as u32)
}

/// Every preview1 function, in the order of the specification. Used by the
/// docs test to check that `docs/wasi.md` lists them all.
pub const FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

fn write_strings(
    mem: &mut GuestMemory<'_>,
    list: &[Vec<u8>],
    ptrs: u32,
    buf: u32,
) -> Result<(), Errno> {
    // Guest pointers: every sum is checked, so a list that would run past
    // 4 GiB is EFAULT rather than a wrap-around (or a debug-build panic).
    if list.is_empty() {
        return Ok(());
    }
    let (count, size) = sizes(list);
    mem.slice(ptrs, count.checked_mul(4).ok_or(Errno::FAULT)?)?;
    mem.slice(buf, size)?;
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        mem.write_u32(ptrs + 4 * i as u32, at)?;
        mem.write_bytes(at, s)?;
        at += s.len() as u32;
        mem.write_u8(at, 0)?;
        at += 1;
    }
    Ok(())
}

/// `(count, bytes including NULs)`. Args and env are bounded by
/// `MAX_ARGS_ENV_BYTES` when the context is built, so both fit a u32.
fn sizes(list: &[Vec<u8>]) -> (u32, u32) {
    (
        list.len() as u32,
        list.iter().map(|s| s.len() as u32 + 1).sum(),
    )
}

/// Adds every preview1 function to `linker`.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> Result<(), Error> {
    macro_rules! wasi {
        ($name:literal, |$mem:ident, $ctx:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
            linker.func_wrap(MODULE, $name, |mut caller: Caller<'_, T> $(, $arg: $ty)*| -> Result<i32, Error> {
                with_mem(&mut caller, |$mem, $ctx| $body)
            })?;
        };
    }
    // A blocking import of the rewriter (see `blocking`).
    macro_rules! blocking {
        ($name:literal, |$mem:ident, $ctx:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
            linker.func_wrap(MODULE, $name, |mut caller: Caller<'_, T> $(, $arg: $ty)*| -> Result<i32, Error> {
                blocking(&mut caller, |$mem, $ctx| $body)
            })?;
        };
    }

    wasi!("args_get", |mem, ctx, argv: u32, buf: u32| {
        write_strings(mem, ctx.args(), argv, buf)
    });
    wasi!("args_sizes_get", |mem, ctx, count: u32, size: u32| {
        let (n, s) = sizes(ctx.args());
        mem.write_u32(count, n)?;
        mem.write_u32(size, s)
    });
    wasi!("environ_get", |mem, ctx, env: u32, buf: u32| {
        write_strings(mem, ctx.env(), env, buf)
    });
    wasi!("environ_sizes_get", |mem, ctx, count: u32, size: u32| {
        let (n, s) = sizes(ctx.env());
        mem.write_u32(count, n)?;
        mem.write_u32(size, s)
    });
    wasi!("clock_res_get", |mem, ctx, id: u32, out: u32| {
        mem.write_u64(out, ctx.clock_res(id)?)
    });
    wasi!("clock_time_get", |mem,
                             ctx,
                             id: u32,
                             _precision: u64,
                             out: u32| {
        mem.write_u64(out, ctx.clock_time(id)?)
    });
    wasi!("fd_advise", |_mem,
                        ctx,
                        fd: u32,
                        offset: u64,
                        len: u64,
                        advice: u32| {
        ctx.fd_advise(fd, offset, len, advice as u8)
    });
    wasi!("fd_allocate", |_mem,
                          ctx,
                          fd: u32,
                          offset: u64,
                          len: u64| {
        ctx.fd_allocate(fd, offset, len)
    });
    wasi!("fd_close", |_mem, ctx, fd: u32| { ctx.fd_close(fd) });
    wasi!("fd_datasync", |_mem, ctx, fd: u32| {
        ctx.fd_sync(fd, true)
    });
    wasi!("fd_sync", |_mem, ctx, fd: u32| { ctx.fd_sync(fd, false) });
    wasi!("fd_fdstat_get", |mem, ctx, fd: u32, out: u32| {
        let (filetype, flags, base, inheriting) = ctx.fd_fdstat(fd)?;
        let mut rec = [0u8; FDSTAT_SIZE];
        rec[0] = filetype;
        rec[2..4].copy_from_slice(&flags.to_le_bytes());
        rec[8..16].copy_from_slice(&base.to_le_bytes());
        rec[16..24].copy_from_slice(&inheriting.to_le_bytes());
        mem.write_bytes(out, &rec)
    });
    wasi!("fd_fdstat_set_flags", |_mem, ctx, fd: u32, flags: u32| {
        ctx.fd_fdstat_set_flags(fd, u16::try_from(flags).map_err(|_| Errno::INVAL)?)
    });
    wasi!(
        "fd_fdstat_set_rights",
        |_mem, ctx, fd: u32, base: u64, inheriting: u64| {
            ctx.fd_fdstat_set_rights(fd, base, inheriting)
        }
    );
    wasi!("fd_filestat_get", |mem, ctx, fd: u32, out: u32| {
        mem.write_bytes(out, &ctx.fd_filestat(fd)?)
    });
    wasi!("fd_filestat_set_size", |_mem, ctx, fd: u32, size: u64| {
        ctx.fd_filestat_set_size(fd, size)
    });
    wasi!(
        "fd_filestat_set_times",
        |_mem, ctx, fd: u32, atim: u64, mtim: u64, fst: u32| {
            ctx.fd_filestat_set_times(
                fd,
                atim,
                mtim,
                u16::try_from(fst).map_err(|_| Errno::INVAL)?,
            )
        }
    );
    wasi!("fd_pread", |mem,
                       ctx,
                       fd: u32,
                       iovs: u32,
                       iovs_len: u32,
                       offset: u64,
                       nread: u32| {
        let iovs = mem.iovecs(iovs, iovs_len)?;
        mem.slice(nread, 4)?;
        let want: usize = iovs.iter().map(|&(_, l)| l as usize).sum();
        let data = ctx.fd_pread(fd, want, offset)?;
        mem.scatter(&iovs, &data)?;
        mem.write_u32(nread, data.len() as u32)
    });
    wasi!("fd_prestat_get", |mem, ctx, fd: u32, out: u32| {
        let name_len = ctx.prestat_name(fd)?.len() as u32;
        mem.write_u32(out, PREOPENTYPE_DIR as u32)?;
        mem.write_u32(out + 4, name_len)
    });
    wasi!(
        "fd_prestat_dir_name",
        |mem, ctx, fd: u32, buf: u32, len: u32| {
            let name = ctx.prestat_name(fd)?.as_bytes().to_vec();
            if (len as usize) < name.len() {
                return Err(Errno::NAMETOOLONG);
            }
            mem.write_bytes(buf, &name)
        }
    );
    wasi!("fd_pwrite", |mem,
                        ctx,
                        fd: u32,
                        iovs: u32,
                        iovs_len: u32,
                        offset: u64,
                        nwritten: u32| {
        let iovs = mem.iovecs(iovs, iovs_len)?;
        mem.slice(nwritten, 4)?;
        let data = mem.gather(&iovs)?;
        let n = ctx.fd_pwrite(fd, &data, offset)?;
        mem.write_u32(nwritten, n as u32)
    });
    blocking!("fd_read", |mem,
                          ctx,
                          fd: u32,
                          iovs: u32,
                          iovs_len: u32,
                          nread: u32| {
        let iovs = mem.iovecs(iovs, iovs_len)?;
        // Check the result pointer first: a read that consumed input must
        // be able to say so.
        mem.slice(nread, 4)?;
        let want: usize = iovs.iter().map(|&(_, l)| l as usize).sum();
        let data = ctx.fd_read(fd, want, mem.bytes())?;
        mem.scatter(&iovs, &data)?;
        mem.write_u32(nread, data.len() as u32)
    });
    wasi!("fd_readdir", |mem,
                         ctx,
                         fd: u32,
                         buf: u32,
                         buf_len: u32,
                         cookie: u64,
                         used: u32| {
        // Check the output buffer before listing anything.
        mem.slice(buf, buf_len)?;
        mem.slice(used, 4)?;
        let data = ctx.fd_readdir(fd, cookie, buf_len as usize)?;
        mem.write_bytes(buf, &data)?;
        mem.write_u32(used, data.len() as u32)
    });
    wasi!("fd_renumber", |_mem, ctx, from: u32, to: u32| {
        ctx.fd_renumber(from, to)
    });
    wasi!("fd_seek", |mem,
                      ctx,
                      fd: u32,
                      delta: i64,
                      whence: u32,
                      out: u32| {
        mem.slice(out, 8)?;
        let pos = ctx.fd_seek(fd, delta, u8::try_from(whence).map_err(|_| Errno::INVAL)?)?;
        mem.write_u64(out, pos)
    });
    wasi!("fd_tell", |mem, ctx, fd: u32, out: u32| {
        mem.write_u64(out, ctx.fd_tell(fd)?)
    });
    wasi!("fd_write", |mem,
                       ctx,
                       fd: u32,
                       iovs: u32,
                       iovs_len: u32,
                       nwritten: u32| {
        let iovs = mem.iovecs(iovs, iovs_len)?;
        // Check the result pointer first: a write that happened must be
        // able to say so.
        mem.slice(nwritten, 4)?;
        let data = mem.gather(&iovs)?;
        let n = ctx.fd_write(fd, &data, mem.bytes())?;
        mem.write_u32(nwritten, n as u32)
    });
    wasi!(
        "path_create_directory",
        |mem, ctx, fd: u32, path: u32, path_len: u32| {
            let p = mem.slice(path, path_len)?.to_vec();
            ctx.path_create_directory(fd, &p)
        }
    );
    wasi!(
        "path_filestat_get",
        |mem, ctx, fd: u32, flags: u32, path: u32, path_len: u32, out: u32| {
            let p = mem.slice(path, path_len)?.to_vec();
            let st = ctx.path_filestat(fd, flags, &p)?;
            mem.write_bytes(out, &st)
        }
    );
    wasi!(
        "path_filestat_set_times",
        |mem,
         ctx,
         fd: u32,
         flags: u32,
         path: u32,
         path_len: u32,
         atim: u64,
         mtim: u64,
         fst: u32| {
            let p = mem.slice(path, path_len)?.to_vec();
            ctx.path_filestat_set_times(
                fd,
                flags,
                &p,
                atim,
                mtim,
                u16::try_from(fst).map_err(|_| Errno::INVAL)?,
            )
        }
    );
    wasi!("path_link", |mem,
                        ctx,
                        old_fd: u32,
                        flags: u32,
                        old: u32,
                        old_len: u32,
                        new_fd: u32,
                        new: u32,
                        new_len: u32| {
        let o = mem.slice(old, old_len)?.to_vec();
        let n = mem.slice(new, new_len)?.to_vec();
        ctx.path_link(old_fd, flags, &o, new_fd, &n)
    });
    wasi!("path_open", |mem,
                        ctx,
                        fd: u32,
                        lookup: u32,
                        path: u32,
                        path_len: u32,
                        oflags: u32,
                        base: u64,
                        inheriting: u64,
                        fdflags: u32,
                        out: u32| {
        let p = mem.slice(path, path_len)?.to_vec();
        mem.slice(out, 4)?;
        let oflags = u16::try_from(oflags).map_err(|_| Errno::INVAL)?;
        let fdflags = u16::try_from(fdflags).map_err(|_| Errno::INVAL)?;
        let new_fd = ctx.path_open(fd, lookup, &p, oflags, base, inheriting, fdflags)?;
        mem.write_u32(out, new_fd)
    });
    wasi!("path_readlink", |mem,
                            ctx,
                            fd: u32,
                            path: u32,
                            path_len: u32,
                            buf: u32,
                            buf_len: u32,
                            used: u32| {
        let p = mem.slice(path, path_len)?.to_vec();
        mem.slice(buf, buf_len)?;
        mem.slice(used, 4)?;
        let target = ctx.path_readlink(fd, &p)?;
        let n = target.len().min(buf_len as usize);
        mem.write_bytes(buf, &target[..n])?;
        mem.write_u32(used, n as u32)
    });
    wasi!(
        "path_remove_directory",
        |mem, ctx, fd: u32, path: u32, path_len: u32| {
            let p = mem.slice(path, path_len)?.to_vec();
            ctx.path_remove_directory(fd, &p)
        }
    );
    wasi!("path_rename", |mem,
                          ctx,
                          fd: u32,
                          old: u32,
                          old_len: u32,
                          new_fd: u32,
                          new: u32,
                          new_len: u32| {
        let o = mem.slice(old, old_len)?.to_vec();
        let n = mem.slice(new, new_len)?.to_vec();
        ctx.path_rename(fd, &o, new_fd, &n)
    });
    wasi!("path_symlink", |mem,
                           ctx,
                           old: u32,
                           old_len: u32,
                           fd: u32,
                           new: u32,
                           new_len: u32| {
        let o = mem.slice(old, old_len)?.to_vec();
        let n = mem.slice(new, new_len)?.to_vec();
        ctx.path_symlink(&o, fd, &n)
    });
    wasi!(
        "path_unlink_file",
        |mem, ctx, fd: u32, path: u32, path_len: u32| {
            let p = mem.slice(path, path_len)?.to_vec();
            ctx.path_unlink_file(fd, &p)
        }
    );
    blocking!("poll_oneoff", |mem,
                              ctx,
                              subs_ptr: u32,
                              events_ptr: u32,
                              nsubs: u32,
                              nevents: u32| {
        poll_oneoff(mem, ctx, subs_ptr, events_ptr, nsubs, nevents)
    });
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_caller: Caller<'_, T>, code: u32| -> Result<(), Error> {
            // wasmi unwinds the whole call with this; the dock reads the status.
            Err(Error::i32_exit(code as i32))
        },
    )?;
    // preview1 dropped signals; ENOTSUP as in wasmtime (Node raises it).
    wasi!("proc_raise", |_mem, _ctx, _sig: u32| { Err(Errno::NOTSUP) });
    linker.func_wrap(MODULE, "sched_yield", |_caller: Caller<'_, T>| -> i32 {
        std::thread::yield_now();
        0
    })?;
    wasi!("random_get", |mem, _ctx, buf: u32, len: u32| {
        let out = mem.slice_mut(buf, len)?;
        getrandom::fill(out).map_err(|_| Errno::IO)
    });
    blocking!("sock_accept", |mem, ctx, fd: u32, flags: u32, out: u32| {
        // Check the result pointer first: an accepted connection must be
        // able to be reported.
        mem.slice(out, 4)?;
        let flags = u16::try_from(flags).map_err(|_| Errno::INVAL)?;
        let new_fd = ctx.sock_accept(fd, flags, mem.bytes())?;
        mem.write_u32(out, new_fd)
    });
    blocking!("sock_recv", |mem,
                            ctx,
                            fd: u32,
                            ri: u32,
                            ri_len: u32,
                            flags: u32,
                            nread: u32,
                            oflags: u32| {
        let iovs = mem.iovecs(ri, ri_len)?;
        // Check the result pointers first: bytes taken must be reported.
        mem.slice(nread, 4)?;
        mem.slice(oflags, 2)?;
        let flags = u16::try_from(flags).map_err(|_| Errno::INVAL)?;
        let want: usize = iovs.iter().map(|&(_, l)| l as usize).sum();
        let data = ctx.sock_recv(fd, want, flags, mem.bytes())?;
        mem.scatter(&iovs, &data)?;
        mem.write_u32(nread, data.len() as u32)?;
        // roflags: RECV_DATA_TRUNCATED never applies to a stream.
        mem.write_bytes(oflags, &0u16.to_le_bytes())
    });
    wasi!("sock_send", |mem,
                        ctx,
                        fd: u32,
                        si: u32,
                        si_len: u32,
                        _flags: u32,
                        nwritten: u32| {
        // siflags has no flags defined; wasmtime ignores it, and so do we.
        let iovs = mem.iovecs(si, si_len)?;
        mem.slice(nwritten, 4)?;
        let data = mem.gather(&iovs)?;
        let n = ctx.sock_send(fd, &data, mem.bytes())?;
        mem.write_u32(nwritten, n as u32)
    });
    wasi!("sock_shutdown", |_mem, ctx, fd: u32, how: u32| {
        ctx.sock_shutdown(fd, u8::try_from(how).map_err(|_| Errno::INVAL)?)
    });
    Ok(())
}
