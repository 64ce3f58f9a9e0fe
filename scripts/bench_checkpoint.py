#!/usr/bin/env python3
"""What periodic checkpoints cost a running vessel (issue 13's figures), in
one run, on loopback. Not part of the tests.

    python3 scripts/bench_checkpoint.py [--kinds sleep,spin] [--windows 6]
        [--window 20] [--moves 6] [--trace 10] [--size 64] [--rate 1]
        [--work-dir /var/tmp] [--meshnode BINARY] [--json FILE] [--keep]
    python3 scripts/bench_checkpoint.py --report FILE   # re-print a saved run

Builds the current tree (`cargo build --release -p meshnode --bin meshnode`
in $CARGO_TARGET_DIR, at nice 10) unless --meshnode names a binary, starts
two release nodes on 127.0.0.1 (scripts/bench_migration.py's machinery,
debug lines of meshnode::mesh::checkpoint on), and for each vessel kind
(memwriter, benches/programs: SIZE MiB dirtying RATE MiB/s, sweep;
`sleep`: it sleeps 1 ms between looks at the clock, a vessel that waits;
`spin`: it polls the clock, a core's worth) measures:

1. CPU time added by checkpoints at a 1 s interval. WINDOWS vessels are
   deployed on node a one after the other, alternately with
   `--checkpoint-every off` and `--checkpoint-every 1s` (off, on, on, off,
   off, on, ...: the machine's drift falls on both alike). Each is measured
   over a fixed window of WINDOW s once it is ready (and, when on, its first
   checkpoint durable) and 2 s more have passed, so that the checkpoint
   that copies the whole memory falls before the window: the node process's CPU
   time (/proc/PID/stat utime+stime, threads that ended included) as a % of
   one core. Added CPU = mean(on) - mean(off), and the difference of each
   adjacent off/on pair. For a spinning vessel the process is busy anyway
   (the pause runs on the vessel's thread and takes from its work), so the
   script also reports the CPU of the node's other threads (process minus
   the live `vessel-*` threads) and the time the vessel spent paused.
   memwriter's own work rate ("wrote N bytes in T s") is printed as a check
   that it kept pace; it is capped at RATE, so it cannot show a loss.
2. The pause per checkpoint: median, p90, max of `pause_us` of every
   "checkpoint durable" debug line in the on-windows (each vessel's first
   checkpoint, which makes the node's copy of its memory, is reported
   apart),
   against the final pause of migrations of the same kind of vessel in the
   same run: a fresh vessel (1 s checkpoints, as deployed by default),
   moved a->b, b->a, ... MOVES times, `downtime_ms` of
   `meshnode migrate --json`.
3. The capture after the pause: TRACE s of `perf trace` on node a during
   the last on-window's vessel (after its window, so the CPU figures are
   untraced): on the thread that runs each checkpoint's fdatasync, the
   burst of system calls from its first read or write to the last fsync
   (store writes, the pack's fdatasync, the commit record, the vessel
   record's write, fsync, rename and its directory's fsync). Needs perf;
   without it this part is skipped. The hashing before the first write
   (one chunk) is not in the span.
4. Bytes written: /proc/PID/io write_bytes of node a over each window,
   scaled to an hour, and the growth of node a's store on disk
   (allocated blocks) over the on-windows, scaled to an hour; the store's
   size at the end.

The work directory must be on a real disk (not tmpfs), or the write and
fdatasync figures mean nothing: default /var/tmp. Prints a markdown report;
the one-minute load average is noted with each window.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_migration as bm  # noqa: E402
import bench_before_after as ba  # noqa: E402

ROOT = bm.ROOT
MIB = bm.MIB
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The nodes' log: checkpoint lines (debug) and the migration's phases.
RUST_LOG = "info,meshnode::mesh::checkpoint=debug"
# How long a vessel may take to fill its memory and print "ready".
READY_TIMEOUT_S = 300
# How long the first (whole-memory) checkpoint of a vessel may take.
FIRST_CHECKPOINT_TIMEOUT_S = 120
# After the vessel is ready (off) or its first checkpoint durable (on):
# the memory's fill and the first store write have settled.
SETTLE_S = 2.0
# System calls of one checkpoint's capture on its thread lie closer
# together than this; checkpoints are a second apart.
BURST_GAP_MS = 100.0
TRACED_CALLS = "read,pread64,write,pwrite64,writev,fdatasync,fsync,openat,rename,renameat,renameat2"
HOUR_S = 3600.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_current(target):
    """The release meshnode of this tree, built in `target`."""
    log_path = os.path.join(target, "bench-checkpoint-build.log")
    bm.log(f"cargo build --release -p meshnode --bin meshnode (CARGO_TARGET_DIR={target}, log {log_path})")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    os.makedirs(target, exist_ok=True)
    with open(log_path, "w") as out:
        r = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-p", "meshnode", "--bin",
                            "meshnode"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"bench_checkpoint: build failed:\n{open(log_path, errors='replace').read()[-3000:]}")
    return os.path.join(target, "release", "meshnode")


def proc_cpu_s(pid, task=None):
    """utime+stime of a process (threads that ended included) or of one
    of its threads, in seconds."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vessel_threads_cpu_s(pid):
    """CPU time of the node's live vessel threads (named `vessel-ID`)."""
    total = 0.0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if open(f"/proc/{pid}/task/{t}/comm").read().startswith("vessel-"):
                total += proc_cpu_s(pid, t)
        except OSError:
            pass
    return total


