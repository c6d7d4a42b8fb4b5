"""Where each cluster record lives in etcd (all under one root, "/pontoon/").

A cluster network is named by its first pool: address space and CIDR, the
one thing every host's dockerd hands Pontoon for "the same network" (each
host's dockerd makes its own network ID). ``pool_name`` turns them into one
key segment.

    hosts/<host>                     live host: advertise address (on its lease)
    seen/<host>                      when the host was last alive (no lease)
    pools/<pool>                     a pool: CIDR, space, range, options
    members/<pool>/<host>            a host holding the pool (ends at ReleasePool)
    gateway/<pool>                   the pool's one (distributed) gateway address
    addrs/<pool>/<hex address>       an allocated address: holder host and kind
    held/<host>/<pool>/<hex address> the same, indexed by host, for reclaiming
    nets/<pool>                      agreed options and VNI of the network
    vnis/<vni>                       the pool whose network holds the VNI
    endpoints/<pool>/<host>/<id>     an endpoint: MAC, addresses, VTEP (on the lease)
"""
from __future__ import annotations

ROOT = "/pontoon/"


def pool_name(space: str, cidr: str) -> str:
    return f"{space}:{cidr.replace('/', '_')}"


def cidr_of(name: str) -> tuple[str, str]:
    """(space, cidr) back from ``pool_name``."""
    space, _, cidr = name.partition(":")
    return space, cidr.replace("_", "/")


def hexaddr(addr: int) -> str:
    """Fixed width, so key order is address order (a prefix scan finds the lowest free)."""
    return f"{addr:032x}"


def host(host_id: str) -> str:
    return f"{ROOT}hosts/{host_id}"


def seen(host_id: str = "") -> str:
    return f"{ROOT}seen/{host_id}"


def pool(name: str) -> str:
    return f"{ROOT}pools/{name}"


def members(name: str) -> str:
    return f"{ROOT}members/{name}/"


def gateway(name: str) -> str:
    return f"{ROOT}gateway/{name}"


def addrs(name: str) -> str:
    return f"{ROOT}addrs/{name}/"


def held(host_id: str) -> str:
    return f"{ROOT}held/{host_id}/"


def net(name: str) -> str:
    return f"{ROOT}nets/{name}"


def vni(number: int) -> str:
    return f"{ROOT}vnis/{number}"


def endpoints(name: str) -> str:
    return f"{ROOT}endpoints/{name}/"
