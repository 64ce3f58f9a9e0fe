//! Network namespaces and TUN devices, with raw syscalls.
//!
//! A namespace is created by a short-lived thread that calls
//! `unshare(CLONE_NEWNET)` and opens `/proc/thread-self/ns/net`; testnet
//! keeps that descriptor, which keeps the namespace alive. Nothing is named
//! in `/run/netns`, so nothing is left behind when testnet exits, even when
//! it is killed: the namespace goes when the last descriptor and the last
//! process in it do (node processes get `PR_SET_PDEATHSIG`).
//!
//! Work inside a namespace happens on a thread that `setns`es into it (the
//! TUN device is opened there, then its descriptor is used from any
//! thread), or in a child process that `setns`es between fork and exec.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A network namespace, kept alive by an open descriptor.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

impl NetNs {
    /// A new, empty network namespace (only `lo`, down).
    pub fn create() -> io::Result<NetNs> {
        std::thread::spawn(|| -> io::Result<NetNs> {
            // SAFETY: unshare affects only this thread, which ends here.
            check(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                "unshare(CLONE_NEWNET)",
            )?;
            let f = File::open("/proc/thread-self/ns/net")?;
            Ok(NetNs { fd: f.into() })
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Moves the calling thread into this namespace (sockets it creates
    /// from then on live here).
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns on a descriptor we own; affects this thread only.
        check(
            unsafe { libc::setns(self.raw(), libc::CLONE_NEWNET) },
            "setns",
        )?;
        Ok(())
    }

    /// Runs `f` on a scoped thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                f()
            })
            .join()
            .map_err(|_| io::Error::other("a namespace thread panicked"))?
        })
    }

    /// A command that runs inside this namespace. With `die_with_parent`,
    /// the child gets SIGKILL when the thread that spawns it ends (testnet
    /// spawns long-lived children from its main thread only).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, die_with_parent: bool) -> Command {
        let mut c = Command::new(program);
        let fd = self.raw();
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// Opens a TUN device named `name` in this namespace (IP packets, no
    /// packet-info header, non-blocking).
    pub fn open_tun(&self, name: &str) -> io::Result<OwnedFd> {
        let name = name.to_string();
        self.run(move || open_tun_here(&name))
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn open_tun_here(name: &str) -> io::Result<OwnedFd> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other(format!(
            "interface name {name:?} is too long"
        )));
    }
    let path = CString::new("/dev/net/tun").unwrap();
    // SAFETY: plain open of a C string.
    let raw = check(
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        },
        "open /dev/net/tun",
    )?;
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) },
        "ioctl(TUNSETIFF)",
    )?;
    Ok(fd)
}

/// Why this machine cannot run testnet, if it cannot: no privilege for
/// namespaces, no TUN, no `ip`.
pub fn capability_problem() -> Option<String> {
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => {
            return Some(format!(
                "cannot create a network namespace ({e}); testnet needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and a kernel with network namespaces"
            ))
        }
    };
    if let Err(e) = ns.open_tun("tnprobe0") {
        return Some(format!(
            "cannot create a TUN device in a namespace ({e}); testnet needs /dev/net/tun (the tun module)"
        ));
    }
    match ns
        .command("ip", false)
        .args(["link", "set", "lo", "up"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip link set lo up` failed in a namespace: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `ip` ({e}); install iproute2")),
    }
}

/// Reads one packet; `Ok(None)` when there is none now.
pub fn read_packet(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: reads into a buffer we own, within its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n as usize))
}

/// Writes one packet (a TUN write injects it into the namespace's stack).
pub fn write_packet(fd: RawFd, pkt: &[u8]) -> io::Result<()> {
    // SAFETY: writes from a slice we own, within its length.
    let n = unsafe { libc::write(fd, pkt.as_ptr().cast(), pkt.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
