#!/usr/bin/env python3
"""What a lease costs a live migration (issue 15): the pause a client of a
service sees when its vessel moves, with a lease (the default on a mesh of
three or more: `--replicas 1`, so the destination must be handed the
next epoch by the voters and win its first lease round before it runs)
and without (`--replicas 0`), in one run, as a ratio. Not part of the
tests.

    python3 scripts/bench_handoff.py [--moves 6] [--work-dir /var/tmp]
        [--meshnode BINARY] [--json FILE] [--keep]

Three nodes on 127.0.0.1 (scripts/bench_failover.py's mesh). Two kvserver
vessels on a, one with `--replicas 1` (leased by three voters) and one with
`--replicas 0` (no lease), on two service ports. For each, a client
entering at c sends GET every 5 ms on one connection while the vessel is
migrated a → b → a … MOVES times; the pause a move causes is the longest
answer in the second around it. Also reported: the downtime `migrate
--json` itself reports, which ends when the destination resumes the
vessel, before a leased one's first lease round.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_migration as bm  # noqa: E402
import bench_failover as bf  # noqa: E402

ASK_EVERY_S = 0.005
# How long to wait between moves, so that each pause is measured alone.
SETTLE_S = 1.5


class Asker(threading.Thread):
    """GETs through one entry on one connection; notes (sent, answer ms)."""

    def __init__(self, ip, port):
        super().__init__(daemon=True)
        self.ip, self.port = ip, port
        self.answers = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection((self.ip, self.port), timeout=30) as s:
                    s.settimeout(30)
                    f = s.makefile("rwb")
                    while not self.stop.is_set():
                        t = time.monotonic()
                        f.write(b"GET k\n")
                        f.flush()
                        if not f.readline():
                            raise OSError("closed")
                        self.answers.append((t, (time.monotonic() - t) * 1000))
                        time.sleep(ASK_EVERY_S)
            except OSError:
                self.failures += 1
                time.sleep(0.05)


def wait_running(node, vessel):
    end = time.monotonic() + bf.STEP_TIMEOUT_S
    while time.monotonic() < end:
        v = bf.row(node, vessel)
        if v and v.get("state") == "running":
            return
        time.sleep(0.2)
    raise RuntimeError(f"vessel {vessel} does not run within {bf.STEP_TIMEOUT_S} s")


def moves(nodes, vessel, port, count):
    a, b, c = nodes
    asker = Asker(bf.service_ip(2), port)
    asker.start()
    # The entry listens on a service's port once the gossip tells it of
    # the service: failed connects before the first answer are not moves'.
    end = time.monotonic() + bf.STEP_TIMEOUT_S
    while not asker.answers:
        if time.monotonic() > end:
            raise RuntimeError(f"no answer from port {port} through c")
        time.sleep(0.05)
    asker.failures = 0
    time.sleep(SETTLE_S)
    out = []
    here, there = a, b
    for _ in range(count):
        t0 = time.monotonic()
        r = bm.migrate(here, vessel, there.peer_id)
        time.sleep(SETTLE_S)
        worst = max((ms for t, ms in asker.answers if t0 - 0.2 <= t <= t0 + r["wall_s"] + 0.5),
                    default=None)
        out.append({"client_pause_ms": worst, "downtime_ms": r.get("downtime_ms"),
                    "wall_s": r["wall_s"]})
        here, there = there, here
    asker.stop.set()
    return out, asker.failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=6)
    ap.add_argument("--work-dir", default="/var/tmp")
    ap.add_argument("--meshnode", default=bm.MESHNODE)
    ap.add_argument("--json", help="also write the moves here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-handoff-", dir=args.work_dir)
    user = bm.User(work, meshnode=args.meshnode)
    nodes = []
    try:
        nodes = bf.start_mesh(user, work)
        a = nodes[0]
        wasm = bf.compile_kvserver(work)
        cases = {}
        for name, replicas, port in (("leased", "1", 7401), ("unleased", "0", 7402)):
            r = a.cli(["deploy", "--name", name, "--port", str(port), "--replicas", replicas, wasm])
            vessel = r.stdout.decode().split()[-1]
            if replicas == "1":
                bf.wait_leased(a, vessel)
            else:
                wait_running(a, vessel)
            cases[name] = (vessel, port)
        results = {}
        for name, (vessel, port) in cases.items():
            results[name], failures = moves(nodes, vessel, port, args.moves)
            bm.log(f"{name}: {results[name]} ({failures} failed connections)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        med = {k: statistics.median(m["client_pause_ms"] for m in v if m["client_pause_ms"])
               for k, v in results.items()}
        print("| vessel | moves | client's pause, median | max | `migrate` downtime, median |")
        print("| --- | --- | --- | --- | --- |")
        for k, v in results.items():
            dts = [m["downtime_ms"] for m in v if m["downtime_ms"] is not None]
            print(f"| {k} | {len(v)} | {med[k]:.1f} ms | "
                  f"{max(m['client_pause_ms'] or 0 for m in v):.1f} ms | "
                  f"{statistics.median(dts) if dts else float('nan'):.1f} ms |")
        print(f"\nLeased / unleased client pause (medians): **{med['leased'] / med['unleased']:.2f}×**; "
              f"load {os.getloadavg()[0]:.1f}; binary {args.meshnode}")
        return 0
    finally:
        for n in nodes:
            n.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
