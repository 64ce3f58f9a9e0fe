#!/usr/bin/env python3
"""Client-visible stall of a service vessel's migration (issue 5). Not part of
the test suite.

Three release nodes on loopback, a, b and c, each accepting service clients
on its own address (127.0.0.2, .3, .4). examples/kvserver.c is deployed on a
with `--port`, filled with --fill-mib MiB of values (its memory grows to
hold them), and then moved a → b → a → … while clients send one request at a
time (SET and GET of small keys, the next as soon as the answer is in):

  via-c    enters at c, a node the vessel never runs on;
  via-a    enters at a, the node the vessel starts on (its host, then an
           entry like any other once the vessel has left).

For each migration: the longest gap between two answers of each client in a
window around it (the stall the client sees), the migration's own downtime
(from `meshnode migrate`), and, for reference, the median gap between answers
when nothing moves. A failed request or a reset aborts the run.

    cargo build --release -p meshnode
    python3 scripts/bench_stall.py [--fill-mib 16] [--migrations 8] [--dwell 1.5]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_migration as bm  # noqa: E402

PORT = 7480

# A build other than target/release (e.g. a debug build, to try the script).
bm.MESHNODE = os.environ.get("MESHNODE_BIN", bm.MESHNODE)


def fmt(x):
    return "–" if x is None else bm.fmt_ms(x)


class KvClient:
    """One connection, one request at a time; every answer's time kept."""

    def __init__(self, name, host, port):
        self.name = name
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.answers = []  # perf_counter of each answer
        self.error = None
        self.stop = False
        self.thread = threading.Thread(target=self.run)

    def ask(self, line, want):
        self.sock.sendall(line)
        got = self.file.readline()
        if got != want:
            raise RuntimeError(f"{self.name}: sent {line!r}, got {got[:80]!r}, expected {want!r}")
        self.answers.append(time.perf_counter())

    def run(self):
        i = 0
        try:
            while not self.stop:
                k = f"{self.name}-{i % 128}".encode()
                v = f"v{i}".encode()
                self.ask(b"SET " + k + b" " + v + b"\n", b"OK\n")
                self.ask(b"GET " + k + b"\n", b"VALUE " + v + b"\n")
                i += 1
            self.ask(b"QUIT\n", b"BYE\n")
        except Exception as e:  # noqa: BLE001 - reported, then the run fails
            self.error = f"{self.name}: {e}"

    def max_gap_ms(self, t0, t1):
        ts = [t for t in self.answers if t0 <= t <= t1]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        return max(gaps) * 1000 if gaps else None

    def median_gap_ms(self, windows):
        gaps = []
        for t0, t1 in windows:
            ts = [t for t in self.answers if t0 <= t <= t1]
            gaps += [b - a for a, b in zip(ts, ts[1:])]
        return statistics.median(gaps) * 1000 if gaps else None


def wait_serving(host, port, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"COUNT\n")
            if s.makefile("rb").readline().startswith(b"COUNT"):
                s.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{host}:{port} never served the vessel")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fill-mib", type=int, default=16, help="MiB of values the server holds")
    ap.add_argument("--migrations", type=int, default=8)
    ap.add_argument("--dwell", type=float, default=1.5, help="seconds between migrations")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (node logs)")
    ap.add_argument("--rust-log", default="info",
                    help="the nodes' RUST_LOG (meshnode::mesh::migrate=debug,meshnode::mesh::serve=debug,info logs the pause phases)")
    args = ap.parse_args()
    if not os.path.exists(bm.MESHNODE):
        sys.exit(f"{bm.MESHNODE} not found: run `cargo build --release -p meshnode` first")
    work = tempfile.mkdtemp(prefix="meshnode-stall-")
    bm.log(f"work directory {work}")
    user = bm.User(work)
    wasm = os.path.join(work, "kvserver.wasm")
    subprocess.run(["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", wasm,
                    os.path.join(bm.ROOT, "examples", "kvserver.c")], check=True)
    ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    nodes = []
    clients = []
    try:
        for i, name in enumerate(["a", "b", "c"]):
            n = bm.Node(user, work, f"stall-{name}", "precopy", [x.addr for x in nodes], args.rust_log,
                        extra_config=f'service_address = "{ips[i]}"\n')
            n.wait_ready()
            nodes.append(n)
        pair = bm.Pair.__new__(bm.Pair)
        pair.mode, pair.nodes = "stall", nodes[:2]
        pair.wait_members()
        r = nodes[0].cli(["deploy", "--name", "kv", "--pin", "--port", str(PORT), wasm])
        vessel = r.stdout.decode().strip()
        wait_serving(ips[0], PORT)
        # Fill the server's memory: 1 MiB values.
        fill = socket.create_connection((ips[0], PORT))
        f = fill.makefile("rb")
        chunk = b"x" * (1024 * 1024)
        for i in range(args.fill_mib):
            fill.sendall(b"SET fill%d " % i + chunk + b"\n")
            assert f.readline() == b"OK\n"
        fill.sendall(b"QUIT\n")
        fill.close()
        wait_serving(ips[2], PORT)
        clients = [KvClient("via-c", ips[2], PORT), KvClient("via-a", ips[0], PORT)]
        for c in clients:
            c.thread.start()
        time.sleep(args.dwell)
        quiet = []
        moves = []
        at = 0
        for m in range(args.migrations):
            to = 1 - at
            t_start = time.perf_counter()
            quiet.append((t_start - args.dwell + 0.2, t_start - 0.05))
            rep = bm.migrate(nodes[at], vessel, nodes[to].peer_id)
            t_end = time.perf_counter()
            moves.append((t_start, t_end, rep, f"{'ab'[at]}→{'ab'[to]}"))
            at = to
            time.sleep(args.dwell)
            for c in clients:
                if c.error:
                    raise RuntimeError(c.error)
        for c in clients:
            c.stop = True
        for c in clients:
            c.thread.join(30)
            if c.error:
                raise RuntimeError(c.error)
        print(f"## Client-visible stall, {args.fill_mib} MiB kvserver, loopback\n")
        print("| move | downtime | " + " | ".join(f"longest gap, {c.name}" for c in clients) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in clients) + " |")
        stalls = {c.name: [] for c in clients}
        for t0, t1, rep, label in moves:
            row = [label, fmt(rep.get("downtime_ms"))]
            for c in clients:
                g = c.max_gap_ms(t0, t1 + 0.5)
                stalls[c.name].append(g)
                row.append(fmt(g))
            print("| " + " | ".join(row) + " |")
        print()
        for c in clients:
            ok = [g for g in stalls[c.name] if g is not None]
            print(f"- {c.name}: median longest gap {fmt(statistics.median(ok))}, "
                  f"worst {fmt(max(ok))}; median gap between answers while nothing moves "
                  f"{fmt(c.median_gap_ms(quiet))}; {len(c.answers)} answers, none failed")
        print(f"- median downtime {fmt(statistics.median(m[2]['downtime_ms'] for m in moves))}")
        print(f"\nCommand: `python3 scripts/bench_stall.py --fill-mib {args.fill_mib} "
              f"--migrations {args.migrations} --dwell {args.dwell}`")
    finally:
        for c in clients:
            c.stop = True
        for n in nodes:
            n.stop()
        if args.keep:
            bm.log(f"kept {work}")
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
