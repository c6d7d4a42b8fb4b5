"""Fixtures for tests that build real kernel objects.

Every test takes unique names (random suffix) and registers what it makes
with ``kernel``, which removes it afterwards even when the test fails. The
``ip`` tool observes the kernel independently of the pyroute2 code under
test.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest

IP = shutil.which("ip") or "/sbin/ip"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *args], check=check, capture_output=True, text=True)


def ip_json(*args: str) -> list:
    return json.loads(ip("-j", *args).stdout or "[]")


def suffix(n: int = 6) -> str:
    return secrets.token_hex(n)[:n]


class Kernel:
    """Records links, namespaces and firewall rules a test made; ``cleanup``
    removes them in reverse order and ignores what is already gone."""

    def __init__(self):
        self._undo: list[list[str]] = []

    def link(self, name: str, netns: str | None = None) -> str:
        self._undo.append([IP, *(["-n", netns] if netns else []), "link", "del", name])
        return name

    def netns(self, name: str) -> str:
        ip("netns", "add", name)
        self._undo.append([IP, "netns", "del", name])
        return name

    def run(self, cmd: list[str], undo: list[str]) -> None:
        subprocess.run(cmd, check=True, capture_output=True)
        self._undo.append(undo)

    def cleanup(self) -> None:
        while self._undo:
            subprocess.run(self._undo.pop(), capture_output=True)


@pytest.fixture
def kernel():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, bridges, veths)")
    if not os.path.exists(IP):
        pytest.skip("needs root and /sbin/ip (iproute2) to observe the kernel")
    k = Kernel()
    try:
        yield k
    finally:
        k.cleanup()


from .vxlan_lab import lab  # noqa: E402,F401  # the VXLAN tests' fixture, for every module here