def write_bytes(pid):
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes")


def disk_bytes(path):
    """Bytes allocated on disk under `path`."""
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


def checkpoint_lines(node, start=0):
    """The "checkpoint durable" lines of a node's log from byte `start`:
    (end offset, [{vessel, pause_us, changed_chunks}])."""
    out = []
    with open(node.log, "rb") as f:
        f.seek(start)
        data = f.read()
    for raw in data.decode(errors="replace").splitlines():
        if "checkpoint durable" not in raw:
            continue
        line = ANSI.sub("", raw)
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if "pause_us" in kv and "vessel" in kv:
            out.append({"vessel": kv["vessel"], "pause_us": int(kv["pause_us"]),
                        "changed_chunks": int(kv.get("changed_chunks", -1))})
    return start + len(data), out


def same_vessel(logged, vessel):
    return logged.startswith(vessel) or vessel.startswith(logged)


def deploy(node, wasm, args, pace, seed, every, name):
    """Deploys memwriter on `node` with `--checkpoint-every every` (None:
    the node's default) and waits until its memory is filled."""
    extra = [] if every is None else ["--checkpoint-every", every]
    r = node.cli(["deploy", "--name", name] + extra + [wasm, str(args.size), str(int(args.rate * MIB)),
                                                     "sweep", "0", seed, pace])
    vessel = r.stdout.decode().split()[-1]
    bm.wait_ready(node, vessel, READY_TIMEOUT_S)
    return vessel


def wait_first_checkpoint(node, vessel, start):
    """Waits for the vessel's first durable checkpoint (the whole memory);
    returns (its line, the log offset after it)."""
    end = time.monotonic() + FIRST_CHECKPOINT_TIMEOUT_S
    while time.monotonic() < end:
        off, lines = checkpoint_lines(node, start)
        mine = [c for c in lines if same_vessel(c["vessel"], vessel)]
        if mine:
            return mine[0], off
        time.sleep(0.1)
    raise RuntimeError(f"vessel {vessel}: no checkpoint within {FIRST_CHECKPOINT_TIMEOUT_S} s")


