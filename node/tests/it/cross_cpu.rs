//! A vessel captured on x86_64 resumes on other CPUs (meshnode built for
//! each and run under qemu-user), is captured there again, and finishes on
//! x86_64, exactly as if it had never moved: x86_64 → aarch64 → x86_64, and
//! the four-CPU chain x86_64 → armhf → riscv64 → aarch64 → x86_64.
//!
//! Needs `MESHNODE_AARCH64_BIN`, `MESHNODE_ARMV7_BIN` and
//! `MESHNODE_RISCV64_BIN` (what `scripts/build-cross.sh all` prints) and
//! qemu-user-static; `scripts/test-all.sh` provides them. Without them the
//! test fails under CI (`CI=true`) and elsewhere says why and skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A CPU that meshnode runs on under qemu-user.
struct Cpu {
    name: &'static str,
    /// The variable that names its meshnode.
    env: &'static str,
    qemu: &'static str,
    /// Never `-L` where a multiarch libc6 is installed (aarch64, armhf): it
    /// mixes the cross ld.so with the multiarch libc and threads hang
    /// (DESIGN.md §8). riscv64 has no multiarch libc6 on Debian 12, only
    /// the cross one.
    qemu_args: &'static [&'static str],
}

const AARCH64: Cpu = Cpu {
    name: "aarch64",
    env: "MESHNODE_AARCH64_BIN",
    qemu: "qemu-aarch64-static",
    qemu_args: &[],
};
const ARMHF: Cpu = Cpu {
    name: "armhf",
    env: "MESHNODE_ARMV7_BIN",
    qemu: "qemu-arm-static",
    qemu_args: &[],
};
const RISCV64: Cpu = Cpu {
    name: "riscv64",
    env: "MESHNODE_RISCV64_BIN",
    qemu: "qemu-riscv64-static",
    qemu_args: &["-L", "/usr/riscv64-linux-gnu"],
};

/// `cpu`'s meshnode, or None (after `missing_reference`, which fails in CI).
fn foreign(cpu: &Cpu, test: &str) -> Option<PathBuf> {
    let Some(bin) = std::env::var_os(cpu.env).map(PathBuf::from) else {
        crate::support::missing_reference(
            test,
            &format!(
                "{} is not set (scripts/test-all.sh builds the {} meshnode with scripts/build-cross.sh)",
                cpu.env, cpu.name
            ),
        );
        return None;
    };
    if !bin.exists() {
        panic!("{}={} does not exist", cpu.env, bin.display());
    }
    if Command::new(cpu.qemu).arg("--version").output().is_err() {
        panic!(
            "{} is set but {} cannot run (install qemu-user-static)",
            cpu.env, cpu.qemu
        );
    }
    Some(bin)
}

