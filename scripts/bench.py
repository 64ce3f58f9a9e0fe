#!/usr/bin/env python3
"""meshnode's dock benchmarks. Not part of the test suite.

Every figure is a ratio of two things measured in the same run, interleaved,
because this machine is shared and noisy. Prints a markdown report.

    python3 scripts/bench.py [--runs N] [--quick]

Needs: a release build (`cargo build --release -p meshnode`), clang with
wasi-libc, and node (for the start-up comparison).
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MESHNODE = os.path.join(TARGET, "release", "meshnode")

# (program, argument for the benchmark run). Arguments are sized so each run
# takes about a second in wasmi on a 2-core x86_64 machine.
PROGRAMS = [
    ("matrix", "120"),
    ("nbody", "200000"),
    ("hashing", "300"),
    ("compression", "40"),
    ("recursion", "27"),
    ("hashtable", "200000"),
]


def compile_c(src, out):
    subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", src, "-o", out], check=True)


def time_once(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode()}")
    return dt, r.stdout


def interleaved(cmds, runs):
    """Runs each command `runs` times, round-robin; returns medians."""
    times = [[] for _ in cmds]
    outputs = [None for _ in cmds]
    for _ in range(runs):
        for i, c in enumerate(cmds):
            dt, out = time_once(c)
            times[i].append(dt)
            outputs[i] = out
    return [statistics.median(t) for t in times], outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller inputs, for checking the script")
    args = ap.parse_args()
    if not os.path.exists(MESHNODE):
        sys.exit(f"{MESHNODE} not found: run `cargo build --release -p meshnode` first")
    work = tempfile.mkdtemp(prefix="meshnode-bench-")

    print("## Dock benchmarks\n")
    print(f"Command: `python3 scripts/bench.py --runs {args.runs}`; medians of {args.runs} interleaved runs.\n")

    # Start-up: a module that exits at once.
    tiny_c = os.path.join(work, "tiny.c")
    with open(tiny_c, "w") as f:
        f.write("int main(void) { return 0; }\n")
    tiny = os.path.join(work, "tiny.wasm")
    compile_c(tiny_c, tiny)
    runner = os.path.join(ROOT, "tests", "refs", "node_wasi.mjs")
    (m, n), _ = interleaved([[MESHNODE, "run", tiny], ["node", runner, tiny]], max(args.runs, 20))
    print("### Start-up (`meshnode run` of a module that exits at once)\n")
    print("| meshnode | node (node:wasi) | ratio meshnode / node |")
    print("| --- | --- | --- |")
    print(f"| {m*1000:.1f} ms | {n*1000:.1f} ms | {m/n:.3f} |\n")

    # Fuel slicing: the same programs with fuel metering on and off.
    print("### Fuel slicing (default slice vs `--no-fuel`)\n")
    print("| program | fuel on | fuel off | ratio on / off |")
    print("| --- | --- | --- | --- |")
    ratios = []
    for name, arg in PROGRAMS:
        src = os.path.join(ROOT, "benches", "programs", f"{name}.c")
        if not os.path.exists(src):
            print(f"| {name} | missing: {src} | | |")
            continue
        wasm = os.path.join(work, f"{name}.wasm")
        compile_c(src, wasm)
        if args.quick:
            arg = str(max(1, int(arg) // 20))
        (on, off), outs = interleaved([[MESHNODE, "run", wasm, arg], [MESHNODE, "run", "--no-fuel", wasm, arg]], args.runs)
        if outs[0] != outs[1]:
            sys.exit(f"{name}: output differs with fuel on and off")
        ratios.append(on / off)
        print(f"| {name} | {on:.3f} s | {off:.3f} s | {on/off:.3f} |")
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"| **geomean** | | | **{geo:.3f}** |\n")


if __name__ == "__main__":
    main()
