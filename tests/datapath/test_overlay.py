"""datapath.overlay against the real kernel: two namespace "hosts" on a veth
underlay, each with a bridge, a VXLAN device and a container namespace, and
static peers between them. What crosses the underlay is counted by an
iptables rule on UDP 4789 in each host's OUTPUT, so "nothing else crosses"
is a number, not a hope."""
from __future__ import annotations

import secrets
import subprocess

import pytest

from datapath.errors import DatapathError, InvalidName, NameConflict
from datapath.names import vxlan_name
from datapath.overlay import Overlay, Peer, VxlanSpec, default_mtu, underlay_mtu
from testbed.netns import run_in_netns
from testbed.underlay import ip

from .vxlan_lab import GATEWAY, SUBNET, SUBNET6

def test_device_is_static_and_quiet(lab):
    a, b = lab
    details = ip("-n", a.host.ns, "-d", "link", "show", a.spec.name).stdout
    assert "vxlan id 4242" in details and f"local {a.host.address}" in details and "dstport 4789" in details
    assert "nolearning" in details and "proxy" in details
    assert f"master {a.bridge}" in details and "alias pontoon:" + a.owner in details
    assert "mtu 1450" in details
    fdb = subprocess.run(["bridge", "-n", a.host.ns, "fdb", "show", "dev", a.spec.name],
                         capture_output=True, text=True, check=True).stdout
    assert f"{b.mac} dst {b.host.address} self permanent" in fdb
    assert "00:00:00:00:00:00" not in fdb  # no flooding entry


@pytest.mark.parametrize("family", ["address", "address6"])
def test_containers_reach_each_other_and_arp_nd_stay_local(lab, family):
    a, b = lab
    a.flush_neighbours()
    b.flush_neighbours()
    before = a.counter.packets(), b.counter.packets()
    assert a.ping(getattr(b, family))
    # Exactly the echo request from A and the reply from B crossed: both
    # ARPs or neighbour solicitations (A for B, B for A) were answered by
    # the VXLAN device of their own host.
    assert (a.counter.packets() - before[0], b.counter.packets() - before[1]) == (1, 1)


def test_gateway_and_strangers_do_not_cross(lab):
    a, _ = lab
    before = a.counter.packets()
    assert a.ping(GATEWAY)  # the gateway on A's own bridge answers
    assert not a.ping(f"{SUBNET}.99")  # no peer: its ARP dies at the device
    assert not a.ping(f"{SUBNET6}99")
    assert a.counter.packets() == before


def test_removed_peer_is_unreachable_and_sync_restores(lab):
    a, b = lab
    for peer in b.peers_of():
        a.overlay("remove_peer", peer)
        a.overlay("remove_peer", peer)  # idempotent
    a.flush_neighbours()
    before = a.counter.packets()
    assert not a.ping(b.address)
    assert a.counter.packets() == before
    assert a.overlay("peers") == set()

    stray = Peer("02:42:0a:4d:00:63", f"{SUBNET}.99", "192.0.2.99")
    a.overlay("add_peer", stray)
    changes = a.overlay("sync_peers", b.peers_of())
    assert any(c.startswith("-neigh") for c in changes) and sum(c.startswith("+peer") for c in changes) == 2
    assert a.overlay("peers") == b.peers_of()
    assert a.overlay("sync_peers", b.peers_of()) == []
    # The refused ping above left A's entry for B FAILED, and the container's
    # kernel drops the first packet while it resolves again.
    a.flush_neighbours()
    assert a.ping(b.address)


def test_peer_moving_to_another_host_replaces_its_entry(lab):
    a, b = lab
    moved = Peer(b.mac, b.address, "192.0.2.99")
    a.overlay("add_peer", moved)
    assert moved in a.overlay("peers")
    # A stale remove for the old host must not take the new entry away.
    a.overlay("remove_peer", Peer(b.mac, b.address, b.host.address))
    assert moved in a.overlay("peers")


def test_create_is_idempotent_and_remakes_a_stale_device(lab):
    a, b = lab
    a.overlay("create")
    assert a.ping(b.address)
    other = VxlanSpec(a.spec.name, 4343, a.spec.local, a.spec.bridge, a.spec.mtu)
    run_in_netns(a.host.ns, lambda: Overlay(a.owner).create(other))
    assert "vxlan id 4343" in ip("-n", a.host.ns, "-d", "link", "show", a.spec.name).stdout


