#!/usr/bin/env bash
# Cost of wasmi's `deterministic` feature (issue 3). Not part of the test suite.
#
#   scripts/bench_deterministic.sh [--build] [--runs N] [--callgrind]
#
# Compares two release builds of meshnode that differ only in wasmi's
# `deterministic` feature:
#   target/det-on/meshnode   the shipped build (workspace Cargo.toml as is)
#   target/det-off/meshnode  the same with "deterministic" removed from the
#                            workspace's wasmi features
# --build makes both (the Cargo.toml edit is undone on exit, whatever
# happens); without it the two binaries must already be there.
#
# Runs the six programs of benches/programs (compiled and with the arguments
# of scripts/bench.py) under det-on, det-off and a control (a byte-identical
# copy of det-on: its ratio to det-on is the noise), round-robin with the
# order rotated each round, both instrumented (`meshnode run`, the default)
# and `--no-rewrite`. Each measurement is one `meshnode run` process, from
# spawn to exit (start-up, rewriting, translation, the run): its CPU time
# (user + sys, from rusage) and its wall time. Prints medians, ratios on/off
# per program and geomeans. --callgrind adds instruction counts (valgrind's
# callgrind, one run per program, binary and mode, at a quarter of the
# iterations): noise-free, unlike the times.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=7
BUILD=0
CALLGRIND=0
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=1 ;;
        --runs) RUNS=$2; shift ;;
        --callgrind) CALLGRIND=1 ;;
        *) echo "usage: $0 [--build] [--runs N] [--callgrind]" >&2; exit 2 ;;
    esac
    shift
done

if [ $BUILD = 1 ]; then
    cd "$ROOT"
    cp Cargo.toml "$TARGET/Cargo.toml.det-saved"
    trap 'cp "$TARGET/Cargo.toml.det-saved" "$ROOT/Cargo.toml"; rm -f "$TARGET/Cargo.toml.det-saved"' EXIT
    mkdir -p "$TARGET/det-on" "$TARGET/det-off"
    nice -n 10 cargo build --release -p meshnode
    cp "$TARGET/release/meshnode" "$TARGET/det-on/meshnode"
    sed -i 's/"auto-dispatch", "deterministic"\]/"auto-dispatch"]/' Cargo.toml
    grep -q '^wasmi = .*"deterministic"' Cargo.toml && { echo "could not remove the feature" >&2; exit 1; }
    nice -n 10 cargo build --release -p meshnode
    cp "$TARGET/release/meshnode" "$TARGET/det-off/meshnode"
    cp "$TARGET/Cargo.toml.det-saved" Cargo.toml
    # Leave target/release as the shipped build.
    nice -n 10 cargo build --release -p meshnode
fi

exec python3 - "$ROOT" "$TARGET" "$RUNS" "$CALLGRIND" <<'EOF'
import math, os, re, resource, shutil, statistics, subprocess, sys, tempfile, time
root, target, runs, callgrind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
on, off = os.path.join(target, "det-on", "meshnode"), os.path.join(target, "det-off", "meshnode")
for b in (on, off):
    if not os.path.exists(b):
        sys.exit(f"{b} not found: run with --build")
sys.path.insert(0, os.path.join(root, "scripts"))
from bench import PROGRAMS, compile_c  # same programs, flags and iterations

work = tempfile.mkdtemp(prefix="meshnode-det-")
# Control: a byte-identical copy of det-on (same code layout); its ratio to
# det-on shows how much of a ratio is noise.
ctl = os.path.join(work, "meshnode-ctl")
shutil.copy2(on, ctl)
wasms = []
for name, what, arg in PROGRAMS:
    w = os.path.join(work, name + ".wasm")
    compile_c(os.path.join(root, "benches", "programs", name + ".c"), w)
    wasms.append((name, what, arg, w))

def run(cmd):
    """Runs cmd; returns (wall s, CPU s = user + sys of the child, stdout)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode()}")
    return dt, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), r.stdout

# Check that the two builds really differ: NaN bits of tests/aarch64/nan_bits.c.
nb = os.path.join(work, "nan_bits.wasm")
compile_c(os.path.join(root, "tests", "aarch64", "nan_bits.c"), nb)
a, b = run([on, "run", nb])[2].decode().splitlines(), run([off, "run", nb])[2].decode().splitlines()
print(f"Check: nan_bits.c prints {sum(x != y for x, y in zip(a, b))} of {len(a)} lines differently "
      "under det-on and det-off (0 would mean the builds do not differ).\n")
print(f"Medians of {runs} interleaved runs (det-on, det-off, control; order rotated each round). "
      "CPU = user + sys of `meshnode run`, wall = spawn to exit; control = a copy of det-on.\n")

def geomean(rs):
    return math.exp(sum(map(math.log, rs)) / len(rs))

for mode, extra in (("instrumented", []), ("--no-rewrite", ["--no-rewrite"])):
    print(f"### {mode}\n")
    print("| program | CPU det on | CPU det off | CPU on / off | CPU control / on | wall on / off |")
    print("| --- | --- | --- | --- | --- | --- |")
    cols = [[], [], []]
    for name, what, arg, w in wasms:
        bins = [on, off, ctl]
        wall, cpu, outs = {b: [] for b in bins}, {b: [] for b in bins}, {}
        for i in range(runs):
            for b in bins[i % 3:] + bins[:i % 3]:
                dt, c, out = run([b, "run"] + extra + [w, arg])
                wall[b].append(dt)
                cpu[b].append(c)
                outs[b] = out
        if outs[on] != outs[off]:
            sys.exit(f"{name}: output differs between det-on and det-off")
        m = lambda d, b: statistics.median(d[b])
        r = (m(cpu, on) / m(cpu, off), m(cpu, ctl) / m(cpu, on), m(wall, on) / m(wall, off))
        for k in range(3):
            cols[k].append(r[k])
        print(f"| {name} ({what}) | {m(cpu, on):.3f} s | {m(cpu, off):.3f} s | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |")
    g = [geomean(c) for c in cols]
    print(f"| **geomean** | | | **{g[0]:.3f}** | {g[1]:.3f} | {g[2]:.3f} |\n")

if callgrind:
    print("### callgrind instruction counts (quarter iterations, one run each)\n")
    print("| program | mode | det on | det off | on / off |")
    print("| --- | --- | --- | --- | --- |")
    for mode, extra in (("instrumented", []), ("--no-rewrite", ["--no-rewrite"])):
        ratios = []
        for name, what, arg, w in wasms:
            irs = []
            for b in (on, off):
                out = os.path.join(work, "cg.out")
                r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", b, "run"]
                                   + extra + [w, str(max(1, int(arg) // 4))],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                if r.returncode != 0:
                    sys.exit(f"callgrind failed: {r.stderr.decode()[-2000:]}")
                irs.append(int(re.search(r"Collected : (\d+)", r.stderr.decode()).group(1)))
                os.remove(out)
            ratios.append(irs[0] / irs[1])
            print(f"| {name} | {mode} | {irs[0]:,} | {irs[1]:,} | {irs[0] / irs[1]:.4f} |")
        print(f"| **geomean** | {mode} | | | **{geomean(ratios):.4f}** |")
    print()
shutil.rmtree(work)
EOF
