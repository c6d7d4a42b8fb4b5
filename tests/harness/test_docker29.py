"""Docker 29's external connectivity and IPAM requests, through the real
server (``python -m plugin serve``) in a network namespace of its own, so
its iptables rules and held ports are that namespace's alone.

dockerd 29 is played by ``dockerd29.Dockerd29``, built from moby's code at
docker-v29.1.0 (``daemon/libnetwork/endpoint.go`` ``sbJoin``,
``updateExternalConnectivity`` and ``sbLeave``; ``sandbox.go``
``Endpoint.Less``; ``default_gateway.go`` ``getGatewayEndpoint``;
``drivers/remote/driver.go`` ``ProgramExternalConnectivity``; see
docs/docker-29.md). The rules present after each step are read with
iptables-save / ip6tables-save.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import subprocess

import pytest

from testbed.fake_dockerd import FakeDockerd
from testbed.server import Server

from .dockerd29 import NO_PROXY_6TO4, Dockerd29


@pytest.fixture
def rig(tmp_path, netns):
    server = Server(tmp_path, netns=netns)
    server.start()
    fake = FakeDockerd(server.client())
    yield server, fake, Dockerd29(fake)
    try:
        fake.cleanup()
    finally:
        server.kill()


def dnat(netns: str) -> set[tuple[int, int, str]]:
    """Published ports in the namespace's nat tables: (host port, container
    port, container address), IPv4 and IPv6."""
    out = set()
    for tool in ("iptables-save", "ip6tables-save"):
        text = subprocess.run(["ip", "netns", "exec", netns, tool, "-t", "nat"],
                              capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            m = re.search(r"--dport (\d+) .*-j DNAT --to-destination \[?([0-9a-f.:]+?)\]?:(\d+)$", line)
            if m:
                out.add((int(m[1]), int(m[3]), m[2]))
    return out


def bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def test_the_gateway_role_moves_with_connect_and_disconnect(rig, netns):
    """A container on two Pontoon networks publishes through its gateway
    only. Connecting a network with a higher gw-priority moves the role
    there (endpoint.go updateExternalConnectivity: Revoke for the old one,
    then Program for the new); disconnecting it moves the role back
    (sbLeave: Revoke, Leave, then Program for the new gateway). Without a
    priority, the network name decides (sandbox.go Endpoint.Less)."""
    server, fake, d29 = rig
    port = 20000 + secrets.randbelow(10000)
    a = fake.create_network(subnet="10.241.1.0/24", name="net-b")
    b = fake.create_network(subnet="10.241.2.0/24", name="net-c")
    box = d29.run(a, ports=[("tcp", 80, "", port, 0)])
    on_a, = [bare(e.ctr.address) for e in box.endpoints]
    assert dnat(netns) == {(port, 80, on_a)}

    on_b = bare(d29.connect(box, b, gw_priority=1).ctr.address)
    assert d29.calls[-2:] == [("Revoke", "net-b", {}), ("Program", "net-c", {})]
    assert dnat(netns) == {(port, 80, on_b)}  # nothing stale left on net-b
    assert server.held_ports() == {("tcp", port)}

    d29.disconnect(box, b)
    assert d29.calls[-2:] == [("Revoke", "net-c", {}), ("Program", "net-b", {})]
    assert dnat(netns) == {(port, 80, on_a)}

    # A network whose name sorts first takes the role at equal priority.
    c = fake.create_network(subnet="10.241.3.0/24", name="net-a")
    on_c = bare(d29.connect(box, c).ctr.address)
    assert dnat(netns) == {(port, 80, on_c)}
    # One whose name sorts last does not: no call for it, no rules.
    calls = len(d29.calls)
    d29.connect(box, b)
    assert len(d29.calls) == calls and dnat(netns) == {(port, 80, on_c)}

    d29.stop(box)
    assert dnat(netns) == set() and server.held_ports() == set()


def test_ipv4_and_ipv6_gateways_on_different_networks(rig, netns):
    """dockerd 29 may make an IPv4-only network's endpoint the IPv4 gateway
    and an IPv6-only network's the IPv6 one (default_gateway.go
    getGatewayEndpoint); each is Programmed with the whole portmap
    (drivers/remote/driver.go ProgramExternalConnectivity) and must publish
    the host addresses of its own family, an explicit address of the
    other's included. A dual-stack network with a higher priority then
    takes both roles, and gives them back when it goes, the IPv4 gateway
    then told no_proxy_6to4."""
    server, fake, d29 = rig
    p = 20000 + secrets.randbelow(10000)
    x = fake.create_network(subnet="10.242.1.0/24", name="x4")
    y = fake.create_network(ipv4=False, ipv6=True, subnet6="fd00:242:2::/64", name="y6")
    z = fake.create_network(subnet="10.242.3.0/24", ipv6=True, subnet6="fd00:242:3::/64", name="z46")
    ports = [("tcp", 80, "127.0.0.1", p, 0), ("tcp", 81, "::1", p + 1, 0), ("tcp", 82, "", p + 2, 0)]
    box = d29.run(x, ports=ports)  # the IPv6 entry is not x4's: no 400
    x4 = bare(box.on(x).ctr.address)
    assert dnat(netns) == {(p, 80, x4), (p + 2, 82, x4)}

    y6 = bare(d29.connect(box, y).ctr.address_v6)
    assert d29.calls[-1] == ("Program", "y6", {})
    assert dnat(netns) == {(p, 80, x4), (p + 2, 82, x4), (p + 1, 81, y6), (p + 2, 82, y6)}

    ep = d29.connect(box, z, gw_priority=2)
    z4, z6 = bare(ep.ctr.address), bare(ep.ctr.address_v6)
    assert d29.calls[-3:] == [("Revoke", "x4", {}), ("Revoke", "y6", {}), ("Program", "z46", {})]
    assert dnat(netns) == {(p, 80, z4), (p + 1, 81, z6), (p + 2, 82, z4)}

    d29.disconnect(box, z)
    assert d29.calls[-3:] == [("Revoke", "z46", {}), ("Program", "x4", {NO_PROXY_6TO4: True}),
                              ("Program", "y6", {})]
    assert dnat(netns) == {(p, 80, x4), (p + 2, 82, x4), (p + 1, 81, y6), (p + 2, 82, y6)}
    assert server.held_ports() == {("tcp", p), ("tcp", p + 1), ("tcp", p + 2)}
    d29.stop(box)
    assert dnat(netns) == set() and server.held_ports() == set()
