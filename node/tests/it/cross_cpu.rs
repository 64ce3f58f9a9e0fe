//! A vessel captured on x86_64 resumes on aarch64 (meshnode built for it and
//! run under qemu-aarch64-static), is captured there again, and finishes on
//! x86_64, exactly as if it had never moved.
//!
//! Needs `MESHNODE_AARCH64_BIN` (what `scripts/build-aarch64.sh` prints) and
//! `qemu-aarch64-static`; `scripts/test-all.sh` provides both. Without them
//! the test fails under CI (`CI=true`) and elsewhere says why and skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn aarch64() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("MESHNODE_AARCH64_BIN").map(PathBuf::from) else {
        crate::support::missing_reference(
            "cross_cpu",
            "MESHNODE_AARCH64_BIN is not set (scripts/test-all.sh builds it with scripts/build-aarch64.sh)",
        );
        return None;
    };
    if !bin.exists() {
        panic!("MESHNODE_AARCH64_BIN={} does not exist", bin.display());
    }
    if Command::new("qemu-aarch64-static")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("MESHNODE_AARCH64_BIN is set but qemu-aarch64-static cannot run (install qemu-user-static)");
    }
    Some(bin)
}

/// `meshnode` on one CPU or the other. Under qemu, never `-L`: it mixes the
/// cross ld.so with the multiarch libc and threads hang (DESIGN.md §8).
fn meshnode(arm: Option<&Path>) -> Command {
    match arm {
        Some(bin) => {
            let mut c = Command::new("qemu-aarch64-static");
            c.arg(bin);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_meshnode")),
    }
}

fn snapshot_hash(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "step failed: {stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("meshnode: snapshot "))
        .unwrap_or_else(|| panic!("no snapshot in: {stderr}"))
        .trim()
        .to_string()
}

fn dir_arg(d: &Path) -> String {
    format!("{}::/data", d.display())
}

/// Runs `wasm ARGS` plainly on x86_64, then x86_64 → aarch64 → x86_64 with
/// captures at the given points, and compares stdout, exit code and files.
fn round_trip(arm: &Path, wasm: &Path, args: &[&str], setup: impl Fn(&Path), points: (u32, u32)) {
    let plain_dir = tempfile::tempdir().unwrap();
    setup(plain_dir.path());
    let plain = meshnode(None)
        .arg("run")
        .arg("--dir")
        .arg(dir_arg(plain_dir.path()))
        .arg(wasm)
        .args(args)
        .output()
        .unwrap();

    let store = tempfile::tempdir().unwrap();
    let d1 = tempfile::tempdir().unwrap();
    setup(d1.path());
    let first = meshnode(None)
        .args([
            "run",
            "--checkpoint-at-point",
            &points.0.to_string(),
            "--snapshot-dir",
        ])
        .arg(store.path())
        .arg("--dir")
        .arg(dir_arg(d1.path()))
        .arg(wasm)
        .args(args)
        .output()
        .unwrap();
    let h1 = snapshot_hash(&first);

    let d2 = tempfile::tempdir().unwrap();
    crate::support::copy_tree(d1.path(), d2.path());
    let second = meshnode(Some(arm))
        .args([
            "resume",
            "--checkpoint-at-point",
            &points.1.to_string(),
            "--dir",
            &dir_arg(d2.path()),
        ])
        .arg(store.path())
        .arg(&h1)
        .output()
        .unwrap();
    let h2 = snapshot_hash(&second);

    let d3 = tempfile::tempdir().unwrap();
    crate::support::copy_tree(d2.path(), d3.path());
    let third = meshnode(None)
        .args(["resume", "--dir", &dir_arg(d3.path())])
        .arg(store.path())
        .arg(&h2)
        .output()
        .unwrap();

    let mut stdout = first.stdout.clone();
    stdout.extend_from_slice(&second.stdout);
    stdout.extend_from_slice(&third.stdout);
    assert_eq!(
        third.status.code(),
        plain.status.code(),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert_eq!(
        crate::support::tree(d3.path()),
        crate::support::tree(plain_dir.path())
    );
}

/// Goal: capture on x86_64, resume on aarch64, capture again, finish on
/// x86_64; output, exit code and files equal an uninterrupted run, and NaN
/// bit patterns computed on both CPUs are identical (wasmi's deterministic
/// profile). Method: a file-writing program and a NaN-bits program, each
/// moved twice at fixed migration points.
#[test]
fn x86_64_to_aarch64_and_back_matches_an_uninterrupted_run() {
    let Some(arm) = aarch64() else { return };
    let _cpu = crate::support::shared_cpu();
    let files = crate::support::compile_c("node/tests/programs/wasi_state_midrun.c", &[]);
    round_trip(
        &arm,
        &files,
        &["40"],
        |root| {
            std::fs::write(
                root.join("in.txt"),
                (0..40).map(|i| format!("line {i}\n")).collect::<String>(),
            )
            .unwrap();
            std::fs::create_dir(root.join("list")).unwrap();
            for i in 0..50 {
                std::fs::write(root.join("list").join(format!("e{i:02}")), b"").unwrap();
            }
        },
        (2000, 2500),
    );
    let nan = crate::support::compile_c("tests/aarch64/nan_bits.c", &[]);
    round_trip(&arm, &nan, &[], |_| {}, (1500, 1500));
}
