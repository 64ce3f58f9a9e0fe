#!/usr/bin/env python3
"""What `deploy --durability sync` adds to a service's reply latency
(issue 15's figure: "Added median reply latency of a sync vessel, 16 MiB
kv server on loopback: gate <= 2 intervals, goal <= 1 interval + 1 RTT").
Not part of the tests.

    python3 scripts/bench_sync.py [--fill-mib 16] [--requests 400]
        [--interval 50ms] [--meshnode BINARY] [--keep]

Starts two nodes on 127.0.0.1 (scripts/bench_migration.py's machinery),
a and b, each accepting service clients on its own address (127.0.0.2,
.3), with the binary given (default: $CARGO_TARGET_DIR/release/meshnode,
which this script does not build). Deploys examples/kvserver.c twice on
a, pinned, with `--replicas 1` (so b is the replica of both): one async
(the default), one `--durability sync --sync-interval INTERVAL`. Fills
each with FILL_MIB MiB of 1 MiB values, then asks both in turns, one
request at a time on one connection each, entering at a (the host): a
`SET` of a small value then a `GET` of it, REQUESTS of each per vessel,
the two vessels alternating in rounds of 20 so that the machine's load
falls on both alike. A reply's latency is from the request's send to its
answer's last byte. Prints a markdown table: median and p90 of each
vessel, the added latency in ms and in intervals, and the RTT between the
nodes (`peers --json`), against the gate (2 intervals) and the goal (1
interval + 1 RTT). Exit status 1 if the gate is missed.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_migration as bm  # noqa: E402

IPS = ["127.0.0.2", "127.0.0.3"]
PORTS = {"async": 7301, "sync": 7302}
# How many requests of one vessel before the other's turn.
ROUND = 20
# Requests not counted at the start (the connection's first, the route).
WARMUP = 20


def parse_ms(text):
    if text.endswith("ms"):
        return float(text[:-2])
    if text.endswith("s"):
        return float(text[:-1]) * 1000
    raise ValueError(f"--interval {text}: say 50ms or 0.05s")


def wait_serving(host, port, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"COUNT\n")
            if s.makefile("rb").readline().startswith(b"COUNT"):
                s.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{host}:{port} never served the vessel")


class Client:
    """One connection; every reply's latency kept, in seconds."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.latencies = []
        self.i = 0

    def ask(self, line, want):
        t = time.perf_counter()
        self.sock.sendall(line)
        got = self.file.readline()
        took = time.perf_counter() - t
        if got != want:
            raise RuntimeError(f"sent {line[:40]!r}, got {got[:80]!r}, expected {want!r}")
        return took

    def fill(self, mib):
        chunk = b"x" * (1024 * 1024)
        for i in range(mib):
            self.ask(b"SET fill%d " % i + chunk + b"\n", b"OK\n")

    def round(self, n):
        for _ in range(n):
            k, v = b"k%d" % (self.i % 128), b"v%d" % self.i
            self.latencies.append(self.ask(b"SET " + k + b" " + v + b"\n", b"OK\n"))
            self.latencies.append(self.ask(b"GET " + k + b"\n", b"VALUE " + v + b"\n"))
            self.i += 1


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.9))]


def rtt_ms(node, peer_id):
    r = node.cli(["peers", "--json"], check=False)
    if r.returncode != 0:
        return None
    for p in json.loads(r.stdout):
        if p.get("peer_id") == peer_id:
            return p.get("rtt_ms")
    return None


