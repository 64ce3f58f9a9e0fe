//! meshnode patch: linear memory in an anonymous private mapping (Linux).
//!
//! The kernel hands out such a mapping's pages as zeros, and only a page
//! that is written costs memory. A `Vec` (upstream's buffer) writes every
//! zero byte of a new or grown memory itself, so a vessel that declares,
//! or a snapshot that claims, a large memory of zeros cost all of it at
//! once. Growing is `mremap`, which moves page tables, not bytes, and whose
//! new pages are zero too.

use core::sync::atomic::{AtomicUsize, Ordering};

static PAGE_BYTES: AtomicUsize = AtomicUsize::new(0);

fn page_bytes() -> usize {
    let cached = PAGE_BYTES.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let n = if n > 0 { n as usize } else { 4096 };
    PAGE_BYTES.store(n, Ordering::Relaxed);
    n
}

/// `len` rounded up to whole pages; None if that overflows.
pub fn mapping_len(len: usize) -> Option<usize> {
    let page = page_bytes();
    len.checked_add(page - 1).map(|l| l / page * page)
}

/// A fresh zero mapping of `len` bytes (whole pages, `len > 0`).
pub fn map(len: usize) -> Option<*mut u8> {
    // SAFETY: a new anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// The mapping at `ptr` (`old_len` bytes) grown to `new_len` bytes, maybe
/// moved; the new pages are zero. None leaves the old mapping as it was.
///
/// # Safety
/// `ptr` and `old_len` must name a mapping made by [`map`] or `remap`.
pub unsafe fn remap(ptr: *mut u8, old_len: usize, new_len: usize) -> Option<*mut u8> {
    // SAFETY: forwarded to the caller.
    let p = unsafe { libc::mremap(ptr.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// # Safety
/// `ptr` and `len` must name a mapping made by [`map`] or `remap`, not
/// used afterwards.
pub unsafe fn unmap(ptr: *mut u8, len: usize) {
    // SAFETY: forwarded to the caller.
    unsafe { libc::munmap(ptr.cast(), len) };
}
