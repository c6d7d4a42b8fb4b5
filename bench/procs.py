"""Processes the benchmarks start: their workers and resident memory."""
from __future__ import annotations

from pathlib import Path


def tree(pid: int) -> list[int]:
    """The process and its direct children (gunicorn's master and workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *kids]


def rss_kib(pids: list[int]) -> int:
    """Resident set of the processes together, in KiB."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total
