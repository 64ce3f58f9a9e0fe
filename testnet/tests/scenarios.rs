//! testnet end to end: the `testnet` binary runs the repository's
//! scenarios (rtt, follow-the-client, faults, mixed-fleet, failover, upgrade, coordinates,
//! partition-failover, flapping, scale-20) with real
//! `meshnode start` processes in network namespaces, one at a time. A run
//! passes when every assertion that is not `pending` passed.
//!
//! Each scenario test prints exactly one line, past the test harness's
//! output capture so that every log shows it, for CI summaries to grep
//! (`^scenario .*: (PASSED|FAILED|SKIPPED)`):
//!
//! ```text
//! scenario rtt: PASSED
//! scenario faults: FAILED (testnet exited 1: FAIL client steady: ...)
//! scenario mixed-fleet: SKIPPED (nodes e are armhf: set MESHNODE_ARMV7_BIN ...)
//! ```
//!
//! A scenario skips where this machine cannot run it: no root or network
//! namespaces, or `testnet` says so (exit 77: no cross build or qemu for
//! mixed-fleet, no clang). Outside CI a skip passes, loudly. Under CI
//! (`CI=true`) a skip fails the test, naming the reason: a green CI means
//! every scenario ran. A program that does not compile is not a skip:
//! `testnet` exits 2 with the compiler's message, and the test fails.
//!
//! The meshnode binary is the workspace's own build: `$MESHNODE_BIN`, or
//! `meshnode` in the target directory this test was built into (`cargo
//! test --workspace` builds it; `cargo test -p testnet` alone does not,
//! and the test then fails saying to build it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testnet"))
}

/// The workspace's meshnode binary, or why there is none.
fn meshnode() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MESHNODE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("MESHNODE_BIN={} is not a file", p.display()))
        };
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
    if let Some(p) = looked.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "no meshnode binary (looked at {}): build it with `cargo build -p meshnode` \
         (`cargo test --workspace` builds it), or set MESHNODE_BIN",
        looked.join(", ")
    ))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("(cannot read {}: {e})", p.display()))
}

/// Under CI a skip is a failure: `CI` is `true` or `1`.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The longest reason a result line carries (the whole story is in the
/// test's failure message).
const MAX_REASON_CHARS: usize = 400;

/// One line of words: newlines become " / ", and it is cut at
/// MAX_REASON_CHARS.
fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if line.chars().count() <= MAX_REASON_CHARS {
        line
    } else {
        format!(
            "{}…",
            line.chars().take(MAX_REASON_CHARS).collect::<String>()
        )
    }
}

/// Writes a line to stderr past the harness's capture (which takes only
/// `print!`/`eprint!`), so that it shows in every log. The leading newline
/// keeps it at the start of a line when the harness has printed `test NAME
/// ... ` before it (one test thread).
fn shout(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("\n{line}\n").as_bytes());
}

/// Why a scenario failed: a line for the summary, and the whole story.
struct Failure {
    reason: String,
    detail: String,
}

impl Failure {
    fn new(reason: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// How a scenario ended.
enum Verdict {
    Passed,
    Failed(Failure),
    Skipped(String),
}

/// Prints the scenario's one result line, and fails the test unless it
/// passed or skipped outside CI.
fn conclude(name: &str, verdict: Verdict) {
    match verdict {
        Verdict::Passed => shout(&format!("scenario {name}: PASSED")),
        Verdict::Failed(f) => {
            shout(&format!(
                "scenario {name}: FAILED ({})",
                one_line(&f.reason)
            ));
            panic!("scenario {name} failed: {}\n{}", f.reason, f.detail);
        }
        Verdict::Skipped(why) if in_ci() => {
            let why = one_line(&why);
            shout(&format!(
                "scenario {name}: FAILED (skipped, and under CI=true a scenario may not skip: {why})"
            ));
            panic!("scenario {name} skipped under CI=true, which must run every scenario: {why}");
        }
        Verdict::Skipped(why) => {
            shout(&format!("scenario {name}: SKIPPED ({})", one_line(&why)));
            shout(&format!(
                "!!! scenario {name} did NOT run on this machine; under CI=true this fails the test"
            ));
        }
    }
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

impl Run {
    /// Everything it said, for a failure message.
    fn story(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}\nreport:\n{}",
            self.stdout, self.stderr, self.report
        )
    }

    /// Fails unless `ok`, saying `what`.
    fn expect(&self, ok: bool, what: &str) -> Result<(), Failure> {
        if ok {
            Ok(())
        } else {
            Err(Failure::new(what, self.story()))
        }
    }
}

/// Runs `scenarios/NAME.toml` end to end: Err(Skipped) where this machine
/// cannot (no root or namespaces, or testnet exits 77), Err(Failed) where
/// testnet cannot be started at all.
fn run_scenario(name: &str) -> Result<Run, Verdict> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = testnet::netns::capability_problem() {
        return Err(Verdict::Skipped(why));
    }
    let bin = meshnode().map_err(|e| Verdict::Failed(Failure::new(e, "")))?;
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
        .map_err(|e| Verdict::Failed(Failure::new(format!("cannot run testnet: {e}"), "")))?;
    let code = o.status.code().unwrap_or(-1);
    if code == testnet::run::EXIT_SKIPPED {
        let why = text(&o.stderr);
        let why = why.trim().trim_start_matches("testnet: skipped: ");
        return Err(Verdict::Skipped(why.to_string()));
    }
    eprintln!(
        "{name}.toml ran in {:.0} s (exit {code}); output in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(Run {
        code,
        stdout: text(&o.stdout),
        stderr: text(&o.stderr),
        report: read(&out.join("report.md")),
        out,
    })
}

