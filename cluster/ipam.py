"""IpamDriver in cluster mode: allocate in etcd first, then record on this host.

The cluster decides (which pool, which address), each decision an etcd
transaction that creates its key only if absent, so two hosts never win the
same one whatever the interleaving; a loser tries the next candidate. The
local IpamDriver then records the decision in this host's store exactly as
in single-host mode (its own checks stay the record of what this host's
kernel may use). If recording fails, the cluster allocation is undone.
Releases go the other way: this host's record first, then the cluster's, so
a crash between the two leaves an allocation that the host's next start
frees (``reconcile``), never an address two hosts both use.

Pools: the same pool in the same address space on several hosts is one
network. RequestPool joins it (a member key per host); ReleasePool ends this
host's membership and the last member's removes the pool with all of its
records. The gateway is one address for every host (the distributed
gateway): the first host to ask fixes it, the others get the same. So are
the --aux-addresses: dockerd reserves each with a RequestAddress after
RequestPool and before CreateNetwork, on every host that creates the
network, so an address asked for while this host has no network on the
pool yet is the network's (held by every member, GATEWAY_HOLDER) rather
than this host's, and the next host's request for it succeeds too.
"""
from __future__ import annotations

import ipaddress
import time
from typing import Callable, Iterable, Iterator, Sequence

from ipam_driver import allocator
from ipam_driver.allocator import IPNetwork, PoolBase
from ipam_driver.driver import (GATEWAY_TYPE, IpamDriver, any_pool_size, default_bases, parse_address_options,
                                parse_pool_request)
from spec import values
from spec.errors import BadRequest, Conflict, NotFound

from . import keys
from .etcd import (KeyValue, absent, created_by, delete_op, prefix_end, present, put_op, range_op, ranges, txn_op,
                   unchanged, value_is, written_by, written_by_under)
from .addrrecord import GATEWAY_HOLDER, AddrHolder
from .host import ClusterHost
from .netrecord import NetRecord
from .poolrecord import PoolRecord

# The records of the network's own addresses (held by every member).
AUX = AddrHolder(GATEWAY_HOLDER, "aux").value()
GATEWAY = AddrHolder(GATEWAY_HOLDER, "gateway").value()
# How long after an IPv4 subnet's RequestPool an automatic IPv6 one is taken
# to be for the same network (dockerd sends them back to back).
LAST_V4_S = 5.0


