//! The `wasi_snapshot_preview1` ABI: errno values, flags, rights and the byte
//! layouts of the structures the guest passes through linear memory.

use std::io;

/// A preview1 errno. `Errno::SUCCESS` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

macro_rules! errnos {
    ($($name:ident = $value:expr),* $(,)?) => {
        impl Errno { $(pub const $name: Errno = Errno($value);)* }
        /// The preview1 name of an errno, for logs and docs.
        pub fn errno_name(e: Errno) -> &'static str {
            match e.0 { $($value => stringify!($name),)* _ => "UNKNOWN" }
        }
    };
}

errnos! {
    SUCCESS = 0, TOOBIG = 1, ACCES = 2, ADDRINUSE = 3, ADDRNOTAVAIL = 4, AFNOSUPPORT = 5,
    AGAIN = 6, ALREADY = 7, BADF = 8, BADMSG = 9, BUSY = 10, CANCELED = 11, CHILD = 12,
    CONNABORTED = 13, CONNREFUSED = 14, CONNRESET = 15, DEADLK = 16, DESTADDRREQ = 17,
    DOM = 18, DQUOT = 19, EXIST = 20, FAULT = 21, FBIG = 22, HOSTUNREACH = 23, IDRM = 24,
    ILSEQ = 25, INPROGRESS = 26, INTR = 27, INVAL = 28, IO = 29, ISCONN = 30, ISDIR = 31,
    LOOP = 32, MFILE = 33, MLINK = 34, MSGSIZE = 35, MULTIHOP = 36, NAMETOOLONG = 37,
    NETDOWN = 38, NETRESET = 39, NETUNREACH = 40, NFILE = 41, NOBUFS = 42, NODEV = 43,
    NOENT = 44, NOEXEC = 45, NOLCK = 46, NOLINK = 47, NOMEM = 48, NOMSG = 49,
    NOPROTOOPT = 50, NOSPC = 51, NOSYS = 52, NOTCONN = 53, NOTDIR = 54, NOTEMPTY = 55,
    NOTRECOVERABLE = 56, NOTSOCK = 57, NOTSUP = 58, NOTTY = 59, NXIO = 60, OVERFLOW = 61,
    OWNERDEAD = 62, PERM = 63, PIPE = 64, PROTO = 65, PROTONOSUPPORT = 66, PROTOTYPE = 67,
    RANGE = 68, ROFS = 69, SPIPE = 70, SRCH = 71, STALE = 72, TIMEDOUT = 73, TXTBSY = 74,
    XDEV = 75, NOTCAPABLE = 76,
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        if let Some(code) = e.raw_os_error() {
            return from_host_errno(code);
        }
        // cap-std reports a path that would leave the sandbox (through `..`
        // or an absolute symlink) as PermissionDenied with no OS code.
        match e.kind() {
            io::ErrorKind::NotFound => Errno::NOENT,
            io::ErrorKind::PermissionDenied => Errno::PERM,
            io::ErrorKind::AlreadyExists => Errno::EXIST,
            io::ErrorKind::InvalidInput => Errno::INVAL,
            io::ErrorKind::Unsupported => Errno::NOTSUP,
            io::ErrorKind::WouldBlock => Errno::AGAIN,
            io::ErrorKind::Interrupted => Errno::INTR,
            io::ErrorKind::OutOfMemory => Errno::NOMEM,
            io::ErrorKind::BrokenPipe => Errno::PIPE,
            _ => Errno::IO,
        }
    }
}