def test_foreign_device_is_never_taken_or_deleted(lab):
    a, _ = lab
    name = "ptx" + secrets.token_hex(6)
    ip("-n", a.host.ns, "link", "add", name, "type", "vxlan", "id", "7", "dstport", "4789")
    ip("-n", a.host.ns, "link", "set", name, "alias", "someone-else")
    spec = VxlanSpec(name, 7, a.host.address, a.bridge)
    with pytest.raises(NameConflict):
        run_in_netns(a.host.ns, lambda: Overlay(a.owner).create(spec))
    run_in_netns(a.host.ns, lambda: Overlay(a.owner).delete(spec))
    assert ip("-n", a.host.ns, "link", "show", name, check=False).returncode == 0


def test_an_untagged_device_of_our_name_is_deleted_only_for_a_create_cut_short(lab):
    a, _ = lab
    name = "ptx" + secrets.token_hex(6)
    ip("-n", a.host.ns, "link", "add", name, "type", "vxlan", "id", "8", "dstport", "4789")
    spec = VxlanSpec(name, 8, a.host.address, a.bridge)
    run_in_netns(a.host.ns, lambda: Overlay(a.owner).delete(spec))
    assert ip("-n", a.host.ns, "link", "show", name, check=False).returncode == 0  # a user's, maybe
    run_in_netns(a.host.ns, lambda: Overlay(a.owner).delete(spec, untagged=True))
    assert ip("-n", a.host.ns, "link", "show", name, check=False).returncode != 0


def test_create_tags_an_untagged_device_it_finds_under_its_recorded_name(lab):
    """What an attempt cut short between adding and tagging left: the store
    recorded the name as ours first, so create takes it, and delete can
    then remove it."""
    a, _ = lab
    spec = VxlanSpec(vxlan_name(secrets.token_hex(32)), 11, a.host.address, a.bridge)
    ip("-n", a.host.ns, "link", "add", spec.name, "type", "vxlan", "id", "11", "dstport", "4789",
       "local", a.host.address, "nolearning", "proxy")
    a_overlay = Overlay(a.owner)
    run_in_netns(a.host.ns, lambda: a_overlay.create(spec))
    assert f"alias pontoon:{a.owner}" in ip("-n", a.host.ns, "link", "show", spec.name).stdout
    run_in_netns(a.host.ns, lambda: a_overlay.delete(spec))
    assert ip("-n", a.host.ns, "link", "show", spec.name, check=False).returncode != 0


def test_reconcile_removes_our_orphan_devices_only(lab):
    a, _ = lab
    ns = a.host.ns
    orphan = VxlanSpec(vxlan_name(secrets.token_hex(32)), 4343, a.host.address, a.bridge)
    run_in_netns(ns, lambda: Overlay(a.owner).create(orphan))  # ours, its network in no store
    untagged, foreign = ("ptx" + secrets.token_hex(6) for _ in range(2))
    for vni, name in ((9, untagged), (10, foreign)):
        ip("-n", ns, "link", "add", name, "type", "vxlan", "id", str(vni), "dstport", "4789")
    ip("-n", ns, "link", "set", foreign, "alias", "pontoon:someone-else")
    changes = run_in_netns(ns, lambda: Overlay(a.owner).reconcile({a.spec.name}))
    assert changes == [f"orphan vxlan {orphan.name} removed"]
    present = ip("-n", ns, "-br", "link", "show").stdout
    assert orphan.name not in present
    assert all(name in present for name in (a.spec.name, untagged, foreign))
    assert run_in_netns(ns, lambda: Overlay(a.owner).reconcile({a.spec.name})) == []


def test_delete_is_idempotent(lab):
    a, b = lab
    a.overlay("delete")
    a.overlay("delete")
    assert ip("-n", a.host.ns, "link", "show", a.spec.name, check=False).returncode != 0
    assert not a.ping(b.address)


def test_underlay_mtu(lab):
    a, _ = lab
    ip("-n", a.host.ns, "link", "set", "ul0", "mtu", "9000")
    assert run_in_netns(a.host.ns, underlay_mtu, a.host.address) == 9000
    assert run_in_netns(a.host.ns, default_mtu, a.host.address) == 8950
    with pytest.raises(LookupError):
        run_in_netns(a.host.ns, underlay_mtu, "198.51.100.1")


