"""The datapath's command-line tools (nft, wg), where it has no netlink
interface of its own to what they configure: one bounded call each, whose
failure is a DatapathError naming the command and carrying its message."""
from __future__ import annotations

import subprocess

from .errors import DatapathError

TIMEOUT_S = 30


def run(*argv: str, stdin: str | None = None, step: str = "") -> str:
    """``argv``'s output; ``step`` names it in an error (its first words by default)."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise DatapathError(step or " ".join(argv[:4]), proc.stderr.strip() or f"exited {proc.returncode}")
    return proc.stdout
