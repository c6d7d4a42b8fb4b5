"""Issue 20, authentication: a host takes a cluster network's VXLAN only
from the hosts that are members of that network (datapath.vxlanguard, kept
from the watch of the network's endpoint records). A frame forged with a
valid VNI, from a namespace on the underlay that runs no Pontoon or from a
host that is a member of another network only, reaches no container and is
counted; members' traffic flows on."""
from __future__ import annotations

import ipaddress
import json
import shutil
import struct
import subprocess
import sys

import pytest

from datapath.names import vxlan_name
from datapath.overlay import VXLAN_PORT
from testbed.dockerd import wait_for
from testbed.underlay import Host

from .test_crosshost import bare, network_on_all, reaches

FORGED_SOURCE = "10.90.0.200"  # in the network's subnet, held by no one


@pytest.fixture(autouse=True)
def needs_nft():
    if shutil.which("nft") is None:
        pytest.skip("needs the nft tool (apt-get install nftables)")


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_frame(vni: int, dst_mac: str, src: str, dst: str) -> bytes:
    """VXLAN header + Ethernet + IPv4 + ICMP echo request, by hand: what a
    stranger who guessed the VNI and a container's MAC and address sends."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x2020, 1) + b"pontoon-forged"
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    ether = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("02aabbccddee") + b"\x08\x00"
    return struct.pack("!II", 0x08 << 24, vni << 8) + ether + header + icmp


def send_forged(sender: Host, target: Host, frame: bytes, count: int = 5) -> None:
    code = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for _ in range({count}): s.sendto(bytes.fromhex({frame.hex()!r}), ({target.address!r}, {VXLAN_PORT}))")
    sender.run(sys.executable, "-c", code)


def vni_of(host, net) -> int:
    out = host.run("ip", "-d", "-j", "link", "show", vxlan_name(net.id)).stdout
    return json.loads(out)[0]["linkinfo"]["info_data"]["id"]


def inspect_here(host, etcd_url: str, *flags: str) -> str:
    """``python -m plugin inspect`` in the host's namespace, as a user there runs it."""
    return subprocess.run(
        ["ip", "netns", "exec", host.ns, "env", f"PONTOON_NAME={host.server.name}", sys.executable, "-m", "plugin",
         "inspect", *flags, "--state-dir", str(host.server.state_dir), "--etcd-endpoints", etcd_url],
        capture_output=True, text=True, check=True, timeout=30).stdout


def dropped(host, etcd_url: str) -> int:
    """The guard's count, as inspect shows it."""
    return json.loads(inspect_here(host, etcd_url, "--json"))["between_hosts"]["dropped"]


def test_forged_vxlan_reaches_no_container_and_is_counted(cluster):
    a, b, c = cluster.hosts
    nets = network_on_all(cluster)
    ctrs = [h.dockerd.run(net) for h, net in zip(cluster.hosts, nets)]
    assert reaches(ctrs[1], ctrs[0]) and reaches(ctrs[2], ctrs[0])
    # A second network on hosts a and b only: c is a member of the cluster, not of it.
    inner_a, inner_b = (h.dockerd.create_network(subnet="10.91.0.0/24") for h in (a, b))
    inner_ctr, inner_peer = a.dockerd.run(inner_a), b.dockerd.run(inner_b)
    assert reaches(inner_peer, inner_ctr)

    stranger = cluster.underlay.add_host()  # on the underlay, no Pontoon
    target = ctrs[0]
    delivered = Host(target.sandbox.ns, "").counter("INPUT", ["-p", "icmp", "-s", FORGED_SOURCE])
    inner_delivered = Host(inner_ctr.sandbox.ns, "").counter("INPUT", ["-p", "icmp", "-s", "10.91.0.200"])
    before = dropped(a, cluster.etcd.url)
    send_forged(stranger, a.host, forged_frame(vni_of(a, nets[0]), target.mac, FORGED_SOURCE, bare(target.address)))
    send_forged(c.host, a.host, forged_frame(vni_of(a, inner_a), inner_ctr.mac, "10.91.0.200",
                                             bare(inner_ctr.address)))
    wait_for(lambda: dropped(a, cluster.etcd.url) >= before + 10, timeout=5, interval=0.2, what="drops counted")
    assert delivered.packets() == 0
    assert inner_delivered.packets() == 0
    # Members' traffic flows on, both ways, on both networks.
    for ctr, other in ((ctrs[0], ctrs[1]), (ctrs[2], ctrs[0]), (inner_ctr, inner_peer)):
        assert reaches(ctr, other, timeout=5)


def guard_tables(host) -> list[str]:
    return [line.split()[2] for line in host.run("nft", "list", "tables").stdout.splitlines()
            if line.split()[2].startswith("pontoon_")]


def test_a_host_that_leaves_a_network_is_no_longer_taken_and_the_last_network_takes_the_guard(cluster):
    """Host c removes its network: a stops taking c's VXLAN on it, from the
    same watch that takes c's peers out; with every network gone, no host
    keeps the guard's table."""
    a, b, c = cluster.hosts
    nets = network_on_all(cluster)
    target = a.dockerd.run(nets[0])
    assert reaches(c.dockerd.run(nets[2]), target)
    assert all(guard_tables(h) for h in cluster.hosts)
    frame = forged_frame(vni_of(a, nets[0]), target.mac, FORGED_SOURCE, bare(target.address))
    delivered = Host(target.sandbox.ns, "").counter("INPUT", ["-p", "icmp", "-s", FORGED_SOURCE])
    send_forged(c.host, a.host, frame, count=1)  # a member's frame is taken
    wait_for(lambda: delivered.packets() == 1, timeout=5, interval=0.1, what="a member's frame delivered")

    c.dockerd.cleanup()  # its containers and its network
    before = dropped(a, cluster.etcd.url)
    wait_for(lambda: (send_forged(c.host, a.host, frame, count=1), dropped(a, cluster.etcd.url) > before)[1],
             timeout=10, interval=0.2, what="c's VXLAN dropped once c left")
    assert delivered.packets() == 1
    assert not guard_tables(c)
    a.dockerd.cleanup()
    b.dockerd.cleanup()
    assert not guard_tables(a) and not guard_tables(b)
