//! Measures, on the disk under `DIR` (default: the system temp dir), what it
//! costs to write N distinct 64 KiB chunks and make them durable, and to read
//! them back verified, for three stores:
//! - `files`: today's store, one file per chunk through a temp file and a
//!   rename, made durable by an fsync of each file and directory;
//! - `pack`: one append-only file, one `fdatasync` per batch;
//! - `redb`: one write transaction per batch, committed with redb's default
//!   (immediate) durability.
//!
//! Run: `cargo run --release --manifest-path benches/store-compare/Cargo.toml -- [DIR]`

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const CHUNK_BYTES: usize = 64 * 1024;
const RUNS: usize = 7;
const TABLE: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("chunks");

fn chunks(n: usize, salt: u64) -> Vec<([u8; 32], Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut b = vec![0u8; CHUNK_BYTES];
            let mut x = salt ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for w in b.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            (*blake3::hash(&b).as_bytes(), b)
        })
        .collect()
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns (write+durable, read) time and the files the durable write touched.
fn files(dir: &Path, cs: &[([u8; 32], Vec<u8>)]) -> (Duration, Duration, usize) {
    let t0 = Instant::now();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut paths = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (h, b) in cs {
        let name = hex(h);
        let sub = dir.join("chunks").join(&name[..2]);
        std::fs::create_dir_all(&sub).unwrap();
        let mut t = tempfile::NamedTempFile::new_in(&tmp).unwrap();
        t.write_all(b).unwrap();
        let p = sub.join(&name);
        t.persist(&p).unwrap();
        paths.push(p);
        dirs.insert(sub);
    }
    dirs.insert(dir.join("chunks"));
    for p in paths.iter().chain(dirs.iter()) {
        File::open(p).unwrap().sync_all().unwrap();
    }
    let write = t0.elapsed();
    let t1 = Instant::now();
    for ((h, _), p) in cs.iter().zip(&paths) {
        let b = std::fs::read(p).unwrap();
        assert_eq!(blake3::hash(&b).as_bytes(), h);
    }
    (write, t1.elapsed(), paths.len() + dirs.len())
}

fn pack(dir: &Path, cs: &[([u8; 32], Vec<u8>)]) -> (Duration, Duration, usize) {
    let t0 = Instant::now();
    let path = dir.join("0.pack");
    let mut f = OpenOptions::new().create(true).append(true).read(true).open(&path).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
    let mut index = Vec::new();
    let mut at = 0u64;
    for (h, b) in cs {
        let mut rec = Vec::with_capacity(44 + b.len());
        rec.extend_from_slice(b"MNCK");
        rec.extend_from_slice(&(b.len() as u32).to_le_bytes());
        rec.extend_from_slice(h);
        rec.extend_from_slice(&[0u8; 4]);
        rec.extend_from_slice(b);
        f.write_all(&rec).unwrap();
        index.push(at + 44);
        at += rec.len() as u64;
    }
    f.sync_data().unwrap();
    let write = t0.elapsed();
    let t1 = Instant::now();
    for ((h, _), off) in cs.iter().zip(&index) {
        let mut b = vec![0u8; CHUNK_BYTES];
        f.read_exact_at(&mut b, *off).unwrap();
        assert_eq!(blake3::hash(&b).as_bytes(), h);
    }
    (write, t1.elapsed(), 1)
}

fn redb(dir: &Path, cs: &[([u8; 32], Vec<u8>)]) -> (Duration, Duration, usize) {
    let t0 = Instant::now();
    let db = redb::Database::create(dir.join("store.redb")).unwrap();
    {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (h, b) in cs {
                t.insert(h, b.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let write = t0.elapsed();
    let t1 = Instant::now();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(TABLE).unwrap();
    for (h, _) in cs {
        let v = t.get(h).unwrap().unwrap();
        assert_eq!(blake3::hash(v.value()).as_bytes(), h);
    }
    (write, t1.elapsed(), 1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let base = std::env::args().nth(1).map(Into::into).unwrap_or_else(std::env::temp_dir);
    println!("disk: {}; median of {RUNS} runs, each in a fresh directory", base.display());
    println!("| store | MiB | write+durable µs/MiB | read+verify µs/MiB | files touched |");
    println!("| --- | --- | --- | --- | --- |");
    type Store = fn(&Path, &[([u8; 32], Vec<u8>)]) -> (Duration, Duration, usize);
    let stores: [(&str, Store); 3] = [("files", files), ("pack", pack), ("redb", redb)];
    for mib in [1usize, 16] {
        for (name, f) in stores {
            let (mut w, mut r, mut touched) = (Vec::new(), Vec::new(), 0);
            for run in 0..RUNS {
                let cs = chunks(mib * 16, (run as u64) << 32 | mib as u64);
                let dir = tempfile::tempdir_in(&base).unwrap();
                let (wd, rd, t) = f(dir.path(), &cs);
                w.push(wd.as_secs_f64() * 1e6 / mib as f64);
                r.push(rd.as_secs_f64() * 1e6 / mib as f64);
                touched = t;
            }
            println!("| {name} | {mib} | {:.0} | {:.0} | {touched} |", median(w), median(r));
        }
    }
}