def wait_replicated(node, vessel, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = node.cli(["ps", "--json"], check=False)
        if r.returncode == 0:
            row = next((v for v in json.loads(r.stdout) if v["id"] == vessel), None)
            if row and row.get("replica_age_ms") is not None:
                return row
        time.sleep(0.2)
    raise RuntimeError(f"vessel {vessel}: no replica holds it within {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fill-mib", type=int, default=16, help="MiB of values each server holds")
    ap.add_argument("--requests", type=int, default=400, help="SET+GET pairs per vessel")
    ap.add_argument("--interval", default="50ms", help="the sync vessel's --sync-interval")
    ap.add_argument("--meshnode", default=bm.MESHNODE)
    ap.add_argument("--work-dir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (node logs)")
    args = ap.parse_args()
    interval_ms = parse_ms(args.interval)
    work = tempfile.mkdtemp(prefix="bench-sync-", dir=args.work_dir)
    bm.log(f"work directory {work}")
    user = bm.User(work, meshnode=args.meshnode)
    wasm = os.path.join(work, "kvserver.wasm")
    subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", wasm,
                    os.path.join(bm.ROOT, "examples", "kvserver.c")], check=True)
    nodes = []
    try:
        for i, name in enumerate(["a", "b"]):
            n = bm.Node(user, work, f"sync-{name}", "precopy", [x.addr for x in nodes], "info",
                        extra_config=f'service_address = "{IPS[i]}"\n')
            n.wait_ready()
            nodes.append(n)
        pair = bm.Pair.__new__(bm.Pair)
        pair.mode, pair.name, pair.nodes = "sync", "sync", nodes
        pair.wait_members()
        a, b = nodes
        vessels = {}
        for mode, port in PORTS.items():
            extra = ["--durability", "sync", "--sync-interval", args.interval] if mode == "sync" else []
            r = a.cli(["deploy", "--name", f"kv-{mode}", "--pin", "--replicas", "1",
                       "--port", str(port)] + extra + [wasm])
            vessels[mode] = r.stdout.decode().strip()
        clients = {}
        for mode, port in PORTS.items():
            wait_serving(IPS[0], port)
            c = Client(IPS[0], port)
            c.fill(args.fill_mib)
            clients[mode] = c
        for mode in PORTS:
            row = wait_replicated(a, vessels[mode])
            bm.log(f"kv-{mode}: replicated ({row.get('durability') or 'async'})")
        for c in clients.values():
            c.round(WARMUP)
            c.latencies.clear()
        done = 0
        while done < args.requests:
            n = min(ROUND, args.requests - done)
            for c in clients.values():
                c.round(n)
            done += n
        rtt = rtt_ms(a, b.peer_id)
        load = os.getloadavg()[0]
        med = {m: statistics.median(c.latencies) * 1000 for m, c in clients.items()}
        p9 = {m: p90(c.latencies) * 1000 for m, c in clients.items()}
        added = med["sync"] - med["async"]
        added_p90 = p9["sync"] - p9["async"]
        gate = 2 * interval_ms
        goal = interval_ms + (rtt or 0)
        print(f"| vessel | replies | median | p90 |")
        print("| --- | --- | --- | --- |")
        for m, c in clients.items():
            print(f"| {args.fill_mib} MiB kvserver, {m} | {len(c.latencies)} | "
                  f"{med[m]:.2f} ms | {p9[m]:.2f} ms |")
        print()
        print(f"| added by sync ({args.interval} interval) | median | p90 |")
        print("| --- | --- | --- |")
        print(f"| ms | **{added:.1f} ms** | {added_p90:.1f} ms |")
        print(f"| intervals | **{added / interval_ms:.2f}** | {added_p90 / interval_ms:.2f} |")
        print(f"| ratio sync / async | {med['sync'] / med['async']:.1f}× | {p9['sync'] / p9['async']:.1f}× |")
        print()
        rtt_text = "unknown" if rtt is None else f"{rtt:.2f} ms"
        print(f"gate ≤ 2 intervals = {gate:.0f} ms: {'met' if added <= gate else 'MISSED'}; "
              f"goal ≤ 1 interval + 1 RTT = {goal:.1f} ms: {'met' if added <= goal else 'missed'} "
              f"(RTT a–b {rtt_text}); load {load:.1f}; binary {args.meshnode}")
        return 0 if added <= gate else 1
    finally:
        for n in nodes:
            n.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
