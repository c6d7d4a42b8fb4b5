"""One cluster network's remote endpoints, kept in the VXLAN device's peers.

A ``PeerWatch`` follows the network's endpoint records in etcd (and the
pool's members, whose end by a reclaim ends a host's kept records), and
keeps the device's forwarding and neighbour entries to what the records
that pass the checks want; it tells its ``ClusterSegment`` who its peers'
hosts are (the VXLAN guard, the WireGuard peers) and its names service
what the records name.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spec.stored import StoredNetwork

from . import addrrecord, keys, records
from .etcd import EtcdUnavailable, KeyValue, Watch, range_op, ranges
from .hostrecord import HostRecord

if TYPE_CHECKING:  # the segment hands itself in: the type only
    from .segment import ClusterSegment

log = logging.getLogger("pontoon.cluster")


class PeerWatch:
    """One network's remote endpoints -> the VXLAN device's peers.

    Only records that parse (cluster.records) and whose every address
    ``addrs/`` gives to the record's host are applied: a malformed or
    hostile record, or one of an address reclaimed and given to another
    host, is skipped and logged, and the others are served as ever. The
    kernel holds one VTEP per MAC and one MAC per address, so the peers
    wanted are the union over the records, and a record's removal takes out
    only what no other record still wants, re-adding what it shared."""

    def __init__(self, segment: ClusterSegment, network: StoredNetwork):
        self._segment = segment
        self._spec = segment.spec(network)
        self._me = segment.host.host_id
        self._known: dict[str, set] = {}  # record key -> its peers
        self._kept: dict[str, set] = {}  # record key -> the peers of a record its host's lease took (see _event)
        # The last answer of _host_went_away, by (host, revision): a lease's
        # end deletes all its host's records in one revision, asked once.
        self._went_away: tuple[str, int, bool] | None = None
        self._network = network
        self._named: dict[str, records.EndpointRecord] = {}  # record key -> the record applied (names/)
        self._pools = [ipaddress.ip_network(p.pool) for p in network.ipam]
        self._names = keys.pool_names(network)
        self._gateways = {p.gateway.split("/")[0] for p in network.ipam if p.gateway}
        self._pool = network.clustered.pool
        prefix = keys.prefix("endpoints", self._pool)
        # The pool's members too: a reclaim (a host away past the grace)
        # ends the host's membership after its addresses, and nothing of
        # endpoints/ changes then, so it is this watch that ends the
        # host's kept records. The two watches' threads take turns.
        self._turn = threading.Lock()
        self._watch = Watch(segment.host.etcd, prefix, self._in_turn(self._sync), self._in_turn(self._event))
        self._members = Watch(segment.host.etcd, keys.prefix("members", self._pool),
                              self._in_turn(self._members_read), self._in_turn(self._member_event))
        self.vni = self._spec.vni
        self.vteps: frozenset | None = None  # the hosts of the peers kept, once the records were read
        self.sealed = bool(network.options.encrypted)  # VTEPs are tunnel addresses
        self._tunnels: dict[str, tuple] = {}  # tunnel address -> (its host, its WireGuard peer: HostRecord.peer)

    def tunnel_peers(self) -> dict[str, dict]:
        """The tunnel's peers this network wants: the hosts of its peers."""
        return {address: self._tunnels[address][1] for address in self.vteps or () if address in self._tunnels}

    def _guard(self) -> None:
        self.vteps = frozenset(p.vtep for p in self._wanted())
        self._segment.admit()

    def start(self) -> None:
        if self._segment.names is not None:
            self._segment.names.attach(self._network)
        self._watch.start()
        self._members.start()

    def stop(self) -> None:
        self._watch.stop()
        self._members.stop()
        if self._segment.names is not None:
            self._segment.names.detach(self._network)

    @property
    def resyncs(self) -> int:
        return self._watch.resyncs

    def _in_turn(self, callback):
        def run(*args) -> None:
            with self._turn:
                callback(*args)
        return run

    def _record(self, kv: KeyValue) -> records.EndpointRecord | None:
        """The record at ``kv``, parsed once per event or read (a bad one
        is logged here, once), or None if it is not to be applied."""
        try:
            return records.endpoint(kv.key, kv.value, self._pools, self._gateways)
        except records.BadRecord as exc:
            log.error("endpoint record skipped: %s", exc)
            return None

    def _peers(self, kv: KeyValue, record: records.EndpointRecord | None, held: Holders) -> set:
        """The record's peers, or none if it is not to be applied. This
        host's own records have theirs too, never put in the kernel
        (``_wanted``), but they end kept peers of their addresses."""
        if record is None:
            return set()
        if held.vteps.get(record.host) != record.vtep:
            log.error("endpoint record %s skipped: vtep %s is not the address host %s advertises (%s)", kv.key,
                      record.vtep, record.host, held.vteps.get(record.host) or "it is not a live host")
            return set()
        for address in record.addresses:
            if held.checks(address) and held.hosts.get(address) != record.host:
                log.error("endpoint record %s skipped: address %s is %s", kv.key, address,
                          f"held by {held.hosts[address] or 'the network'}" if address in held.hosts
                          else "allocated to no one")
                return set()
        vtep = record.vtep
        if self.sealed:
            wireguard = held.tunnels.get(record.host)
            if wireguard is None:
                log.error("endpoint record %s skipped: its host %s publishes no WireGuard key, and network %s "
                          "is encrypted", kv.key, record.host, self._spec.name)
                return set()
            vtep = wireguard["tunnel"]
            holder, _ = self._tunnels.setdefault(vtep, (record.host, wireguard))
            if holder != record.host:
                log.error("endpoint record %s skipped: its host's tunnel address %s is host %s's (two host IDs "
                          "hash alike: rename one)", kv.key, vtep, holder)
                return set()
            self._tunnels[vtep] = (record.host, wireguard)  # a new key (a state dir made anew) replaces the old
        self._named[kv.key] = record
        return {self._segment.dp.Peer(mac=record.mac, address=a, vtep=vtep) for a in record.addresses}

    def _held_all(self) -> Holders:
        """Every allocated address of the network's cluster pools (chunked
        reads: at a full read of the records only)."""
        etcd, held = self._segment.host.etcd, Holders()
        for kv in etcd.read_prefix(keys.prefix("hosts"))[0]:
            held.learn(kv)
        for name, net in zip(self._names, self._pools):
            if etcd.get(keys.key("pools", name)) is None:
                held.foreign.append(net)
                continue
            prefix = keys.prefix("addrs", name)
            for kv in etcd.read_prefix(prefix)[0]:
                held.hosts[str(ipaddress.ip_address(int(kv.key[len(prefix):], 16)))] = addrrecord.holder(kv.key, kv.value)
        return held

    def _held_of(self, kv: KeyValue, record: records.EndpointRecord) -> Holders:
        """The holders of a record's addresses and its host's advertise
        address, in one round trip."""
        held = Holders()
        host = keys.key("hosts", host_of(kv.key))
        targets = [(name, net, a) for a in record.addresses for name, net in zip(self._names, self._pools)
                   if ipaddress.ip_address(a) in net]
        ops = [range_op(keys.key("pools", name), "", 1) for name, _, _ in targets]
        ops += [range_op(keys.prefix("addrs", name) + keys.hexaddr(int(ipaddress.ip_address(a))), "", 1,
                         keys_only=False) for name, _, a in targets]
        ops.append(range_op(host, "", 1, keys_only=False))
        *found, hosts = ranges(self._segment.host.etcd.txn([], ops))
        if hosts:
            held.learn(hosts[0])
        for (_, net, address), pool, kvs in zip(targets, found, found[len(targets):]):
            if not pool:
                held.foreign.append(net)
            elif kvs:
                held.hosts[address] = addrrecord.holder(kvs[0].key, kvs[0].value)
        return held

    def _sync(self, kvs: list[KeyValue]) -> None:
        held = self._held_all()
        self._named = {}
        before, self._known = self._known, {kv.key: self._peers(kv, self._record(kv), held) for kv in kvs}
        # A record gone while the stream was down (no DELETE seen) is kept
        # as its event would have kept it, if its host has no hosts/ record.
        for key, peers in before.items():
            if peers and key not in self._known and host_of(key) not in held.vteps:
                self._kept.setdefault(key, peers)
        if self._segment.names is not None:
            self._segment.names.records(self._pool, self._named)
        if self._kept:
            # Kept while its addresses are its host's: a reclaim, or a
            # release by the host back, ends it; so does the host writing
            # the record again. (Not the host's return alone: its records
            # come back a moment after its hosts/ record, and the entries
            # would be missing in between.)
            self._kept = {key: peers for key, peers in self._kept.items()
                          if key not in self._known
                          and all(not held.checks(p.address) or held.hosts.get(p.address) == host_of(key)
                                  for p in peers)}
            self._drop_kept_sharing(set().union(*self._known.values()))
        changes = self._segment.overlay.sync_peers(self._spec, self._wanted())
        for change in changes:
            log.info("peers of %s: %s", self._spec.name, change)
        self._guard()
        if changes:  # a quiet watch is read again every WATCH_SILENCE_S, mostly finding nothing new
            self._segment.changed(self._network.id)

    def _event(self, kind: str, kv: KeyValue) -> None:
        """Only what changed: a record written again (a new lease) keeps its
        peers in place rather than dropping them for a moment.

        A record its host's lease took with it (the host killed, powered
        off, or cut off from etcd, not from its peers) keeps its peers: the
        containers behind it may run on, and the kernel's entries are only
        wrong once their addresses are another host's, which the reclaim
        grace prevents. They go when the address is given to another record
        (its put), when a full read finds the reclaim done, or with the
        network; a record its live host deleted goes at once."""
        # Read before anything changes: a failed read re-reads in full.
        self._named.pop(kv.key, None)
        record = self._record(kv) if kind != "DELETE" else None
        peers = self._peers(kv, record, self._held_of(kv, record)) if record is not None else set()
        if self._segment.names is not None:
            self._segment.names.record(self._pool, kv.key, self._named.get(kv.key))
        away = (kind == "DELETE" and host_of(kv.key) != self._me and bool(self._known.get(kv.key))
                and self._host_went_away(kv))
        before = self._wanted()
        had = self._known.pop(kv.key, None)
        self._kept.pop(kv.key, None)
        if kind != "DELETE":
            self._known[kv.key] = peers
            self._drop_kept_sharing(peers)
        elif away and had is not None:  # it had peers: ``away`` asks
            self._kept[kv.key] = had
        self._apply(before)

    def _apply(self, before: set) -> None:
        """The kernel's peers from ``before`` to what is wanted now."""
        after = self._wanted()
        self._guard()  # a new host's VXLAN is taken from before its peers are in place
        gone = before - after
        for peer in gone:
            self._segment.overlay.remove_peer(self._spec, peer)
        # What a removed peer shared with a wanted one (its MAC, its
        # address) may have gone from the kernel with it: put those back.
        touched = {p.mac for p in gone} | {p.address for p in gone}
        added = (after - before) | {p for p in after if p.mac in touched or p.address in touched}
        for peer in added:
            self._segment.overlay.add_peer(self._spec, peer)
        if gone or added:
            self._segment.changed(self._network.id)

    def _members_read(self, kvs: list[KeyValue]) -> None:
        self._end_kept({kv.key.rsplit("/", 1)[1] for kv in kvs})

    def _member_event(self, kind: str, kv: KeyValue) -> None:
        if kind == "DELETE" and self._kept:
            self._end_kept(set(self._kept_hosts()) - {kv.key.rsplit("/", 1)[1]})

    def _kept_hosts(self) -> set[str]:
        return {host_of(key) for key in self._kept}

    def _end_kept(self, members: set[str]) -> None:
        """The kept records of hosts that are no longer members of the pool
        go: a reclaim pass has ended them (a live host deletes its records
        before it leaves)."""
        if self._kept_hosts() <= members:
            return
        before = self._wanted()
        self._kept = {key: peers for key, peers in self._kept.items() if host_of(key) in members}
        self._apply(before)

    def _host_went_away(self, deleted: KeyValue) -> bool:
        """Whether the record's host had no ``hosts/`` record when it went:
        its lease ended (both go in one revision), rather than the host
        deleting it. Read at the delete's revision, so a host back since
        does not count; now, if etcd compacted that revision away."""
        host, revision = host_of(deleted.key), deleted.mod_revision
        if self._went_away is not None and self._went_away[:2] == (host, revision):
            return self._went_away[2]
        key = keys.key("hosts", host)
        etcd = self._segment.host.etcd
        try:
            away = not etcd.range(key, "", revision=revision, keys_only=True)
        except EtcdUnavailable:
            away = etcd.get(key) is None
        self._went_away = (host, revision, away)
        return away

    def _drop_kept_sharing(self, peers: set) -> None:
        """A kept record's peers that share an address or a MAC with
        ``peers`` (a record whose addresses ``addrs/`` gives its host) are
        stale: the address was reclaimed and given again."""
        taken = {p.address for p in peers} | {p.mac for p in peers}
        self._kept = {key: kept for key, kept in self._kept.items()
                      if not any(p.address in taken or p.mac in taken for p in kept)}

    def _wanted(self) -> set:
        """The peers the kernel should hold: other hosts' records', and those kept."""
        return set().union(*(peers for key, peers in self._known.items() if host_of(key) != self._me),
                           *self._kept.values())


