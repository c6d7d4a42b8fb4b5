"""The plugin as the benchmarks run it: the harness Server at the production
log level."""
from __future__ import annotations

import secrets
from pathlib import Path

from testbed.server import Server


class BenchServer(Server):
    """The harness logs at debug for test failures; the default level (info)
    is what users run, and per-request debug lines would be measured too."""

    def __init__(self, workdir: Path, **kw):
        # "ptb" marks this run's links and sockets on the shared machine.
        super().__init__(workdir, name="ptb" + secrets.token_hex(4), **kw)

    def command(self) -> list[str]:
        argv = super().command()
        argv[argv.index("--log-level") + 1] = "info"
        return argv

