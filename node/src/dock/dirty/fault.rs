//! The unsafe half of write tracking: a process-wide table of write-protected
//! ranges, and the `SIGSEGV` handler that notes a write to one of them and
//! lets it through.
//!
//! Everything the handler touches is a fixed static table of atomics, so it
//! is async-signal-safe: no allocation, no lock. A fault outside every
//! registered range goes on to the handler that was there before (Rust's
//! own, which reports a stack overflow), or, with none, to the default
//! action: the process dies of `SIGSEGV` exactly as it would have.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most ranges tracked at once. A node runs at most
/// `MAX_VESSELS_PER_NODE` (256) vessels, each with one tracked memory;
/// twice that leaves room for vessels being replaced. A vessel that finds
/// the table full is simply not tracked: its checkpoints compare the whole
/// memory, as they did before tracking existed.
pub const MAX_TRACKED_RANGES: usize = 512;

const BITS: usize = usize::BITS as usize;

/// One write-protected range: `[start, end)`, page-aligned, and a bitmap of
/// the pages written since the owner last looked (one bit per page).
struct Slot {
    /// Claimed by an owner (set before the range is published).
    claimed: AtomicBool,
    /// 0 while the slot is free or being set up.
    start: AtomicUsize,
    end: AtomicUsize,
    pages: AtomicPtr<AtomicUsize>,
    /// The handler could not unprotect one page (the kernel's limit on
    /// mappings, `vm.max_map_count`, split too far), so it made the whole
    /// range writable: every page counts as written.
    overflow: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    claimed: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    pages: AtomicPtr::new(std::ptr::null_mut()),
    overflow: AtomicBool::new(false),
};