@dataclass
class Holders:
    """Who ``addrs/`` gives addresses to: ``hosts`` maps an address to its
    host ("" for the network's own, gateway and aux); ``foreign`` lists the
    network's pools the cluster does not hold (another IPAM driver's),
    whose addresses there is nothing to check against."""
    hosts: dict[str, str] = field(default_factory=dict)
    foreign: list = field(default_factory=list)
    vteps: dict[str, str] = field(default_factory=dict)  # live host -> the address its hosts/ record advertises
    tunnels: dict[str, dict] = field(default_factory=dict)  # live host -> its WireGuard identity, if it has one

    def learn(self, kv: KeyValue) -> None:
        """What a host's ``hosts/`` record says (one that does not parse:
        that the host is live, with no address its records can name)."""
        host = kv.key.rsplit("/", 1)[1]
        try:
            record = HostRecord.parse(kv.key, kv.value)
        except records.BadRecord as exc:
            log.error("host record unread: %s", exc)
            self.vteps[host] = ""
            return
        self.vteps[host] = record.advertise
        peer = record.peer()
        if peer is not None:
            self.tunnels[host] = peer

    def checks(self, address: str) -> bool:
        return not any(ipaddress.ip_address(address) in net for net in self.foreign)


def host_of(record_key: str) -> str:
    """The host an ``endpoints/<pool>/<host>/<id>`` key names."""
    return record_key.rsplit("/", 2)[-2]
