//! The chunk store as the node uses it: N distinct 64 KiB chunks put, then
//! one `sync` (the durable part of a capture), then read back verified.
//! Prints µs per MiB, medians of 7 runs, each in a fresh store.
//!
//! Run: `cargo run --release -p meshnode --example store_bench -- [DIR]`

use std::time::Instant;

use meshnode::store::ChunkStore;

const CHUNK_BYTES: usize = 64 * 1024;
const RUNS: usize = 7;

fn chunk(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..CHUNK_BYTES / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    println!("| MiB | put µs/MiB | sync µs | put+sync µs/MiB | read+verify µs/MiB |");
    println!("| --- | --- | --- | --- | --- |");
    for mib in [1u64, 16] {
        let (mut put, mut sync, mut total, mut read) = (vec![], vec![], vec![], vec![]);
        for run in 0..RUNS as u64 {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let store = ChunkStore::open(dir.path()).unwrap();
            let chunks: Vec<Vec<u8>> = (0..mib * 16).map(|i| chunk(run << 32 | i)).collect();
            let t0 = Instant::now();
            let names: Vec<_> = chunks.iter().map(|c| store.put_chunk(c).unwrap()).collect();
            let t_put = t0.elapsed();
            store.sync().unwrap();
            let t_total = t0.elapsed();
            let t1 = Instant::now();
            for h in &names {
                store.get_chunk(h).unwrap();
            }
            let per_mib = |d: std::time::Duration| d.as_secs_f64() * 1e6 / mib as f64;
            put.push(per_mib(t_put));
            sync.push((t_total - t_put).as_secs_f64() * 1e6);
            total.push(per_mib(t_total));
            read.push(per_mib(t1.elapsed()));
        }
        println!(
            "| {mib} | {:.0} | {:.0} | {:.0} | {:.0} |",
            median(put),
            median(sync),
            median(total),
            median(read)
        );
    }
}