static SLOTS: [Slot; MAX_TRACKED_RANGES] = [FREE; MAX_TRACKED_RANGES];
static PAGE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The `SIGSEGV` action that was installed before ours (None: installing
/// failed, and nothing is tracked).
static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

/// The system's page size: the unit of protection.
pub fn page_bytes() -> usize {
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

/// Installs the handler once per process. False if it could not be.
fn installed() -> bool {
    PREVIOUS
        .get_or_init(|| {
            page_bytes();
            // SAFETY: a zeroed sigaction is a valid value; the handler is
            // async-signal-safe (see `on_fault`).
            unsafe {
                let mut ours: libc::sigaction = std::mem::zeroed();
                ours.sa_sigaction = on_fault as *const () as usize;
                ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut ours.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                (libc::sigaction(libc::SIGSEGV, &ours, &mut previous) == 0).then_some(previous)
            }
        })
        .is_some()
}

/// A registered, write-protected range. Dropping it unprotects the range
/// and frees the slot.
pub struct Protected {
    slot: &'static Slot,
    start: usize,
    end: usize,
    bitmap: Box<[AtomicUsize]>,
}

/// Why a range was not protected: the caller falls back to comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectError {
    /// The handler could not be installed.
    NoHandler,
    /// `MAX_TRACKED_RANGES` ranges are tracked already.
    TableFull,
    /// `mprotect` refused (errno).
    Mprotect(i32),
}

impl Protected {
    /// Write-protects the whole pages of `[start, end)` (both page-aligned,
    /// `start < end`) and notes writes to them from now on.
    ///
    /// # Safety
    /// The range must be memory this process owns and nothing but the
    /// owner's thread writes to it while it is protected: a write from a
    /// system call (not a CPU store) would fail with `EFAULT` instead of
    /// faulting, so the owner touches any page a system call will write
    /// first ([`touch_for_write`]). The range must stay mapped until this
    /// value is dropped.
    pub unsafe fn new(start: usize, end: usize) -> Result<Protected, ProtectError> {
        if !installed() {
            return Err(ProtectError::NoHandler);
        }
        let pages = (end - start) / page_bytes();
        let bitmap: Box<[AtomicUsize]> = (0..pages.div_ceil(BITS))
            .map(|_| AtomicUsize::new(0))
            .collect();
        let slot = claim().ok_or(ProtectError::TableFull)?;
        slot.overflow.store(false, Ordering::Relaxed);
        slot.pages
            .store(bitmap.as_ptr() as *mut AtomicUsize, Ordering::Relaxed);
        slot.end.store(end, Ordering::Relaxed);
        // Published last: the handler matches a range only once it is whole.
        slot.start.store(start, Ordering::Release);
        let p = Protected {
            slot,
            start,
            end,
            bitmap,
        };
        // SAFETY: the caller owns the range.
        unsafe { mprotect(start, end - start, libc::PROT_READ) }.map_err(ProtectError::Mprotect)?;
        Ok(p)
    }

    pub fn start(&self) -> usize {
        self.start
    }

    pub fn end(&self) -> usize {
        self.end
    }

    /// Takes the pages written since the last call (indices from `start`),
    /// and protects them again. None: the handler had to make the whole
    /// range writable, so any page may have been written; the caller drops
    /// this value (and may protect the range anew).
    pub fn take_written(&mut self) -> Option<Vec<usize>> {
        if self.slot.overflow.load(Ordering::Acquire) {
            return None;
        }
        let page = page_bytes();
        let mut written = Vec::new();
        for (w, word) in self.bitmap.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                written.push(w * BITS + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        for run in runs(&written) {
            let at = self.start + run.start * page;
            // SAFETY: within the range this value owns.
            if unsafe { mprotect(at, run.len() * page, libc::PROT_READ) }.is_err() {
                return None;
            }
        }
        Some(written)
    }
}

impl Drop for Protected {
    fn drop(&mut self) {
        // Writable first, then forgotten: a write between the two is still
        // one of ours, never a stray fault.
        // SAFETY: within the range this value owns, which is still mapped.
        let _ = unsafe {
            mprotect(
                self.start,
                self.end - self.start,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        self.slot.start.store(0, Ordering::Release);
        self.slot.end.store(0, Ordering::Relaxed);
        self.slot
            .pages
            .store(std::ptr::null_mut(), Ordering::Relaxed);
        self.slot.claimed.store(false, Ordering::Release);
    }
}

/// Consecutive indices, as ranges (one `mprotect` per run).
fn runs(sorted: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

fn claim() -> Option<&'static Slot> {
    SLOTS.iter().find(|s| {
        s.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// # Safety
/// `[at, at + len)` must be pages this process owns.
unsafe fn mprotect(at: usize, len: usize, prot: libc::c_int) -> Result<(), i32> {
    // SAFETY: forwarded to the caller.
    if unsafe { libc::mprotect(at as *mut libc::c_void, len, prot) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Makes sure each page of `bytes` is writable by a system call: writes each
/// one's first byte back to itself, which, on a protected page, goes
/// through the handler. (`getrandom` or `read` into a protected page would
/// fail with `EFAULT` rather than fault.)
pub fn touch_for_write(bytes: &mut [u8]) {
    let page = page_bytes();
    let base = bytes.as_ptr() as usize;
    let mut at = 0;
    while at < bytes.len() {
        // SAFETY: `at` is within `bytes`, which we borrow mutably.
        unsafe {
            let p = bytes.as_mut_ptr().add(at);
            std::ptr::write_volatile(p, std::ptr::read_volatile(p));
        }
        // The next page's first byte.
        at = (base + at) / page * page + page - base;
    }
}

/// The handler. Async-signal-safe: atomics and `mprotect` only, and it
/// keeps `errno` as it found it.
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: errno is thread-local; reading and writing it is safe.
    let errno = unsafe { *errno_location() };
    let ours = note_write(addr);
    // SAFETY: as above.
    unsafe { *errno_location() = errno };
    if !ours {
        // SAFETY: forwards to the previous action with the kernel's arguments.
        unsafe { chain(signal, info, context) };
    }
}

/// If `addr` is in a registered range: notes its page and makes it
/// writable. False if it is no range of ours.
fn note_write(addr: usize) -> bool {
    let page = PAGE_BYTES.load(Ordering::Relaxed);
    for slot in SLOTS.iter() {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= slot.end.load(Ordering::Relaxed) {
            continue;
        }
        let index = (addr - start) / page;
        let bitmap = slot.pages.load(Ordering::Relaxed);
        // SAFETY: the bitmap lives as long as the range is published, and
        // covers every page of it.
        unsafe { (*bitmap.add(index / BITS)).fetch_or(1 << (index % BITS), Ordering::AcqRel) };
        let at = start + index * page;
        // SAFETY: a page of a registered range.
        if unsafe { mprotect(at, page, libc::PROT_READ | libc::PROT_WRITE) }.is_err() {
            slot.overflow.store(true, Ordering::Release);
            let end = slot.end.load(Ordering::Relaxed);
            // SAFETY: the whole registered range; one mapping fewer, not more.
            let _ = unsafe { mprotect(start, end - start, libc::PROT_READ | libc::PROT_WRITE) };
        }
        return true;
    }
    false
}

/// Hands a fault that is not ours to whoever had `SIGSEGV` before.
///
/// # Safety
/// Called from the handler with the kernel's arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.get().copied().flatten();
    let Some(previous) = previous else {
        return reset_to_default(signal);
    };
    match previous.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => reset_to_default(signal),
        f if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: an SA_SIGINFO handler has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(f) };
            f(signal, info, context)
        }
        f => {
            // SAFETY: a plain handler has this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(signal)
        }
    }
}

/// The default action: returning re-runs the faulting instruction, which
/// now kills the process as if no handler had been there.
fn reset_to_default(signal: libc::c_int) {
    // SAFETY: restoring SIG_DFL is async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(signal, &default, std::ptr::null_mut());
    }
}

#[cfg(target_os = "linux")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: always valid for the calling thread.
    unsafe { libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: always valid for the calling thread.
    unsafe { libc::__error() }
}
