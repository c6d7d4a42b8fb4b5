"""The lab of the VXLAN tests: two namespace "hosts" on a veth underlay,
each with a bridge, a VXLAN device and a container namespace, and static
peers between them (datapath.overlay, as the cluster makes them)."""
from __future__ import annotations

import secrets
import shutil

import pytest

from datapath.names import vxlan_name
from datapath.overlay import Overlay, Peer, VxlanSpec
from testbed.netns import run_in_netns
from testbed.underlay import Host, Underlay, ip

SUBNET = "10.77.0"  # inside the host namespaces only
SUBNET6 = "fd77::"
GATEWAY = f"{SUBNET}.1"


class Side:
    """One host of the lab: its bridge with the (distributed) gateway, its
    VXLAN device and one container."""

    def __init__(self, host: Host, index: int, owner: str):
        self.host, self.owner = host, owner
        self.bridge = "ptbr" + secrets.token_hex(3)
        self.spec = VxlanSpec(vxlan_name(secrets.token_hex(32)), 4242, host.address, self.bridge, 1450)
        self.address, self.address6 = f"{SUBNET}.{10 + index}", f"{SUBNET6}{10 + index:x}"
        self.mac = f"02:42:0a:4d:00:{10 + index:02x}"
        self.container = f"{host.ns}c"
        ns = host.ns
        ip("-n", ns, "link", "add", self.bridge, "type", "bridge")
        ip("-n", ns, "addr", "add", f"{GATEWAY}/24", "dev", self.bridge)
        ip("-n", ns, "addr", "add", f"{SUBNET6}1/64", "dev", self.bridge, "nodad")
        ip("-n", ns, "link", "set", self.bridge, "mtu", "1450", "up")
        ip("netns", "add", self.container)
        ip("-n", ns, "link", "add", "vc", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", self.container)
        ip("-n", ns, "link", "set", "vc", "master", self.bridge, "alias", "pontoon:" + owner, "up")
        c = self.container
        ip("-n", c, "link", "set", "eth0", "address", self.mac, "up")
        ip("-n", c, "link", "set", "lo", "up")
        ip("-n", c, "addr", "add", f"{self.address}/24", "dev", "eth0")
        ip("-n", c, "addr", "add", f"{self.address6}/64", "dev", "eth0", "nodad")
        self.counter = host.vxlan_counter()

    def overlay(self, method: str, *args):
        return run_in_netns(self.host.ns, lambda: getattr(Overlay(self.owner), method)(self.spec, *args))

    def peers_of(self) -> set[Peer]:
        return {Peer(self.mac, self.address, self.host.address), Peer(self.mac, self.address6, self.host.address)}

    def ping(self, address: str) -> bool:
        return self.host.run("ip", "netns", "exec", self.container, "ping", "-c1", "-W2", address,
                             check=False).returncode == 0

    def flush_neighbours(self) -> None:
        ip("-n", self.container, "neigh", "flush", "dev", "eth0")

    def close(self) -> None:
        ip("netns", "del", self.container, check=False)


@pytest.fixture
def lab(kernel):
    for tool in ("iptables", "ping"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt-get install iptables iputils-ping)")
    underlay = Underlay()
    owner = "t" + secrets.token_hex(3)
    sides = []
    try:
        sides = [Side(underlay.add_host(), i, owner) for i in (1, 2)]
        for side in sides:
            side.overlay("create")
        a, b = sides
        for here, there in ((a, b), (b, a)):
            for peer in there.peers_of():
                here.overlay("add_peer", peer)
        yield a, b
    finally:
        for side in sides:
            side.close()
        underlay.close()
