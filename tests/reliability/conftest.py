from __future__ import annotations

import subprocess

import pytest

from testbed.server import Server
from tests.harness.conftest import require_root, sandboxes  # noqa: F401  (fixture)

from .kernel import Seen, raw_snapshot


@pytest.fixture
def root():
    require_root()


@pytest.fixture
def before(root) -> dict[str, str]:
    """The host's links, addresses, routes and firewall before the test."""
    return raw_snapshot()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def servers(root, tmp_path, seen):
    """Makes harness Servers in this test's directory; at the end kills any
    still running and removes links a failed test may have left."""
    made: list[Server] = []

    def make(**kwargs) -> Server:
        made.append(Server(tmp_path, **kwargs))
        seen.watch(made[-1].name)
        return made[-1]

    yield make
    for srv in made:
        srv.kill()
    for name in seen.link_names():
        subprocess.run(["ip", "link", "del", name], capture_output=True)
