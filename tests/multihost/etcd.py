"""A real etcd (Debian's etcd-server, /usr/bin/etcd) for the multi-host tests.

Started by the test on an address given (127.0.0.1 by default, or an
address of the underlay), on free ports, with its own data dir; stopped by
PID. ``stop`` and ``start`` again keep the data, for the tests of an etcd
outage.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ETCD = "/usr/bin/etcd"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class Etcd:
    def __init__(self, workdir: Path, address: str = "127.0.0.1", netns: str | None = None):
        self.address = address
        self.netns = netns
        self.data_dir = workdir / "etcd-data"
        self.log_path = workdir / "etcd.log"
        self.client_port = free_port(address if netns is None else "127.0.0.1")
        self.peer_port = free_port(address if netns is None else "127.0.0.1")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    def start(self, timeout: float = 15.0) -> None:
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        peer = f"http://{self.address}:{self.peer_port}"
        command = [*inside, ETCD, "--name", "pontoon-test", "--data-dir", str(self.data_dir),
                   "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                   "--initial-cluster", f"pontoon-test={peer}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"etcd did not become healthy in {timeout}s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return json.load(resp).get("health") == "true"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def etcd(tmp_path):
    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"{ETCD} missing: apt-get install etcd-server")
    server = Etcd(tmp_path)
    server.start()
    yield server
    server.remove()
