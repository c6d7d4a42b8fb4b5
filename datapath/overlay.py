"""VXLAN between hosts for a cluster network, through netlink.

One VXLAN device per cluster network on each host, enslaved to the
network's bridge, and one static forwarding entry (MAC -> remote host) and
one static neighbour entry (IP -> MAC) per remote endpoint, as Docker's
overlay driver keeps a peer database and flannel's vxlan backend writes
permanent ARP and FDB entries. What that buys:

- learning is off, so the kernel never adds a forwarding entry of its own
  from a packet that arrived from some host: the entries are exactly what
  the cluster says, and a stale one goes when the cluster says so;
- there is no all-zeros forwarding entry, so a broadcast or an unknown
  unicast the bridge floods to the device goes nowhere: nothing floods
  between hosts;
- ARP/ND proxy is on, so an ARP request or neighbour solicitation for a
  remote endpoint that reaches the device is answered by the device itself
  from the neighbour entries, and never crosses; one for an address with no
  entry (the gateway, which every host carries on its own bridge, or a
  stranger) is dropped there.

No HTTP, no store, no etcd here: the cluster side says which peers a network
has and calls ``add_peer``/``remove_peer``/``sync_peers``. Like
``datapath.links``, setup is add-tolerate-EEXIST-re-read-verify, teardown is
idempotent, a netlink socket lives for one operation, and the device carries
the owner alias so reconcile and other instances know whose it is.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from functools import partial

from . import names, netlink, rtnl
from .errors import DatapathError, NameConflict
from .links import ALIAS_PREFIX, _add_link, _delete_index, _foreign, _get_link, _kind, _tagged
from .model import VXLAN_PREFIX
from .steps import FaultHook, Steps

log = logging.getLogger(__name__)

VXLAN_PORT = 4789  # IANA's, as Docker's overlay uses
# Outer Ethernet 14 + IP (20 or 40) + UDP 8 + VXLAN 8 bytes that every frame
# carries across the underlay: a network MTU above underlay - this fragments.
OVERHEAD = {4: 50, 6: 70}
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


@dataclass(frozen=True)
class VxlanSpec:
    name: str  # the VXLAN device (names.vxlan_name of the network's tag)
    vni: int
    local: str  # this host's underlay (advertise) address
    bridge: str  # the network's bridge: the device is enslaved to it
    mtu: int | None = None
    port: int = VXLAN_PORT


@dataclass(frozen=True)
class Peer:
    """One address of a remote endpoint: a dual-stack endpoint is two peers
    with one MAC."""

    mac: str  # lower case
    address: str  # bare IPv4 or IPv6 address
    vtep: str  # the remote host's underlay address


def underlay_mtu(local: str) -> int:
    """MTU of the device that carries the address ``local``."""
    want = ipaddress.ip_address(local)
    with rtnl.Rtnl() as nl:
        index = next((i for i, ifaces in nl.addresses().items() if any(a.ip == want for a in ifaces)), None)
        if index is None:
            raise LookupError(f'no interface of this host carries the address "{local}"')
        link = next(link for link in nl.links().values() if link.index == index)
    return link.mtu


def default_mtu(local: str) -> int:
    """The MTU a cluster network gets unless the user sets one: what fits in
    one underlay packet once VXLAN has wrapped it."""
    return underlay_mtu(local) - OVERHEAD[ipaddress.ip_address(local).version]


def _vxlan_attrs(spec: VxlanSpec) -> dict:
    local = ipaddress.ip_address(spec.local)
    return {"kind": "vxlan", "vxlan_id": spec.vni, "vxlan_port": spec.port, "vxlan_learning": 0,
            "vxlan_proxy": 1, ("vxlan_local" if local.version == 4 else "vxlan_local6"): str(local)}


def _differences(link, spec: VxlanSpec) -> list[str]:
    """What of the device ``link`` differs from ``spec`` (empty: it is the one)."""
    data = link.get(("linkinfo", "data"))
    if data is None:
        return ["kind"]
    local = ipaddress.ip_address(spec.local)
    found = {
        "vni": data.get("vxlan_id"),
        "local": data.get("vxlan_local" if local.version == 4 else "vxlan_local6"),
        "port": data.get("vxlan_port"),
        "learning": data.get("vxlan_learning"),
        "proxy": data.get("vxlan_proxy"),
    }
    want = {"vni": spec.vni, "local": str(local), "port": spec.port, "learning": 0, "proxy": 1}
    return [f"{key} {found[key]} (want {want[key]})" for key in want if found[key] != want[key]]


def _vni_holder(ipr, spec: VxlanSpec) -> str | None:
    """The name of another VXLAN device with ``spec``'s VNI and port, if any."""
    for link in ipr.get_links():
        data = link.get(("linkinfo", "data"))
        if (_kind(link) == "vxlan" and data is not None and link.get("ifname") != spec.name
                and data.get("vxlan_id") == spec.vni and data.get("vxlan_port") == spec.port):
            return link.get("ifname")
    return None


