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
import statistics
import subprocess
import sys
import tempfile

POOLS = ("10.0.0.0/8", "fd70:6265:6e63::/64")


def run(quick: bool = False) -> dict:
    """Both pools filled at the same time, one process each: they see the
    same load of this shared machine, so their curves compare."""
    count = 20_000 if quick else 100_000
    out = {}
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-ipam-", dir="/dev/shm") as tmp:
        dirs = {cidr: os.path.join(tmp, str(i)) for i, cidr in enumerate(POOLS)}
        procs = {cidr: subprocess.Popen([sys.executable, "-m", "bench.ipam_worker", cidr, str(count), d],
                                        stdout=subprocess.PIPE, text=True)
                 for cidr, d in dirs.items()}
        for cidr, proc in procs.items():
            stdout, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"bench.ipam_worker {cidr} exited {proc.returncode}")
            result = json.loads(stdout)
            result["db_bytes"] = sum(os.path.getsize(os.path.join(dirs[cidr], f))
                                     for f in os.listdir(dirs[cidr]))
            steps = result["per_10k_s"]
            result["flat_ratio"] = statistics.median(steps[-3:]) / statistics.median(steps[:3])
            out[cidr] = result
    return out
