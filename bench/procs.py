"""The resident memory of the processes the benchmarks start."""
from __future__ import annotations


def rss_kib(pids: list[int]) -> int:
    """Resident set of the processes together, in KiB."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total
