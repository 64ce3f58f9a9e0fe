//! testnet end to end: the `testnet` binary runs the repository's
//! scenarios (rtt, follow-the-client, faults, mixed-fleet) with real
//! `meshnode start` processes in network namespaces, one at a time. A run
//! passes when every assertion that is not `pending` passed.
//!
//! That needs root (namespaces, TUN devices): where this machine cannot, the
//! test prints why and passes without running anything, as `testnet` itself
//! says "skipped" (exit 77; mixed-fleet also skips without
//! `MESHNODE_AARCH64_BIN` and qemu-aarch64-static). The meshnode binary is
//! the workspace's own build: `$MESHNODE_BIN`, or `meshnode` in the target
//! directory this test was built into (`cargo test --workspace` builds it;
//! `cargo test -p testnet` alone does not, and the test then says to build
//! it).

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

/// One end-to-end run at a time: the scenarios are timed, and two of them
/// sharing 2 cores would make each other's bounds flaky.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A finished run: exit code, stdout, stderr, the report and where it is.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: String,
    out: PathBuf,
}

/// Runs `scenarios/NAME.toml` end to end, or None (with the reason printed)
/// where this machine cannot: no root or namespaces, or testnet says it
/// skipped (exit 77: no aarch64 build, no qemu, no clang).
fn run_scenario(test: &str, name: &str) -> Option<Run> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = testnet::netns::capability_problem() {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    let bin = meshnode();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("testnet-{name}"));
    let scenario = manifest_dir().join(format!("scenarios/{name}.toml"));
    let started = std::time::Instant::now();
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
        eprintln!("skipping {test}: {}", text(&o.stderr).trim());
        return None;
    }
    eprintln!(
        "{test}: {name}.toml ran in {:.0} s (exit {code}); output in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Some(Run {
        code,
        stdout: text(&o.stdout),
        stderr: text(&o.stderr),
        report: read(&out.join("report.md")),
        out,
    })
}

/// Every assertion that is not pending passed (pending ones are reported,
/// and do not fail the run).
fn assert_passed(name: &str, r: &Run) {
    assert_eq!(
        r.code, 0,
        "testnet run {name}.toml exited {}\nstdout:\n{}\nstderr:\n{}\nreport:\n{}",
        r.code, r.stdout, r.stderr, r.report
    );
    assert!(r.report.contains("**PASSED**"), "{}", r.report);
    assert!(
        !r.stdout.lines().any(|l| l.contains("] FAIL ")),
        "{}",
        r.stdout
    );
}

#[test]
fn rtt_scenario_runs_end_to_end() {
    let Some(r) = run_scenario("rtt_scenario_runs_end_to_end", "rtt") else {
        return;
    };
    assert_passed("rtt", &r);
    // The outputs are there and say what happened.
    assert!(r.report.contains("| a→b |"), "{}", r.report);
    let svg = read(&r.out.join("timeline.svg"));
    assert!(svg.starts_with("<svg") && svg.contains("rtt a→b"), "{svg}");
    assert!(svg.contains("partition"), "the timeline marks the events");
    let csv = read(&r.out.join("samples.csv"));
    assert!(
        csv.lines().filter(|l| l.contains("rtt c→a")).count() > 10,
        "{csv}"
    );
    assert!(
        r.stdout.contains("mesh up"),
        "progress is printed: {}",
        r.stdout
    );
}

#[test]
fn follow_the_client_scenario_runs_end_to_end() {
    let Some(r) = run_scenario(
        "follow_the_client_scenario_runs_end_to_end",
        "follow-the-client",
    ) else {
        return;
    };
    assert_passed("follow-the-client", &r);
    // The stand-in was moved by hand, and the timeline marks it.
    let svg = read(&r.out.join("timeline.svg"));
    assert!(svg.contains("stand-in: a → d"), "{svg}");
}

#[test]
fn mixed_fleet_scenario_runs_end_to_end() {
    // Needs MESHNODE_AARCH64_BIN and qemu-aarch64-static: testnet says which
    // is missing and exits 77, and the test skips with its words.
    let Some(r) = run_scenario("mixed_fleet_scenario_runs_end_to_end", "mixed-fleet") else {
        return;
    };
    assert_passed("mixed-fleet", &r);
}

#[test]
fn faults_scenario_runs_end_to_end() {
    let Some(r) = run_scenario("faults_scenario_runs_end_to_end", "faults") else {
        return;
    };
    assert_passed("faults", &r);
    // The faults happened where the scenario put them.
    for line in [
        "node b exited by itself",
        "node d exited by itself",
        "restart d (no extra environment)",
        "partition: {b,c,e} | {d} | {a}",
        "kill c (SIGKILL)",
        // What (c) does today: the client connected through the kill is
        // reset (not closed cleanly) and finds its writes since the last
        // image lost.
        "client through-kill: request failed: 10.77.0.5:7000: Connection reset by peer",
        "client through-kill: request failed: GET through-kill-k0: lost write",
    ] {
        assert!(r.stdout.contains(line), "no {line:?} in\n{}", r.stdout);
    }
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
        n >= 4,
        "expected rtt, follow-the-client, mixed-fleet and faults in {}",
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
