//! Capture and resume through the real `meshnode` binary, and the refusal of
//! hostile or corrupt snapshots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use protocol::fuzzing::SplitMix64;
use protocol::snapshot::{Hash, Manifest, Value};

fn meshnode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshnode"))
}

fn midrun_wasm() -> PathBuf {
    crate::support::compile_c("node/tests/programs/wasi_state_midrun.c", &[])
}

/// Lays out the files the mid-run program reads.
fn input_dir(root: &Path) {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("line {i}\n"));
    }
    std::fs::write(root.join("in.txt"), text).unwrap();
    std::fs::create_dir(root.join("list")).unwrap();
    for i in 0..80 {
        std::fs::write(root.join("list").join(format!("entry-{i:03}")), b"").unwrap();
    }
}

fn ok(out: &Output) -> &Output {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "meshnode panicked: {stderr}");
    out
}

/// Runs the program up to its `point`-th migration point and returns the
/// snapshot hash it printed, with the output so far.
fn checkpoint(store: &Path, data: &Path, point: u32) -> (String, Vec<u8>) {
    let out = meshnode()
        .args([
            "run",
            "--checkpoint-at-point",
            &point.to_string(),
            "--snapshot-dir",
        ])
        .arg(store)
        .arg("--dir")
        .arg(format!("{}::/data", data.display()))
        .arg(midrun_wasm())
        .arg("50")
        .output()
        .unwrap();
    ok(&out);
    assert!(
        out.status.success(),
        "checkpoint run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hash = stderr
        .lines()
        .find_map(|l| l.strip_prefix("meshnode: snapshot "))
        .unwrap_or_else(|| panic!("no snapshot hash in stderr: {stderr}"))
        .trim()
        .to_string();
    (hash, out.stdout)
}

fn resume(store: &Path, data: &Path, hash: &str) -> Output {
    meshnode()
        .arg("resume")
        .arg("--dir")
        .arg(format!("{}::/data", data.display()))
        .arg(store)
        .arg(hash)
        .output()
        .unwrap()
}

/// Regression (CI, 2026-12-07, through the cross-CPU test under qemu):
/// `resume --checkpoint-at-point` kept the store it read open while the
/// vessel ran, so its checkpoint could not open the store again ("open in
/// another process"). A resume that checkpoints writes its snapshot into
/// the store it resumed from.
#[test]
fn a_resume_that_checkpoints_writes_into_the_store_it_read() {
    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    input_dir(data.path());
    let (hash, _) = checkpoint(store.path(), data.path(), 100);
    let out = meshnode()
        .args(["resume", "--checkpoint-at-point", "100", "--dir"])
        .arg(format!("{}::/data", data.path().display()))
        .arg(store.path())
        .arg(&hash)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    assert!(stderr.contains("meshnode: snapshot "), "{stderr}");
}

/// Goal: a vessel captured in one process resumes in another, against a
/// different host directory, and ends exactly as an uninterrupted run.
/// Method: plain run; then a run stopped at point 300 (snapshot), its files
/// copied to a new directory, and `meshnode resume` there. stdout of the two
/// halves concatenated, the exit code and the files must equal the plain run.
#[test]
fn capture_and_resume_in_a_new_process_matches_an_uninterrupted_run() {
    let _cpu = crate::support::shared_cpu();
    let plain_dir = tempfile::tempdir().unwrap();
    input_dir(plain_dir.path());
    let plain = meshnode()
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", plain_dir.path().display()))
        .arg(midrun_wasm())
        .arg("50")
        .output()
        .unwrap();
    assert!(ok(&plain).status.success());

    let store = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    input_dir(first.path());
    let (hash, head) = checkpoint(store.path(), first.path(), 300);
    let second = tempfile::tempdir().unwrap();
    crate::support::copy_tree(first.path(), second.path());
    drop(first);
    let rest = resume(store.path(), second.path(), &hash);
    assert!(
        ok(&rest).status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&rest.stderr)
    );
    let mut all = head;
    all.extend_from_slice(&rest.stdout);
    assert_eq!(
        String::from_utf8_lossy(&all),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert_eq!(
        crate::support::tree(second.path()),
        crate::support::tree(plain_dir.path())
    );
}

fn load_manifest(store: &Path, hash: &str) -> Manifest {
    let store = meshnode::store::ChunkStore::open(store).unwrap();
    store.get_manifest(&Hash::from_hex(hash).unwrap()).unwrap()
}

/// Stores a forged manifest under its own (correct) hash, as an attacker
/// who can write the store could, and returns that hash.
fn store_forged(store: &Path, m: &Manifest) -> String {
    let (bytes, h) = m.encode_and_hash();
    let store = meshnode::store::ChunkStore::open(store).unwrap();
    store.put_manifest_bytes(&bytes).unwrap();
    h.to_hex()
}

/// The pack file of the store that holds `bytes`, and where in it.
fn find_in_packs(store: &Path, bytes: &[u8]) -> (PathBuf, usize) {
    for e in std::fs::read_dir(store.join("packs")).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Some(at) = data.windows(bytes.len()).position(|w| w == bytes) {
            return (path, at);
        }
    }
    panic!("no pack under {} holds those bytes", store.display());
}

