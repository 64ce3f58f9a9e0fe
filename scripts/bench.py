#!/usr/bin/env python3
"""meshnode's dock benchmarks. Not part of the test suite.

Every figure is a ratio of two things measured in the same run, interleaved,
because this machine is shared and noisy. Prints a markdown report.

    python3 scripts/bench.py [--runs N] [--quick]
    python3 scripts/bench.py --callgrind [--meshnode PATH]

Needs: a release build (`cargo build --release -p meshnode`), clang with
wasi-libc, and node (for the start-up comparison).

--callgrind replaces the timed runs by instruction counts (valgrind's
callgrind, one `meshnode run` per program and variant, at a quarter of the
iterations, start-up included): fuel on / fuel off and instrumented /
original, the two run-time ratios of the timed report. Counts are
deterministic, so they compare rewriter or fuel changes on a busy machine
where wall time cannot; confirm the result with a timed run.
"""
import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MESHNODE = os.path.join(TARGET, "release", "meshnode")
# Divisor of the iterations under callgrind, which runs about 50x slower.
CALLGRIND_ITERATION_DIVISOR = 4

# (program in benches/programs, what it stands for, iterations). Iterations
# are sized so each run takes about a second in wasmi on a 2-core x86_64
# machine.
PROGRAMS = [
    ("matmul", "matrix", "40"),
    ("nbody", "n-body", "400"),
    ("sha256", "hashing", "80"),
    ("lz77", "compression", "20"),
    ("recursion", "recursion", "120"),
    ("hashtable", "hash table, indirect calls", "8"),
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


def instructions(cmd):
    """Instructions executed by `cmd` under callgrind (deterministic)."""
    with tempfile.NamedTemporaryFile(prefix="meshnode-cg-") as out:
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}"] + cmd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"callgrind failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode()[-2000:]}")
    return int(re.search(r"Collected : (\d+)", r.stderr.decode()).group(1)), r.stdout


def geomean(rs):
    return math.exp(sum(math.log(r) for r in rs) / len(rs))