class ClusterIpam:
    def __init__(self, local: IpamDriver, host: ClusterHost, host_routes: Callable[[], Iterable[IPNetwork]],
                 pools_v4: list[PoolBase], pools_v6: list[PoolBase], networked: Callable[[str], bool]):
        """``networked(pool name)``: whether this host's store holds a
        network on the pool (until it does, a given address is an aux one)."""
        self._local = local
        self._networked = networked
        self._host = host
        self._host_routes = host_routes
        self._defaults = {4: pools_v4, 6: pools_v6}
        self._hints: dict[str, int] = {}  # pool name -> lower bound of its lowest free address
        self._leaving: set[str] = set()  # pools released here whose membership a join has not taken up again
        self._last_v4: tuple[str, float] | None = None  # the IPv4 pool last asked for by subnet, and when
        self.get_capabilities = local.get_capabilities
        self.get_default_address_spaces = local.get_default_address_spaces

    @property
    def _etcd(self):
        return self._host.etcd

    # -- pools -----------------------------------------------------------------------
    def request_pool(self, body: dict) -> dict:
        space, version, net, sub = parse_pool_request(body)
        bases = default_bases(body, self._defaults[version])  # dockerd 29's "0.0.0.0/24": any /24
        self._host.lease_id()
        given, last_v4, self._last_v4 = net is not None, self._last_v4, None
        if net is None and version == 6:
            net = self._network_v6(space, last_v4)
            if net is not None and any_pool_size(body) not in (None, 0, net.prefixlen):
                net = None  # the cluster network's IPv6 pool is not of the size asked for
        if net is None:
            net = self._create_default(space, version, body.get("Options") or {}, bases)
            joined = True
        else:
            joined = self._join(space, net, sub, body.get("Options") or {})
        if given and version == 4:
            self._last_v4 = (keys.pool_name(space, str(net)), time.monotonic())
        self._leaving.discard(keys.pool_name(space, str(net)))  # a membership of this host's now
        try:
            return self._local.request_pool({**body, "Pool": str(net)})
        except Exception:
            if joined:
                self._leave(keys.pool_name(space, str(net)))
            raise

    def _network_v6(self, space: str, last_v4: tuple[str, float] | None) -> IPNetwork | None:
        """The automatic IPv6 pool of a cluster network, from the cluster.
        dockerd asks for a network's IPv6 pool right after its IPv4 one and
        says nothing else of the network, so an IPv6 pool asked for with no
        subnet just after an IPv4 subnet is taken to be that network's: if
        the cluster network of that subnet has an IPv6 pool, this host joins
        it, rather than each host making its own and splitting the network.
        A guess wrong (two creates interleaved) is caught by CreateNetwork,
        which compares every pool (ClusterSegment.prepare) and refuses."""
        if last_v4 is None or time.monotonic() - last_v4[1] > LAST_V4_S:
            return None
        held = self._etcd.get(keys.key("nets", last_v4[0]))
        pools = (NetRecord.parse(held.key, held.value).pools or ()) if held is not None else ()
        v6 = [ipaddress.ip_network(keys.cidr_of(p)[1]) for p in pools
              if keys.cidr_of(p)[0] == space and ipaddress.ip_network(keys.cidr_of(p)[1]).version == 6]
        return v6[0] if len(v6) == 1 else None

    def _join(self, space: str, net: IPNetwork, sub: IPNetwork | None, options: dict) -> bool:
        """Become a member of the cluster pool ``net`` (creating it when no host
        holds it); whether this call made this host a member."""
        name = keys.pool_name(space, str(net))
        member = keys.prefix("members", name) + self._host.host_id
        while True:
            existing = self._etcd.get(keys.key("pools", name))
            if existing is None:
                seen = self._refuse_overlap(space, net)
                # The pool and this member in one step, only if both are new
                # and no pool was written since the overlap check read them.
                record = PoolRecord(space, str(net), str(sub) if sub else "", options)
                reply = self._etcd.txn([absent(keys.key("pools", name)), _no_pool_written_since(seen)],
                                       [put_op(keys.key("pools", name), record.value()), put_op(member, "")])
                if reply.get("succeeded"):
                    return True
                continue  # another host created it, or another pool, meanwhile: look again
            held = PoolRecord.parse(existing.key, existing.value)
            if held.sub != (str(sub) if sub else ""):
                raise Conflict(f"pool {net} is held in the cluster with --ip-range "
                               f"\"{held.sub or 'none'}\", not \"{sub or 'none'}\"")
            # Rewriting the pool record bumps its revision, so a last member
            # leaving at the same time (which compares it) cannot delete it.
            # The membership is written even when this host has one: after
            # a release here, a leave postponed by an outage may be waiting,
            # and it ends only a membership written before it was postponed
            # (``_leave``), so the one a network made again on the pool
            # holds must be newer. The range, before the puts, says whether
            # it was there.
            reply = self._etcd.txn([unchanged(existing)],
                                   [range_op(member, "", 1), put_op(keys.key("pools", name), existing.value),
                                    put_op(member, "")])
            if reply.get("succeeded"):
                # Already a member: taken up again if a release left it
                # (undone on failure, as a new one), else a network of
                # this host's holds it and this call made nothing.
                return name in self._leaving or not ranges(reply)[0]

    def _refuse_overlap(self, space: str, net: IPNetwork) -> int:
        """Refuse ``net`` if it overlaps a pool the cluster holds; returns
        the revision the pools were read at, for the create's compare."""
        pools, revision = self._cluster_pools(space, net.version)
        for pool in pools:
            if pool.overlaps(net):
                raise Conflict(f"Pool {net} overlaps pool {pool} held in the cluster in {space}")
        return revision

    def _cluster_pools(self, space: str | None, version: int) -> tuple[list[IPNetwork], int]:
        """The cluster's pools of ``version`` (in ``space``, or all), and the
        revision they were read at."""
        out = []
        held, revision = self._etcd.read_prefix(keys.prefix("pools"))
        for kv in held:
            held_space, cidr = keys.cidr_of(kv.key.rsplit("/", 1)[1])
            net = ipaddress.ip_network(cidr)
            if net.version == version and space in (None, held_space):
                out.append(net)
        return out, revision

    def _create_default(self, space: str, version: int, options: dict, bases: list[PoolBase]) -> IPNetwork:
        """A default pool (from ``bases``) no host holds (in any address
        space: their kernels route them all) and no local route uses."""
        routes = [r for r in self._host_routes() if r.version == version]
        pools, seen = self._cluster_pools(None, version)
        for candidate in allocator.candidates(bases):
            if allocator.overlaps(candidate, pools + routes) is not None:
                continue
            name = keys.pool_name(space, str(candidate))
            record = PoolRecord(space, str(candidate), "", options)
            reply = self._etcd.txn([absent(keys.key("pools", name)), _no_pool_written_since(seen)],
                                   [put_op(keys.key("pools", name), record.value()),
                                    put_op(keys.prefix("members", name) + self._host.host_id, "")])
            if reply.get("succeeded"):
                return candidate
            pools, seen = self._cluster_pools(None, version)  # another host made a pool meanwhile
        raise Conflict(f"no free IPv{version} default pool left in the cluster")

    def release_pool(self, body: dict) -> dict:
        reply = self._local.release_pool(body)
        space, cidr = _split_pool_id(body["PoolID"])
        name = keys.pool_name(space, cidr)
        self._hints.pop(name, None)
        # This host's membership was written at or below this revision, and
        # one taken up again later (a network made again on the pool before
        # a postponed leave runs) above it (ClusterHost.now_or_later).
        written = self._etcd.revision
        self._leaving.add(name)
        self._host.now_or_later(f"leaving pool {cidr}", lambda: self._leave(name, written))
        return reply

    def _leave(self, name: str, written: int | None = None, host_id: str = "", fence: Sequence[dict] = ()) -> None:
        """End this host's membership (``host_id``: another host's, which
        the reclaim pass ends); the last member removes the pool and every
        record of its network. ``written``: only a membership last written
        at that revision or before (none: the one there now). ``fence``:
        compares each transaction also makes (the host being away still);
        once they fail, nothing is removed."""
        member = keys.prefix("members", name) + (host_id or self._host.host_id)
        mine = [] if written is None else [present(member), written_by(member, written)]
        while True:
            existing = self._etcd.get(keys.key("pools", name))
            if existing is None:
                self._etcd.txn([*mine, *fence], [delete_op(member)])
                return
            others = [kv for kv in self._etcd.read_prefix(keys.prefix("members", name))[0] if kv.key != member]
            ops = [delete_op(member), put_op(keys.key("pools", name), existing.value)]
            if not others:
                ops = [delete_op(member), delete_op(keys.key("pools", name)), delete_op(keys.key("gateway", name)),
                       delete_op(keys.prefix("addrs", name), prefix=True), delete_op(keys.key("nets", name)),
                       delete_op(keys.key("netof", name))]
                net_record = self._etcd.get(keys.key("nets", name))
                if net_record is not None:
                    ops.append(delete_op(keys.key("vnis", NetRecord.parse(net_record.key, net_record.value).vni)))
            reply = self._etcd.txn([unchanged(existing), *mine, *fence], ops,
                                   [range_op(member, "", 1, keys_only=False)])
            if reply.get("succeeded"):
                return
            if fence and not self._etcd.txn(list(fence), []).get("succeeded"):
                return  # the host is back: its membership stays
            if written is not None and not [kv for kv in ranges(reply)[0] if kv.mod_revision <= written]:
                return  # gone, or taken up again since: not the membership this leave was for

    def leave_forgotten(self, pools_here: set[str]) -> list[str]:
        """End this host's memberships of the pools its store no longer
        holds (a ReleasePool postponed by an etcd outage whose process then
        restarted), the last member's removing the pool; returns those
        pools. Reads every membership key: bounded by networks x hosts, and
        done once per process, at its rejoin."""
        gone = []
        for name, kv in self._memberships(self._host.host_id):
            if name not in pools_here:
                self._leave(name, kv.mod_revision)  # the membership read, not one written since
                gone.append(name)
        return gone

    def leave_all(self, host_id: str, fence: list[dict]) -> list[str]:
        """The reclaim pass's (``ClusterHost.when_reaped``): end every pool
        membership of ``host_id``, a host away past the grace, as its own
        ReleasePool would have (the last member's removes the pool with
        every record of its network; a pool another host is a member of
        stays). Each removal is fenced on ``fence`` (the host away still,
        compared in its transaction) and ends only the membership read
        (its mod_revision). Returns the pools whose membership was read."""
        held = self._memberships(host_id)
        for name, kv in held:
            self._leave(name, kv.mod_revision, host_id, fence)
        return [name for name, _ in held]

    def _memberships(self, host_id: str) -> list[tuple[str, KeyValue]]:
        """(pool name, key) of every ``members/<pool>/<host_id>``. Reads every
        membership key: bounded by networks x hosts."""
        suffix = "/" + host_id
        prefix = keys.prefix("members")
        return [(kv.key[len(prefix):-len(suffix)], kv)
                for kv in self._etcd.read_prefix(prefix)[0] if kv.key.endswith(suffix)]

    def member_again(self, pools_here: set[str]) -> list[str]:
        """Take up again this host's membership of each pool its store holds
        whose membership a reclaim pass ended while this host was away past
        the grace, if the cluster still holds the pool; returns those pools.
        Without it, the last other member's leave would remove the pool and
        every claim in it from under this host's containers. The pool
        record is written again with it, as a join does, so a last member
        leaving at the same time cannot remove the pool. Two round trips
        per pool, and no write, when the membership is there."""
        back = []
        for name in sorted(pools_here):
            member = keys.prefix("members", name) + self._host.host_id
            while True:
                existing = self._etcd.get(keys.key("pools", name))
                if existing is None:
                    break  # gone: its endpoints are lost to the cluster (ClusterSegment.resume)
                reply = self._etcd.txn([unchanged(existing), absent(member)],
                                       [put_op(keys.key("pools", name), existing.value), put_op(member, "")],
                                       [range_op(member, "", 1)])
                if reply.get("succeeded"):
                    back.append(name)
                    break
                if ranges(reply)[0]:
                    break  # a member still (the usual case)
        return back

    # -- addresses -----------------------------------------------------------------------
    def request_address(self, body: dict) -> dict:
        space, cidr = _split_pool_id(body["PoolID"])
        net = ipaddress.ip_network(cidr)
        name = keys.pool_name(space, cidr)
        options = parse_address_options(body)  # refused before etcd
        self._host.lease_id()
        gateway = options.get("RequestAddressType") == GATEWAY_TYPE
        given = values.address("Address", body["Address"], net.version) if body.get("Address") else None
        first, last = allocator.usable_range(net)
        if given is not None and not first <= int(given) <= last:
            # Refused before etcd: the network's own addresses (gateway,
            # aux) are not undone when the local driver refuses one.
            raise BadRequest(f'Address "{body["Address"]}" is not a usable address of pool {net}')
        if gateway:
            if self._etcd.get(keys.key("pools", name)) is None:
                raise _not_held(body["PoolID"])
            addr, ours = self._gateway(name, net, given), False
        elif given is not None and not self._networked(name):
            addr, ours = self._aux(name, net, int(given), body["PoolID"]), False
        elif given is not None:
            addr, ours = self._claim_given(name, net, int(given), body["PoolID"]), True
        else:
            addr, ours = self._claim_lowest(name, net, _sub_of(body["PoolID"], net), body["PoolID"]), True
        try:
            return self._local.request_address({**body, "Address": str(ipaddress.ip_address(addr))})
        except Exception:
            if ours:
                self._free(name, addr)
            raise

    def _gateway(self, name: str, net: IPNetwork, given) -> int:
        """The pool's one gateway: fixed by the first host that asks."""
        while True:
            held = self._etcd.get(keys.key("gateway", name))
            if held is not None:
                addr = int(held.value)
                if given is not None and int(given) != addr:
                    raise Conflict(f"the cluster's gateway of pool {net} is {ipaddress.ip_address(addr)}, "
                                   f"not {given}")
                return addr
            if given is not None:
                candidates = iter([int(given)])
            else:
                first, last = allocator.usable_range(net)
                candidates = self._free_from(name, first, last)
            for addr in candidates:
                reply = self._etcd.txn(
                    [absent(keys.key("gateway", name)), absent(keys.prefix("addrs", name) + keys.hexaddr(addr))],
                    [put_op(keys.key("gateway", name), str(addr)),
                     put_op(keys.prefix("addrs", name) + keys.hexaddr(addr), GATEWAY)])
                if reply.get("succeeded"):
                    return addr
                if self._etcd.get(keys.key("gateway", name)) is not None:
                    break  # another host fixed the gateway: take theirs
                if given is not None:
                    raise Conflict(f"Address {given} is already allocated in pool {net}")
            else:
                raise Conflict(f"no free address left in pool {net} for its gateway")

    def _create_in_pool(self, name: str, pool_id: str, key: str, puts: list[dict], read: dict) -> list | None:
        """One transaction: ``puts`` if ``key`` is absent, the pool is still
        held and this host is a member of it. None when done; else the keys
        the range ``read`` found at the same revision (a pool no longer held
        is a 404; one this host is no member of, a 409). The membership
        matters for a host that was away past the grace: the reclaim ended
        it (the last member's removing the pool), and another host may have
        made the pool again since, whose last member's leave would free
        this host's claims under its containers."""
        claimed, found, held = claim_in_pool(self._etcd, name, self._host.host_id, key, puts, read)
        if claimed:
            return None
        if not held:
            raise _not_held(pool_id)
        return found

    def _claim(self, name: str, addr: int, pool_id: str) -> list[int] | None:
        """Claim ``addr`` for this host if it is free: None when claimed,
        else the taken addresses from ``addr`` up (one chunk, read in the
        same round trip, for the next candidate)."""
        prefix = keys.prefix("addrs", name)
        key = prefix + keys.hexaddr(addr)
        taken = self._create_in_pool(
            name, pool_id, key,
            [put_op(key, AddrHolder(self._host.host_id, "address").value()),
             put_op(keys.prefix("held", self._host.host_id) + f"{name}/{keys.hexaddr(addr)}", "")],
            range_op(key, prefix_end(prefix), self._etcd.chunk))
        return None if taken is None else [int(kv.key[len(prefix):], 16) for kv in taken]

    def _claim_given(self, name: str, net: IPNetwork, addr: int, pool_id: str) -> int:
        if self._claim(name, addr, pool_id) is None:
            return addr
        holder = self._etcd.get(keys.prefix("addrs", name) + keys.hexaddr(addr))
        raise Conflict(f"Address {ipaddress.ip_address(addr)} is already allocated in pool {net}{_held_as(holder)}")

    def _aux(self, name: str, net: IPNetwork, addr: int, pool_id: str) -> int:
        """An --aux-address of the network: the first host's request
        reserves it for every member, a later host's finds it so reserved
        (one transaction either way, which also checks the pool is held).
        One a container holds is refused, as a container's request for an
        aux address is (``_claim_given``: the key exists)."""
        key = keys.prefix("addrs", name) + keys.hexaddr(addr)
        holder = self._create_in_pool(name, pool_id, key, [put_op(key, AUX)],
                                      range_op(key, "", 1, keys_only=False))
        # The pool is held, so a failed compare means the key exists: the
        # read, at the same revision, has it.
        if holder is None or holder[0].value == AUX:
            return addr
        raise Conflict(f"Address {ipaddress.ip_address(addr)} is already allocated in pool {net}"
                       f"{_held_as(holder[0])}")

    def _claim_lowest(self, name: str, net: IPNetwork, sub: IPNetwork | None, pool_id: str) -> int:
        """The lowest free address from this process's hint up (a lower bound
        of the lowest it could get, so the 1,000th allocation reads no more
        keys than the 10th). Addresses other hosts free below the hint go
        back to them first; this host's releases lower it again. The
        candidate is tried first and read around only when taken: one
        round trip when it is free, two when another host took it."""
        low, last = allocator.sub_range(net, sub)
        candidate = max(low, self._hints.get(name, low))
        wrapped = candidate == low
        while True:
            if candidate > last:
                if wrapped:
                    raise Conflict(f"no free address left in {f'range {sub} of ' if sub else ''}pool {net}")
                candidate, wrapped = low, True  # the hint skipped addresses others have freed since
                continue
            taken = self._claim(name, candidate, pool_id)
            if taken is None:
                self._hints[name] = candidate + 1
                return candidate
            candidate = next(self._free_from(name, candidate, last, taken), last + 1)

    def _free_from(self, name: str, first: int, last: int, page: list[int] | None = None) -> Iterator[int]:
        """Free addresses in [first, last], lowest first, reading the
        allocated keys in chunks only as far as needed (``page``: the first
        chunk, when already read)."""
        candidate = first
        for taken in self._taken_from(name, first, page):
            if taken > last:
                break
            while candidate < taken:
                yield candidate
                candidate += 1
            candidate = max(candidate, taken + 1)
        while candidate <= last:
            yield candidate
            candidate += 1

    def _taken_from(self, name: str, first: int, page: list[int] | None = None) -> Iterator[int]:
        prefix = keys.prefix("addrs", name)
        start = prefix + keys.hexaddr(first)
        while True:
            if page is None:
                page = [int(kv.key[len(prefix):], 16)
                        for kv in self._etcd.range(start, prefix_end(prefix), keys_only=True)]
            yield from page
            if len(page) < self._etcd.chunk:
                return
            start, page = prefix + keys.hexaddr(page[-1] + 1), None

    def _free(self, name: str, addr: int, created: int | None = None) -> None:
        """Give back an address this host holds (a compare on the holder, so
        one another host claimed since is never deleted). ``created``: only
        a claim made at that revision or before, so one this host made
        since (a release postponed by an outage, the address claimed here
        again meanwhile) is not deleted either, nor its index entry."""
        hexa = keys.hexaddr(addr)
        key = keys.prefix("addrs", name) + hexa
        mine = [value_is(key, AddrHolder(self._host.host_id, "address").value())]
        held = keys.prefix("held", self._host.host_id) + f"{name}/{hexa}"
        stale = [delete_op(held)]  # the index entry of a claim that is gone
        if created is not None:
            mine.append(created_by(key, created))
            stale = [txn_op([created_by(held, created)], stale)]
        self._etcd.txn(mine, [delete_op(key), delete_op(held)], stale)
        if addr < self._hints.get(name, addr + 1):
            self._hints[name] = addr

    def release_address(self, body: dict) -> dict:
        """The gateway's and an aux address's release end nothing in the
        cluster: the pool's other members keep using them until the last
        one leaves (``_free`` compares the holder with this host, so an aux
        address, held by every member, stays)."""
        reply = self._local.release_address(body)
        space, cidr = _split_pool_id(body["PoolID"])
        name = keys.pool_name(space, cidr)
        addr = int(values.address("Address", body["Address"]))
        # This host's claim of it was made at or below this revision, and a
        # claim of it made here again later (before a postponed release
        # runs) above it (ClusterHost.now_or_later).
        created = self._etcd.revision

        def release() -> None:
            gateway = self._etcd.get(keys.key("gateway", name))
            if gateway is None or int(gateway.value) != addr:
                self._free(name, addr, created)

        self._host.now_or_later(f"releasing {body['Address']} in the cluster", release)
        return reply

    # -- start-up ----------------------------------------------------------------------------
    def reconcile(self, held_here: Callable[[], set[tuple[str, int]]]) -> int:
        """Free the cluster allocations of this host that its store no longer
        holds (a crash between the two releases, or a reset store); returns
        how many went. ``held_here`` gives (pool name, address) pairs."""
        mine = held_here()
        return self._host.release_held(self._host.host_id, lambda pool, addr: (pool, addr) in mine)


