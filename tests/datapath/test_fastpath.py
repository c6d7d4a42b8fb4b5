"""datapath.fastpath against the real kernel, in the VXLAN lab (two namespace
hosts, a bridge, a VXLAN device and a container each): which frames the tc
filters carry past the bridge is read from their own counters, and what
they must leave to the bridge (ARP, the gateway) is checked to still work."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from datapath import fastpath
from datapath.errors import DatapathError
from datapath.overlay import Peer
from testbed.netns import run_in_netns
from testbed.underlay import filter_packets as packets
from testbed.underlay import ip

from .vxlan_lab import GATEWAY

VETH = "vc"  # the lab's host-side veth of each container


@pytest.fixture(autouse=True)
def _needs_tc():
    if shutil.which("tc") is None:
        pytest.skip("needs tc (apt-get install iproute2)")


def apply(side, local=None) -> None:
    local = ((side.mac, VETH),) if local is None else local
    run_in_netns(side.host.ns, lambda: fastpath.apply(side.spec.name, side.spec.vni, local))


def tc(side, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", side.host.ns, "tc", *args],
                          capture_output=True, text=True, check=True).stdout


def out_of_host(side) -> str:
    """The shared block of the side's veths: frames sent to other hosts."""
    return tc(side, "-s", "filter", "show", "block", str(fastpath.BLOCK_BASE + side.spec.vni))


def into_host(side) -> str:
    """The VXLAN device's ingress: frames for this host's containers."""
    return tc(side, "-s", "filter", "show", "dev", side.spec.name, "ingress")


def macs(shown: str) -> set[str]:
    """The destination MACs the filters match, from tc's "match" lines."""
    found = set()
    for high, low in re.findall(r"match ([0-9a-f]{8})/0000ffff at -16\s+match ([0-9a-f]{8})/ffffffff at -12", shown):
        raw = high[4:] + low
        found.add(":".join(raw[i:i + 2] for i in range(0, 12, 2)))
    return found


def test_unicast_between_hosts_skips_the_bridge_both_ways(lab):
    a, b = lab
    apply(a)
    apply(b)
    assert macs(out_of_host(a)) == {b.mac} and macs(into_host(a)) == {a.mac}
    for family in ("address", "address6"):
        a.flush_neighbours()  # the ARP / ND request is broadcast: the bridge and the device's proxy answer it
        before = [packets(out_of_host(a)), packets(into_host(b)), packets(out_of_host(b)), packets(into_host(a))]
        assert a.ping(getattr(b, family))
        after = [packets(out_of_host(a)), packets(into_host(b)), packets(out_of_host(b)), packets(into_host(a))]
        # The request left A by its block and entered B's container from the
        # device; the reply went the same way back.
        assert all(n > m for n, m in zip(after, before)), (family, before, after)


def test_the_gateway_stays_on_the_bridge(lab):
    a, b = lab
    apply(a)
    apply(b)
    before = packets(out_of_host(a)), packets(into_host(a))
    assert a.ping(GATEWAY)
    assert (packets(out_of_host(a)), packets(into_host(a))) == before


def test_a_removed_peer_leaves_the_block(lab):
    a, b = lab
    for peer in b.peers_of():
        a.overlay("remove_peer", peer)
    apply(a)
    apply(b)
    assert b.mac not in macs(out_of_host(a))
    assert not a.ping(b.address)


def test_a_mac_of_this_host_is_never_sent_away(lab):
    """Another host's stale record for a MAC that a container of this host
    has now: the bridge would deliver it here, and so must the fast path."""
    a, b = lab
    a.overlay("add_peer", Peer(a.mac, a.address, b.host.address))
    apply(a)
    assert a.mac not in macs(out_of_host(a)) and a.mac in macs(into_host(a))


def test_a_veth_made_again_is_followed_by_the_next_rebuild(lab):
    a, b = lab
    apply(a)
    apply(b)
    ip("-n", a.host.ns, "link", "del", VETH)
    ip("-n", a.host.ns, "link", "add", VETH, "mtu", "1450", "type", "veth", "peer", "name", "eth0",
       "netns", a.container)
    ip("-n", a.host.ns, "link", "set", VETH, "master", a.bridge, "alias", "pontoon:" + a.owner, "up")
    ip("-n", a.container, "link", "set", "eth0", "address", a.mac, "up")
    ip("-n", a.container, "addr", "add", f"{a.address}/24", "dev", "eth0")
    # The old filter's veth is gone: B's frames for A are dropped at A's
    # device until the rebuild that Join's touch asks for.
    assert not b.ping(a.address)
    apply(a)
    assert b.ping(a.address)
    assert macs(out_of_host(a)) == {b.mac}


def test_apply_is_idempotent_and_leaves_out_what_is_missing(lab):
    a, b = lab
    apply(a)
    first = macs(into_host(a)), macs(out_of_host(a))
    assert first == ({a.mac}, {b.mac})
    apply(a, ((a.mac, VETH), ("02:42:0a:4d:00:63", "gone0")))
    assert (macs(into_host(a)), macs(out_of_host(a))) == first
    run_in_netns(a.host.ns, lambda: fastpath.apply("nosuchvx0", 1, ((a.mac, VETH),)))


def test_no_local_endpoint_empties_the_device_table_and_a_veth_leaves_the_block(lab):
    a, b = lab
    apply(a)
    apply(a, ())
    assert macs(into_host(a)) == set()
    assert "clsact" not in tc(a, "qdisc", "show", "dev", VETH)
    assert a.ping(b.address)  # the bridge carries everything again


def test_a_block_shared_with_a_device_not_ours_is_left_alone(lab, kernel):
    a, b = lab
    apply(a)
    stranger = kernel.link("st" + a.spec.name[-6:], a.host.ns)
    ip("-n", a.host.ns, "link", "add", stranger, "type", "veth", "peer", "name", stranger + "p")
    tc(a, "qdisc", "add", "dev", stranger, "ingress_block", str(fastpath.BLOCK_BASE + a.spec.vni), "clsact")
    with pytest.raises(DatapathError, match=f"also on {stranger}, which is not ours"):
        apply(a, ())
    assert macs(out_of_host(a)) == {b.mac}  # not flushed
