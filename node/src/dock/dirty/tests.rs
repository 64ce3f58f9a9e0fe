use std::alloc::{alloc_zeroed, dealloc, Layout};

use super::*;

/// A zeroed buffer at a page boundary plus `skew` bytes, freed on drop.
struct Buffer {
    base: *mut u8,
    layout: Layout,
    skew: usize,
    len: usize,
}

impl Buffer {
    fn new(len: usize, skew: usize) -> Buffer {
        let layout = Layout::from_size_align(len + skew, page_bytes()).unwrap();
        // SAFETY: a non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null());
        Buffer {
            base,
            layout,
            skew,
            len,
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: within the allocation, borrowed through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(self.skew), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}

const MIB: usize = 1024 * 1024;

fn chunks(w: Written) -> Vec<usize> {
    match w {
        Written::Chunks(c) => c,
        Written::All => panic!("expected chunks, got All"),
    }
}

#[test]
fn a_look_names_exactly_the_chunks_written_since_the_last() {
    let mut buf = Buffer::new(4 * MIB, 0);
    let t = WriteTracker::default();
    let (first, mark) = t.look(buf.bytes(), None);
    assert_eq!(
        first,
        Written::All,
        "nothing is known before the first look"
    );
    assert!(t.is_armed(), "refused: {:?}", t.last_refusal());
    let mem = buf.bytes();
    mem[5] = 1; // chunk 0
    mem[3 * CHUNK_BYTES + 100] = 2; // chunk 3
    mem[40 * CHUNK_BYTES - 1] = 3; // chunk 39
    mem[40 * CHUNK_BYTES] = 4; // chunk 40
    let (written, mark) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), vec![0, 3, 39, 40]);
    // The writes went through, and nothing was written since.
    assert_eq!(buf.bytes()[40 * CHUNK_BYTES], 4);
    let (written, mark) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), Vec::<usize>::new());
    // Pages protected again by the last look fault again.
    buf.bytes()[3 * CHUNK_BYTES + 7] = 9;
    let (written, _) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), vec![3]);
}

#[test]
fn memory_off_a_page_boundary_always_names_its_end_chunks() {
    let mut buf = Buffer::new(2 * MIB, 16);
    let t = WriteTracker::default();
    let (_, mark) = t.look(buf.bytes(), None);
    // The first 4080 bytes and the last 16 share pages with other data and
    // are never protected: their chunks are always candidates.
    buf.bytes()[0] = 1;
    buf.bytes()[2 * MIB - 1] = 1;
    buf.bytes()[10 * CHUNK_BYTES] = 1;
    let (written, _) = t.look(buf.bytes(), Some(mark));
    // Byte 16 of the memory is its first at a page boundary, so the page
    // holding the first byte of chunk 10 starts 16 bytes into chunk 9:
    // both are named (and the compare finds chunk 9 unchanged).
    assert_eq!(chunks(written), vec![0, 9, 10, 31]);
}

#[test]
fn a_mark_from_another_look_sequence_gets_all() {
    let mut buf = Buffer::new(MIB, 0);
    let (a, b) = (WriteTracker::default(), WriteTracker::default());
    let (_, mark_a) = a.look(buf.bytes(), None);
    drop(a);
    let (_, _) = b.look(buf.bytes(), None);
    let (written, _) = b.look(buf.bytes(), Some(mark_a));
    assert_eq!(written, Written::All);
}

#[test]
fn an_older_mark_than_the_tracking_gets_all() {
    let mut buf = Buffer::new(MIB, 0);
    let t = WriteTracker::default();
    let (_, old) = t.look(buf.bytes(), None);
    t.disarm();
    buf.bytes()[100] = 1; // not tracked: disarmed
    let (written, _) = t.look(buf.bytes(), Some(old));
    assert_eq!(written, Written::All);
}

#[test]
fn one_heavy_interval_keeps_tracking() {
    // A program that fills its memory once, then writes little.
    let mut buf = Buffer::new(MIB, 0);
    let t = WriteTracker::default();
    let (_, mark) = t.look(buf.bytes(), None);
    buf.bytes().fill(7);
    let (written, mark) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written).len(), MIB / CHUNK_BYTES);
    assert!(t.is_armed(), "one heavy look is not a heavy writer");
    buf.bytes()[CHUNK_BYTES] = 1;
    let (written, _) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), vec![1]);
}

#[test]
fn a_heavy_writer_rests_untracked_then_is_tracked_again() {
    let mut buf = Buffer::new(MIB, 0);
    let t = WriteTracker::default();
    let (_, mut mark) = t.look(buf.bytes(), None);
    for round in 0..HEAVY_LOOKS_TO_REST {
        buf.bytes().fill(round as u8 + 1);
        let (written, m) = t.look(buf.bytes(), Some(mark));
        mark = m;
        assert_eq!(chunks(written).len(), MIB / CHUNK_BYTES, "complete");
    }
    assert!(!t.is_armed(), "most pages written, again: tracking rests");
    for _ in 0..REST_LOOKS_AFTER_HEAVY {
        let (written, m) = t.look(buf.bytes(), Some(mark));
        mark = m;
        assert_eq!(written, Written::All);
    }
    assert!(t.is_armed(), "tried again after resting");
    buf.bytes()[0] = 1;
    let (written, _) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), vec![0]);
}

#[test]
fn a_system_call_can_write_a_protected_page_once_touched() {
    let mut buf = Buffer::new(MIB, 0);
    let t = WriteTracker::default();
    let (_, mark) = t.look(buf.bytes(), None);
    let target = &mut buf.bytes()[5 * CHUNK_BYTES..5 * CHUNK_BYTES + 3 * page_bytes()];
    touch_for_write(target);
    // getrandom(2) writes from the kernel: untouched, it would be EFAULT.
    getrandom::fill(target).expect("the kernel writes a touched page");
    let (written, _) = t.look(buf.bytes(), Some(mark));
    assert_eq!(chunks(written), vec![5]);
}

#[test]
fn trackers_on_many_threads_see_only_their_own_writes() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut buf = Buffer::new(MIB, 0);
                let t = WriteTracker::default();
                let (_, mut mark) = t.look(buf.bytes(), None);
                for round in 0..50 {
                    let c = (i * 3 + round) % (MIB / CHUNK_BYTES);
                    buf.bytes()[c * CHUNK_BYTES + round] = round as u8 + 1;
                    let (written, m) = t.look(buf.bytes(), Some(mark));
                    mark = m;
                    assert_eq!(chunks(written), vec![c]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Run as a child of `a_fault_outside_tracked_memory_still_kills_the_process`.
const CRASH_CHILD_ENV: &str = "MESHNODE_TEST_DIRTY_CRASH_CHILD";

#[test]
fn a_fault_outside_tracked_memory_still_kills_the_process() {
    if std::env::var_os(CRASH_CHILD_ENV).is_some() {
        let mut buf = Buffer::new(MIB, 0);
        let t = WriteTracker::default();
        let _ = t.look(buf.bytes(), None);
        assert!(t.is_armed());
        let mut other = Buffer::new(page_bytes(), 0);
        let p = other.bytes().as_mut_ptr();
        // SAFETY: a page this test owns, made read-only: the write below is
        // a genuine fault that no tracker knows.
        unsafe {
            libc::mprotect(p.cast(), page_bytes(), libc::PROT_READ);
            std::ptr::write_volatile(p, 1);
        }
        std::process::exit(0); // unreachable if the fault kills us
    }
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dock::dirty::tests::a_fault_outside_tracked_memory_still_kills_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "a stray write must still be fatal: {status:?}"
    );
}