@dataclass
class _Neighbours:
    """This process's copy of a device's permanent neighbour entries, so a
    removal can ask "does another address still use this MAC?" of the few
    addresses that had it, not of a dump of every peer. Read from the
    kernel once per device (one dump, at the first removal or a sync), then
    kept by add_peer, remove_peer and sync_peers. A stale address in it is
    harmless: each is checked against the kernel (one get) before it keeps
    a forwarding entry."""

    macs: dict[str, str] = field(default_factory=dict)  # address -> MAC
    addresses: dict[str, set[str]] = field(default_factory=dict)  # MAC -> addresses

    def set(self, address: str, mac: str) -> None:
        self.drop(address)
        self.macs[address] = mac
        self.addresses.setdefault(mac, set()).add(address)

    def drop(self, address: str) -> None:
        mac = self.macs.pop(address, None)
        if mac is not None:
            self.addresses[mac].discard(address)
            if not self.addresses[mac]:
                del self.addresses[mac]


def _netns() -> int:
    """This thread's network namespace: ifindexes are per namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def _ignore(codes: tuple[int, ...], fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except netlink.NetlinkError as exc:
        if exc.code not in codes:
            raise


class Overlay:
    """Kernel operations on the VXLAN device of a cluster network and its
    peers. ``owner`` is the instance name, as for ``Links``; ``faults`` is
    the ``Steps`` test hook."""

    def __init__(self, owner: str = "pontoon", faults: FaultHook | None = None):
        self.alias = ALIAS_PREFIX + owner
        self.faults = faults
        self._tables: dict[tuple[int, int], _Neighbours] = {}  # (netns, ifindex) -> its neighbours
        self._tables_lock = threading.Lock()

    def _table(self, ipr, index: int) -> _Neighbours:
        key = (_netns(), index)
        with self._tables_lock:
            table = self._tables.get(key)
        if table is None:
            table = _Neighbours()
            for address, mac in _neighbours(ipr, index).items():
                table.set(address, mac)
            with self._tables_lock:
                table = self._tables.setdefault(key, table)
        return table

    def _known(self, index: int) -> _Neighbours | None:
        """The device's table if one was read, else None (nothing to keep)."""
        with self._tables_lock:
            return self._tables.get((_netns(), index))

    # -- the device ---------------------------------------------------------

    def create(self, spec: VxlanSpec) -> None:
        """Make the device of ``spec`` exist, enslaved to its bridge and up.
        One of ours left with other settings (the advertise address changed
        across a restart) is made again; a device of the name that is not
        ours is a NameConflict."""
        name = spec.name
        names.validate_ifname(name, "vxlan name")
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            bridge = _get_link(ipr, spec.bridge)
            if bridge is None or _kind(bridge) != "bridge":
                raise DatapathError(f"add vxlan {name}", f'bridge "{spec.bridge}" does not exist')
            existing = _get_link(ipr, name)
            if existing is not None:
                self._check_ours(existing, name)
                stale = _differences(existing, spec)
                if stale:
                    log.warning('vxlan "%s" is not as wanted (%s): making it again', name, ", ".join(stale))
                    steps.run(f"delete stale vxlan {name}", lambda: _delete_index(ipr, existing["index"]))
            holder = _vni_holder(ipr, spec)
            if holder is not None:
                # The kernel refuses a second device with the VNI on the port
                # (swarm's overlay, a hand-made VXLAN); name the one in the way.
                raise DatapathError(f"add vxlan {name}", f'VNI {spec.vni} on UDP port {spec.port}, the one the '
                                    f'cluster gave this network, is held on this host by device "{holder}"')
            created = _add_link(steps, ipr, f"add vxlan {name}", ifname=name, **_vxlan_attrs(spec))
            # An untagged one under the name is what an earlier attempt left
            # between adding and tagging (the store recorded the name as
            # ours before it was made, as for bridges): tagged now, or
            # delete would leave it.
            if created or (existing is not None and not existing.get("ifalias")):
                steps.run(f"tag {name}", lambda: ipr.link("set", ifname=name, ifalias=self.alias))
            link = _get_link(ipr, name)
            if link is None:
                raise DatapathError(f"add vxlan {name}", "the device vanished right after it was added")
            stale = _differences(link, spec)
            if stale:  # a concurrent create with other settings won the name
                raise DatapathError(f"add vxlan {name}", "the device is not as wanted: " + ", ".join(stale))
            index = link["index"]
            if spec.mtu and link.get("mtu") != spec.mtu:
                steps.run(f"set mtu {spec.mtu} on {name}", lambda: ipr.link("set", index=index, mtu=spec.mtu))
            steps.run(f"enslave {name} to {spec.bridge}",
                      lambda: ipr.link("set", index=index, master=bridge["index"]))
            steps.run(f"set {name} up", lambda: ipr.link("set", index=index, state="up"))

    def _check_ours(self, link, name: str) -> None:
        alias = link.get("ifalias") or ""
        if _kind(link) != "vxlan" or (alias and alias != self.alias):
            raise NameConflict(f'vxlan name "{name}" is held by a device that is not this instance\'s '
                               f'({_kind(link) or "kindless"}{", " + alias if alias else ""})')

    def delete(self, spec: VxlanSpec, untagged: bool = False) -> None:
        """Delete the device (its forwarding and neighbour entries go with
        it). Already gone is success; a device of the name without this
        instance's tag (another's, or a user's untagged one) is left alone.
        ``untagged``: also delete an untagged one, for a network whose
        create a crash cut short between adding the device and tagging it."""
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            link = _get_link(ipr, spec.name)
            if link is None or _foreign(spec.name, "vxlan", _kind(link)):
                return
            if not _tagged(spec.name, "vxlan", link.get("ifalias") or "", self.alias, untagged):
                return
            steps.run(f"delete vxlan {spec.name}", lambda: _delete_index(ipr, link["index"]))
            with self._tables_lock:
                self._tables.pop((_netns(), link["index"]), None)

    def reconcile(self, wanted: set[str]) -> list[str]:
        """At start: delete this instance's VXLAN devices (our prefix, our
        tag) not named in ``wanted``, the devices of stored cluster networks.
        A crash, or a store deleted meanwhile, left them; with learning off
        and no peers they carry nothing, but they hold their VNI's port on
        the underlay. A device of the prefix without our tag is not ours."""
        with rtnl.Rtnl() as nl:
            present = nl.links()
        changes = []
        for name, link in sorted(present.items()):
            if (name.startswith(VXLAN_PREFIX) and link.kind == "vxlan" and link.alias == self.alias
                    and name not in wanted):
                self.delete(VxlanSpec(name=name, vni=0, local="", bridge=""))
                changes.append(f"orphan vxlan {name} removed")
        return changes

    # -- peers ----------------------------------------------------------------
    # Adding a peer writes its forwarding entry, then its neighbour entry,
    # both with "replace": a MAC derived from an IPv4 address comes back with
    # the address when it moves to another host, and must then point there.
    # There is no undo between the two: either half alone is harmless (a
    # forwarding entry without a neighbour only stops the ARP answer), a
    # retry completes it, and sync_peers removes what nobody wants.

    def add_peer(self, spec: VxlanSpec, peer: Peer) -> None:
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            index = self._index(ipr, spec)
            steps.run(f"add fdb {peer.mac} via {peer.vtep} on {spec.name}",
                      lambda: ipr.neigh("replace", family=socket.AF_BRIDGE, ifindex=index, lladdr=peer.mac,
                                        dst=peer.vtep, state=NUD_PERMANENT, flags=NTF_SELF))
            steps.run(f"add neighbour {peer.address} {peer.mac} on {spec.name}",
                      lambda: ipr.neigh("replace", family=_family(peer.address), ifindex=index,
                                        dst=peer.address, lladdr=peer.mac, state=NUD_PERMANENT))
            table = self._known(index)
            if table is not None:
                table.set(peer.address, peer.mac)

    def remove_peer(self, spec: VxlanSpec, peer: Peer) -> None:
        """Remove the peer's neighbour entry, and its forwarding entry once
        no other address of that MAC needs it. Entries that now say
        something else (the MAC moved to another host, the address to another
        MAC) are left: they belong to a newer peer. Each entry is asked for
        by its key (a get, not a dump), so a removal costs the same with 10
        peers on the device as with 1000."""
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            index = self._index_if_any(ipr, spec)
            if index is None:
                return
            vtep = _fdb_entry(ipr, index, peer.mac)
            if vtep not in (None, peer.vtep):
                return  # the MAC came back on another host: both entries are that peer's now
            table = self._table(ipr, index)
            found = _neighbour(ipr, index, peer.address)
            if found == peer.mac:
                steps.run(f"remove neighbour {peer.address} on {spec.name}",
                          lambda: _ignore((errno.ENOENT,), ipr.neigh, "del", family=_family(peer.address),
                                          ifindex=index, dst=peer.address, lladdr=peer.mac))
                found = None
            if found is None:
                table.drop(peer.address)
            else:
                table.set(peer.address, found)
            if vtep is not None and not self._still_used(ipr, index, table, peer):
                steps.run(f"remove fdb {peer.mac} via {peer.vtep} on {spec.name}",
                          lambda: _del_fdb(ipr, index, peer.mac, peer.vtep))

    @staticmethod
    def _still_used(ipr, index: int, table: _Neighbours, peer: Peer) -> bool:
        """Whether another neighbour entry on the device has the peer's MAC
        (the other address of a dual-stack endpoint): the table's addresses
        for it, each asked of the kernel."""
        for address in sorted(table.addresses.get(peer.mac, set()) - {peer.address}):
            found = _neighbour(ipr, index, address)
            if found == peer.mac:
                return True
            if found is None:
                table.drop(address)
            else:
                table.set(address, found)
        return False

    def peers(self, spec: VxlanSpec) -> set[Peer]:
        """The peers the kernel holds: neighbour entries whose MAC has a
        forwarding entry."""
        with netlink.connect() as ipr:
            index = self._index(ipr, spec)
            fdb = _fdb(ipr, index)
            return {Peer(mac, address, fdb[mac]) for address, mac in _neighbours(ipr, index).items() if mac in fdb}

    def sync_peers(self, spec: VxlanSpec, peers: set[Peer]) -> list[str]:
        """Make the device hold exactly ``peers`` (after a watch resync or a
        restart); returns what changed, one line per entry."""
        wanted_fdb = {p.mac: p.vtep for p in peers}
        wanted_neigh = {p.address: p.mac for p in peers}
        changes: list[str] = []
        with netlink.connect() as ipr, Steps(self.faults) as steps:
            index = self._index(ipr, spec)
            fdb, neighbours = _fdb(ipr, index), _neighbours(ipr, index)
            table = _Neighbours()
            for address, mac in neighbours.items():
                if wanted_neigh.get(address) == mac:
                    table.set(address, mac)
            with self._tables_lock:  # what the device holds once the adds below are done
                self._tables[(_netns(), index)] = table
            for address, mac in neighbours.items():
                if wanted_neigh.get(address) != mac:
                    steps.run(f"remove neighbour {address} on {spec.name}",
                              partial(_ignore, (errno.ENOENT,), ipr.neigh, "del", family=_family(address),
                                      ifindex=index, dst=address, lladdr=mac))
                    changes.append(f"-neigh {address} {mac}")
            for mac, vtep in fdb.items():
                if wanted_fdb.get(mac) != vtep:
                    steps.run(f"remove fdb {mac} on {spec.name}", partial(_del_fdb, ipr, index, mac, vtep))
                    changes.append(f"-fdb {mac} {vtep}")
        for peer in sorted(peers, key=lambda p: (p.vtep, p.address)):
            if fdb.get(peer.mac) != peer.vtep or neighbours.get(peer.address) != peer.mac:
                self.add_peer(spec, peer)
                changes.append(f"+peer {peer.address} {peer.mac} {peer.vtep}")
        return changes

    def _index(self, ipr, spec: VxlanSpec) -> int:
        index = self._index_if_any(ipr, spec)
        if index is None:
            raise DatapathError(f"peers of {spec.name}", f'vxlan "{spec.name}" does not exist')
        return index

    @staticmethod
    def _index_if_any(ipr, spec: VxlanSpec) -> int | None:
        link = _get_link(ipr, spec.name)
        return link["index"] if link is not None and _kind(link) == "vxlan" else None


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _neighbours(ipr, index: int) -> dict[str, str]:
    """Address -> MAC of the permanent neighbour entries on the device."""
    found = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ipr.neigh("dump", family=family, ifindex=index):
            if msg["ifindex"] == index and msg["state"] & NUD_PERMANENT and msg.get("lladdr"):
                found[msg.get("dst")] = msg.get("lladdr").lower()
    return found