/// Runs scenario NAME, then `checks` on what it wrote, and concludes.
fn scenario(name: &str, checks: impl FnOnce(&Run) -> Result<(), Failure>) {
    let verdict = match run_scenario(name) {
        Ok(r) => match passed(&r).and_then(|()| checks(&r)) {
            Ok(()) => Verdict::Passed,
            Err(f) => Verdict::Failed(f),
        },
        Err(v) => v,
    };
    conclude(name, verdict);
}

/// Every assertion that is not pending passed (pending ones are reported,
/// and do not fail the run).
fn passed(r: &Run) -> Result<(), Failure> {
    if r.code != 0 {
        // Why, in a line: the failed assertions, else what testnet said.
        let fails: Vec<&str> = r
            .stdout
            .lines()
            .filter_map(|l| l.split_once("] FAIL ").map(|(_, f)| f))
            .collect();
        let why = if fails.is_empty() {
            r.stderr.clone()
        } else {
            format!("FAIL {}", fails.join("; FAIL "))
        };
        return Err(Failure::new(
            format!("testnet exited {}: {}", r.code, why.trim()),
            r.story(),
        ));
    }
    r.expect(
        r.report.contains("**PASSED**"),
        "report.md does not say PASSED",
    )?;
    r.expect(
        !r.stdout.lines().any(|l| l.contains("] FAIL ")),
        "an assertion failed, yet testnet exited 0",
    )
}

#[test]
fn rtt_scenario_runs_end_to_end() {
    scenario("rtt", |r| {
        // The outputs are there and say what happened.
        r.expect(
            r.report.contains("| a→b |"),
            "report.md has no a→b link row",
        )?;
        let svg = read(&r.out.join("timeline.svg"));
        r.expect(
            svg.starts_with("<svg") && svg.contains("rtt a→b"),
            "timeline.svg has no rtt a→b series",
        )?;
        r.expect(
            svg.contains("partition"),
            "the timeline does not mark the partition",
        )?;
        let csv = read(&r.out.join("samples.csv"));
        let rows = csv.lines().filter(|l| l.contains("rtt c→a")).count();
        r.expect(
            rows > 10,
            &format!("samples.csv has {rows} rtt c→a rows, want > 10"),
        )?;
        r.expect(
            r.stdout.contains("mesh up"),
            "no progress printed (mesh up)",
        )
    });
}

#[test]
fn follow_the_client_scenario_runs_end_to_end() {
    scenario("follow-the-client", |r| {
        // The stand-in was moved by hand, and the timeline marks it.
        let svg = read(&r.out.join("timeline.svg"));
        r.expect(
            svg.contains("stand-in: a → d"),
            "the timeline does not mark the stand-in's move a → d",
        )
    });
}

#[test]
fn mixed_fleet_scenario_runs_end_to_end() {
    // Needs MESHNODE_AARCH64_BIN, MESHNODE_ARMV7_BIN, MESHNODE_RISCV64_BIN
    // and qemu-user-static: testnet says which is missing and exits 77, and
    // the test skips with its words (fails under CI).
    scenario("mixed-fleet", |_| Ok(()));
}

#[test]
fn upgrade_scenario_runs_end_to_end() {
    // Needs MESHNODE_FROZEN_BIN (scripts/build-frozen.sh): testnet says so
    // and exits 77 without it, and the test skips (fails under CI).
    scenario("upgrade", |r| {
        r.expect(
            r.stdout.contains("upgrade roll through c done"),
            "the roll did not finish",
        )?;
        // Every frozen node was upgraded, not found already current.
        for node in ["a", "b", "c"] {
            r.expect(
                // "upgrade a (12D3KooW…): upgraded 0.1.0 -> 0.2.0 in …"
                r.stdout.lines().any(|l| {
                    l.contains(&format!("] upgrade {node} (")) && l.contains("): upgraded ")
                }),
                &format!("node {node} was not upgraded by the roll"),
            )?;
        }
        Ok(())
    });
}

