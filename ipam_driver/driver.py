"""The IpamDriver protocol: pools and addresses, stored transactionally.

Choices dockerd asks about (GetCapabilities):
- RequiresRequestReplay is false: every pool and address is durable in the
  store before the reply leaves, so dockerd has nothing to replay, and a
  second RequestPool for a held subnet is always a second network (refused)
  rather than a replay to accept.
- RequiresMACAddress is false: addresses do not depend on the MAC.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Callable, ContextManager, Iterable

from spec import names, values
from spec.errors import BadRequest, Conflict, found

from . import allocator
from .allocator import IPNetwork, PoolBase
from .store import IpamStore

LOCAL_SPACE = "LocalDefault"
GLOBAL_SPACE = "GlobalDefault"
GATEWAY_TYPE = "com.docker.network.gateway"
# dockerd 29 names the endpoint an address is for (moby network.go
# CreateEndpoint). Accepted and checked to be a string; not used yet.
ENDPOINT_NAME = "com.docker.network.endpoint.name"


class IpamDriver:
    def __init__(
        self,
        transaction: Callable[[], ContextManager[IpamStore]],
        host_routes: Callable[[], Iterable[IPNetwork]],
        pools_v4: list[PoolBase],
        pools_v6: list[PoolBase],
    ):
        self._transaction = transaction
        self._host_routes = host_routes
        self._defaults = {4: pools_v4, 6: pools_v6}

    def get_capabilities(self, _body: dict) -> dict:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def get_default_address_spaces(self, _body: dict) -> dict:
        return {"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE}

    def request_pool(self, body: dict) -> dict:
        """{"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "", "V6": false, "Options": {}}"""
        space, version, net, sub = parse_pool_request(body)
        bases = default_bases(body, self._defaults[version])
        with self._transaction() as tx:
            if net is None:
                net = self._pick_default(tx, version, bases)
            else:
                clash = tx.overlapping_pools(version == 6, int(net.network_address), int(net.broadcast_address), space)
                if clash:
                    raise Conflict(f"Pool {net} overlaps pool {clash[0]['cidr']} already in use in {space}")
            pool_id = f"{space}/{net}" + (f"/{sub}" if sub else "")
            pool = {"id": pool_id, "space": space, "v6": version == 6, "cidr": str(net),
                    "sub": str(sub) if sub else "", "options": body.get("Options") or {}}
            tx.add_pool(pool, int(net.network_address), int(net.broadcast_address),
                        hint=allocator.sub_range(net, sub)[0])
        return {"PoolID": pool_id, "Pool": str(net), "Data": {}}

    def _pick_default(self, tx: IpamStore, version: int, bases: list[PoolBase]) -> IPNetwork:
        # Held pools and host routes are read once, then candidates are
        # generated lazily until one is free: dockerd loops if it is offered
        # a pool that overlaps a host route, so none is offered.
        top = (1 << (32 if version == 4 else 128)) - 1
        taken = [ipaddress.ip_network(p["cidr"]) for p in tx.overlapping_pools(version == 6, 0, top)]
        taken += [r for r in self._host_routes() if r.version == version]
        for candidate in allocator.candidates(bases):
            if allocator.overlaps(candidate, taken) is None:
                return candidate
        listed = ", ".join(str(b) for b in bases) or "none configured"
        raise Conflict(f"no free IPv{version} default pool left (default pools: {listed})")

    def release_pool(self, body: dict) -> dict:
        with self._transaction() as tx:
            tx.delete_pool(body["PoolID"])
        return {}

    def request_address(self, body: dict) -> dict:
        """{"PoolID": "...", "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}"""
        pool_id = body["PoolID"]
        options = parse_address_options(body)
        gateway = options.get("RequestAddressType") == GATEWAY_TYPE
        with self._transaction() as tx:
            pool = self._pool(tx, pool_id)
            net = ipaddress.ip_network(pool["cidr"])
            if body.get("Address"):
                addr = self._requested(tx, pool, net, body["Address"])
            else:
                addr = self._lowest_free(tx, pool, net, gateway)
            tx.add_address(pool_id, addr, "gateway" if gateway else "address")
            name = None if gateway else names.optional_name(options)
            if name:  # for CreateEndpoint, which takes it into the endpoint (DNS answers for it)
                tx.name_address(pool_id, addr, name)
        return {"Address": f"{ipaddress.ip_address(addr)}/{net.prefixlen}", "Data": {}}

    def _requested(self, tx: IpamStore, pool: dict, net: IPNetwork, text: str) -> int:
        ip = values.address("Address", text, net.version)
        first, last = allocator.usable_range(net)
        if ip not in net:
            raise BadRequest(f'Address "{text}" is not in pool {net}')
        if not first <= int(ip) <= last:
            raise BadRequest(f'Address "{text}" is the network or broadcast address of pool {net}')
        if tx.address_taken(pool["id"], int(ip)):
            raise Conflict(f"Address {ip} is already allocated in pool {net}")
        return int(ip)

    def _lowest_free(self, tx: IpamStore, pool: dict, net: IPNetwork, gateway: bool) -> int:
        # The gateway comes from the whole pool (so it is .1 even with an
        # --ip-range); container addresses from the SubPool when there is one.
        sub = ipaddress.ip_network(pool["sub"]) if pool["sub"] else None
        first, last = allocator.usable_range(net) if gateway else allocator.sub_range(net, sub)
        default_first = allocator.sub_range(net, sub)[0]
        # The hint is a lower bound of the lowest free address of the default
        # range, so sequential allocation does not rescan the full prefix.
        start = max(first, pool["hint"]) if first == default_first else first
        addr = allocator.first_free(start, last, tx.taken_from(pool["id"], start))
        if addr is None:
            where = f"range {pool['sub']} of pool {net}" if sub and not gateway else f"pool {net}"
            raise Conflict(f"no free address left in {where}")
        if first == default_first:
            tx.set_pool_hint(pool["id"], addr + 1)
        return addr

    def release_address(self, body: dict) -> dict:
        pool_id = body["PoolID"]
        ip = values.address("Address", body["Address"])
        with self._transaction() as tx:
            pool = tx.get_pool(pool_id)
            if pool is None:
                return {}  # releasing what is already gone succeeds
            values.address("Address", body["Address"], ipaddress.ip_network(pool["cidr"]).version)
            if tx.delete_address(pool_id, int(ip)) and int(ip) < pool["hint"]:
                tx.set_pool_hint(pool_id, int(ip))
        return {}

    @staticmethod
    def _pool(tx: IpamStore, pool_id: str) -> dict:
        return found(tx.get_pool(pool_id), f'PoolID "{pool_id}" is not a pool held by this driver')


def parse_address_options(body: dict) -> dict:
    """RequestAddress's Options, checked: unknown ones are ignored (a newer
    dockerd may add some), ``com.docker.network.endpoint.name`` must be a
    string."""
    options = body.get("Options") or {}
    name = options.get(ENDPOINT_NAME)
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"Options.{ENDPOINT_NAME} {json.dumps(name)} is not a string")
    return options


