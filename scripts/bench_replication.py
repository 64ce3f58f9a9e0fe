#!/usr/bin/env python3
"""What replicas cost the network (issue 15's figure: "Replication traffic
for a 64 MiB vessel dirtying 1 MiB/s, 1 s interval: <= 2x its dirty
rate"), on loopback. Not part of the tests.

    python3 scripts/bench_replication.py [--size 64] [--rate 1] [--every 1s]
        [--window 60] [--work-dir /var/tmp] [--meshnode BINARY] [--keep]

Starts two nodes on 127.0.0.1 (scripts/bench_migration.py's machinery) with
the binary given (default: $CARGO_TARGET_DIR/release/meshnode, which this
script does not build), deploys memwriter (benches/programs: SIZE MiB
dirtying RATE MiB/s in a sweep, sleeping between looks at the clock) on
node a with `--replicas 1 --checkpoint-every EVERY`, so that node b is its
replica, and waits until b holds its first (whole) image. Then, over
WINDOW s, it reads from `ps --json` on a what the host sent to its replica
(`replica_bytes_sent`, the chunk batches: only the chunks b lacked; the
offered image documents, a few KiB each, are not counted) and from the
vessel's log its own write rate (memwriter prints "wrote N bytes in T s"
every 5 s), and reports the replication traffic as a multiple of the
rate the vessel actually dirtied its memory. The gate is 2.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_migration as bm  # noqa: E402
import bench_checkpoint as bc  # noqa: E402

MIB = bm.MIB
# How long the first whole image may take to reach the replica.
FIRST_SHIPMENT_TIMEOUT_S = 300


def row(node, vessel):
    r = node.cli(["ps", "--json"], check=False)
    if r.returncode != 0:
        return None
    return next((v for v in json.loads(r.stdout) if v["id"] == vessel), None)


def wait_first_shipment(node, vessel):
    end = time.monotonic() + FIRST_SHIPMENT_TIMEOUT_S
    while time.monotonic() < end:
        v = row(node, vessel)
        if v and v["replicas"] and all(r["image"] for r in v["replicas"]):
            return v
        time.sleep(0.2)
    raise RuntimeError(f"vessel {vessel}: no replica holds an image within {FIRST_SHIPMENT_TIMEOUT_S} s")


def wait_status(node, peer_id, timeout=60):
    """Waits until `node` has a status of `peer_id`: replicas are chosen
    among members with a fresh status."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = node.cli(["peers", "--json"], check=False)
        if r.returncode == 0 and any(p.get("peer_id") == peer_id and p.get("status_age_ms") is not None
                                     for p in json.loads(r.stdout)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no status of {peer_id} within {timeout} s")


def wait_next_shipment(node, vessel, image):
    end = time.monotonic() + FIRST_SHIPMENT_TIMEOUT_S
    while time.monotonic() < end:
        v = row(node, vessel)
        if v and v["replicas"] and v["replicas"][0]["image"] not in (None, image):
            return
        time.sleep(0.1)
    raise RuntimeError(f"vessel {vessel}: no second shipment within {FIRST_SHIPMENT_TIMEOUT_S} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64, help="the vessel's memory, MiB")
    ap.add_argument("--rate", type=float, default=1.0, help="MiB/s it dirties")
    ap.add_argument("--every", default="1s", help="its checkpoint interval")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured")
    ap.add_argument("--work-dir", default="/var/tmp")
    ap.add_argument("--meshnode", default=bm.MESHNODE)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-replication-", dir=args.work_dir)
    user = bm.User(work, meshnode=args.meshnode)
    pair = None
    try:
        wasm = bm.compile_memwriter(work)
        pair = bm.Pair(user, work, "precopy", "info")
        pair.wait_members()
        a, b = pair.nodes
        wait_status(a, b.peer_id)
        r = a.cli(["deploy", "--name", "writer", "--replicas", "1", "--checkpoint-every", args.every,
                   wasm, str(args.size), str(int(args.rate * MIB)), "sweep", "0", "7", "sleep"])
        vessel = r.stdout.decode().split()[-1]
        bm.wait_ready(a, vessel, bc.READY_TIMEOUT_S)
        first = wait_first_shipment(a, vessel)
        bm.log(f"first image on the replica: {first['replica_chunks_sent']} chunks, "
               f"{first['replica_bytes_sent'] / MIB:.1f} MiB")
        # Measured from the next shipment on: the whole image's is over.
        wait_next_shipment(a, vessel, first["replicas"][0]["image"])
        v0, t0 = row(a, vessel), time.monotonic()
        time.sleep(args.window)
        v1, t1 = row(a, vessel), time.monotonic()
        secs = t1 - t0
        sent = (v1["replica_bytes_sent"] - v0["replica_bytes_sent"]) / secs
        chunks = (v1["replica_chunks_sent"] - v0["replica_chunks_sent"]) / secs
        dirty = bc.work_rate(a, vessel) or args.rate * MIB
        ratio = sent / dirty
        load = os.getloadavg()[0]
        print(f"| vessel | interval | dirtied | sent to the replica | chunks/s | ratio (gate ≤ 2) | "
              f"replica age at the end | load |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        print(f"| {args.size} MiB, sweep, sleep | {args.every} | {dirty / MIB:.2f} MiB/s | "
              f"{sent / MIB:.2f} MiB/s | {chunks:.1f} | **{ratio:.2f}** | "
              f"{v1['replica_age_ms']} ms | {load:.1f} |")
        print(f"\nwindow {secs:.0f} s; binary {args.meshnode}")
        return 0 if ratio <= 2 else 1
    finally:
        if pair:
            pair.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
