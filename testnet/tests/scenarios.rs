//! testnet end to end: the `testnet` binary runs the repository's rtt
//! scenario with real `meshnode start` processes in network namespaces.
//!
//! That needs root (namespaces, TUN devices): where this machine cannot, the
//! test prints why and passes without running anything, as `testnet` itself
//! says "skipped" (exit 77). The meshnode binary is the workspace's own
//! build: `$MESHNODE_BIN`, or `meshnode` in the target directory this test
//! was built into (`cargo test --workspace` builds it; `cargo test -p
//! testnet` alone does not, and the test then says to build it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testnet"))
}

/// The workspace's meshnode binary.
fn meshnode() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHNODE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "MESHNODE_BIN={} is not a file", p.display());
        return p;
    }
    let mut looked = Vec::new();
    // This test is target/<profile>/deps/scenarios-HASH; binaries are in
    // target/<profile>.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        looked.push(dir.join("meshnode"));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        looked.push(PathBuf::from(t).join("debug/meshnode"));
    }
    looked.push(manifest_dir().join("../target/debug/meshnode"));
    for p in &looked {
        if p.is_file() {
            return p.clone();
        }
    }
    panic!(
        "no meshnode binary (looked at {}): build it with `cargo build -p meshnode` \
         (`cargo test --workspace` builds it), or set MESHNODE_BIN",
        looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("(cannot read {}: {e})", p.display()))
}

#[test]
fn rtt_scenario_runs_end_to_end() {
    if let Some(why) = testnet::netns::capability_problem() {
        eprintln!("skipping rtt_scenario_runs_end_to_end: {why}");
        return;
    }
    let bin = meshnode();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testnet-rtt");
    let scenario = manifest_dir().join("scenarios/rtt.toml");
    let o: Output = testnet()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .arg("--meshnode")
        .arg(&bin)
        .output()
        .unwrap();
    let code = o.status.code().unwrap_or(-1);
    if code == testnet::run::EXIT_SKIPPED {
        eprintln!(
            "skipping rtt_scenario_runs_end_to_end: {}",
            text(&o.stderr).trim()
        );
        return;
    }
    let report = read(&out.join("report.md"));
    assert_eq!(
        code,
        0,
        "testnet run rtt.toml exited {code}\nstdout:\n{}\nstderr:\n{}\nreport:\n{report}",
        text(&o.stdout),
        text(&o.stderr)
    );
    // The outputs are there and say what happened.
    assert!(report.contains("**PASSED**"), "{report}");
    assert!(report.contains("| a→b |"), "{report}");
    let svg = read(&out.join("timeline.svg"));
    assert!(svg.starts_with("<svg") && svg.contains("rtt a→b"), "{svg}");
    assert!(svg.contains("partition"), "the timeline marks the events");
    let csv = read(&out.join("samples.csv"));
    assert!(
        csv.lines().filter(|l| l.contains("rtt c→a")).count() > 10,
        "{csv}"
    );
    let stdout = text(&o.stdout);
    assert!(stdout.contains("mesh up"), "progress is printed: {stdout}");
}

#[test]
fn every_repository_scenario_checks() {
    let dir = manifest_dir().join("scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let o = testnet().arg("check").arg(&p).output().unwrap();
        assert!(
            o.status.success(),
            "testnet check {}: {}",
            p.display(),
            text(&o.stderr)
        );
        n += 1;
    }
    assert!(
        n >= 3,
        "expected rtt, follow-the-client and mixed-fleet in {}",
        dir.display()
    );
}

#[test]
fn a_bad_scenario_is_refused_naming_file_and_field() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testnet-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n[[link]]\nbetween = [\"a\", \"b\"]\nloss = 2\n",
    )
    .unwrap();
    for sub in ["check", "run"] {
        let o = testnet().arg(sub).arg(&file).output().unwrap();
        assert_eq!(o.status.code(), Some(testnet::run::EXIT_ERROR), "{sub}");
        let err = text(&o.stderr);
        assert!(
            err.contains("bad.toml: link[0].loss: must be between 0 and 1 (got 2)"),
            "{sub}: {err}"
        );
    }
}