def claim_in_pool(etcd, name: str, host_id: str, key: str, puts: list[dict],
                  read: dict) -> tuple[bool, list[KeyValue], bool]:
    """Create ``key`` with ``puts`` only while it is absent, the cluster
    holds pool ``name`` and host ``host_id`` is a member of it, in one
    transaction. Returns whether it was claimed, what ``read`` found
    otherwise, and whether the pool is held; a 409 for a host that is no
    member (the reclaim ended it while the host was away, and another host
    may have made the pool again since, whose last member's leave would
    free this host's claims under its containers)."""
    pool_key, member = keys.key("pools", name), keys.prefix("members", name) + host_id
    reply = etcd.txn([absent(key), present(pool_key), present(member)], puts,
                     [read, range_op(pool_key, "", 1), range_op(member, "", 1)])
    if reply.get("succeeded"):
        return True, [], True
    found, pool, membership = ranges(reply)
    if pool and not membership:
        raise Conflict(f"this host is no member of cluster pool {keys.cidr_of(name)[1]}: its network there "
                       f"was reclaimed while the host was away; remove the network and create it again")
    return False, found, bool(pool)


def _no_pool_written_since(revision: int) -> dict:
    """Every key under ``pools/`` was last written at ``revision`` or before
    (a compare over the range: etcd 3.3+), so a pool the overlap check has
    not seen fails the create, which then looks again."""
    return written_by_under(keys.prefix("pools"), revision)


