"""A cluster network's segment: agreed options, VNI, VXLAN, endpoint records, peers.

``ClusterSegment`` is the ``network_driver.segment.Segment`` of cluster mode.
A cluster network is named by its first pool (``keys.pool_name``): every
host's dockerd makes its own network ID for it, but all hand in the pool.

- prepare: the first host to create the network stores the options that
  must agree (``AGREED``) and a VNI, both in one create-if-absent
  transaction; a later host with different values gets a 409 naming the
  option and the value the cluster holds. An MTU left unset takes the
  cluster's, or else the underlay's MTU minus the VXLAN overhead.
- attach / detach: the VXLAN device on the bridge, and the watch of the
  network's endpoint records (cluster.peerwatch), which exists only while
  the network exists on this host (nothing cluster-wide is watched).
- publish / unpublish: this host's endpoint records, on the host's lease,
  so they vanish from the others' datapath when this host dies.
- this host's own address on the network (cluster.hostaddr), made with the
  VXLAN device and published like an endpoint.
- the VXLAN guard (datapath.vxlanguard): each network's VNI takes VXLAN
  only from the hosts whose records its watch applies, kept from the same
  watch that keeps the peers.
- encrypted networks (``pontoon.encrypted``): their VXLAN runs over this
  host's WireGuard tunnel (datapath.wireguard), from its tunnel address to
  the peers' (``hosts/<id>`` publishes each host's key and tunnel address);
  the tunnel's peers are the hosts of the encrypted networks' watches.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator

from datapath.errors import DatapathError
from spec.errors import BadRequest, Conflict
from spec.stored import ClusterPart, StoredEndpoint, StoredNetwork

from . import addrrecord, keys
from .netrecord import NetRecord
from .records import BadRecord, EndpointRecord
from .etcd import (EtcdUnavailable, absent, delete_op, present, put_op, range_op, ranges, unchanged,
                   value_is)
from .dataplane import Dataplane
from .addrrecord import AddrHolder
from .host import ClusterHost
from .hostaddr import HostAddresses
from .fastpaths import FastPaths
from .peerwatch import PeerWatch

if TYPE_CHECKING:  # the type only: names/ is a service beside cluster/, handed in by cluster.mode
    from names.service import Names

log = logging.getLogger("pontoon.cluster")

# Options every host of a network must share, as (stored option, what the user sets).
AGREED = {
    "mtu": "com.docker.network.driver.mtu",
    "icc": "com.docker.network.bridge.enable_icc",
    "masquerade": "com.docker.network.bridge.enable_ip_masquerade",
    "internal": "--internal",
    "ipv6": "--ipv6",
    "inhibit_ipv4": "com.docker.network.bridge.inhibit_ipv4",
    "encrypted": "pontoon.encrypted",
}
VNI_FIRST, VNI_LAST = 4096, (1 << 24) - 1  # below 4096: left to hand-made VXLANs
# Endpoints per republish transaction: at most 9 operations each (two
# addresses), under etcd's default limit of 128 per transaction.
REPUBLISH_BATCH = 12


def vni_candidates(name: str) -> Iterator[int]:
    """Every VNI of the range once, from a start hashed from the network's
    pool name, so hosts creating different networks at once start their
    search at different VNIs rather than all racing for the lowest. (A sum
    of the name's bytes put all /24s on about 155 starts.)"""
    span = VNI_LAST - VNI_FIRST + 1
    start = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % span
    for step in range(span):
        yield VNI_FIRST + (start + step) % span


class ClusterSegment:
    connectivity = "global"

    def __init__(self, host: ClusterHost, overlay, dp: Dataplane, host_addresses: HostAddresses | None = None, guard=None,
                 tunnel=None, encrypt: bool = False, fastpaths: FastPaths | None = None):
        """``overlay`` is a datapath.overlay.Overlay; ``dp`` the rest of the
        datapath the segment uses (cluster.dataplane). ``host_addresses``: None makes none (tests that count
        peers). ``guard``: a datapath.vxlanguard.VxlanGuard, None for none;
        ``tunnel``: a datapath.wireguard.Tunnel, None: no encrypted network.
        ``encrypt``: whether a network made without ``pontoon.encrypted`` is
        (the ``encrypt`` setting: the hosts of a cluster set it alike, and
        one that does not is told by the agreement's 409). ``fastpaths``:
        the networks' unicast off the bridge (cluster.fastpaths), None for none."""
        self.host = host
        self.fastpaths = fastpaths
        self.overlay = overlay
        self.dp = dp
        self.host_addresses = host_addresses
        self.guard = guard
        self.tunnel = tunnel
        self.encrypt = encrypt
        self._sealed: dict[str, str] = {}  # the encrypted networks attached (ID -> pool): the tunnel is up for them
        # What admit() last applied, apart: a plain network's member changing
        # need not ask WireGuard for its peers (two tool runs), nor a key
        # rotation rewrite the guard's table.
        self._guarded: tuple | None = None  # to the guard: (members, settled, encrypted VNIs)
        self._tunneled: tuple | None = None  # to the tunnel: (its peers, settled, any encrypted network)
        self._guard_lock = threading.Lock()
        self._watches: dict[str, PeerWatch] = {}  # network ID -> its watch
        self._gone: set[str] | None = None  # while a republish runs: networks and endpoints deleted since
        self._lock = threading.Lock()
        self.names: Names | None = None  # cluster.mode sets it: told of watches, records, endpoints
        self._renaming = threading.Lock()  # a rename's write against an unpublish's delete
        self._renamed: dict[str, set[str]] = {}  # endpoint ID -> the records rename may have left

    @property
    def _etcd(self):
        return self.host.etcd

    # -- networks ---------------------------------------------------------------
    def prepare(self, network: StoredNetwork) -> StoredNetwork:
        """The network's cluster name and VNI; all of its pools must be the
        cluster network's (``_held_pools``): one pool on two segments, or a
        segment whose hosts hold different pools (an automatic IPv6 pool
        each, a second subnet on one host only), splits the network."""
        if not network.ipv4 and not network.ipv6:
            raise Conflict(f"network {network.id} has no pool: a cluster network is named by its pool")
        if network.options.encrypted:
            self._check_can_encrypt()
        self.host.lease_id()
        mine = keys.pool_names(network)
        name, clustered = self._held_pools(keys.cluster_name(network), mine)
        options = network.options
        # As given: a create that loses its race to another host's agrees with
        # that host's record on what this one asked for, not on what it chose.
        given_mtu, given_encrypted = options.mtu, options.encrypted
        while True:
            held = self._etcd.get(keys.key("nets", name))
            if held is not None:
                record = NetRecord.parse(held.key, held.value)
                options = replace(options, encrypted=self._encrypted(given_encrypted, record.encrypted))
                self._check_agreement(name, {**options.to_json(), "mtu": given_mtu}, record.options)
                self._check_pools(name, mine, record.pools)
                options = replace(options, mtu=record.options["mtu"])
                self._check_underlay(name, record.options["mtu"], record.encrypted)
                return replace(network, options=options, cluster=ClusterPart(name, record.vni))
            options = replace(options, encrypted=self._encrypted(given_encrypted, False))
            # Unset: the underlay's less VXLAN's (and WireGuard's).
            mtu = options.mtu if options.mtu is not None else self._mtu_limit(bool(options.encrypted))
            options = replace(options, mtu=mtu)
            self._check_underlay(name, mtu, bool(options.encrypted))
            agreed = {k: getattr(options, k) for k in AGREED}
            for vni in vni_candidates(name):
                value = NetRecord(vni, agreed, tuple(sorted(mine))).value()
                owned = [keys.key("netof", p) for p in clustered]
                reply = self._etcd.txn([absent(keys.key("nets", name)), absent(keys.key("vnis", vni)),
                                        *map(absent, owned)],
                                       [put_op(keys.key("nets", name), value), put_op(keys.key("vnis", vni), name),
                                        *(put_op(k, name) for k in owned)])
                if reply.get("succeeded"):
                    return replace(network, options=options, cluster=ClusterPart(name, vni))
                if self._etcd.get(keys.key("nets", name)) is not None:
                    break  # another host created the network: agree with it
                name, clustered = self._held_pools(name, mine)  # or took one of its pools for another
            else:
                raise Conflict("no free VNI left in the cluster")

    def _encrypted(self, given: bool | None, theirs: bool) -> bool:
        """Whether the network is encrypted: as ``pontoon.encrypted`` was
        given; else yes if this host encrypts every network (``encrypt``:
        never clear text where it is set, so a clear network is a 409), else
        as the cluster's network is (``theirs``; no when this host makes it)."""
        if given is not None:
            return given
        if self.encrypt or theirs:
            self._check_can_encrypt("setting encrypt=true" if self.encrypt else "the cluster's network is encrypted")
            return True
        return False

    def _held_pools(self, name: str, mine: list[str]) -> tuple[str, list[str]]:
        """The network's name in the cluster, and which of its pools (``mine``)
        are the cluster IPAM's, in one read. A pool is one network's
        (``netof/``): a network whose first pool is a later pool of a
        network the cluster holds takes that network's name (the same
        subnets given in another order); any other pool held by another
        network is a 409 naming it."""
        found = ranges(self._etcd.txn([], [range_op(keys.key("pools", p), "", 1) for p in mine]
                                      + [range_op(keys.key("netof", p), "", 1, keys_only=False) for p in mine]))
        clustered = [p for p, kvs in zip(mine, found) if kvs]
        owners = {p: kvs[0].value for p, kvs in zip(mine, found[len(mine):]) if kvs}
        name = owners.get(name, name)
        for pool, owner in owners.items():
            if owner != name:
                space, cidr = keys.cidr_of(pool)
                raise Conflict(f"pool {cidr} ({space}) belongs to cluster network {keys.cidr_of(owner)[1]} "
                               f"({keys.cidr_of(owner)[0]}), not to the one of pool {keys.cidr_of(name)[1]}: "
                               f"every host's network must have the same subnets")
        return name, clustered

    @staticmethod
    def _check_pools(name: str, mine: list[str], theirs: tuple[str, ...] | None) -> None:
        if theirs is not None and tuple(sorted(mine)) != theirs:  # None: a record of an older version
            space, cidr = keys.cidr_of(name)
            raise Conflict(f"subnets {_cidrs(mine)} disagree with cluster network {cidr} ({space}), which holds "
                           f"subnets {_cidrs(theirs)}: every host's network must have the same subnets (give an "
                           f"IPv6 subnet with --subnet rather than an automatic one)")

    def _check_can_encrypt(self, why: str = f'option {AGREED["encrypted"]}="true"') -> None:
        """Never clear text for an encrypted network: a host with no
        WireGuard refuses it, before anything is made or agreed."""
        if self.tunnel is None or self.tunnel.implementation() is None:
            raise BadRequest(f'{why}: this host cannot encrypt (it needs wg and '
                             f'wireguard-go, or a kernel with WireGuard: apt-get install wireguard-tools '
                             f'wireguard-go); refused rather than sent in clear text')

    def _mtu_limit(self, encrypted: bool) -> int:
        if not encrypted:
            return self.dp.default_mtu(self.host.advertise)
        return self.tunnel.network_mtu(self.dp.underlay_mtu(self.host.advertise), self.host.advertise)

    def _check_underlay(self, name: str, mtu: int, encrypted: bool) -> None:
        """A VXLAN packet is not fragmented: an MTU above what this host's
        underlay carries (its MTU less VXLAN's overhead, and WireGuard's for
        an encrypted network) would drop every full-size frame between this
        host and the others, silently."""
        try:
            limit = self._mtu_limit(encrypted)
        except LookupError:
            return  # no interface carries the advertise address: the device's creation will say so
        if mtu > limit:
            space, cidr = keys.cidr_of(name)
            overhead = "VXLAN's and WireGuard's overhead" if encrypted else "VXLAN's overhead"
            raise Conflict(f"MTU {mtu} of cluster network {cidr} ({space}) is more than this host's underlay "
                           f"carries: at most {limit} (the MTU of the interface with {self.host.advertise}, "
                           f"less {overhead})")

    @staticmethod
    def _check_agreement(name: str, mine: dict, theirs: dict) -> None:
        theirs = {"encrypted": False, **theirs}  # a network agreed before encryption came is clear
        for key, label in AGREED.items():
            if key == "mtu" and mine["mtu"] is None:
                continue  # unset: this host takes the cluster's
            if mine.get(key) != theirs.get(key):
                space, cidr = keys.cidr_of(name)
                raise Conflict(f"option {label}={_show(mine.get(key))} disagrees with cluster network {cidr} "
                               f"({space}), which holds {label}={_show(theirs.get(key))}")

    def spec(self, network: StoredNetwork):
        o = network.options
        # By the stored tag, like the bridge and chains: two network IDs
        # sharing their first 12 characters get two devices.
        local = self.tunnel.address if o.encrypted else self.host.advertise
        return self.dp.VxlanSpec(name=self.dp.vxlan_name(network.tag), vni=network.clustered.vni,
                                  local=local, bridge=network.bridge, mtu=o.mtu)

    def _seal(self, network: StoredNetwork) -> None:
        """An encrypted network's tunnel, up before its VXLAN device binds
        the tunnel address."""
        if network.options.encrypted:
            with self._lock:
                self._sealed[network.id] = network.clustered.pool
            self.tunnel.up(self.dp.underlay_mtu(self.host.advertise), self.host.advertise)

    def attach(self, network: StoredNetwork) -> None:
        self._seal(network)
        self.admit(also=network.clustered.vni)  # guarded before the device takes anything
        self.overlay.create(self.spec(network))
        self._publish_host_address(network)
        self._watch(network)
        self.changed(network.id)

    def _publish_host_address(self, network: StoredNetwork, lease: int = 0) -> StoredEndpoint | None:
        endpoint = self.host_addresses.ensure(network) if self.host_addresses is not None else None
        if endpoint is not None:
            self.publish(network, endpoint, lease)
        return endpoint

    def detach(self, network: StoredNetwork) -> None:
        with self._lock:
            watch = self._watches.pop(network.id, None)
            self._sealed.pop(network.id, None)
            if self._gone is not None:
                self._gone.add(network.id)
        if watch is not None:
            watch.stop()
        prefix = keys.prefix("endpoints", network.clustered.pool) + self.host.host_id + "/"
        written = self._etcd.revision  # the records of this network are at or below (ClusterHost.now_or_later)
        self.host.now_or_later(f"removing this host's endpoint records of network {network.id}",
                           lambda: self._remove_records(prefix, written))
        if self.host_addresses is not None:  # its record went with the others
            self.host_addresses.release(network)
        self.overlay.delete(self.spec(network))
        self.admit()

    def _remove_records(self, prefix: str, written: int) -> None:
        """Delete the records under ``prefix`` (this host's on a pool) last
        written at revision ``written`` or before, never a later one: run
        late (postponed by an outage), a network made again on the pool
        since has records of this host there too, all written after."""
        for kv in self._etcd.read_prefix(prefix)[0]:
            if kv.mod_revision <= written:
                self._etcd.txn([unchanged(kv)], [delete_op(kv.key)])

    def _watch(self, network: StoredNetwork) -> None:
        with self._lock:
            if network.id in self._watches or (self._gone is not None and network.id in self._gone):
                return
            watch = PeerWatch(self, network)
            self._watches[network.id] = watch
            if network.options.encrypted:
                self._sealed[network.id] = network.clustered.pool
        watch.start()

    def changed(self, network_id: str) -> None:
        """The network's endpoints here or peers changed: its fast path follows."""
        if self.fastpaths is not None:
            self.fastpaths.touch(network_id)

    # -- endpoints ----------------------------------------------------------------
    def publish(self, network: StoredNetwork, endpoint: StoredEndpoint, lease: int = 0) -> None:
        if network.clustered.lost:
            raise Conflict(f"network {network.id} is cut off from the cluster: {network.clustered.lost}; "
                           f"remove it and create it again")
        lease = lease or self.host.lease_id()
        try:
            self._etcd.put(self._endpoint_key(network, endpoint), self._record(endpoint), lease)
        except EtcdUnavailable as exc:
            if "lease not found" not in str(exc):
                raise
            renewed = self.host.renewed_lease(lease)
            if renewed == lease:
                raise
            self._etcd.put(self._endpoint_key(network, endpoint), self._record(endpoint), renewed)
        if self.names is not None:
            self.names.published(network, endpoint)

    def _record(self, endpoint: StoredEndpoint) -> str:
        return EndpointRecord(self.host.host_id, self.host.advertise, endpoint.mac, endpoint.ips,
                              endpoint.name, endpoint.aliases).value()

    def unpublish(self, network: StoredNetwork, endpoint: StoredEndpoint) -> None:
        with self._lock:
            if self._gone is not None:
                self._gone.add(endpoint.id)
        if self.names is not None:
            self.names.unpublished(network, endpoint)
        key = self._endpoint_key(network, endpoint)
        # Only while the key holds this endpoint's record (a new lease
        # writes it again with the same value, so not its revision: see
        # ClusterHost.now_or_later): the one ``endpoint`` makes, or any that
        # ``rename`` may have written meanwhile (the caller read the endpoint before).
        with self._renaming:
            records = {self._record(endpoint)} | self._renamed.pop(endpoint.id, set())

            def delete() -> None:
                for record in records:
                    self._etcd.txn([value_is(key, record)], [delete_op(key)])

            self.host.now_or_later(f"unpublishing endpoint {endpoint.id}", delete)

    def endpoints_changed(self, network: StoredNetwork) -> None:
        self.changed(network.id)

    def rename(self, network: StoredNetwork, before: StoredEndpoint, after: StoredEndpoint) -> None:
        """The endpoint's record written again with the names of ``after``
        (the store has them now), if the key still holds the record of
        ``before``: a record an unpublish took (the container removed
        meanwhile) is not made again. Every record this may have left (a
        write that failed may have been applied) is remembered till the
        endpoint's unpublish, which may have read the endpoint before its
        names changed."""
        key = self._endpoint_key(network, before)
        record = self._record(after)
        with self._renaming:
            self._renamed.setdefault(before.id, set()).update((self._record(before), record))
            written = self._etcd.txn([value_is(key, self._record(before))],
                                     [put_op(key, record, self.host.lease_id())]).get("succeeded")
        if written and self.names is not None:
            self.names.published(network, after)

    def _endpoint_key(self, network: StoredNetwork, endpoint: StoredEndpoint) -> str:
        return keys.prefix("endpoints", network.clustered.pool) + f"{self.host.host_id}/{endpoint.id}"

    # -- start-up -----------------------------------------------------------------------
    def reconcile(self, networks: list[StoredNetwork], cut_short: list[StoredNetwork]) -> list[str]:
        """In the reconcile child: the VXLAN devices only. etcd waits for the
        worker (``resume``), which holds the lease the records ride on. A
        network whose create was cut short after its device was made loses
        it: its bridge went, and the device, named under a prefix the
        single-host reconcile leaves alone, would outlive it (untagged too:
        the crash may have come between adding the device and tagging it).
        Then every other device of ours goes: its network is in no store
        record (a crash, or a store deleted meanwhile)."""
        changes = []
        for network in cut_short:
            if network.cluster is not None:
                if self.host_addresses is not None:
                    self.host_addresses.remove_from_bridge(network)  # an adopted bridge outlives it
                    # Its claim in etcd (made before the store recorded it,
                    # so perhaps unknown here) is freed by the rejoin, which
                    # this start must then run even with no cluster network
                    # left: dockerd does not retry a failed create.
                    self.host.owe()
                self.overlay.delete(self.spec(network), untagged=True)
                changes.append(f"vxlan of network {network.id}, created only in part, removed")
        wanted = set()
        for network in networks:
            if network.cluster is not None and not network.lost:
                spec = self.spec(network)
                self._seal(network)
                self.overlay.create(spec)
                if self.host_addresses is not None:
                    self.host_addresses.restore(network)
                wanted.add(spec.name)
                changes.append(f"vxlan of network {network.id} in place")
        if not wanted and self.guard is not None:  # the last network went while no process ran
            self.guard.remove()
        if not self._sealed and self.tunnel is not None:
            self.tunnel.down()
        return changes + self.overlay.reconcile(wanted)

    # -- networks the cluster no longer holds --------------------------------------------
    def cut_off(self, networks: list[StoredNetwork], pools: set[str]) -> list[tuple[StoredNetwork, str]]:
        """The stored cluster networks on pools of this host's (``pools``)
        that the cluster no longer holds as this host knew them, each with
        why: every member was away past the grace, so the reclaim removed
        the pool with its VNI and claims, and another host may have made
        the pool again since, on this VNI (it is hashed from the pool) with
        new containers on this network's addresses. Such a network must not
        rejoin: checked at each republish, before memberships are taken up
        again, in one round trip per network. Pools of another IPAM driver
        have no record to compare and are never cut off."""
        found = []
        for network in networks:
            cluster = network.cluster
            if cluster is None or cluster.lost or cluster.pool not in pools:
                continue
            why = self._why_cut_off(network, pools)
            if why:
                found.append((network, why))
        return found

    def _why_cut_off(self, network: StoredNetwork, pools: set[str]) -> str:
        name, vni = network.clustered.pool, network.clustered.vni
        space, cidr = keys.cidr_of(name)
        gateways = [(n, ipaddress.ip_interface(p.gateway).ip)
                    for n, p in zip(keys.pool_names(network), network.ipam) if n in pools and p.gateway]
        ops = [range_op(keys.key("pools", name), "", 1), range_op(keys.key("nets", name), "", 1, keys_only=False)]
        ops += [range_op(keys.prefix("addrs", n) + keys.hexaddr(int(g)), "", 1, keys_only=False) for n, g in gateways]
        pool, held, *claims = ranges(self._etcd.txn([], ops))
        if not pool:
            return f"the cluster no longer holds pool {cidr} ({space}): its members were all away past the grace"
        try:
            theirs = NetRecord.parse(held[0].key, held[0].value).vni if held else None
        except BadRecord as exc:
            return f"pool {cidr} ({space}) was made again in the cluster, with a network record unread: {exc}"
        if theirs != vni:
            return (f"pool {cidr} ({space}) was made again in the cluster, "
                    f"{'with VNI ' + str(theirs) if held else 'with no network yet'}, not this network's {vni}")
        for (n, gateway), kvs in zip(gateways, claims):
            by = addrrecord.holder(kvs[0].key, kvs[0].value) if kvs else ""
            if not kvs or by != "":
                return (f"pool {cidr} ({space}) was made again in the cluster: gateway {gateway} is "
                        f"{'held by host ' + by if kvs else 'allocated to no one'}")
        return ""

    def abandon(self, network: StoredNetwork) -> None:
        """Take a network the cluster no longer holds (``cut_off``) out of
        the cluster's datapath on this host: no watch, no VXLAN device. Its
        containers keep the bridge (they reach each other on this host),
        but none of them can share a segment with the new holders of their
        addresses."""
        with self._lock:
            watch = self._watches.pop(network.id, None)
            self._sealed.pop(network.id, None)
        if watch is not None:
            watch.stop()
        self.overlay.delete(self.spec(network))
        if self.host_addresses is not None:  # its claim is no longer this host's: freed only if it is
            self.host_addresses.release(network)
        self.admit()

    def resume(self, networks: list[StoredNetwork], endpoints: list[StoredEndpoint], lease: int,
               pools: set[str]) -> list[Lost]:
        """Once the worker has its lease (at start, or a lost lease
        replaced), with the store's cluster networks: publish this host's
        endpoints again and follow the others'. ``pools``: the cluster pools
        this host's IPAM holds, whose addresses ``addrs/`` allocates.
        Returns the endpoints left unpublished: an address of theirs is
        another host's now."""
        by_id = {n.id: n for n in networks if n.cluster is not None}
        lost, again = [], []
        for endpoint in endpoints:
            network = by_id.get(endpoint.network_id)
            if network is not None and network.lost:
                lost.append(Lost(endpoint, next(iter(endpoint.ips), ""), ""))
            elif network is not None:
                again.append((network, endpoint))
        for start in range(0, len(again), REPUBLISH_BATCH):
            lost += self._republish_batch(again[start:start + REPUBLISH_BATCH], lease, pools)
        taken = {t.endpoint.id for t in lost}
        for network, endpoint in again:
            if endpoint.id not in taken and self._deleted(endpoint.id, network.id):
                # Deleted after the store was read: its delete may have
                # come before this write, which brought the record back.
                self.unpublish(network, endpoint)
        for network in by_id.values():
            if network.lost:
                continue  # cut off from the cluster: nothing of it there (ClusterMode._cut_off)
            if not self._deleted(network.id):
                try:
                    own = self._publish_host_address(network, lease)
                except (Conflict, DatapathError) as exc:  # the network's endpoints are served all the same
                    log.error("host address of network %s not made: %s", network.id, exc)
                    own = None
                if own is not None and self.host_addresses is not None and self._deleted(network.id):
                    # Deleted meanwhile: its detach may have come before.
                    self.unpublish(network, own)
                    self.host_addresses.release(
                        replace(network, cluster=replace(network.clustered, host_address=own.address)))
            self._watch(network)
            self.changed(network.id)
        return lost

    @contextmanager
    def deletes_seen(self) -> Iterator[None]:
        """Around a republish, from before the store is read: the endpoints
        and networks deleted meanwhile are remembered (``resume`` takes
        their records out again, and starts no watch for them)."""
        with self._lock:
            self._gone = set()
        try:
            yield
        finally:
            with self._lock:
                self._gone = None
            self.admit()  # the guard's removals waited for the republish

    def _deleted(self, *ids: str) -> bool:
        with self._lock:
            return self._gone is not None and any(i in self._gone for i in ids)

    def _republish_batch(self, batch: list[tuple[StoredNetwork, StoredEndpoint]], lease: int,
                         pools: set[str]) -> list[Lost]:
        """Publish a batch of endpoints again in two round trips: one read
        of all their claims, one transaction comparing and writing them
        all (``_plan``); a republish of E endpoints used to take 2E, which
        at a few ms each kept the start-up and a lost lease's recovery
        busy for seconds. If another host took a free address between the
        two, the batch is done one endpoint at a time (``_republish``)."""
        claims = [self._claims(network, endpoint, pools) for network, endpoint in batch]
        reads = [op for c in claims for op in _claim_reads(c)]
        found = ranges(self._etcd.txn([], reads)) if reads else []
        lost, plans, at = [], [], 0
        for (network, endpoint), c in zip(batch, claims):
            plan = self._plan(network, endpoint, c, found[at:at + 2 * len(c)], lease)
            at += 2 * len(c)
            if isinstance(plan, Lost):
                lost.append(plan)
            else:
                plans.append((network, endpoint, plan))
        compares = [op for _, _, (c, _) in plans for op in c]
        puts = [op for _, _, (_, p) in plans for op in p]
        if not plans or self._etcd.txn(compares, puts).get("succeeded"):
            return lost
        return lost + [t for t in (self._republish(n, e, lease, pools) for n, e, _ in plans) if t is not None]

    def _republish(self, network: StoredNetwork, endpoint: StoredEndpoint, lease: int,
                   pools: set[str]) -> Lost | None:
        """One endpoint of ``_republish_batch``, read again up to three times."""
        claims = self._claims(network, endpoint, pools)
        if not claims:  # another IPAM driver's addresses: nothing of the cluster's to check
            self.publish(network, endpoint, lease)
            return None
        for _ in range(3):  # another host claimed a free one between read and write: read again
            plan = self._plan(network, endpoint, claims, ranges(self._etcd.txn([], _claim_reads(claims))), lease)
            if isinstance(plan, Lost):
                return plan
            if self._etcd.txn(*plan).get("succeeded"):
                return None
        raise EtcdUnavailable(f"endpoint {endpoint.id}: its addresses kept changing hands while it was published")

    def _claims(self, network: StoredNetwork, endpoint: StoredEndpoint,
                pools: set[str]) -> list[tuple[str, int, str]]:
        """(pool name, address, its addrs/ key) of each of the endpoint's
        addresses the cluster allocates (in ``pools``)."""
        return [(name, addr, keys.prefix("addrs", name) + keys.hexaddr(addr))
                for name, addr in _addresses(network, endpoint) if name in pools]

    def _plan(self, network: StoredNetwork, endpoint: StoredEndpoint, claims: list, found: list,
              lease: int) -> Lost | tuple[list, list]:
        """How to publish ``endpoint`` again, given what ``_claim_reads``
        found: only with every address of it still this host's in
        ``addrs/``, in one transaction that compares that (an address freed
        meanwhile, by a reclaim of this host's that found no taker, is
        claimed back in it): a host cut off past the reclaim grace may find
        an address given to another host's container, and its record,
        written last, would win every other host's datapath. Returns the
        transaction's compares and puts, or for such an endpoint, which is
        not published, a Lost saying who holds what."""
        mine = AddrHolder(self.host.host_id, "address").value()
        holders, pools_held = found[:len(claims)], found[len(claims):]
        compares, puts = [], []
        for (name, addr, key), holder, pool in zip(claims, holders, pools_held):
            if holder and holder[0].value != mine:
                held_by = AddrHolder.parse(holder[0].key, holder[0].value).host
                return Lost(endpoint, str(ipaddress.ip_address(addr)), held_by)
            if not holder and not pool:
                return Lost(endpoint, str(ipaddress.ip_address(addr)), "")
            compares.append(value_is(key, mine) if holder else absent(key))
            if not holder:
                compares.append(present(keys.key("pools", name)))
                puts += [put_op(key, mine),
                         put_op(keys.prefix("held", self.host.host_id) + f"{name}/{keys.hexaddr(addr)}", "")]
        return compares, puts + [put_op(self._endpoint_key(network, endpoint), self._record(endpoint), lease)]

    def announce_key(self) -> None:
        """After a key rotation (``hosts/<id>`` holds the new public key):
        this host's endpoint records of the encrypted networks written again
        as they are. Each peer's watch reads the host's ``hosts/`` record
        with the event (PeerWatch._held_of), and so takes the new key at
        once; the hosts that hold none of these records do not peer with
        this one. (A watch of ``hosts/`` would keep a stream open on every
        host for what changes this rarely.) Each put is compared on the
        record being unchanged since read: one deleted meanwhile stays so."""
        with self._lock:
            pools = set(self._sealed.values())
        for pool in sorted(pools):
            for kv in self._etcd.read_prefix(keys.prefix("endpoints", pool) + self.host.host_id + "/")[0]:
                self._etcd.txn([unchanged(kv)], [put_op(kv.key, kv.value, kv.lease)])

    def admit(self, also: int | None = None) -> None:
        """Keep the guard to the watches: each watched network's VNI takes
        VXLAN from the hosts of the peers its watch keeps (``also``: a VNI
        whose watch is yet to come, taking none). Nothing is taken out of
        it until every watch has read its records once and no republish is
        under way: at start-up the watches come one by one, and the members
        the kernel holds from the last process stay until then. With no
        network left, the guard goes. The tunnel's peers are kept the same
        way, from the encrypted networks' watches; with none, it goes."""
        with self._guard_lock:
            with self._lock:
                watches = list(self._watches.values())
                settled = self._gone is None and all(w.vteps is not None for w in watches)
                sealed = bool(self._sealed)
            members = {w.vni: set(w.vteps or ()) for w in watches}
            encrypted = frozenset(w.vni for w in watches if w.sealed)
            if also is not None:
                members.setdefault(also, set())
            tunnels = {address: peer for w in watches for address, peer in w.tunnel_peers().items()}
            guarded, tunneled = (members, settled, encrypted), (tunnels, settled, sealed)
            if guarded != self._guarded:
                if self.guard is not None and settled and not members:
                    self.guard.remove()
                elif self.guard is not None:
                    self.guard.apply(members, prune=settled, sealed=encrypted)
                self._guarded = guarded
            if tunneled != self._tunneled:
                if self.tunnel is not None and sealed:
                    self.tunnel.sync_peers(tunnels, prune=settled)
                elif self.tunnel is not None and settled and (self._tunneled is None or self._tunneled[2]):
                    self.tunnel.down()  # the last encrypted network went (or went while no process ran)
                self._tunneled = tunneled

    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._watches)

    def stop(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.stop()


@dataclass(frozen=True)
class Lost:
    """An endpoint this host did not publish again: ``address`` of it is
    held by host ``holder`` (empty: by no one, its pool is no longer held
    in the cluster)."""
    endpoint: StoredEndpoint
    address: str
    holder: str


def _addresses(network: StoredNetwork, endpoint: StoredEndpoint) -> list[tuple[str, int]]:
    """(cluster pool name, address) of each address of ``endpoint``."""
    pools = list(zip(keys.pool_names(network), network.ipam))
    out = []
    for address in endpoint.addresses:
        ip = ipaddress.ip_interface(address).ip
        out += [(name, int(ip)) for name, p in pools if ip in ipaddress.ip_network(p.pool)][:1]
    return out


def _claim_reads(claims: list[tuple[str, int, str]]) -> list[dict]:
    """The reads ``_plan`` wants for ``claims``: each address's holder, then each pool."""
    return ([range_op(key, "", 1, keys_only=False) for _, _, key in claims]
            + [range_op(keys.key("pools", name), "", 1) for name, _, _ in claims])


def _cidrs(names) -> str:
    return ", ".join(keys.cidr_of(n)[1] for n in sorted(names))


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "unset" if value is None else str(value)
