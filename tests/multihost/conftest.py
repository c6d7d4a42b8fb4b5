"""Fixtures of the multi-host tier: a real etcd, and hosts made of network
namespaces on one underlay, each with its own Pontoon (see cluster.py)."""
from __future__ import annotations

import shutil

import pytest

from testbed.cluster import LEASE_TTL, Cluster
from testbed.etcd import Etcd, missing


def require_tools() -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
    for tool in ("ip", "iptables", "iptables-restore", "ping"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool!r} tool (apt-get install iproute2 iptables iputils-ping)")


@pytest.fixture
def etcd(tmp_path):
    """etcd alone on 127.0.0.1, for tests of the cluster store."""
    require_tools()
    server = Etcd(tmp_path / "etcd")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def cluster(tmp_path):
    """Three hosts on one underlay, each with a clustered Pontoon on a short lease."""
    require_tools()
    with Cluster(tmp_path, hosts=3, flags=("--lease-ttl", str(LEASE_TTL))) as made:
        yield made