/// `meshnode` on x86_64 (None) or on a foreign CPU under its qemu.
fn meshnode(on: Option<(&Cpu, &Path)>) -> Command {
    match on {
        Some((cpu, bin)) => {
            let mut c = Command::new(cpu.qemu);
            c.args(cpu.qemu_args).arg(bin);
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

/// `meshnode resume` of snapshot `hash` in `store` on `on`, with `dir` as
/// its /data, capturing again `point` migration points later if given.
fn resume(
    on: Option<(&Cpu, &Path)>,
    store: &Path,
    hash: &str,
    dir: &Path,
    point: Option<u32>,
) -> Output {
    let mut c = meshnode(on);
    c.arg("resume");
    if let Some(p) = point {
        c.args(["--checkpoint-at-point", &p.to_string()]);
    }
    c.args(["--dir", &dir_arg(dir)])
        .arg(store)
        .arg(hash)
        .output()
        .unwrap()
}

/// Runs `wasm ARGS` plainly on x86_64, then starts it on x86_64, captures
/// it at `points[0]`, resumes it on each of `hops` in turn, capturing
/// again `points[i + 1]` points later, and finishes it on x86_64; compares
/// stdout, exit code and files.
fn chain(
    hops: &[(&Cpu, &Path)],
    wasm: &Path,
    args: &[&str],
    setup: impl Fn(&Path),
    points: &[u32],
) {
    assert_eq!(points.len(), hops.len() + 1, "a capture point per hop");
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
    let mut dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let first = meshnode(None)
        .args([
            "run",
            "--checkpoint-at-point",
            &points[0].to_string(),
            "--snapshot-dir",
        ])
        .arg(store.path())
        .arg("--dir")
        .arg(dir_arg(dir.path()))
        .arg(wasm)
        .args(args)
        .output()
        .unwrap();
    let mut hash = snapshot_hash(&first);
    let mut stdout = first.stdout.clone();
    for (&(cpu, bin), point) in hops.iter().zip(&points[1..]) {
        let next = tempfile::tempdir().unwrap();
        crate::support::copy_tree(dir.path(), next.path());
        dir = next;
        let step = resume(
            Some((cpu, bin)),
            store.path(),
            &hash,
            dir.path(),
            Some(*point),
        );
        hash = snapshot_hash(&step);
        stdout.extend_from_slice(&step.stdout);
    }
    let last = tempfile::tempdir().unwrap();
    crate::support::copy_tree(dir.path(), last.path());
    let end = resume(None, store.path(), &hash, last.path(), None);
    stdout.extend_from_slice(&end.stdout);
    assert_eq!(
        end.status.code(),
        plain.status.code(),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&end.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert_eq!(
        crate::support::tree(last.path()),
        crate::support::tree(plain_dir.path())
    );
}

/// The program that reads, lists and writes files in its directory.
fn files_setup(root: &Path) {
    std::fs::write(
        root.join("in.txt"),
        (0..40).map(|i| format!("line {i}\n")).collect::<String>(),
    )
    .unwrap();
    std::fs::create_dir(root.join("list")).unwrap();
    for i in 0..50 {
        std::fs::write(root.join("list").join(format!("e{i:02}")), b"").unwrap();
    }
}

/// Goal: capture on x86_64, resume on aarch64, capture again, finish on
/// x86_64; output, exit code and files equal an uninterrupted run, and NaN
/// bit patterns computed on both CPUs are identical (wasmi's deterministic
/// profile). Method: a file-writing program and a NaN-bits program, each
/// moved twice at fixed migration points.
#[test]
fn x86_64_to_aarch64_and_back_matches_an_uninterrupted_run() {
    let Some(arm) = foreign(&AARCH64, "cross_cpu") else {
        return;
    };
    let _cpu = crate::support::shared_cpu();
    let files = crate::support::compile_c("node/tests/programs/wasi_state_midrun.c", &[]);
    let hops = [(&AARCH64, arm.as_path())];
    chain(&hops, &files, &["40"], files_setup, &[2000, 2500]);
    let nan = crate::support::compile_c("tests/aarch64/nan_bits.c", &[]);
    chain(&hops, &nan, &[], |_| {}, &[1500, 1500]);
}

/// Goal: the four CPUs the project ships for (issue 17), 64- and 32-bit,
/// little-endian all, agree: a vessel moved x86_64 → armhf → riscv64 →
/// aarch64 → x86_64 ends with the output, exit code, files and NaN bits of
/// an uninterrupted x86_64 run. Method: the same two programs, captured on
/// every CPU of the chain at fixed migration points.
#[test]
fn x86_64_armhf_riscv64_aarch64_chain_matches_an_uninterrupted_run() {
    let test = "cross_cpu_four";
    let (Some(armhf), Some(riscv64), Some(aarch64)) = (
        foreign(&ARMHF, test),
        foreign(&RISCV64, test),
        foreign(&AARCH64, test),
    ) else {
        return;
    };
    let _cpu = crate::support::shared_cpu();
    let hops = [
        (&ARMHF, armhf.as_path()),
        (&RISCV64, riscv64.as_path()),
        (&AARCH64, aarch64.as_path()),
    ];
    let files = crate::support::compile_c("node/tests/programs/wasi_state_midrun.c", &[]);
    chain(&hops, &files, &["40"], files_setup, &[2000, 800, 800, 800]);
    let nan = crate::support::compile_c("tests/aarch64/nan_bits.c", &[]);
    chain(&hops, &nan, &[], |_| {}, &[1000, 500, 500, 500]);
}

/// Goal: on a 32-bit host (armhf), a vessel's memory is bounded by the
/// address space (`MAX_MEMORY_BYTES_32_BIT`, 1 GiB) whatever the memory
/// limit says, with a clear refusal rather than an allocation failure or
/// a panic. Method: under qemu-arm with `--max-memory` 2 GiB, (1) a module
/// declaring 1.5 GiB of memory is refused naming the 32-bit address space,
/// while x86_64 runs it; (2) a program that mallocs until it fails gets
/// about 1 GiB there and more than 1 GiB on x86_64.
#[test]
fn armhf_bounds_a_vessel_by_its_32_bit_address_space() {
    let Some(armhf) = foreign(&ARMHF, "cross_cpu_32bit") else {
        return;
    };
    let _cpu = crate::support::shared_cpu();
    let max_memory = (2u64 << 30).to_string();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big_memory.wasm");
    // 24,576 pages of 64 KiB: 1.5 GiB, over 1 GiB, under the 2 GiB limit.
    let wat = r#"(module (memory 24576) (func (export "_start")))"#;
    std::fs::write(&big, wat::parse_str(wat).unwrap()).unwrap();
    let run = |on: Option<(&Cpu, &Path)>, wasm: &Path| {
        meshnode(on)
            .args(["run", "--max-memory", &max_memory])
            .arg(wasm)
            .output()
            .unwrap()
    };
    let arm = run(Some((&ARMHF, &armhf)), &big);
    let stderr = String::from_utf8_lossy(&arm.stderr);
    assert!(
        !arm.status.success(),
        "armhf ran a 1.5 GiB memory: {stderr}"
    );
    assert!(
        stderr.contains("big_memory.wasm") && stderr.contains("32-bit host's address space"),
        "the refusal does not name the module and the address space: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let x86 = run(None, &big);
    assert!(
        x86.status.success(),
        "x86_64: {}",
        String::from_utf8_lossy(&x86.stderr)
    );

    let grow = crate::support::compile_c("node/tests/programs/grow_until_refused.c", &[]);
    let mib = |out: Output| -> u64 {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.trim().parse().unwrap()
    };
    let arm_mib = mib(run(Some((&ARMHF, &armhf)), &grow));
    assert!(
        (1024 - 64..=1024).contains(&arm_mib),
        "armhf grew to {arm_mib} MiB; the bound is 1024"
    );
    let x86_mib = mib(run(None, &grow));
    assert!(x86_mib > 1024, "x86_64 grew to {x86_mib} MiB only");
}