def _not_held(pool_id: str) -> NotFound:
    return NotFound(f'PoolID "{pool_id}" is not a pool held in the cluster')


def _sub_of(pool_id: str, net: IPNetwork) -> IPNetwork | None:
    """The --ip-range the PoolID carries (ipam_driver.driver writes it
    there, as checked against the cluster's when the pool was joined)."""
    parts = pool_id.split("/")
    if len(parts) < 5:
        return None
    try:
        sub = ipaddress.ip_network("/".join(parts[3:5]))
    except ValueError:
        raise _not_held(pool_id) from None
    if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]  # one version: checked
        raise _not_held(pool_id)
    return sub


def _split_pool_id(pool_id: str) -> tuple[str, str]:
    """PoolID is "<space>/<cidr>[/<sub cidr>]" (ipam_driver.driver)."""
    parts = pool_id.split("/")
    if len(parts) < 3:
        raise NotFound(f'PoolID "{pool_id}" is not a pool held by this driver')
    return parts[0], f"{parts[1]}/{parts[2]}"


def _held_as(holder) -> str:
    """Who holds an address key, for a 409 (empty if it has gone since)."""
    if holder is None:
        return ""
    held = AddrHolder.parse(holder.key, holder.value)
    if held.host == GATEWAY_HOLDER:
        return f" (as the network's {'gateway' if held.kind == 'gateway' else 'aux address'})"
    return f" (by host {held.host})"


def held_pairs(pools: list[dict], addresses: Callable[[str], list[tuple[int, str]]]) -> set[tuple[str, int]]:
    """(pool name, address) of every non-gateway address in this host's store."""
    out = set()
    for pool in pools:
        name = keys.pool_name(pool["space"], pool["cidr"])
        out |= {(name, addr) for addr, kind in addresses(pool["id"]) if kind != "gateway"}
    return out
