#!/usr/bin/env python3
"""The summary at the end of scripts/test-all.sh: what ran, read from what
the script kept in its log directory.

    python3 scripts/test-summary.py LOG_DIR EXIT_CODE

LOG_DIR holds stages.tsv (stage, seconds, status), references.tsv (reference,
version), fuzz.txt (scripts/fuzz-smoke.sh's lines), skips.txt (one line per
skipped comparison, from node/tests/it/support.rs), cargo-test.log and
cargo-test-testnet.log (cargo test's own output; the second run with
--show-output, so the scenarios' own lines are there). Any of them may be
missing when an earlier stage failed.

Prints, in order: each stage's time and status; each reference's version; the
fuzz runs; each test binary's counts (passed, failed, ignored) and any failed
test by name; each testnet scenario PASSED, FAILED or SKIPPED; each skip by
name; and last a plain line

    N passed, N failed, N skipped

summed over every test binary: failed counts a binary that ended without a
result line (a crash) as one failure; skipped is the tests cargo ignored plus
the comparisons and scenarios that skipped (cargo counts those as passed).
"""
import os
import re
import sys

RUNNING = re.compile(r"^\s+Running (.+?) \((.+)\)\s*$")
DOC_TESTS = re.compile(r"^\s+Doc-tests (\S+)\s*$")
RESULT = re.compile(
    r"^test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; \d+ filtered out"
)
TEST_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
# What testnet/tests/scenarios.rs prints, one line per scenario:
# "scenario NAME: PASSED", "scenario NAME: FAILED (why)" or
# "scenario NAME: SKIPPED (why)".
SCENARIO_TEST = re.compile(r"^(\w+)_scenario_runs_end_to_end$")
SCENARIO_LINE = re.compile(r"^scenario (\S+): (PASSED|FAILED|SKIPPED)(?: \((.*)\))?\s*$")


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def tsv(path):
    text = read(path) or ""
    return [line.split("\t") for line in text.splitlines() if line.strip()]


class Binary:
    def __init__(self, label):
        self.label = label
        self.result = None  # (status, passed, failed, ignored)
        self.failed_tests = []


def binaries(log):
    """Test binaries in cargo test's output, in the order they ran."""
    out = []
    current = None
    for line in log.splitlines():
        m = RUNNING.match(line)
        d = DOC_TESTS.match(line)
        if m or d:
            if m:
                source, exe = m.group(1), m.group(2)
                stem = os.path.basename(exe).rsplit("-", 1)[0]
                label = f"{stem} ({source})"
            else:
                label = f"doc-tests {d.group(1)}"
            current = Binary(label)
            out.append(current)
            continue
        if current is None:
            continue
        t = TEST_LINE.match(line)
        if t and t.group(2) == "FAILED":
            current.failed_tests.append(t.group(1))
        r = RESULT.match(line)
        if r:
            current.result = (r.group(1), int(r.group(2)), int(r.group(3)), int(r.group(4)))
    return out


def scenarios(log):
    """(name, status, detail) for each scenario in the testnet run: its own
    result line, or FAILED for a scenario test that failed without one."""
    rows = {}
    for line in log.splitlines():
        m = SCENARIO_LINE.match(line.strip())
        if m:
            rows[m.group(1)] = (m.group(1), m.group(2), m.group(3) or "")
    for line in log.splitlines():
        t = TEST_LINE.match(line)
        if t and SCENARIO_TEST.match(t.group(1)):
            name = SCENARIO_TEST.match(t.group(1)).group(1).replace("_", "-")
            if t.group(2) == "FAILED" and rows.get(name, ("", "", ""))[1] != "FAILED":
                rows[name] = (name, "FAILED", "the test failed" + (f" ({rows[name][2]})" if name in rows else " without a result line"))
            elif t.group(2) == "ignored" and name not in rows:
                rows[name] = (name, "SKIPPED", "ignored")
    return list(rows.values())


def main():
    log_dir, rc = sys.argv[1], int(sys.argv[2])
    print()
    print("=" * 72)
    print("summary")
    print("=" * 72)

    print("stages:")
    for row in tsv(os.path.join(log_dir, "stages.tsv")):
        name, seconds, status = (row + ["", "", ""])[:3]
        print(f"  {status:<6} {int(seconds or 0):>6} s  {name}")

    print("differential references:")
    refs = tsv(os.path.join(log_dir, "references.tsv"))
    for row in refs:
        name, version = (row + [""])[:2]
        print(f"  {name}: {version}")
    if not refs:
        print("  (none recorded: the run stopped before the reference stage)")

    fuzz = [l for l in (read(os.path.join(log_dir, "fuzz.txt")) or "").splitlines() if l.startswith("fuzz ")]
    print("fuzz targets:")
    for line in fuzz:
        print(f"  {line[len('fuzz '):]}")
    if not fuzz:
        print("  (none ran)")

    passed = failed = ignored = 0
    print("test binaries (passed / failed / ignored):")
    any_binary = False
    for name in ("cargo-test.log", "cargo-test-testnet.log"):
        for b in binaries(read(os.path.join(log_dir, name)) or ""):
            any_binary = True
            if b.result is None:
                failed += 1
                print(f"  CRASHED  {b.label}: no result line (killed, or aborted)")
                continue
            status, p, f, i = b.result
            passed, failed, ignored = passed + p, failed + f, ignored + i
            print(f"  {p:>5} / {f:>3} / {i:>3}  {b.label}{'' if status == 'ok' else '  FAILED'}")
            for t in b.failed_tests:
                print(f"           FAILED {t}")
    if not any_binary:
        print("  (no test ran)")

    rows = scenarios(read(os.path.join(log_dir, "cargo-test-testnet.log")) or "")
    print("testnet scenarios:")
    for name, status, detail in rows:
        print(f"  {status:<7} {name}{': ' + detail if detail else ''}")
    if not rows:
        print("  (none ran)")

    skips = [l for l in (read(os.path.join(log_dir, "skips.txt")) or "").splitlines() if l.strip()]
    skips += [f"testnet scenario {n}: {d}" for n, s, d in rows if s == "SKIPPED"]
    print("skipped:")
    for s in skips:
        print(f"  SKIP {s}")
    if not skips:
        print("  nothing")

    if rc != 0:
        print(f"exit {rc}: " + ", ".join(
            f"stage '{r[0]}' FAILED" for r in tsv(os.path.join(log_dir, "stages.tsv")) if r[2:] == ["FAILED"]
        ))
    print(f"{passed} passed, {failed} failed, {ignored + len(skips)} skipped")


if __name__ == "__main__":
    main()
