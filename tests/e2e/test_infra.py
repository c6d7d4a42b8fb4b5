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


def test_a_dead_daemon_is_replaced_with_what_the_fixtures_set_up(dockerd, busybox):
    """What keeps one dead dockerd from failing every later test
    (conftest.live_dockerd): replace() starts a fresh daemon, in a new
    namespace, and redoes the fixtures' set-up on it (the image here)."""
    old_netns, mark = dockerd.netns, f"pe2e-{dockerd.token}-mark"
    dockerd.docker("network", "create", mark)
    dockerd.kill()
    assert not dockerd.alive()
    dockerd.replace()
    assert dockerd.alive() and dockerd.netns != old_netns
    assert mark not in dockerd.docker("network", "ls", "--format", "{{.Name}}").stdout
    test_busybox_runs_on_docker_bridge(dockerd, busybox)