def callgrind_report(meshnode, work):
    """Instruction counts of the fuel and rewriter variants, as ratios."""
    print("### Instruction counts (callgrind, 1/%d of the iterations)\n" % CALLGRIND_ITERATION_DIVISOR)
    print("| program | fuel off | fuel on | original | instrumented | fuel on / off | instrumented / original |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fuel_ratios, rewrite_ratios = [], []
    for name, what, arg in PROGRAMS:
        wasm = os.path.join(work, f"{name}.wasm")
        compile_c(os.path.join(ROOT, "benches", "programs", f"{name}.c"), wasm)
        arg = str(max(1, int(arg) // CALLGRIND_ITERATION_DIVISOR))
        variants = [["--no-rewrite", "--no-fuel"], ["--no-rewrite"], []]
        counts, outs = zip(*(instructions([meshnode, "run"] + v + [wasm, arg]) for v in variants))
        if any(o != outs[0] for o in outs):
            sys.exit(f"{name}: output differs between variants")
        off, on, inst = counts
        fuel_ratios.append(on / off)
        rewrite_ratios.append(inst / on)
        print(f"| {name} ({what}) | {off:,} | {on:,} | {on:,} | {inst:,} | {on / off:.3f} | {inst / on:.3f} |")
    print(f"| **geomean** | | | | | **{geomean(fuel_ratios):.3f}** | **{geomean(rewrite_ratios):.3f}** |")
    print(f"| worst | | | | | {max(fuel_ratios):.3f} | {max(rewrite_ratios):.3f} |\n")
    code_size_report(meshnode, [(name, os.path.join(work, f"{name}.wasm")) for name, _, _ in PROGRAMS])


def code_size_report(meshnode, wasms):
    """The code section, instrumented / original (`meshnode rewrite --stats`)."""
    print("### Code size (code section)\n")
    print("| program | original bytes | instrumented bytes | ratio |")
    print("| --- | --- | --- | --- |")
    for name, wasm in wasms:
        out = subprocess.run([meshnode, "rewrite", wasm, "-o", wasm + ".rw.wasm", "--stats"], check=True,
                             stdout=subprocess.PIPE).stdout.decode()
        line = next(l for l in out.splitlines() if l.startswith("code section"))
        before, after = line.split(":")[1].split("bytes")[0].split("->")
        print(f"| {name} | {before.strip()} | {after.strip()} | {int(after) / int(before):.3f} |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller inputs, for checking the script")
    ap.add_argument("--callgrind", action="store_true", help="instruction counts instead of times (see above)")
    ap.add_argument("--meshnode", default=MESHNODE, help="the meshnode binary to measure (default: %(default)s)")
    args = ap.parse_args()
    meshnode = args.meshnode
    if not os.path.exists(meshnode):
        sys.exit(f"{meshnode} not found: run `cargo build --release -p meshnode` first")
    work = tempfile.mkdtemp(prefix="meshnode-bench-")
    if args.callgrind:
        callgrind_report(meshnode, work)
        shutil.rmtree(work)
        return

    print("## Dock benchmarks\n")
    print(f"Command: `python3 scripts/bench.py --runs {args.runs}`; medians of {args.runs} interleaved runs.\n")

    # Start-up: a module that exits at once.
    tiny_c = os.path.join(work, "tiny.c")
    with open(tiny_c, "w") as f:
        f.write("int main(void) { return 0; }\n")
    tiny = os.path.join(work, "tiny.wasm")
    compile_c(tiny_c, tiny)
    runner = os.path.join(ROOT, "tests", "refs", "node_wasi.mjs")
    (m, n), _ = interleaved([[meshnode, "run", tiny], ["node", runner, tiny]], max(args.runs, 20))
    print("### Start-up (`meshnode run` of a module that exits at once)\n")
    print("| meshnode | node (node:wasi) | ratio meshnode / node |")
    print("| --- | --- | --- |")
    print(f"| {m*1000:.1f} ms | {n*1000:.1f} ms | {m/n:.3f} |\n")

    wasms = []
    for name, what, arg in PROGRAMS:
        src = os.path.join(ROOT, "benches", "programs", f"{name}.c")
        wasm = os.path.join(work, f"{name}.wasm")
        compile_c(src, wasm)
        if args.quick:
            arg = str(max(1, int(arg) // 10))
        wasms.append((name, what, arg, wasm))

    def table(title, header, variants):
        """Runs every program under each variant; prints ratios to the first."""
        print(f"### {title}\n")
        print("| program | " + " | ".join(header) + " | " + " | ".join(f"{h} / {header[0]}" for h in header[1:]) + " |")
        print("| --- " * (1 + 2 * len(header) - 1) + "|")
        ratios = [[] for _ in header[1:]]
        for name, what, arg, wasm in wasms:
            cmds = [v(wasm) + [arg] for v in variants]
            meds, outs = interleaved(cmds, args.runs)
            if any(o != outs[0] for o in outs):
                sys.exit(f"{name}: output differs between variants")
            for k in range(1, len(meds)):
                ratios[k - 1].append(meds[k] / meds[0])
            cells = [f"{m:.3f} s" for m in meds] + [f"{meds[k] / meds[0]:.3f}" for k in range(1, len(meds))]
            print(f"| {name} ({what}) | " + " | ".join(cells) + " |")
        geo = [math.exp(sum(math.log(r) for r in rs) / len(rs)) for rs in ratios]
        worst = [max(rs) for rs in ratios]
        print("| **geomean** | " + " | " * len(header) + " | ".join(f"**{g:.3f}**" for g in geo) + " |")
        print("| worst | " + " | " * len(header) + " | ".join(f"{w:.3f}" for w in worst) + " |\n")

    # Fuel slicing: the same (unrewritten) programs with fuel metering on and off.
    table(
        "Fuel slicing (`--no-rewrite`, default slice vs `--no-fuel`)",
        ["fuel off", "fuel on"],
        [lambda w: [meshnode, "run", "--no-rewrite", "--no-fuel", w], lambda w: [meshnode, "run", "--no-rewrite", w]],
    )

    # Migration points: instrumented vs original, both with fuel on.
    variants = [lambda w: [meshnode, "run", "--no-rewrite", w], lambda w: [meshnode, "run", w]]
    header = ["original", "instrumented"]
    if shutil.which("wasm-opt"):
        for name, what, arg, wasm in wasms:
            subprocess.run(["wasm-opt", "--asyncify", "-O2", wasm, "-o", wasm + ".asyncify.wasm"], check=True)
        variants.append(lambda w: [meshnode, "run", "--no-rewrite", w + ".asyncify.wasm"])
        header.append("asyncify")
    table("Run time of migratable vessels (wasmi, fuel on)", header, variants)

    code_size_report(meshnode, [(name, wasm) for name, what, arg, wasm in wasms])

if __name__ == "__main__":
    main()