def work_rate(node, vessel):
    """memwriter's own rate over its "wrote N bytes in T s" lines, B/s."""
    r = node.cli(["logs", vessel], check=False)
    pts = [(float(t), int(n)) for n, t in re.findall(r"wrote (\d+) bytes in ([\d.]+) s", r.stdout.decode())]
    if len(pts) < 2:
        return None
    (t0, n0), (t1, n1) = pts[0], pts[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def snapshot(node):
    pid = node.proc.pid
    return {"t": time.monotonic(), "cpu_s": proc_cpu_s(pid), "vessel_cpu_s": vessel_threads_cpu_s(pid),
            "write_bytes": write_bytes(pid), "store_bytes": disk_bytes(os.path.join(node.dir, "store"))}


def measure_window(node, vessel, mode, seconds, log_start):
    """One fixed window of the node with one vessel: CPU, writes, store
    growth and the checkpoints it logged."""
    load = os.getloadavg()[0]
    a = snapshot(node)
    time.sleep(seconds)
    b = snapshot(node)
    off, lines = checkpoint_lines(node, log_start)
    wall = b["t"] - a["t"]
    ckpts = [c for c in lines if same_vessel(c["vessel"], vessel)]
    cpu = b["cpu_s"] - a["cpu_s"]
    vessel_cpu = b["vessel_cpu_s"] - a["vessel_cpu_s"]
    return {"mode": mode, "vessel": vessel, "wall_s": wall, "load1": load,
            "cpu_pct": 100 * cpu / wall, "other_cpu_pct": 100 * (cpu - vessel_cpu) / wall,
            "write_bytes": b["write_bytes"] - a["write_bytes"],
            "store_growth_bytes": b["store_bytes"] - a["store_bytes"], "store_bytes_end": b["store_bytes"],
            "checkpoints": ckpts, "paused_pct": 100 * sum(c["pause_us"] for c in ckpts) / 1e6 / wall,
            "log_end": off}


def run_window(node, wasm, args, pace, seed, mode, index, traced):
    """Deploys one vessel (checkpoints `mode`), measures its window, traces
    its captures if `traced`, stops it."""
    every = "1s" if mode == "on" else "off"
    log_start = os.path.getsize(node.log)
    vessel = deploy(node, wasm, args, pace, seed, every, f"ck-{pace}-{mode}-{index}")
    first = None
    if mode == "on":
        first, log_start = wait_first_checkpoint(node, vessel, log_start)
    time.sleep(SETTLE_S)
    log_start = os.path.getsize(node.log)
    w = measure_window(node, vessel, mode, args.window, log_start)
    w.update(kind=pace, index=index, first=first, work_rate_bps=work_rate(node, vessel))
    bm.log(f"{pace} #{index} checkpoints {mode}: node CPU {w['cpu_pct']:.1f} % (other threads "
           f"{w['other_cpu_pct']:.1f} %), {len(w['checkpoints'])} checkpoints, "
           f"{w['write_bytes'] / MIB:.1f} MiB written, load {w['load1']:.1f}")
    if traced:
        w["trace"] = trace_captures(node, args.trace)
    node.cli(["stop", vessel], check=False)
    return w


def trace_captures(node, seconds):
    """`perf trace` of the node for `seconds`: each checkpoint's capture
    after its pause, as bursts of system calls on the thread that ran its
    fdatasync. Returns a list of {span_ms, fdatasync_ms, fsync_ms, calls}."""
    if not shutil.which("perf"):
        bm.log("perf not found: the capture's system calls are not traced")
        return None
    out = os.path.join(os.path.dirname(node.log), f"{node.name}-trace.txt")
    pt = subprocess.Popen(["perf", "trace", "-p", str(node.proc.pid), "-o", out, "-e", TRACED_CALLS],
                          stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    pt.send_signal(2)
    pt.wait()
    return capture_bursts(out)


def capture_bursts(path):
    rx = re.compile(r"\s*([\d.]+) \(\s*([\d.]+) ms\): (\S+)/(\d+)\s+(?:\.\.\. \[continued\]: )?(\w+)\(")
    by_tid = {}
    for line in open(path, errors="replace"):
        m = rx.match(line)
        if m:
            t, dur, _, tid, call = m.groups()
            by_tid.setdefault(tid, []).append((float(t), float(dur), call))
    bursts = []
    for evs in by_tid.values():
        if not any(c == "fdatasync" for _, _, c in evs):
            continue
        evs.sort()
        group = [evs[0]]
        for e in evs[1:]:
            if e[0] - (group[-1][0] + group[-1][1]) > BURST_GAP_MS:
                bursts.append(group)
                group = []
            group.append(e)
        bursts.append(group)
    out = []
    for g in bursts:
        if any(c == "fdatasync" for _, _, c in g):
            synced = max(t + d for t, d, c in g if c == "fdatasync")
            # The store's part ends with the pack's fdatasync; what follows
            # is the vessel record's write_atomic and its directory's fsync.
            out.append({"span_ms": max(t + d for t, d, _ in g) - g[0][0], "store_ms": synced - g[0][0],
                        "fdatasync_ms": sum(d for _, d, c in g if c == "fdatasync"),
                        "fsync_ms": sum(d for _, d, c in g if c == "fsync"), "calls": len(g)})
    return out


def run_moves(pair, wasm, args, pace):
    """A fresh vessel (the nodes' default 1 s checkpoints) moved a->b,
    b->a, ... `args.moves` times; returns the migrate reports."""
    seed = str(random.getrandbits(63))
    a = pair.nodes[0]
    vessel = deploy(a, wasm, args, pace, seed, None, f"ck-{pace}-moves")
    time.sleep(args.dwell)
    where, reps = 0, []
    for i in range(args.moves):
        src, dst = pair.nodes[where], pair.nodes[1 - where]
        rep = bm.migrate(src, vessel, dst.peer_id)
        rep.update(kind=pace, index=i, load1=os.getloadavg()[0])
        reps.append(rep)
        bm.log(f"{pace} move #{i} {src.name} -> {dst.name}: downtime {rep['downtime_ms']} ms")
        where = 1 - where
        time.sleep(args.dwell)
    pair.nodes[where].cli(["stop", vessel], check=False)
    return reps


def measure(args, meshnode):
    work = tempfile.mkdtemp(prefix="meshnode-ckbench-", dir=args.work_dir)
    bm.log(f"work directory {work}")
    user = bm.User(work, meshnode=meshnode)
    wasm = bm.compile_memwriter(work)
    sampler = ba.LoadSampler()
    pair, windows, moves = None, [], []
    try:
        pair = bm.Pair(user, work, "precopy", RUST_LOG, name="ck")
        pair.wait_members()
        a = pair.nodes[0]
        order = ["off", "on", "on", "off"]
        for pace in [k for k in args.kinds.split(",") if k]:
            modes = [order[i % 4] for i in range(args.windows)]
            last_on = max(i for i, m in enumerate(modes) if m == "on")
            for i, mode in enumerate(modes):
                # A seed of its own: memwriter's writes follow its seed, not
                # the clock, so two vessels of one seed write the same chunks
                # and the second's would be deduplicated, flattering it.
                seed = str(random.getrandbits(63))
                windows.append(run_window(a, wasm, args, pace, seed, mode, i, args.trace > 0 and i == last_on))
            moves.extend(run_moves(pair, wasm, args, pace))
        store_end = {n.name: disk_bytes(os.path.join(n.dir, "store")) for n in pair.nodes}
    finally:
        if pair:
            pair.stop()
        samples = sampler.stop()
        if args.keep:
            bm.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"windows": windows, "moves": moves, "store_end_bytes": store_end, "load": samples}


# --------------------------------------------------------------------------
# The report

CPU_GATE_PCT, CPU_GOAL_PCT = 5.0, 2.0
PAUSE_GOAL_MS = 2.0


def p90(xs):
    return ba.p90(xs) if xs else float("nan")


def mean(xs):
    return statistics.mean(xs) if xs else float("nan")


def pair_diffs(ws, key):
    """on - off of each adjacent off/on pair of windows, in run order."""
    out = []
    for i in range(0, len(ws) - 1, 2):
        x, y = ws[i], ws[i + 1]
        if {x["mode"], y["mode"]} == {"on", "off"}:
            on, off = (x, y) if x["mode"] == "on" else (y, x)
            out.append(on[key] - off[key])
    return out


def verdict(value, gate, goal):
    return "goal met" if value <= goal else ("gate met, goal missed" if value <= gate else "GATE MISSED")


def table_windows(windows):
    out = ["| vessel | # | checkpoints | node CPU, % of a core | other threads | vessel paused "
           "| checkpoints in window | written, MiB | store growth, MiB | memwriter B/s | load1 |",
           "| --- " * 11 + "|"]
    for w in windows:
        rate = f"{w['work_rate_bps']:,.0f}" if w.get("work_rate_bps") else "–"
        out.append(f"| {w['kind']} | {w['index']} | {w['mode']} | {w['cpu_pct']:.1f} | {w['other_cpu_pct']:.1f} "
                   f"| {w['paused_pct']:.2f} % | {len(w['checkpoints'])} | {w['write_bytes'] / MIB:.1f} "
                   f"| {w['store_growth_bytes'] / MIB:.1f} | {rate} | {w['load1']:.1f} |")
    return "\n".join(out)


def table_cpu(windows, kinds):
    out = ["| vessel | node CPU off (mean) | on (mean) | **added** (on − off) | added, per off/on pair "
           "| other threads added | vessel paused (on) | verdict (gate ≤ 5 %, goal ≤ 2 %) |",
           "| --- " * 8 + "|"]
    for k in kinds:
        ws = [w for w in windows if w["kind"] == k]
        on = [w for w in ws if w["mode"] == "on"]
        off = [w for w in ws if w["mode"] == "off"]
        if not on or not off:
            continue
        added = mean([w["cpu_pct"] for w in on]) - mean([w["cpu_pct"] for w in off])
        other = mean([w["other_cpu_pct"] for w in on]) - mean([w["other_cpu_pct"] for w in off])
        paused = mean([w["paused_pct"] for w in on])
        # A spinning vessel's thread is busy either way: what checkpoints
        # cost it is the other threads' extra CPU plus its own paused time.
        judged = other + paused if k == "spin" else added
        pairs = ", ".join(f"{d:+.2f}" for d in pair_diffs(ws, "cpu_pct"))
        out.append(f"| {k} | {mean([w['cpu_pct'] for w in off]):.2f} % | {mean([w['cpu_pct'] for w in on]):.2f} % "
                   f"| **{added:+.2f} %** | {pairs} | {other:+.2f} % | {paused:.2f} % "
                   f"| {judged:.2f} % ({'other + paused' if k == 'spin' else 'added'}): "
                   f"{verdict(judged, CPU_GATE_PCT, CPU_GOAL_PCT)} |")
    return "\n".join(out)


def table_pauses(d, kinds):
    out = ["| vessel | checkpoints | pause median | p90 | max | changed chunks (median) "
           "| a vessel's first checkpoint (its baseline made in the pause), median pause | migrations | migration downtime median "
           "| p90 | max | checkpoint ÷ migration (medians) | verdict |", "| --- " * 13 + "|"]
    for k in kinds:
        ws = [w for w in d["windows"] if w["kind"] == k]
        ps = [c["pause_us"] / 1000 for w in ws for c in w["checkpoints"]]
        ch = [c["changed_chunks"] for w in ws for c in w["checkpoints"]]
        first = [w["first"]["pause_us"] / 1000 for w in ws if w.get("first")]
        mv = [m["downtime_ms"] for m in d["moves"] if m["kind"] == k and m.get("downtime_ms") is not None]
        if not ps:
            continue
        pm = statistics.median(ps)
        mm = statistics.median(mv) if mv else float("nan")
        gate = "gate met" if mv and pm <= mm else "GATE MISSED"
        goal = "goal met" if pm <= PAUSE_GOAL_MS else "goal (≤ 2 ms) missed"
        out.append(f"| {k} | {len(ps)} | **{pm:.2f} ms** | {p90(ps):.2f} ms | {max(ps):.2f} ms "
                   f"| {statistics.median(ch):g} | {statistics.median(first) if first else float('nan'):.1f} ms "
                   f"| {len(mv)} | **{mm:.1f} ms** | {p90(mv):.1f} ms | {max(mv) if mv else float('nan'):.1f} ms "
                   f"| {pm / mm:.3f} | {gate}, {goal} |")
    return "\n".join(out)


def table_capture(windows):
    out = ["| vessel | captures traced | span median | p90 | max | store's part (to the pack's fdatasync), median "
           "| fdatasync median | fsyncs (record, directory) median | system calls per capture |", "| --- " * 9 + "|"]
    any_trace = False
    for w in windows:
        tr = w.get("trace")
        if not tr:
            continue
        any_trace = True
        col = {k: [x[k] for x in tr] for k in ("span_ms", "store_ms", "fdatasync_ms", "fsync_ms", "calls")}
        out.append(f"| {w['kind']} | {len(tr)} | {statistics.median(col['span_ms']):.2f} ms "
                   f"| {p90(col['span_ms']):.2f} ms | {max(col['span_ms']):.2f} ms "
                   f"| {statistics.median(col['store_ms']):.2f} ms "
                   f"| {statistics.median(col['fdatasync_ms']):.2f} ms | {statistics.median(col['fsync_ms']):.2f} ms "
                   f"| {statistics.median(col['calls']):g} |")
    return "\n".join(out) if any_trace else "No capture was traced (perf missing, or --trace 0)."


def table_writes(d, kinds):
    out = ["| vessel | written per hour, checkpoints off | on | added by checkpoints | per checkpoint "
           "| store growth per hour (on) |", "| --- " * 6 + "|"]
    for k in kinds:
        ws = [w for w in d["windows"] if w["kind"] == k]
        rate = {m: mean([w["write_bytes"] / w["wall_s"] * HOUR_S for w in ws if w["mode"] == m])
                for m in ("off", "on")}
        on = [w for w in ws if w["mode"] == "on"]
        n = sum(len(w["checkpoints"]) for w in on)
        per = (sum(w["write_bytes"] for w in on) - rate["off"] / HOUR_S * sum(w["wall_s"] for w in on)) / n \
            if n else float("nan")
        growth = mean([w["store_growth_bytes"] / w["wall_s"] * HOUR_S for w in on])
        out.append(f"| {k} | {rate['off'] / MIB:,.0f} MiB | {rate['on'] / MIB:,.0f} MiB "
                   f"| **{(rate['on'] - rate['off']) / MIB:,.0f} MiB** | {per / MIB:.2f} MiB "
                   f"| {growth / MIB:,.0f} MiB |")
    return "\n".join(out)


def report(d):
    kinds = list(dict.fromkeys(w["kind"] for w in d["windows"]))
    print("## Periodic checkpoints (issue 13)\n")
    print(f"Command: `{d['command']}`, {d['started']}–{d['ended']} UTC, build {d['build']}.\n")
    print(f"- load: {ba.load_summary(d['load'])}.")
    print(f"- vessel: memwriter {d['size_mib']} MiB, {d['rate_mib']:g} MiB/s sweep; windows of "
          f"{d['window_s']:g} s, checkpoints off/on alternately; {d['moves_per_kind']} migrations per kind.\n")
    print("### Every window\n")
    print(table_windows(d["windows"]) + "\n")
    print("### CPU time added by checkpoints at a 1 s interval\n")
    print(table_cpu(d["windows"], kinds) + "\n")
    print("### Pause per checkpoint against a migration's final pause\n")
    print(table_pauses(d, kinds) + "\n")
    print("### The capture after the pause (perf trace)\n")
    print(table_capture(d["windows"]) + "\n")
    print("### Bytes written\n")
    print(table_writes(d, kinds) + "\n")
    ends = ", ".join(f"{k}: {v / MIB:,.0f} MiB" for k, v in d["store_end_bytes"].items())
    print(f"Stores on disk at the end: {ends}.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="sleep,spin", help="vessel paces, comma-separated (sleep, spin)")
    ap.add_argument("--windows", type=int, default=6, help="windows per kind, off/on alternately (at least 2)")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window")
    ap.add_argument("--moves", type=int, default=6, help="migrations per kind")
    ap.add_argument("--dwell", type=float, default=1.0, help="seconds between migrations")
    ap.add_argument("--trace", type=float, default=10.0,
                    help="seconds of perf trace after the last on-window per kind (0: none)")
    ap.add_argument("--size", type=int, default=64, help="vessel memory, MiB")
    ap.add_argument("--rate", type=float, default=1.0, help="vessel writes, MiB/s")
    ap.add_argument("--work-dir", default="/var/tmp", help="where the nodes' data goes (a real disk)")
    ap.add_argument("--meshnode", help="use this binary instead of building the current tree")
    ap.add_argument("--json", help="write every raw figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (node logs, traces)")
    ap.add_argument("--report", metavar="FILE", help="only print the report of a run saved with --json")
    args = ap.parse_args()
    if args.report:
        report(json.load(open(args.report)))
        return
    if args.windows < 2 or args.moves < 1 or args.window <= 0:
        ap.error("--windows must be at least 2, --moves at least 1, --window positive")
    for k in args.kinds.split(","):
        if k and k not in ("sleep", "spin"):
            ap.error(f"--kinds: unknown kind {k!r} (sleep or spin)")
    if args.meshnode:
        meshnode = os.path.abspath(args.meshnode)
        if not os.access(meshnode, os.X_OK):
            ap.error(f"--meshnode {args.meshnode}: not an executable file")
    else:
        meshnode = build_current(bm.TARGET)
    build = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, stdout=subprocess.PIPE,
                           text=True).stdout.strip()
    t0 = time.time()
    try:
        d = measure(args, meshnode)
    except RuntimeError as e:
        sys.exit(f"bench_checkpoint: {e}")
    d.update(command=" ".join(["python3 scripts/bench_checkpoint.py"] + sys.argv[1:]), build=build,
             started=time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)), ended=time.strftime("%H:%M", time.gmtime()),
             size_mib=args.size, rate_mib=args.rate, window_s=args.window, moves_per_kind=args.moves)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(d, f, indent=1)
    report(d)


if __name__ == "__main__":
    main()