def _neighbour(ipr, index: int, address: str) -> str | None:
    """The MAC of the device's permanent neighbour entry for ``address``, or None."""
    try:
        msgs = ipr.neigh("get", family=_family(address), ifindex=index, dst=address)
    except netlink.NetlinkError as exc:
        if exc.code == errno.ENOENT:
            return None
        raise
    for msg in msgs:
        if msg["ifindex"] == index and msg["state"] & NUD_PERMANENT and msg.get("lladdr"):
            return msg.get("lladdr").lower()
    return None


def _fdb_entry(ipr, index: int, mac: str) -> str | None:
    """The remote host of the device's own forwarding entry for ``mac``, or None."""
    try:
        msgs = ipr.neigh("get", family=socket.AF_BRIDGE, ifindex=index, lladdr=mac, flags=NTF_SELF)
    except netlink.NetlinkError as exc:
        if exc.code == errno.ENOENT:
            return None
        raise
    for msg in msgs:
        if msg["ifindex"] == index and msg.get("dst") and msg.get("lladdr"):
            return msg.get("dst")
    return None


def remote_macs(index: int) -> set[str]:
    """The MACs the VXLAN device of link ``index`` forwards to other hosts."""
    with netlink.connect() as ipr:
        return set(_fdb(ipr, index))


def _fdb(ipr, index: int) -> dict[str, str]:
    """MAC -> remote host of the device's own forwarding entries (those with
    a destination; the bridge's entries for the port have none)."""
    found = {}
    for msg in ipr.neigh("dump", family=socket.AF_BRIDGE, ifindex=index):
        if msg["ifindex"] == index and msg.get("dst") and msg.get("lladdr"):
            found[msg.get("lladdr").lower()] = msg.get("dst")
    return found


def _del_fdb(ipr, index: int, mac: str, vtep: str) -> None:
    # With the destination given, the kernel removes only that remote: an
    # entry that moved to another host meanwhile stays.
    _ignore((errno.ENOENT,), ipr.neigh, "del", family=socket.AF_BRIDGE, ifindex=index, lladdr=mac, dst=vtep,
            state=NUD_PERMANENT, flags=NTF_SELF)
