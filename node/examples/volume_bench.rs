//! What a checkpoint pays for a volume: 1,000 files, 64 MiB, of which one
//! small file changed (written through the WASI layer, which tracks it).
//! Times `pack_volume` (read and hash every file) against
//! `pack_volume_changed` (the tracked paths only), medians of 15 runs,
//! files in the page cache (as in a running vessel's volume).
//!
//! Run: `cargo run --release -p meshnode --example volume_bench -- [DIR]`

use std::path::Path;
use std::time::Instant;

use meshnode::dock::wasi::abi::{LOOKUPFLAGS_SYMLINK_FOLLOW, RIGHTS_ALL};
use meshnode::dock::wasi::{DirMapping, WasiCtx, WasiOptions};
use meshnode::store::ChunkStore;
use meshnode::vessel::image::{pack_volume, pack_volume_changed};

const FILES: usize = 1000;
const VOLUME_BYTES: usize = 64 << 20;
const RUNS: usize = 15;
const GUEST: &str = "/data";
/// The preopen's descriptor: stdio takes 0–2.
const ROOT_FD: u32 = 3;

fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(len)
        .collect()
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// 999 files of equal size in ten directories, and one small counter.
fn make_volume(dir: &Path) {
    let each = VOLUME_BYTES / FILES;
    for i in 0..FILES - 1 {
        let sub = dir.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:04}")), fill(i as u64, each)).unwrap();
    }
    std::fs::write(dir.join("counter"), 0u64.to_le_bytes()).unwrap();
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let vol = tempfile::tempdir_in(&base).unwrap();
    let store_dir = tempfile::tempdir_in(&base).unwrap();
    let store = ChunkStore::open(store_dir.path()).unwrap();
    make_volume(vol.path());
    let mut ctx = WasiCtx::new(WasiOptions {
        dirs: vec![DirMapping {
            host: vol.path().to_path_buf(),
            guest: GUEST.into(),
        }],
        ..Default::default()
    })
    .unwrap();
    let counter = ctx
        .path_open(
            ROOT_FD,
            LOOKUPFLAGS_SYMLINK_FOLLOW,
            b"counter",
            0,
            RIGHTS_ALL,
            RIGHTS_ALL,
            0,
        )
        .unwrap();
    // The first pack stores every chunk; the runs then cost what a
    // checkpoint of an unchanged-but-for-one-file volume costs.
    let mut previous = pack_volume(&store, vol.path(), GUEST).unwrap();
    let (mut whole, mut changed, mut take) = (vec![], vec![], vec![]);
    for run in 1..=RUNS as u64 {
        ctx.fd_pwrite(counter, &run.to_le_bytes(), 0).unwrap();
        let t = Instant::now();
        let set = ctx.take_changed();
        take.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let inc = pack_volume_changed(&store, vol.path(), GUEST, &previous, set.for_guest(GUEST))
            .unwrap();
        changed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let full = pack_volume(&store, vol.path(), GUEST).unwrap();
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(inc, full, "run {run}: the incremental pack differs");
        previous = full;
    }
    println!(
        "{FILES} files, {} MiB, one 8-byte file changed, medians of {RUNS}:",
        VOLUME_BYTES >> 20
    );
    println!("| what | ms |");
    println!("| --- | --- |");
    println!("| take_changed | {:.4} |", median_ms(take));
    println!("| pack_volume_changed | {:.3} |", median_ms(changed));
    println!("| pack_volume | {:.1} |", median_ms(whole));
}