/// Maps a host (Linux/POSIX) errno to its preview1 value.
pub fn from_host_errno(code: i32) -> Errno {
    use rustix::io::Errno as H;
    let h = H::from_raw_os_error(code);
    let table: &[(H, Errno)] = &[
        (H::TOOBIG, Errno::TOOBIG),
        (H::ACCESS, Errno::ACCES),
        (H::ADDRINUSE, Errno::ADDRINUSE),
        (H::ADDRNOTAVAIL, Errno::ADDRNOTAVAIL),
        (H::AFNOSUPPORT, Errno::AFNOSUPPORT),
        (H::AGAIN, Errno::AGAIN),
        (H::ALREADY, Errno::ALREADY),
        (H::BADF, Errno::BADF),
        (H::BADMSG, Errno::BADMSG),
        (H::BUSY, Errno::BUSY),
        (H::CANCELED, Errno::CANCELED),
        (H::CHILD, Errno::CHILD),
        (H::CONNABORTED, Errno::CONNABORTED),
        (H::CONNREFUSED, Errno::CONNREFUSED),
        (H::CONNRESET, Errno::CONNRESET),
        (H::DEADLK, Errno::DEADLK),
        (H::DESTADDRREQ, Errno::DESTADDRREQ),
        (H::DOM, Errno::DOM),
        (H::DQUOT, Errno::DQUOT),
        (H::EXIST, Errno::EXIST),
        (H::FAULT, Errno::FAULT),
        (H::FBIG, Errno::FBIG),
        (H::HOSTUNREACH, Errno::HOSTUNREACH),
        (H::IDRM, Errno::IDRM),
        (H::ILSEQ, Errno::ILSEQ),
        (H::INPROGRESS, Errno::INPROGRESS),
        (H::INTR, Errno::INTR),
        (H::INVAL, Errno::INVAL),
        (H::IO, Errno::IO),
        (H::ISCONN, Errno::ISCONN),
        (H::ISDIR, Errno::ISDIR),
        (H::LOOP, Errno::LOOP),
        (H::MFILE, Errno::MFILE),
        (H::MLINK, Errno::MLINK),
        (H::MSGSIZE, Errno::MSGSIZE),
        (H::MULTIHOP, Errno::MULTIHOP),
        (H::NAMETOOLONG, Errno::NAMETOOLONG),
        (H::NETDOWN, Errno::NETDOWN),
        (H::NETRESET, Errno::NETRESET),
        (H::NETUNREACH, Errno::NETUNREACH),
        (H::NFILE, Errno::NFILE),
        (H::NOBUFS, Errno::NOBUFS),
        (H::NODEV, Errno::NODEV),
        (H::NOENT, Errno::NOENT),
        (H::NOEXEC, Errno::NOEXEC),
        (H::NOLCK, Errno::NOLCK),
        (H::NOLINK, Errno::NOLINK),
        (H::NOMEM, Errno::NOMEM),
        (H::NOMSG, Errno::NOMSG),
        (H::NOPROTOOPT, Errno::NOPROTOOPT),
        (H::NOSPC, Errno::NOSPC),
        (H::NOSYS, Errno::NOSYS),
        (H::NOTCONN, Errno::NOTCONN),
        (H::NOTDIR, Errno::NOTDIR),
        (H::NOTEMPTY, Errno::NOTEMPTY),
        (H::NOTRECOVERABLE, Errno::NOTRECOVERABLE),
        (H::NOTSOCK, Errno::NOTSOCK),
        (H::NOTSUP, Errno::NOTSUP),
        (H::NOTTY, Errno::NOTTY),
        (H::NXIO, Errno::NXIO),
        (H::OVERFLOW, Errno::OVERFLOW),
        (H::OWNERDEAD, Errno::OWNERDEAD),
        (H::PERM, Errno::PERM),
        (H::PIPE, Errno::PIPE),
        (H::PROTO, Errno::PROTO),
        (H::PROTONOSUPPORT, Errno::PROTONOSUPPORT),
        (H::PROTOTYPE, Errno::PROTOTYPE),
        (H::RANGE, Errno::RANGE),
        (H::ROFS, Errno::ROFS),
        (H::SPIPE, Errno::SPIPE),
        (H::SRCH, Errno::SRCH),
        (H::STALE, Errno::STALE),
        (H::TIMEDOUT, Errno::TIMEDOUT),
        (H::TXTBSY, Errno::TXTBSY),
        (H::XDEV, Errno::XDEV),
    ];
    table
        .iter()
        .find(|(host, _)| *host == h)
        .map(|(_, wasi)| *wasi)
        .unwrap_or(Errno::IO)
}

// File types.
pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

// fdflags.
pub const FDFLAGS_APPEND: u16 = 1 << 0;
pub const FDFLAGS_DSYNC: u16 = 1 << 1;
pub const FDFLAGS_NONBLOCK: u16 = 1 << 2;
pub const FDFLAGS_RSYNC: u16 = 1 << 3;
pub const FDFLAGS_SYNC: u16 = 1 << 4;
pub const FDFLAGS_ALL: u16 = 0x1f;

// oflags.
pub const OFLAGS_CREAT: u16 = 1 << 0;
pub const OFLAGS_DIRECTORY: u16 = 1 << 1;
pub const OFLAGS_EXCL: u16 = 1 << 2;
pub const OFLAGS_TRUNC: u16 = 1 << 3;

// lookupflags.
pub const LOOKUPFLAGS_SYMLINK_FOLLOW: u32 = 1 << 0;

// fstflags.
pub const FSTFLAGS_ATIM: u16 = 1 << 0;
pub const FSTFLAGS_ATIM_NOW: u16 = 1 << 1;
pub const FSTFLAGS_MTIM: u16 = 1 << 2;
pub const FSTFLAGS_MTIM_NOW: u16 = 1 << 3;

// whence.
pub const WHENCE_SET: u8 = 0;
pub const WHENCE_CUR: u8 = 1;
pub const WHENCE_END: u8 = 2;

