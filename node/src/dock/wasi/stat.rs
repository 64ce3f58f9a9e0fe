//! Host file metadata in preview1's terms: the filetype byte, the
//! `filestat` record, and the `fst_flags` of the set-times calls.

use std::time::{Duration, UNIX_EPOCH};

use cap_fs_ext::SystemTimeSpec;
use cap_std::fs::MetadataExt;

use super::abi::*;

/// The preview1 filetype of what `m` describes.
pub(super) fn filetype_of(m: &cap_std::fs::Metadata) -> u8 {
    use cap_std::fs::FileTypeExt;
    let ft = m.file_type();
    if ft.is_dir() {
        FILETYPE_DIRECTORY
    } else if ft.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ft.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ft.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ft.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ft.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

/// `m` as preview1's 64-byte `filestat` record.
pub(super) fn encode_filestat(m: &cap_std::fs::Metadata) -> [u8; FILESTAT_SIZE] {
    let mut out = [0u8; FILESTAT_SIZE];
    let ns = |s: i64, n: i64| {
        (s.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(n.max(0) as u64)
    };
    out[0..8].copy_from_slice(&m.dev().to_le_bytes());
    out[8..16].copy_from_slice(&m.ino().to_le_bytes());
    out[16] = filetype_of(m);
    out[24..32].copy_from_slice(&m.nlink().to_le_bytes());
    out[32..40].copy_from_slice(&m.len().to_le_bytes());
    out[40..48].copy_from_slice(&ns(m.atime(), m.atime_nsec()).to_le_bytes());
    out[48..56].copy_from_slice(&ns(m.mtime(), m.mtime_nsec()).to_le_bytes());
    out[56..64].copy_from_slice(&ns(m.ctime(), m.ctime_nsec()).to_le_bytes());
    out
}

/// The access and modification times a set-times call asks for (`None`:
/// leave it as it is); setting a time both to a value and to now is EINVAL.
pub(super) fn time_specs(
    atim: u64,
    mtim: u64,
    fst: u16,
) -> Result<(Option<SystemTimeSpec>, Option<SystemTimeSpec>), Errno> {
    if fst & !(FSTFLAGS_ATIM | FSTFLAGS_ATIM_NOW | FSTFLAGS_MTIM | FSTFLAGS_MTIM_NOW) != 0 {
        return Err(Errno::INVAL);
    }
    let one = |set: u16, now: u16, t: u64| -> Result<Option<SystemTimeSpec>, Errno> {
        match (fst & set != 0, fst & now != 0) {
            (true, true) => Err(Errno::INVAL),
            (true, false) => Ok(Some(SystemTimeSpec::Absolute(
                cap_std::time::SystemTime::from_std(UNIX_EPOCH + Duration::from_nanos(t)),
            ))),
            (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
            (false, false) => Ok(None),
        }
    };
    Ok((
        one(FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW, atim)?,
        one(FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW, mtim)?,
    ))
}
