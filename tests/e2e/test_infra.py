"""The harness itself, on dockerd's builtin bridge driver: when these fail,
the Pontoon cases' failures say nothing about Pontoon."""

import pytest

pytestmark = pytest.mark.e2e


def test_busybox_runs_on_docker_bridge(dockerd, busybox):
    out = dockerd.docker("run", "--rm", busybox, "sh", "-c",
                         "ip -4 addr show eth0 && ping -c1 -W2 "
                         "$(ip route | awk '/default/ {print $3}')", timeout=60).stdout
    assert "inet " in out
    assert "1 packets received" in out