// clocks.
pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_PROCESS_CPUTIME: u32 = 2;
pub const CLOCK_THREAD_CPUTIME: u32 = 3;

// subscription / event types.
pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1 << 0;
pub const SUBSCRIPTION_SIZE: u32 = 48;
pub const EVENT_SIZE: u32 = 32;

// preopen type.
pub const PREOPENTYPE_DIR: u8 = 0;

/// Size of a `dirent` header; the name follows it.
pub const DIRENT_SIZE: usize = 24;
/// Size of a `filestat`.
pub const FILESTAT_SIZE: usize = 64;
/// Size of an `fdstat`.
pub const FDSTAT_SIZE: usize = 24;

// rights.
pub const RIGHT_FD_DATASYNC: u64 = 1 << 0;
pub const RIGHT_FD_READ: u64 = 1 << 1;
pub const RIGHT_FD_SEEK: u64 = 1 << 2;
pub const RIGHT_FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
pub const RIGHT_FD_SYNC: u64 = 1 << 4;
pub const RIGHT_FD_TELL: u64 = 1 << 5;
pub const RIGHT_FD_WRITE: u64 = 1 << 6;
pub const RIGHT_FD_ADVISE: u64 = 1 << 7;
pub const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
pub const RIGHT_PATH_CREATE_DIRECTORY: u64 = 1 << 9;
pub const RIGHT_PATH_CREATE_FILE: u64 = 1 << 10;
pub const RIGHT_PATH_LINK_SOURCE: u64 = 1 << 11;
pub const RIGHT_PATH_LINK_TARGET: u64 = 1 << 12;
pub const RIGHT_PATH_OPEN: u64 = 1 << 13;
pub const RIGHT_FD_READDIR: u64 = 1 << 14;
pub const RIGHT_PATH_READLINK: u64 = 1 << 15;
pub const RIGHT_PATH_RENAME_SOURCE: u64 = 1 << 16;
pub const RIGHT_PATH_RENAME_TARGET: u64 = 1 << 17;
pub const RIGHT_PATH_FILESTAT_GET: u64 = 1 << 18;
pub const RIGHT_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
pub const RIGHT_PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
pub const RIGHT_FD_FILESTAT_GET: u64 = 1 << 21;
pub const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
pub const RIGHT_FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
pub const RIGHT_PATH_SYMLINK: u64 = 1 << 24;
pub const RIGHT_PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
pub const RIGHT_PATH_UNLINK_FILE: u64 = 1 << 26;
pub const RIGHT_POLL_FD_READWRITE: u64 = 1 << 27;
pub const RIGHT_SOCK_SHUTDOWN: u64 = 1 << 28;
pub const RIGHT_SOCK_ACCEPT: u64 = 1 << 29;
pub const RIGHTS_ALL: u64 = (1 << 30) - 1;

/// The rights of a regular file that read it or look at it. With
/// [`RIGHTS_FILE_WRITE`], every right a file can have; what one gets is
/// decided in `rights.rs`.
pub const RIGHTS_FILE_READ: u64 = RIGHT_FD_READ
    | RIGHT_FD_SEEK
    | RIGHT_FD_TELL
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_ADVISE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_POLL_FD_READWRITE;
/// The rights of a regular file that change it or sync it.
pub const RIGHTS_FILE_WRITE: u64 = RIGHT_FD_DATASYNC
    | RIGHT_FD_SYNC
    | RIGHT_FD_WRITE
    | RIGHT_FD_ALLOCATE
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_FD_FILESTAT_SET_TIMES;
/// Every right a directory can have (a preopen has them all): everything
/// a path operation can need.
pub const RIGHTS_DIRECTORY: u64 = RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_DATASYNC
    | RIGHT_FD_ADVISE
    | RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_OPEN
    | RIGHT_FD_READDIR
    | RIGHT_PATH_READLINK
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_FILESTAT_GET
    | RIGHT_PATH_FILESTAT_SET_SIZE
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE;
/// What a directory lets descriptors opened through it have.
pub const RIGHTS_DIRECTORY_INHERITING: u64 =
    RIGHTS_DIRECTORY | RIGHTS_FILE_READ | RIGHTS_FILE_WRITE;
/// Rights of stdin.
pub const RIGHTS_STDIN: u64 =
    RIGHT_FD_READ | RIGHT_FD_FDSTAT_SET_FLAGS | RIGHT_FD_FILESTAT_GET | RIGHT_POLL_FD_READWRITE;
/// Rights of stdout and stderr.
pub const RIGHTS_STDOUT: u64 =
    RIGHT_FD_WRITE | RIGHT_FD_FDSTAT_SET_FLAGS | RIGHT_FD_FILESTAT_GET | RIGHT_POLL_FD_READWRITE;
