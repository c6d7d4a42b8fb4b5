"""Idle footprint: time from exec to the first answered request, and RSS at
idle (master and workers), Pontoon against the bare Flask + gunicorn floor
(floor_app.py), started alternately."""
from __future__ import annotations

import compileall
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from testbed.client import SocketTransport
from testbed.server import REPO, process_tree

from .plugin_server import BenchServer
from .procs import rss_kib
from .stats import alternating, pair_ratios

SETTLE_S = 1.0  # after the first reply, for workers to finish booting and go idle


def _measure(argv: list[str], socket_path: str) -> tuple[float, int]:
    """(seconds from exec to the first answered request, idle RSS KiB)."""
    transport = SocketTransport(socket_path, timeout=5)
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited {proc.returncode}")
            try:
                status, _ = transport.post("/Plugin.Activate", b"")
            except OSError:  # no socket yet, or no worker answering on it yet
                time.sleep(0.002)
                continue
            if status == 200:
                served = time.perf_counter() - begin
                break
        time.sleep(SETTLE_S)
        rss = rss_kib(process_tree(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return served, rss


def _byte_compile() -> None:
    """Compile Pontoon's packages as installing them does (pip byte-compiles
    a wheel; the Dockerfile and contrib/build-rootfs.sh install one). Flask
    and gunicorn load from the bytecode pip wrote for them, but a checkout
    run with PYTHONDONTWRITEBYTECODE set has none of its own and would
    compile every Pontoon module at every start: about 18 ms that no
    installed plugin pays."""
    with open(REPO / "pyproject.toml", "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    for package in packages:
        compileall.compile_dir(REPO / package, quiet=1)


def run(quick: bool = False) -> dict:
    pairs = 3 if quick else 10
    _byte_compile()
    serve, rss = [], []
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-") as tmp:
        pontoon = BenchServer(Path(tmp) / "pontoon")
        floor_socket = str(Path(tmp) / "floor.sock")
        floor = [sys.executable, "-m", "bench.floor_app", floor_socket]
        runs = {"pontoon": lambda: _measure(pontoon.command(), pontoon.socket_path),
                "floor": lambda: _measure(floor, floor_socket)}
        runs["pontoon"]()  # the first start creates the state dir and database
        for order in alternating(pairs, "pontoon", "floor"):
            got = {name: runs[name]() for name in order}
            serve.append((got["pontoon"][0], got["floor"][0]))
            rss.append((got["pontoon"][1], got["floor"][1]))
    return {"serve_s": pair_ratios(serve), "rss_kib": pair_ratios(rss)}