fn refused(store: &Path, data: &Path, hash: &str, needle: &str) {
    let out = resume(store, data, hash);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad snapshot was resumed: {stderr}"
    );
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line of error: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may run: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Goal: a hostile or corrupt snapshot is refused with a clear one-line
/// error before anything runs, never a panic. Method: take one real
/// snapshot, then damage or forge it in each way and resume.
#[test]
fn hostile_and_corrupt_snapshots_are_refused_before_anything_runs() {
    let _cpu = crate::support::shared_cpu();
    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    input_dir(data.path());
    let (hash, _) = checkpoint(store.path(), data.path(), 200);
    let s = store.path();
    let good = load_manifest(s, &hash);

    // A tampered memory chunk.
    let chunk = *good.memory.chunks.iter().flatten().next().unwrap();
    let chunk_bytes = meshnode::store::ChunkStore::open(s)
        .unwrap()
        .get_chunk(&chunk)
        .unwrap();
    let (pack, at) = find_in_packs(s, &chunk_bytes);
    let original_pack = std::fs::read(&pack).unwrap();
    let mut bad = original_pack.clone();
    bad[at + 100] ^= 0x40;
    std::fs::write(&pack, &bad).unwrap();
    refused(s, data.path(), &hash, "tampered");
    std::fs::write(&pack, &original_pack).unwrap();

    // A tampered manifest record (its name no longer matches its content).
    let (manifest_bytes, manifest_hash) = good.encode_and_hash();
    assert_eq!(manifest_hash.to_hex(), hash);
    let (pack, at) = find_in_packs(s, &manifest_bytes);
    let original_pack = std::fs::read(&pack).unwrap();
    let mut bad = original_pack.clone();
    bad[at + manifest_bytes.len() / 2] ^= 1;
    std::fs::write(&pack, &bad).unwrap();
    refused(s, data.path(), &hash, "tampered");
    // Cut short, as a crash would: the torn record is dropped at open.
    std::fs::write(&pack, &original_pack[..at + manifest_bytes.len() / 3]).unwrap();
    refused(s, data.path(), &hash, "not in the store");
    std::fs::write(&pack, &original_pack).unwrap();

    // Forged manifests, correctly named: each must fail validation.
    let mut m = good.clone();
    m.frames[0].locals.push(Value::I32(1));
    refused(s, data.path(), &store_forged(s, &m), "values");
    let mut m = good.clone();
    let slot = m.frames[0]
        .locals
        .iter()
        .position(|v| matches!(v, Value::I32(_)))
        .unwrap();
    m.frames[0].locals[slot] = Value::F64(0);
    refused(s, data.path(), &store_forged(s, &m), "saves a i32 there");
    let mut m = good.clone();
    m.frames[0].point = 1_000_000;
    refused(s, data.path(), &store_forged(s, &m), "migration points");
    let mut m = good.clone();
    m.frames[0].func = 0;
    refused(s, data.path(), &store_forged(s, &m), "not instrumented");
    let mut m = good.clone();
    m.module.rewriter_version = "meshnode-rewriter/0".into();
    refused(s, data.path(), &store_forged(s, &m), "rewriter");
    let mut m = good.clone();
    m.module.instrumented_hash = Hash::of(b"another module");
    refused(s, data.path(), &store_forged(s, &m), "not ");
    let mut m = good.clone();
    m.module.original_hash = Hash::of(b"another module");
    refused(s, data.path(), &store_forged(s, &m), "hash to");
    let mut m = good.clone();
    m.memory.size_bytes += 65536;
    refused(s, data.path(), &store_forged(s, &m), "chunks");
    let mut m = good.clone();
    m.version = 2;
    refused(s, data.path(), &store_forged(s, &m), "version 2");
    let mut m = good.clone();
    m.globals.pop();
    refused(s, data.path(), &store_forged(s, &m), "globals");
    let mut m = good.clone();
    m.wasi.preopens[0].guest_path = "/elsewhere".into();
    refused(s, data.path(), &store_forged(s, &m), "/elsewhere");

    // Unknown hash, and a hash that is not one.
    refused(
        s,
        data.path(),
        &Hash::of(b"nothing").to_hex(),
        "not in the store",
    );
    refused(s, data.path(), "xyz", "not a snapshot hash");

    // The good snapshot still resumes.
    let out = resume(s, data.path(), &hash);
    assert!(
        ok(&out).status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seeded smoke run of snapshot validation: 300 structurally mutated
/// manifests of a real snapshot go through the whole resume path up to the
/// first instruction. None may panic; each must be refused with exactly the
/// error its mutation calls for (a frame naming a function, point or value
/// type the instrumented module does not have; a global of another type),
/// and resumed when the mutation left every frame and global valid (a
/// value replaced by one of the same type, frames swapped or dropped). A
/// failing case names the seed.
#[test]
fn snapshot_validation_survives_seeded_structural_mutations() {
    let _cpu = crate::support::shared_cpu();
    use meshnode::dock::wasi::{DirMapping, WasiCtx};
    use meshnode::dock::{snapshot, DockConfig, DockError, Vessel};
    use meshnode::store::ChunkStore;

    let store_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    input_dir(data.path());
    let (hash, _) = checkpoint(store_dir.path(), data.path(), 150);
    let store = ChunkStore::open(store_dir.path()).unwrap();
    let good = store.get_manifest(&Hash::from_hex(&hash).unwrap()).unwrap();
    let config = DockConfig::default();
    let (engine, config, vm) = snapshot::module_from_manifest(&config, &store, &good).unwrap();
    let report = &vm.instrumented.as_ref().expect("instrumented").report;
    let seed = 0x5eed_0002;
    let mut rng = SplitMix64(seed);
    let dirs = [DirMapping {
        host: data.path().to_path_buf(),
        guest: "/data".into(),
    }];
    let (mut refused, mut resumed) = (0, 0);
    for case in 0..300 {
        let mut m = good.clone();
        let f = rng.below(m.frames.len() as u64) as usize;
        // What resuming `m` must answer: `None` resumes, `Some(text)` is
        // refused with `DockError::Resume(text)`.
        let want: Option<String> = match rng.below(6) {
            0 => {
                m.frames[f].func = rng.next_u64() as u32 % 64;
                frame_fault(f, &m.frames[f], report)
            }
            1 => {
                m.frames[f].point = rng.below(40) as u32;
                frame_fault(f, &m.frames[f], report)
            }
            2 => {
                let n = m.frames[f].locals.len() as u64;
                if n > 0 {
                    let i = rng.below(n) as usize;
                    m.frames[f].locals[i] = match rng.below(4) {
                        0 => Value::I32(rng.next_u64() as i32),
                        1 => Value::I64(rng.next_u64() as i64),
                        2 => Value::F32(rng.next_u64() as u32),
                        _ => Value::F64(rng.next_u64()),
                    };
                }
                frame_fault(f, &m.frames[f], report)
            }
            3 => {
                // Each frame stays valid on its own.
                let a = rng.below(m.frames.len() as u64) as usize;
                m.frames.swap(f, a);
                None
            }
            4 => {
                let g = rng.below(m.globals.len() as u64) as usize;
                m.globals[g] = Value::I64(rng.next_u64() as i64);
                (!matches!(good.globals[g], Value::I64(_))).then(|| format!("global {g}: "))
            }
            _ => {
                m.frames.truncate(f.max(1));
                None
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.check().expect("the mutations keep every limit");
            let capture =
                snapshot::capture_from_manifest(&store, &m, config.max_memory_bytes as u64)
                    .unwrap();
            let wasi = WasiCtx::rebuild(m.wasi.clone(), &dirs, Default::default()).unwrap();
            Vessel::resume(&engine, &vm, &capture, wasi, &config).map(|_| ())
        }));
        let Ok(result) = result else {
            panic!("seed {seed:#x} case {case} panicked");
        };
        match (&want, &result) {
            (None, Ok(())) => resumed += 1,
            // A global's error ends with wasmi's own words: its start is ours.
            (Some(w), Err(DockError::Resume(got)))
                if got == w || (w.starts_with("global ") && got.starts_with(w.as_str())) =>
            {
                refused += 1
            }
            _ => panic!("seed {seed:#x} case {case}: expected {want:?}, got {result:?}"),
        }
    }
    eprintln!("{refused} mutated snapshots refused, {resumed} resumed");
    assert!(
        refused > 50 && resumed > 50,
        "{refused} refused, {resumed} resumed"
    );
}

/// What [`Vessel::resume`] must say of frame `i` against the instrumented
/// module's layouts (docs/snapshot-format.md), or `None` when it is valid.
fn frame_fault(
    i: usize,
    f: &protocol::snapshot::Frame,
    report: &wasm_rewriter::Report,
) -> Option<String> {
    let Some(layout) = report.frames.iter().find(|l| l.func_index == f.func) else {
        return Some(format!(
            "frame {i}: function {} is not instrumented",
            f.func
        ));
    };
    if f.point >= layout.points {
        return Some(format!(
            "frame {i}: function {} has {} migration points, not point {}",
            f.func, layout.points, f.point
        ));
    }
    if f.locals.len() != layout.locals.len() {
        return Some(format!(
            "frame {i}: function {} saves {} values, the frame has {}",
            f.func,
            layout.locals.len(),
            f.locals.len()
        ));
    }
    let kind = |v: &Value| match v {
        Value::I32(_) => "i32",
        Value::I64(_) => "i64",
        Value::F32(_) => "f32",
        Value::F64(_) => "f64",
        Value::FuncRef(_) | Value::ExternRefNull => "ref",
    };
    f.locals
        .iter()
        .zip(&layout.locals)
        .enumerate()
        .find(|(_, (v, t))| kind(v) != t.to_string())
        .map(|(j, (v, t))| {
            format!(
                "frame {i}: function {} value {j} is {v:?}, the function saves a {t} there",
                f.func
            )
        })
}