def test_vxlan_name_is_derived_from_the_network_id():
    network_id = secrets.token_hex(32)
    assert vxlan_name(network_id) == "ptx" + network_id[:12]
    with pytest.raises(InvalidName):
        vxlan_name("not-hex")


def test_a_vni_held_by_another_device_is_refused_naming_it(lab):
    """swarm's overlay or a hand-made VXLAN on the cluster's VNI: the kernel
    refuses a second device, and the create used to end in "the device
    vanished right after it was added"."""
    a, _ = lab
    other = "vxother" + secrets.token_hex(2)
    ip("-n", a.host.ns, "link", "add", other, "type", "vxlan", "id", "4343", "dstport", "4789")
    spec = VxlanSpec(vxlan_name(secrets.token_hex(32)), 4343, a.host.address, a.bridge)
    with pytest.raises(DatapathError, match=f'VNI 4343 on UDP port 4789.*held on this host by device "{other}"'):
        run_in_netns(a.host.ns, lambda: Overlay(a.owner).create(spec))
    assert ip("-n", a.host.ns, "link", "show", spec.name, check=False).returncode != 0
    assert ip("-n", a.host.ns, "link", "show", other, check=False).returncode == 0


def _many_peers_then_remove(owner: str, spec: VxlanSpec, many: list[Peer], dual: tuple[Peer, Peer], dumps: list) -> dict:
    """In A's namespace, with one Overlay as the plugin keeps: add ``many``,
    remove the first (the device's table is read then), add a dual-stack
    peer, and remove its two addresses one by one; counts the neighbour
    dumps each later removal asks of the kernel."""
    from datapath import netlink

    real = netlink.connect

    class Counting:
        def __init__(self):
            self._ipr = real()

        def __enter__(self):
            self._ipr.__enter__()
            return self

        def __exit__(self, *exc):
            return self._ipr.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self._ipr, name)

        def neigh(self, command, **kw):
            if command == "dump":
                dumps.append(kw.get("family"))
            return self._ipr.neigh(command, **kw)

    netlink.connect = Counting
    overlay = Overlay(owner)
    for peer in many:
        overlay.add_peer(spec, peer)
    overlay.remove_peer(spec, many[0])
    for peer in dual:
        overlay.add_peer(spec, peer)
    dumps.clear()
    overlay.remove_peer(spec, dual[0])
    kept_fdb = subprocess.run(["bridge", "fdb", "show", "dev", spec.name], capture_output=True, text=True).stdout
    overlay.remove_peer(spec, dual[1])
    overlay.remove_peer(spec, many[1])
    return {"dumps": len(dumps), "fdb_while_v6_left": kept_fdb}


def test_removing_one_peer_of_many_takes_its_entries_only_and_reads_no_table(lab):
    a, b = lab
    many = [Peer(f"02:42:0a:4e:{i >> 8:02x}:{i & 255:02x}", f"10.78.{i >> 8}.{i & 255}", "192.0.2.7")
            for i in range(1, 201)]
    dual = (Peer("02:42:0a:4d:00:63", f"{SUBNET}.99", "192.0.2.9"), Peer("02:42:0a:4d:00:63", f"{SUBNET6}99",
                                                                          "192.0.2.9"))
    dumps: list = []
    seen = run_in_netns(a.host.ns, _many_peers_then_remove, a.owner, a.spec, many, dual, dumps)
    # The dual-stack peer's forwarding entry stayed while its IPv6 address
    # still used the MAC, and went with it.
    assert "02:42:0a:4d:00:63 dst 192.0.2.9 self permanent" in seen["fdb_while_v6_left"]
    # Each removal asked for its own entries: no dump of the device's tables.
    assert seen["dumps"] == 0
    held = a.overlay("peers")
    assert held == set(many[2:]) | b.peers_of()
    fdb = subprocess.run(["bridge", "-n", a.host.ns, "fdb", "show", "dev", a.spec.name],
                         capture_output=True, text=True, check=True).stdout
    neigh = ip("-n", a.host.ns, "neigh", "show", "dev", a.spec.name).stdout
    for gone in (many[0], many[1], *dual):
        assert gone.mac not in fdb and f"{gone.address} " not in neigh
    assert all(p.mac in fdb for p in many[2:]) and b.mac in fdb
    assert a.ping(b.address)  # the peer the removals did not name still works
