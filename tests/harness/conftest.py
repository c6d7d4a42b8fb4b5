from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from testbed.fake_dockerd import FakeDockerd
from testbed.sandbox import Sandboxes
from testbed.server import Server


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: real network namespaces, bridges and iptables")
    for tool in ("ip", "iptables-restore", "ping"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool!r} tool (apt-get install iproute2 iptables iputils-ping)")


@pytest.fixture
def netns():
    """A network namespace of the test's own, lo up: a server's home."""
    require_root()
    name = "ptns" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def server(tmp_path):
    require_root()
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def sandboxes():
    boxes = Sandboxes()
    yield boxes
    boxes.cleanup()


@pytest.fixture
def dockerd(server, sandboxes):
    fake = FakeDockerd(server.client(), sandboxes)
    yield fake
    fake.cleanup()
