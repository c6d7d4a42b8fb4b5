"""Each host's own address on a cluster network, so the host reaches containers on other hosts.

Every host's bridge carries the network's one gateway address (the
distributed gateway), so traffic from the host itself (a health check, a
``--network host`` proxy, a published port's userland proxy) left with
the gateway as its source, an address the far host's bridge owns too: the
far container's reply went to its own host's bridge. flannel (an address
of the host's subnet on ``flannel.1``) and Calico (a tunnel address per
host, from the pool) give each host an address of its own; so does this:

- claimed from the network's cluster pool in ``addrs/`` (kind ``host``,
  held by this host, indexed under ``held/<host>/`` like a container's), so
  no container on any host gets it and the reaper frees it with the host's
  other addresses once the host is gone past the grace. It is taken from
  the top of the pool down: containers keep getting the lowest addresses.
- recorded in this host's store (the network's ``cluster.host_address``)
  before the kernel sees it; the rejoin at start frees a claim the store
  does not hold (a crash between claim and record).
- on the bridge with the subnet's connected route using it as source
  (``datapath.hostaddr``), and published as a record like an endpoint's
  (``endpoints/<pool>/<host>/host``, the bridge's MAC, on the lease), so
  the other hosts' peer watches point it at this host.

IPv4 only: an IPv6 connected route's source is picked by source address
selection (RFC 6724), which a route's ``src`` only hints at, and a second
global address on the bridge would take part in it for every IPv6
destination; it is left out rather than half done. A network whose bridge
carries no IPv4 gateway (``inhibit_ipv4``, isolated mode) gets none either:
there the host is not meant to reach the containers.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Callable, Iterable

from ipam_driver import allocator
from spec.errors import Conflict
from spec.stored import StoredEndpoint, StoredNetwork

from . import keys
from .etcd import created_by, delete_op, put_op, range_op, txn_op, value_is
from .addrrecord import AddrHolder
from .host import ClusterHost
from .ipam import claim_in_pool

log = logging.getLogger("pontoon.cluster")

KIND = "host"  # the kind of its addrs/ value, and the value of its held/ entry
RECORD_ID = "host"  # its record's last key segment, where an endpoint's has its 64-hex ID


class NotClustered(Exception):
    """The pool is not the cluster's (another IPAM driver's): nothing to claim from."""


def target(network: StoredNetwork, on_bridge: Callable[[StoredNetwork], tuple[str, ...]]) -> tuple[str, str] | None:
    """(cluster pool name, gateway interface) of the network's host address,
    or None when its bridge carries no IPv4 gateway. ``on_bridge``: the
    addresses a network's bridge carries (the network driver's rule, handed
    in by plugin.wiring through cluster.mode: cluster/ does not import the network driver)."""
    if not network.ipv4:
        return None
    pool = ipaddress.ip_network(network.ipv4[0].pool)
    gateways = [a for a in on_bridge(network) if ipaddress.ip_interface(a) in pool]
    if not gateways:
        return None
    return network.clustered.pool, gateways[0]


def held_pairs(networks: list[StoredNetwork]) -> set[tuple[str, int]]:
    """(pool name, address) of the host addresses the stored ``networks`` hold."""
    return {(n.clustered.pool, int(ipaddress.ip_interface(address).ip))
            for n in networks if (address := n.host_address)}


class HostAddresses:
    def __init__(self, host: ClusterHost, kernel, remember: Callable[[str, str | None], None],
                 on_bridge: Callable[[StoredNetwork], tuple[str, ...]]):
        """``kernel``: ``add(bridge, address, gateway) -> MAC`` and
        ``remove(bridge, address, gateway)`` (datapath.hostaddr).
        ``remember(network_id, address or None)``: records it in this
        host's store. ``on_bridge``: as for ``target``."""
        self.host = host
        self.kernel = kernel
        self._remember = remember
        self._on_bridge = on_bridge

    def ensure(self, network: StoredNetwork) -> StoredEndpoint | None:
        """This host's address on ``network``, claimed, recorded and on the
        bridge (idempotent: at CreateNetwork, at start, with a new lease);
        returns it as an endpoint to publish, or None when it has none.
        The recorded one is kept while ``addrs/`` gives it to this host (or
        to no one, then it is claimed back); one another host took while
        this host was away past the grace is given up for a new one."""
        found = target(network, self._on_bridge)
        if found is None:
            return None
        name, gateway = found
        before = network.host_address
        try:
            address = self._hold(name, ipaddress.ip_interface(gateway).network, before)
        except NotClustered:
            return None
        if address != before:
            if before:
                log.error("host address %s of network %s is another host's now: taking %s",
                          before, network.id, address)
                self.kernel.remove(network.bridge, before, gateway)
            self._remember(network.id, address)  # before the kernel sees it
        mac = self.kernel.add(network.bridge, address, gateway)
        return StoredEndpoint(RECORD_ID, network.id, mac=mac, address=address)

    def restore(self, network: StoredNetwork) -> None:
        """In the reconcile child (no etcd): the recorded address back on the bridge."""
        found = target(network, self._on_bridge)
        address = network.host_address
        if found is not None and address:
            self.kernel.add(network.bridge, address, found[1])

    def release(self, network: StoredNetwork) -> None:
        """Off the bridge, forgotten by the store, then freed in the cluster
        (the other way from ``ensure``: a crash between leaves a claim that
        the next start frees). Postponed while etcd is away, and then frees
        only the claim made before (a network made again on the pool may
        have claimed the same address since)."""
        address = network.host_address
        if not address:
            return
        self.remove_from_bridge(network)
        self._remember(network.id, None)
        name, addr = network.clustered.pool, int(ipaddress.ip_interface(address).ip)
        created = self.host.etcd.revision
        self.host.now_or_later(f"releasing host address {address} in the cluster",
                           lambda: self._free(name, addr, created))

    def remove_from_bridge(self, network: StoredNetwork) -> None:
        """The kernel's part of ``release`` alone: for a network whose create
        a crash cut short (its record goes, and the next rejoin frees its
        claim), at start, with no etcd."""
        address = network.host_address
        where = target(network, self._on_bridge)
        if address and where is not None:  # made only where the bridge carries the gateway
            self.kernel.remove(network.bridge, address, where[1])

    # -- the claim ----------------------------------------------------------------
    def _hold(self, name: str, net, recorded: str | None) -> str:
        """The recorded address if it is (or can be claimed back as) this
        host's, else the highest free one; as an interface."""
        first, last = allocator.usable_range(net)
        candidates: Iterable[int] = range(last, first - 1, -1)
        if recorded:
            candidates = [int(ipaddress.ip_interface(recorded).ip), *candidates]
        for addr in candidates:
            if self._claim(name, addr):
                return f"{ipaddress.ip_address(addr)}/{net.prefixlen}"
        raise Conflict(f"no free address left in pool {net} for this host's own address on it")

    def _claim(self, name: str, addr: int) -> bool:
        """Whether ``addr`` is this host's now: claimed if free, in one
        transaction that also checks the pool is the cluster's and this
        host a member of it (as a container's claim does)."""
        mine = AddrHolder(self.host.host_id, KIND).value()
        key = keys.prefix("addrs", name) + keys.hexaddr(addr)
        claimed, holder, held = claim_in_pool(self.host.etcd, name, self.host.host_id, key,
                                              [put_op(key, mine), put_op(self._held(name, addr), KIND)],
                                              range_op(key, "", 1, keys_only=False))
        if claimed:
            return True
        if not held:
            raise NotClustered(name)
        return bool(holder) and holder[0].value == mine

    def _free(self, name: str, addr: int, created: int) -> None:
        """Delete the claim made at ``created`` or before, and its index
        entry. dockerd releases the pool before it deletes the network, so
        the last member's leave has often taken the claim with the pool's
        other addresses already: then the index entry alone goes (as
        ``ClusterIpam._free`` does for a container's address)."""
        key, held = keys.prefix("addrs", name) + keys.hexaddr(addr), self._held(name, addr)
        self.host.etcd.txn([value_is(key, AddrHolder(self.host.host_id, KIND).value()), created_by(key, created)],
                           [delete_op(key), delete_op(held)],
                           [txn_op([created_by(held, created)], [delete_op(held)])])

    def _held(self, name: str, addr: int) -> str:
        return keys.prefix("held", self.host.host_id) + f"{name}/{keys.hexaddr(addr)}"