def any_pool_size(body: dict) -> int | None:
    """The prefix length of dockerd 29's "any pool of this size" request,
    ``--subnet 0.0.0.0/24`` or ``::/64``, which reaches RequestPool
    unchanged (moby network.go ipamAllocateVersion); None for any other
    Pool. ``0.0.0.0/0`` asks for any size, as moby's own allocator takes it
    (ipams/defaultipam/allocator.go RequestPool)."""
    try:
        net = ipaddress.ip_network(body.get("Pool") or "", strict=True)
    except ValueError:
        return None
    return net.prefixlen if net.network_address.is_unspecified else None


def default_bases(body: dict, bases: list[PoolBase]) -> list[PoolBase]:
    """The default pools a pool is chosen from: all of them, or for
    ``0.0.0.0/N`` each that can hold a /N, carved into /Ns (as moby's
    allocatePredefinedPool); a 400 when none can."""
    size = any_pool_size(body)
    if not size:
        return bases
    fit = [PoolBase(b.base, size) for b in bases if b.base.prefixlen <= size]
    if not fit:
        held = ", ".join(str(b.base) for b in bases) or "none configured"
        raise BadRequest(f'Pool "{body["Pool"]}" asks for any /{size}, which no default pool can hold '
                         f'(default pools: {held})')
    return fit


def parse_pool_request(body: dict) -> tuple[str, int, IPNetwork | None, IPNetwork | None]:
    """RequestPool's address space, IP version, Pool and SubPool, checked.
    Pool is None when the driver is to choose one: none given, or dockerd
    29's ``0.0.0.0/N`` (see ``any_pool_size``)."""
    space = body.get("AddressSpace")
    if space not in (LOCAL_SPACE, GLOBAL_SPACE):
        raise BadRequest(f'AddressSpace "{space}" is not {LOCAL_SPACE} or {GLOBAL_SPACE}')
    version = 6 if body.get("V6") else 4
    pool_text, sub_text = body.get("Pool") or "", body.get("SubPool") or ""
    if sub_text and not pool_text:
        raise BadRequest(f'SubPool "{sub_text}" given without a Pool')
    net = sub = None
    if pool_text:
        net = values.network("Pool", pool_text)
        if net.version != version:
            raise BadRequest(f'Pool "{pool_text}" is IPv{net.version} but V6 is {version == 6}')
        if net.network_address.is_unspecified:
            if sub_text:
                raise BadRequest(f'SubPool "{sub_text}" given with Pool "{pool_text}", which asks for '
                                 f'any pool of that size')
            return space, version, None, None
        if sub_text:
            sub = values.network("SubPool", sub_text, version)
            if not sub.subnet_of(net):  # type: ignore[arg-type]  # values.network gave both one version
                raise BadRequest(f'SubPool "{sub_text}" is not inside Pool "{pool_text}"')
    return space, version, net, sub


def methods(driver: IpamDriver) -> dict:
    """The IpamDriver protocol: path -> callable(body) -> reply body."""
    return {
        "IpamDriver.GetCapabilities": driver.get_capabilities,
        "IpamDriver.GetDefaultAddressSpaces": driver.get_default_address_spaces,
        "IpamDriver.RequestPool": driver.request_pool,
        "IpamDriver.ReleasePool": driver.release_pool,
        "IpamDriver.RequestAddress": driver.request_address,
        "IpamDriver.ReleaseAddress": driver.release_address,
    }
