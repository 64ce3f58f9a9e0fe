#!/usr/bin/env python3
"""meshnode's migration benchmarks (issue 4). Not part of the test suite.

One command measures, in one run:

1. Live migration of a vessel (benches/programs/memwriter.c) with 16, 64
   and 256 MiB of memory written at several rates, between two real release
   nodes on 127.0.0.1, under three policies, each on its own node pair:
     precopy   the default: pre-copy rounds, then a final round; only chunks
               the destination lacks are sent;
     stopcopy  migration_warm_rounds = 0: pause, then send (still deduplicated);
     nodedup   migration_dedup = false: pre-copy, but every chunk of each
               round is sent as if the destination had none.
   The policies take turns case by case (each case: one vessel per policy,
   one after the other; a vessel that spins on the clock uses a core).
2. Transfer throughput on loopback: a plain TCP copy and the same bytes over
   libp2p (QUIC, TCP+noise+yamux) without chunks (node/examples/
   transfer_bench.rs), against meshnode's own chunk path: the chunk sending
   of the first pre-copy round of a freshly filled vessel, timed from the
   `meshnode migrate` progress lines.
3. Node footprint: release binary size, and idle RSS (VmRSS) of each node
   of the pairs, ten seconds after it started, one peer, no vessel.
4. With `--rust-log meshnode::mesh::migrate=debug,meshnode::mesh::serve=debug` (or any RUST_LOG that
   shows that module's debug lines): every pause split into steps, read off
   the nodes' own "pause phases" and "prepare phases" lines.
5. With --phases N (needs perf): N more migrations under `perf trace`, and
   their downtime split into phases read off the system calls that bound
   them (see PHASES below). Obsolete since the pause copies no memory-sized
   buffer and runs no syncfs: the marks are no longer there; use 4.

    python3 scripts/bench_migration.py [--sizes 16,64,256] [--rates 0,1,8]
        [--migrations 16:4,64:6,256:4] [--dwell 1] [--random 64:1] [--sleep 64:1]
        [--modes precopy,stopcopy,nodedup] [--transfer-mib 256]
        [--transfer-repeats 3] [--skip-transfer] [--skip-migration]
        [--phases N [--phases-case 64:1]] [--json FILE] [--keep]
    python3 scripts/bench_migration.py --report FILE   # re-print a saved run

Needs: `cargo build --release -p meshnode --bin meshnode --example
transfer_bench` and clang with wasi-libc. Prints a markdown report.
scripts/bench_before_after.py reuses this machinery to compare the pause
of two builds (issue 11).
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MESHNODE = os.path.join(TARGET, "release", "meshnode")
TRANSFER = os.path.join(TARGET, "release", "examples", "transfer_bench")
MIB = 1024 * 1024

MODES = {
    # name: (migration_warm_rounds, migration_dedup)
    "precopy": (4, True),
    "stopcopy": (0, True),
    "nodedup": (4, False),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class User:
    """A temporary HOME: one user key, trusted by every node it starts.
    Every node and CLI call of this user runs the binary `meshnode` (a
    comparison of two builds gives each its own user: bench_before_after.py)."""

    def __init__(self, work, meshnode=MESHNODE, name="home"):
        self.meshnode = meshnode
        self.home = os.path.join(work, name)
        os.makedirs(self.home, exist_ok=True)

    def env(self, rust_log):
        e = dict(os.environ)
        e.update(
            HOME=self.home,
            XDG_CONFIG_HOME=os.path.join(self.home, ".config"),
            XDG_DATA_HOME=os.path.join(self.home, ".local/share"),
            RUST_LOG=rust_log,
        )
        e.pop("MESHNODE_USER_KEY", None)
        return e

    def run(self, args, timeout=600, check=True):
        r = subprocess.run([self.meshnode] + args, env=self.env("warn"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"meshnode {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()}")
        return r


class Node:
    def __init__(self, user, work, name, mode, peers, rust_log, extra_config=""):
        self.user = user
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        rounds, dedup = MODES[mode]
        self.config = os.path.join(work, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(f"migration_warm_rounds = {rounds}\nmigration_dedup = {'true' if dedup else 'false'}\n")
            f.write(extra_config)
        self.log = os.path.join(work, f"{name}.log")
        args = [user.meshnode, "start", "--data-dir", self.dir, "--config", self.config,
                "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
                "--no-mdns"]
        for p in peers:
            args += ["--peer", p]
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.proc = subprocess.Popen(args, env=user.env(rust_log), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        self.addr = None
        self.peer_id = None

    def wait_ready(self, timeout=60):
        end = time.monotonic() + timeout
        path = os.path.join(self.dir, "node.addrs")
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: {open(self.log).read()[-2000:]}")
            if os.path.exists(path) and os.path.getmtime(path) >= self.wall_started - 1:
                lines = open(path).read().split()
                quic = [a for a in lines if "/quic-v1/" in a]
                if quic and any("/tcp/" in a for a in lines):
                    self.addr = quic[0]
                    self.peer_id = quic[0].rsplit("/p2p/", 1)[1]
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} not ready")

    def cli(self, args, **kw):
        # Before the subcommand's own arguments: deploy's trailing program
        # arguments would swallow it.
        return self.user.run(args[:1] + ["--data-dir", self.dir] + args[1:], **kw)

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Pair:
    """Two nodes, a and b, of one policy."""

    def __init__(self, user, work, mode, rust_log, name=None):
        self.mode = mode
        name = name or mode
        self.name = name
        a = Node(user, work, f"{name}-a", mode, [], rust_log)
        a.wait_ready()
        b = Node(user, work, f"{name}-b", mode, [a.addr], rust_log)
        b.wait_ready()
        self.nodes = [a, b]

    def wait_members(self, timeout=60):
        end = time.monotonic() + timeout
        for i, n in enumerate(self.nodes):
            other = self.nodes[1 - i].peer_id
            while True:
                r = n.cli(["peers", "--json"], check=False)
                if r.returncode == 0:
                    peers = json.loads(r.stdout)
                    if any(p.get("peer_id") == other and p.get("member") for p in peers):
                        break
                if time.monotonic() > end:
                    raise RuntimeError(f"{self.name}: nodes do not see each other as members")
                time.sleep(0.2)

    def stop(self):
        for n in self.nodes:
            n.stop()


def migrate(node, vessel, to_peer):
    """`meshnode migrate --json`, with the progress lines it prints (stderr,
    one per change, polled every 50 ms by the CLI) stamped as they come."""
    args = [node.user.meshnode, "migrate", "--data-dir", node.dir, "--timeout", "300s", "--json",
            "--to", to_peer, vessel]
    t0 = time.perf_counter()
    p = subprocess.Popen(args, env=node.user.env("warn"), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []

    def read_err():
        for raw in p.stderr:
            lines.append((time.perf_counter() - t0, raw.decode(errors="replace").strip()))

    th = threading.Thread(target=read_err)
    th.start()
    out = p.stdout.read()
    p.wait()
    th.join()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"migrate failed: {out.decode()} {lines}")
    report = json.loads(out)
    report["wall_s"] = wall
    report["progress"] = lines
    return report


def parse_progress(line):
    # "warming: round 0, 12.3 MiB sent, 197 chunks sent, 0 skipped"
    try:
        phase, rest = line.split(": ", 1)
        parts = [x.strip() for x in rest.split(",")]
        rnd = int(parts[0].split()[1])
        chunks = int(parts[2].split()[0])
        return phase, rnd, chunks
    except (ValueError, IndexError):
        return None


def first_round_rate(report, phase="warming"):
    """Chunk path throughput of the first pre-copy round, from the progress
    lines: (bytes, seconds) between the first and the last line of round 0
    that show more chunks sent (the chunk sending alone), and
    (bytes, seconds) from the command's start to that last line (copy,
    diff, hash and store of the whole memory, offer, chunk sending). With
    phase "final": the same for a stop-and-copy migration."""
    pts = []
    for t, line in report["progress"]:
        p = parse_progress(line)
        if p:
            pts.append((t, p))
    r0 = [(t, c) for t, (ph, rnd, c) in pts if ph == phase and rnd == 0 and c > 0]
    if len(r0) < 3:
        return None
    # The last line of round 0 that shows a change.
    last_c = r0[-1][1]
    t_last = min(t for t, c in r0 if c == last_c)
    t_first, c_first = r0[0]
    chunk = 65536
    send = ((last_c - c_first) * chunk, t_last - t_first)
    whole = (last_c * chunk, t_last)
    return send, whole


def wait_ready(node, vessel, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = node.cli(["logs", vessel], check=False)
        if b"ready" in r.stdout:
            return
        time.sleep(0.5)
    raise RuntimeError(f"vessel {vessel} not ready in {timeout} s")


def compile_memwriter(work):
    src = os.path.join(ROOT, "benches", "programs", "memwriter.c")
    out = os.path.join(work, "memwriter.wasm")
    subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", src, "-o", out], check=True)
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_ms(x):
    return "–" if x != x else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def run_case(pairs, wasm, size, rate_mib, pattern, pace, migrations, dwell, results):
    """For each policy in turn, on its own pair: one vessel (run_vessel).
    One vessel at a time: a vessel that spins on the clock uses a core."""
    for pr in pairs:
        run_vessel(pr, wasm, size, rate_mib, pattern, pace, migrations, dwell, results)


def run_vessel(pr, wasm, size, rate_mib, pattern, pace, migrations, dwell, results):
    """Deploys one vessel on pair `pr`'s node a, waits until its memory is
    filled, migrates it a→b, b→a, … `migrations` times (appending each
    report to `results`), stops it and empties both chunk stores."""
    rate = int(rate_mib * MIB)
    seed = str(random.getrandbits(63))
    name = f"mw-{size}-{rate_mib:g}-{pattern}-{pace}-{pr.mode}-{seed[:6]}"
    r = pr.nodes[0].cli(["deploy", "--name", name, wasm, str(size), str(rate), pattern, "0", seed, pace])
    vessel = r.stdout.decode().split()[-1]
    wait_ready(pr.nodes[0], vessel, timeout=300)
    time.sleep(dwell)
    where = 0
    for i in range(migrations):
        src, dst = where, 1 - where
        rep = migrate(pr.nodes[src], vessel, pr.nodes[dst].peer_id)
        where = dst
        rep.update(mode=pr.mode, size_mib=size, rate_mib=rate_mib, pattern=pattern, pace=pace,
                   index=i, direction="out" if src == 0 else "back")
        results.append(rep)
        log(f"{pr.name} {size} MiB {rate_mib:g} MiB/s {pattern} {pace} #{i} {'a→b' if src == 0 else 'b→a'}: "
            f"downtime {rep['downtime_ms']} ms, total {rep['total_ms']} ms, "
            f"{rep['bytes_sent'] / MIB:.1f} MiB, rounds {rep['rounds']}")
        time.sleep(dwell)
    pr.nodes[where].cli(["stop", vessel], check=False)
    # The stores grow by the whole memory at every visit of a new vessel
    # (17 GB for a full run): empty them between vessels. No later vessel
    # shares a chunk with this one (other seed); the module travels again.
    time.sleep(0.5)
    for n in pr.nodes:
        chunks = os.path.join(n.dir, "store", "chunks")
        shutil.rmtree(chunks, ignore_errors=True)
        os.makedirs(chunks, exist_ok=True)


def table_migration(results, modes):
    out = []
    out.append("| memory | writes | policy | migrations | downtime median | downtime max | downtime, first a→b "
               "| total median (first a→b) | MiB sent median (first a→b) "
               "| return trip sent, % of memory (median, max) | rounds |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = []
    for r in results:
        k = (r["size_mib"], r["rate_mib"], r["pattern"], r["pace"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        for m in modes:
            rs = [r for r in results
                  if (r["size_mib"], r["rate_mib"], r["pattern"], r["pace"]) == k and r["mode"] == m]
            if not rs:
                continue
            size = k[0]
            dt = [r["downtime_ms"] for r in rs]
            tot = [r["total_ms"] for r in rs]
            sent = [r["bytes_sent"] / MIB for r in rs]
            first = rs[0]["bytes_sent"] / MIB
            back = [100.0 * r["bytes_sent"] / (size * MIB) for r in rs if r["direction"] == "back"]
            rounds = sorted({r["rounds"] for r in rs})
            writes = (f"{k[1]:g} MiB/s {k[2]}" if k[1] else "none") + ("" if k[3] == "spin" else f", {k[3]}")
            out.append(
                f"| {size} MiB | {writes} | {m} | {len(rs)} | {fmt_ms(med(dt))} ms | {fmt_ms(max(dt))} ms "
                f"| {fmt_ms(rs[0]['downtime_ms'])} ms | {fmt_ms(med(tot))} ms ({fmt_ms(rs[0]['total_ms'])} ms) "
                f"| {med(sent):.1f} ({first:.1f}) "
                f"| {med(back):.1f} %, {max(back) if back else float('nan'):.1f} % | {','.join(map(str, rounds))} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Where the downtime goes: `perf trace` of both nodes during migrations.
#
# Obsolete: these marks are the pause as it was before the destination kept
# a prebuilt instance and the source compared memory in place (no
# memory-sized buffers, no syncfs now); the nodes' debug lines (log_phases)
# replace them.
# The node logs no phase times, so the phases are read off the system calls
# that bound them (one `perf trace` of both processes, one clock):
#   S pause   the vessel thread maps a buffer the size of the memory: the
#             capture's copy, right after it reached a migration point and
#             unwound (where the node starts its downtime clock);
#   S image   the source's last file write before the destination's first
#             syncfs: the vessel image document, after the changed chunks,
#             the manifest and the log were stored;
#   D sync    the destination's first syncfs: `prepare` starts (after a
#             has_chunk check of every chunk the image names);
#   D read    the destination maps a memory-sized buffer after the second
#             syncfs and its fsync (module, log and manifest were read): the
#             capture's memory, into which every chunk is read and verified;
#   D inst    it maps a second one: the instance's memory;
#   D prep    the destination's next fsync: the `Prepared` record;
#   S left    the end of the source's next fsync: the `Left` record (the
#             commit point);
#   D run     the destination's next clone3: the vessel's thread starts.
PHASES = [
    ("source: capture, diff and hash, changed chunks, manifest, log, image document", "S pause", "S image"),
    ("offer (2 round trips), final chunks, destination's has_chunk of every chunk", "S image", "D sync"),
    ("destination: syncfs, manifest fsync, syncfs, image fsync", "D sync", "D read"),
    ("destination: read and verify every memory chunk from the store", "D read", "D inst"),
    ("destination: instantiate, write memory, validate frames", "D inst", "D prep"),
    ("Prepared record, answer, source's Left record (commit point)", "D prep", "S left"),
    ("commit round trip, Owned record, vessel thread started", "S left", "D run"),
]


def parse_perf_trace(path, procs):
    import re
    rx = re.compile(r'\s*([\d.]+) \(\s*([\d.]+) ms\): (\S+)/(\d+)\s+(?:\.\.\. \[continued\]: )?(\w+)\((.*?)\)\s+= ')
    ev = []
    for line in open(path, errors="replace"):
        m = rx.match(line)
        if not m:
            continue
        t, dur, comm, tid, sc, args = m.groups()
        proc = procs.get(tid)
        kind = sc
        if sc == "openat":
            kind = "write" if "CREAT" in args else "read"
        elif sc.startswith("rename"):
            kind = "write"
        elif sc == "mmap":
            mm = re.search(r"len: (\d+)", args)
            kind = ("mmap", int(mm.group(1)) if mm else 0)
        ev.append((float(t), float(dur), comm, tid, proc, kind))
    ev.sort()
    return ev


def phase_marks(ev, src, dst, mem_bytes, after):
    """The marks of the first migration from src to dst that starts after
    time `after` (ms); None if incomplete."""
    def big(k):
        return isinstance(k, tuple) and mem_bytes <= k[1] <= mem_bytes + (32 << 20)
    m = {}
    i_sync = next((i for i, e in enumerate(ev) if e[0] > after and e[4] == dst and e[5] == "syncfs"), None)
    if i_sync is None:
        return None
    m["D sync"] = ev[i_sync][0]
    pauses = [e for e in ev[:i_sync] if e[0] > after and e[2].startswith("vessel-") and big(e[5])]
    if not pauses:
        return None
    m["S pause"] = pauses[-1][0]
    writes = [e for e in ev[:i_sync] if e[4] == src and e[5] == "write" and e[0] > m["S pause"]]
    m["S image"] = writes[-1][0] + writes[-1][1] if writes else m["S pause"]
    rest = [e for e in ev[i_sync:]]
    syncs = [e for e in rest if e[4] == dst and e[5] == "syncfs"][:2]
    t = syncs[-1][0] + syncs[-1][1]
    # The image document's fsync after the second syncfs.
    fs = next((e for e in rest if e[4] == dst and e[5] == "fsync" and e[0] >= t), None)
    t = fs[0] + fs[1] if fs else t
    # Two memory-sized buffers: the capture's (then every chunk is read
    # into it) and the instance's.
    bufs = [e for e in rest if e[4] == dst and big(e[5]) and e[0] >= t][:2]
    if len(bufs) < 2:
        return None
    m["D read"] = bufs[0][0]
    m["D inst"] = bufs[1][0]
    prep = next((e for e in rest if e[4] == dst and e[5] == "fsync" and e[0] > m["D inst"]), None)
    if not prep:
        return None
    m["D prep"] = prep[0]
    left = next((e for e in rest if e[4] == src and e[5] == "fsync" and e[0] > m["D prep"]), None)
    if not left:
        return None
    m["S left"] = left[0] + left[1]
    run = next((e for e in rest if e[4] == dst and e[5] == "clone3" and e[0] > m["S left"]), None)
    if not run:
        return None
    m["D run"] = run[0]
    return m


def run_phases(user, work, wasm, size, rate_mib, count, rust_log):
    """A pre-copy pair, one vessel, `count` migrations a→b, b→a, … under
    `perf trace`; returns (reports, marks per migration)."""
    if not shutil.which("perf"):
        sys.exit("--phases needs perf (apt-get install linux-perf)")
    # Its own data directories: the benchmark's pairs still run.
    pr = Pair(user, work, "precopy", rust_log, name="phases")
    try:
        pr.wait_members()
        a, b = pr.nodes
        seed = str(random.getrandbits(63))
        r = a.cli(["deploy", "--name", f"phases-{seed[:6]}", wasm, str(size), str(int(rate_mib * MIB)),
                   "sweep", "0", seed, "spin"])
        vessel = r.stdout.decode().split()[-1]
        wait_ready(a, vessel, 300)
        time.sleep(1)
        # Two untraced migrations first: both nodes have the module
        # instrumented and the memory's chunks, as in a steady state.
        where = 0
        for _ in range(2):
            migrate(pr.nodes[where], vessel, pr.nodes[1 - where].peer_id)
            where = 1 - where
            time.sleep(1)
        # One `perf trace` per migration, attached just before it: perf
        # follows the threads that exist when it attaches (the vessel's own
        # thread among them), not those started later.
        reports, marks = [], []
        for k in range(count):
            src, dst = pr.nodes[where], pr.nodes[1 - where]
            out = os.path.join(work, f"phases-{k}.perf.txt")
            procs = {}
            for n in pr.nodes:
                for t in os.listdir(f"/proc/{n.proc.pid}/task"):
                    procs[t] = n.name
            pt = subprocess.Popen(["perf", "trace", "-p", f"{a.proc.pid},{b.proc.pid}", "-o", out, "-e",
                                   "openat,rename,renameat,renameat2,syncfs,fsync,fdatasync,mmap,clone3"],
                                  stderr=subprocess.DEVNULL)
            time.sleep(2)
            rep = migrate(src, vessel, dst.peer_id)
            time.sleep(0.5)
            for n in pr.nodes:
                for t in os.listdir(f"/proc/{n.proc.pid}/task"):
                    procs.setdefault(t, n.name)
            pt.send_signal(signal.SIGINT)
            pt.wait()
            ev = parse_perf_trace(out, procs)
            m = phase_marks(ev, src.name, dst.name, size * MIB, 0.0)
            reports.append(rep)
            marks.append(m)
            log(f"traced migration {src.name} → {dst.name}: downtime {rep['downtime_ms']} ms, "
                f"phases {'found' if m else 'not found'}")
            where = 1 - where
            time.sleep(1)
    finally:
        pr.stop()
    return reports, marks


def table_phases(reports, marks, size, rate_mib):
    ok = [m for m in marks if m]
    if not ok:
        return (f"None of the {len(marks)} traced migrations could be split into phases (a marking "
                "system call was not found; see PHASES in the script).")
    out = [f"{len(ok)} of {len(marks)} traced migrations parsed; {size} MiB, {rate_mib:g} MiB/s sweep, "
           f"pre-copy; medians in ms.\n",
           "| phase | median | min | max |", "| --- | --- | --- | --- |"]
    for label, a, b in PHASES:
        xs = [m[b] - m[a] for m in ok]
        out.append(f"| {label} | {med(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")
    tot = [m["D run"] - m["S pause"] for m in ok]
    out.append(f"| **pause → vessel thread started at the destination** | **{med(tot):.1f}** | {min(tot):.1f} | {max(tot):.1f} |")
    rep = [r["downtime_ms"] for r in reports]
    out.append(f"| reported downtime (same migrations) | {med(rep):.1f} | {min(rep):.1f} | {max(rep):.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,64,256", help="MiB, comma-separated")
    ap.add_argument("--rates", default="0,1,8", help="MiB/s of memory writes, comma-separated")
    ap.add_argument("--pattern", default="sweep", choices=["sweep", "random"])
    ap.add_argument("--random", default="64:1",
                    help="extra SIZE:RATE cases with random 64-byte spots (empty: none)")
    ap.add_argument("--sleep", default="64:1",
                    help="extra SIZE:RATE cases (sweep) whose vessel sleeps 1 ms between looks at the "
                         "clock instead of spinning, as SIZE:RATE[:MIGRATIONS] (default 2; empty: none)")
    ap.add_argument("--migrations", default="16:4,64:6,256:4",
                    help="SIZE:N migrations per vessel (a→b, b→a, …); default N is 4")
    ap.add_argument("--dwell", type=float, default=1.0, help="seconds between migrations")
    ap.add_argument("--modes", default="precopy,stopcopy,nodedup")
    ap.add_argument("--transfer-mib", type=int, default=256)
    ap.add_argument("--transfer-repeats", type=int, default=3)
    ap.add_argument("--skip-transfer", action="store_true")
    ap.add_argument("--skip-migration", action="store_true")
    ap.add_argument("--rust-log", default="info", help="the nodes' RUST_LOG")
    ap.add_argument("--phases", type=int, default=0, metavar="N",
                    help="also trace N migrations with `perf trace` and break their downtime into phases")
    ap.add_argument("--phases-case", default="64:1", metavar="SIZE:RATE",
                    help="the vessel of the traced migrations (MiB, at least 48; MiB/s sweep)")
    ap.add_argument("--json", help="write every raw report to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (node logs)")
    ap.add_argument("--report", metavar="FILE", help="only print the report of a run saved with --json")
    args = ap.parse_args()
    if args.report:
        report_from(args.report, args.phases_case, args.modes.split(","))
        return
    for f in [MESHNODE] + ([] if args.skip_transfer else [TRANSFER]):
        if not os.path.exists(f):
            sys.exit(f"{f} not found: run `cargo build --release -p meshnode --bin meshnode "
                     f"--example transfer_bench` first")
    modes = args.modes.split(",")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rates = [float(r) for r in args.rates.split(",") if r]
    nmig = {int(k): int(v) for k, v in (x.split(":") for x in args.migrations.split(",") if x)}
    cases = [(s, r, args.pattern, "spin") for s in sizes for r in rates]
    for x in args.random.split(","):
        if x:
            s, r = x.split(":")[:2]
            cases.append((int(s), float(r), "random", "spin"))
    for x in args.sleep.split(","):
        if x:
            s, r, n = (x.split(":") + [2])[:3]
            cases.append((int(s), float(r), "sweep", "sleep", int(n)))

    work = tempfile.mkdtemp(prefix="meshnode-migbench-")
    log(f"work directory {work}")
    user = User(work)
    wasm = compile_memwriter(work)
    pairs = []
    results = []
    rss = []
    transfer = []
    phases = None
    try:
        if not args.skip_migration:
            for m in modes:
                pairs.append(Pair(user, work, m, args.rust_log))
            for pr in pairs:
                pr.wait_members()
            # Footprint: ten seconds after the start, one peer, no vessel.
            settle = max(p.nodes[-1].started for p in pairs) + 10 - time.monotonic()
            if settle > 0:
                time.sleep(settle)
            rss = [n.rss_kib() for pr in pairs for n in pr.nodes]
            for c in cases:
                size, rate, pattern, pace = c[:4]
                n = c[4] if len(c) > 4 else nmig.get(size, 4)
                run_case(pairs, wasm, size, rate, pattern, pace, n, args.dwell, results)
        if args.phases:
            ps, pr_ = args.phases_case.split(":")
            if int(ps) < 48:
                # The marks are memory-sized mmaps; glibc serves allocations
                # below its mmap threshold (at most 32 MiB) from the heap.
                sys.exit("--phases-case: the memory must be 48 MiB or more")
            phases = (run_phases(user, work, wasm, int(ps), float(pr_), args.phases, args.rust_log),
                      int(ps), float(pr_))
        if not args.skip_transfer:
            r = subprocess.run([TRANSFER, "--mib", str(args.transfer_mib), "--repeats",
                                str(args.transfer_repeats)], stdout=subprocess.PIPE, check=True)
            transfer = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    finally:
        for pr in pairs:
            pr.stop()
        logph = log_phases(work)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"migrations": results, "rss_kib": rss, "transfer": transfer,
                           "phases": phases and {"reports": phases[0][0], "marks": phases[0][1]},
                           "log_phases": logph,
                           "phases_case": args.phases_case, "modes": modes,
                           "command": " ".join(["scripts/bench_migration.py"] + sys.argv[1:])},
                          f, indent=1)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(results, modes, rss, transfer, phases,
           " ".join(["scripts/bench_migration.py"] + sys.argv[1:]), logph)


def report(results, modes, rss, transfer, phases, command, logph=None):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("## Migration benchmarks (issue 4)\n")
    print(f"Command: `python3 {command}`. "
          f"Machine: {os.cpu_count()} cores, {cpu}; load average when printed "
          f"{os.getloadavg()[0]:.1f}.\n")
    if results:
        print("### Migration: downtime, total time, bytes on the wire\n")
        print(table_migration(results, modes))
        print()
    if logph:
        print("### Where the pause goes (the nodes' debug lines)\n")
        print("Medians in ms of each step, from the source pausing the vessel to the "
              "destination's `Committed` answer; the destination's fsyncs run beside its "
              "patch, resume and `Prepared` record.\n")
        print(table_log_phases(logph))
        print()
    if results or transfer:
        print("### Transfer throughput on loopback\n")
        print("| path | MiB/s (median) | runs | ÷ libp2p QUIC |")
        print("| --- | --- | --- | --- |")
        by = {}
        for t in transfer:
            by.setdefault(t["mode"], []).append(t["mib_per_s"])
        quic = med(by["quic"]) if "quic" in by else float("nan")
        for mode, label in [("tcp", "plain TCP socket"), ("quic", "libp2p QUIC, request-response, 4 MiB requests, 4 in flight"),
                            ("libp2p-tcp", "libp2p TCP+noise+yamux, same requests")]:
            if mode in by:
                print(f"| {label} | {med(by[mode]):.0f} | {len(by[mode])} | {med(by[mode]) / quic:.2f} |")
        for size in sorted({r["size_mib"] for r in results}):
            for mode, phase, what in [("precopy", "warming", "first pre-copy round (the vessel runs)"),
                                      ("stopcopy", "final", "stop-and-copy (the vessel is paused)")]:
                send, whole = [], []
                for r in results:
                    if (r["mode"] == mode and r["index"] == 0 and r["size_mib"] == size
                            and r["pace"] == "spin"):
                        fr = first_round_rate(r, phase)
                        if fr:
                            (b1, s1), (b2, s2) = fr
                            if s1 > 0:
                                send.append(b1 / MIB / s1)
                            if s2 > 0:
                                whole.append(b2 / MIB / s2)
                if send:
                    print(f"| meshnode chunk path, {size} MiB, {what}: chunk sending "
                          f"| {med(send):.0f} | {len(send)} | {med(send) / quic:.2f} |")
                    print(f"| same, from `migrate` to the last chunk (copy, hash, store, offer, send) "
                          f"| {med(whole):.0f} | {len(whole)} | {med(whole) / quic:.2f} |")
        print()
    if phases:
        (reports, marks), size, rate = phases
        print("### Where the downtime goes (perf trace)\n")
        print(table_phases(reports, marks, size, rate))
        print()
    if rss:
        size = os.path.getsize(MESHNODE)
        print("### Node footprint\n")
        print(f"- Release binary: {size:,} bytes ({size / MIB:.1f} MiB).")
        print(f"- Idle RSS, one peer, no vessel, 10 s after start, {len(rss)} nodes: median "
              f"{med(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB.")


def log_phases(work):
    """The pauses split into phases, read off the nodes' own debug lines
    (`--rust-log meshnode::mesh::migrate=debug,meshnode::mesh::serve=debug`): the source's "pause
    phases" (microseconds from the pause to the end of each step) and the
    destination's "prepare phases" of the same vessel. Returns
    {"MODE SIZE": {"src": [...], "dst": [...]}}, empty when the nodes
    logged none."""
    out, size_of, dst = {}, {}, []
    for path in sorted(glob.glob(os.path.join(work, "*.log"))):
        mode = os.path.basename(path)[:-len(".log")].rsplit("-", 1)[0]
        for line in open(path, errors="replace"):
            if "pause phases" not in line and "prepare phases" not in line:
                continue
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            v = re.search(r"vessel=(\w+)", line)
            kv = {k: int(x) for k, x in re.findall(r"(\w+_(?:us|bytes|files))=(\d+)", line)}
            if not v:
                continue
            if "pause phases" in line:
                key = f"{mode} {kv.get('memory_bytes', 0) // MIB}"
                size_of[v.group(1)] = key
                out.setdefault(key, {"src": [], "dst": []})["src"].append(kv)
            else:
                dst.append((v.group(1), kv))
    for v, kv in dst:
        if v in size_of:
            out[size_of[v]]["dst"].append(kv)
    return out


def table_log_phases(lp):
    """Medians (ms) of each step of the pause, per policy and memory size."""
    head = ("| policy | memory | pauses | source: compare, hash, manifest, image | final offer "
            "| final chunks | prepare (request to answer) | `Left` record (commit point) "
            "| commit round trip (`Owned` record, thread) | downtime | destination in prepare: "
            "fsyncs of unsynced files | destination in prepare: patch, resume, `Prepared` record "
            "| files fsynced |\n" + "| --- " * 13 + "|")
    rows = []

    def step(src, a, b):
        xs = [d[b] - d.get(a, 0) for d in src if b in d and (a is None or a in d)]
        return f"{med(xs) / 1000:.1f}" if xs else "–"

    for key in sorted(lp, key=lambda k: (k.split()[0], int(k.split()[1]))):
        mode, mib = key.split()
        src, dst = lp[key]["src"], lp[key]["dst"]
        sync = [d["synced_us"] - d["written_us"] for d in dst if "synced_us" in d]
        rest = [d.get("recorded_us", d.get("ready_us", 0)) - d["written_us"] for d in dst
                if "written_us" in d]
        files = [d["unsynced_files"] for d in dst if "unsynced_files" in d]
        rows.append(f"| {mode} | {mib} MiB | {len(src)} | {step(src, None, 'packed_us')} "
                    f"| {step(src, 'packed_us', 'offered_us')} | {step(src, 'offered_us', 'sent_us')} "
                    f"| {step(src, 'sent_us', 'prepared_us')} | {step(src, 'prepared_us', 'recorded_us')} "
                    f"| {step(src, 'recorded_us', 'committed_us')} | {step(src, None, 'committed_us')} "
                    f"| {med(sync) / 1000 if sync else float('nan'):.1f} "
                    f"| {med(rest) / 1000 if rest else float('nan'):.1f} "
                    f"| {med(files) if files else '–'} |")
    return head + "\n" + "\n".join(rows)


def report_from(path, phases_case, modes):
    """Prints the report of a run saved with --json."""
    d = json.load(open(path))
    ph = d.get("phases")
    phases = None
    if ph:
        ps, pr_ = d.get("phases_case", phases_case).split(":")
        phases = ((ph["reports"], ph["marks"]), int(ps), float(pr_))
    report(d["migrations"], d.get("modes", modes), d["rss_kib"], d["transfer"], phases,
           d.get("command", f"scripts/bench_migration.py … --json {path}"), d.get("log_phases"))


if __name__ == "__main__":
    main()
