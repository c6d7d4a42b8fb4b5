"""Where each cluster record lives in etcd (all under one root, "/pontoon/").

A cluster network is named by its first pool: address space and CIDR, the
one thing every host's dockerd hands Pontoon for "the same network" (each
host's dockerd makes its own network ID). ``pool_name`` turns them into one
key segment.

    hosts/<host>                     live host holding the ID: advertise address, token, boot ID (on its lease)
    seen/<host>                      a host that may hold addresses; when it was last alive (no lease)
    grace/<host>                     a host away for less than the grace period (on a lease of that TTL)
    pools/<pool>                     a pool: CIDR, space, range, options
    members/<pool>/<host>            a host holding the pool (ends at ReleasePool)
    gateway/<pool>                   the pool's one (distributed) gateway address
    addrs/<pool>/<hex address>       an allocated address: holder host and kind
    held/<host>/<pool>/<hex address> the same, indexed by host, for reclaiming
    nets/<pool>                      agreed options, VNI and every pool of the network
    netof/<pool>                     the network (its nets/ name) a pool belongs to: one network per pool
    vnis/<vni>                       the pool whose network holds the VNI
    endpoints/<pool>/<host>/<id>     an endpoint: MAC, addresses, VTEP (on the lease); id "host": the host's own address
"""
from __future__ import annotations

import json

from spec.stored import StoredNetwork

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


def key(kind: str, *parts) -> str:
    """``/pontoon/<kind>/<part>/…``: one of the records in the table above."""
    return ROOT + "/".join((kind, *map(str, parts)))


def prefix(kind: str, *parts) -> str:
    """Every key under ``key(kind, *parts)``."""
    return key(kind, *parts) + "/"


def cluster_name(network: StoredNetwork) -> str:
    """The pool naming ``network`` in the cluster: its first IPv4 pool (IPv6
    when it has none)."""
    return pool_names(network)[0]


def pool_names(network: StoredNetwork) -> list[str]:
    """Every pool of the stored ``network`` as the cluster names it (IPv4
    first), each in the address space dockerd's request gave."""
    request = json.loads(network.request)
    data = (request.get("IPv4Data") or []) + (request.get("IPv6Data") or [])
    return [pool_name(d.get("AddressSpace") or "LocalDefault", p.pool) for d, p in zip(data, network.ipam)]