#[test]
fn coordinates_scenario_runs_end_to_end() {
    scenario("coordinates", |_| Ok(()));
}

#[test]
fn failover_scenario_runs_end_to_end() {
    scenario("failover", |r| {
        r.expect(
            r.stdout.contains("kill a (SIGKILL)"),
            "the host was not killed",
        )
    });
}

#[test]
fn partition_failover_scenario_runs_end_to_end() {
    scenario("partition-failover", |r| {
        for line in [
            "partition: {b,c,d,e} | {a}",
            "heal: every node reaches every other",
        ] {
            r.expect(
                r.stdout.contains(line),
                &format!("no {line:?} in the progress"),
            )?;
        }
        Ok(())
    });
}

#[test]
fn flapping_scenario_runs_end_to_end() {
    scenario("flapping", |r| {
        // The link really went down and up, every 2 s for a minute.
        let downs = r
            .stdout
            .lines()
            .filter(|l| l.contains("event: link a–b:") && l.contains("loss 1,"))
            .count();
        r.expect(
            downs >= 14,
            &format!("the a–b link went down {downs} times, want 15"),
        )
    });
}

/// Twenty idle nodes in four regions converge within the bound, and the
/// report gives every node's traffic (issue 19's 4 KB/s gate is pending in
/// the file: today's node is far above it).
#[test]
fn scale_20_scenario_runs_end_to_end() {
    scenario("scale-20", |r| {
        r.expect(
            r.report.contains("## Per-node traffic") && r.report.contains("mean "),
            "report.md has no per-node traffic",
        )?;
        r.expect(
            r.stdout
                .contains("PASS every node lists every other as an up member"),
            "the convergence check did not pass",
        )
    });
}

#[test]
fn faults_scenario_runs_end_to_end() {
    scenario("faults", |r| {
        // The faults happened where the scenario put them.
        for line in [
            "node b exited by itself",
            "node d exited by itself",
            "restart d (no extra environment)",
            "partition: {b,c,e} | {d} | {a}",
            "kill c (SIGKILL)",
            // What (c) does today: the client connected through the kill is
            // reset (not closed cleanly).
            "client through-kill: request failed: 10.77.0.5:7000: Connection reset by peer",
        ] {
            r.expect(
                r.stdout.contains(line),
                &format!("no {line:?} in the progress"),
            )?;
        }
        // Its writes since the vessel's newest checkpoint (at most a
        // second: issue 13) are lost, which its reads may or may not find
        // (the checkpoint may have come after its last write); never more
        // than the writes of that last second.
        let lost = r
            .stdout
            .lines()
            .filter(|l| {
                l.contains("client through-kill: request failed: GET") && l.contains("lost write")
            })
            .count();
        r.expect(
            lost <= 12,
            &format!("{lost} lost writes: more than a second's (one every 100 ms)"),
        )?;
        Ok(())
    });
}

/// A skip outside a scenario test: loud, and a failure under CI.
fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test} skipped under CI=true, which must run everything: {why}");
    }
    shout(&format!("!!! {test} did NOT run: {why}"));
}

#[test]
fn a_program_that_does_not_compile_fails_the_run_and_is_not_a_skip() {
    let test = "a_program_that_does_not_compile_fails_the_run_and_is_not_a_skip";
    if let Some(why) = testnet::netns::capability_problem() {
        return skip(test, &why);
    }
    // Without clang there is nothing to compile with: that is a skip
    // (testnet exits 77 saying so), which this test is not about.
    let clang = Command::new("clang").arg("--version").output();
    if !clang.is_ok_and(|o| o.status.success()) {
        return skip(test, "no clang on this machine");
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("testnet-broken-program");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.c"),
        "int main(void) { return no_such_variable; }\n",
    )
    .unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        "[[node]]\nname = \"a\"\n[[program]]\nname = \"broken\"\nc_source = \"broken.c\"\n\
         [[vessel]]\nname = \"v\"\nprogram = \"broken\"\non = \"a\"\n",
    )
    .unwrap();
    // The build comes before any node starts: any file will do as meshnode.
    let o = testnet()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--meshnode", "/bin/true"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_ne!(
        o.status.code(),
        Some(testnet::run::EXIT_SKIPPED),
        "a program that does not compile was a skip: {err}"
    );
    assert_eq!(
        o.status.code(),
        Some(testnet::run::EXIT_ERROR),
        "a program that does not compile: {err}"
    );
    assert!(
        err.contains("program broken: clang --target=wasm32-wasi failed on")
            && err.contains("no_such_variable"),
        "the error names the program and shows the compiler's message: {err}"
    );
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
