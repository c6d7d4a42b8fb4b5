"""IPAM: a /8 and a /64 pool, 100,000 allocations each, with the in-process
IpamDriver on the real SQLite store.

The store sits on tmpfs (/dev/shm): a commit on disk adds one fsync per
allocation, a cost that is constant per allocation and belongs to the disk;
here the question is whether the allocator and its queries stay flat as the
pool fills, and whether a /64 costs what a /8 does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

POOLS = ("10.0.0.0/8", "fd70:6265:6e63::/64")


def run(quick: bool = False) -> dict:
    count = 20_000 if quick else 100_000
    out = {}
    for cidr in POOLS:
        with tempfile.TemporaryDirectory(prefix="pontoon-bench-ipam-", dir="/dev/shm") as tmp:
            proc = subprocess.run([sys.executable, "-m", "bench.ipam_worker", cidr, str(count), tmp],
                                  capture_output=True, text=True, timeout=900, check=True)
            result = json.loads(proc.stdout)
            result["db_bytes"] = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        out[cidr] = result
    return out
