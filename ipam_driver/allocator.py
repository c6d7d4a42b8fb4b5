"""Pure address arithmetic for the IPAM driver: no I/O, no storage.

Pools are described by integer bounds and candidate pools by generators, so a
/8 or a /64 costs the same to hold: nothing is ever materialised per address.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Iterator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PoolBase:
    """A range that default pools are carved from, like dockerd's
    ``--default-address-pools base=172.80.0.0/12,size=24``."""

    base: IPNetwork
    size: int

    @classmethod
    def parse(cls, text: str) -> "PoolBase":
        """"172.80.0.0/12:24" -> base 172.80.0.0/12 carved into /24s."""
        cidr, sep, size = text.strip().rpartition(":")
        if not sep or not size.isdigit():
            raise ValueError(f'default pool "{text}" is not of the form CIDR:SIZE, e.g. 172.80.0.0/12:24')
        base = ipaddress.ip_network(cidr, strict=True)
        if not base.prefixlen <= int(size) <= base.max_prefixlen:
            raise ValueError(f'default pool "{text}": size {size} must be between /{base.prefixlen} and /{base.max_prefixlen}')
        return cls(base, int(size))

    def __str__(self) -> str:
        return f"{self.base}:{self.size}"


def candidates(bases: Iterable[PoolBase]) -> Iterator[IPNetwork]:
    """Every default pool, in order, computed only as far as it is consumed."""
    for b in bases:
        yield from b.base.subnets(new_prefix=b.size)


def overlaps(net: IPNetwork, others: Iterable[IPNetwork]) -> IPNetwork | None:
    for other in others:
        if other.version == net.version and net.overlaps(other):
            return other
    return None


def usable_range(pool: IPNetwork) -> tuple[int, int]:
    """First and last address a container may get: never the network address,
    never the IPv4 broadcast (except in /31 and /32, which have neither)."""
    first, last = int(pool.network_address), int(pool.broadcast_address)
    if pool.num_addresses <= 2:
        return first, last
    if pool.version == 4:
        return first + 1, last - 1
    # IPv6 has no broadcast; the all-zero host is the subnet-router anycast.
    return first + 1, last


def sub_range(pool: IPNetwork, sub: IPNetwork | None) -> tuple[int, int]:
    first, last = usable_range(pool)
    if sub is None:
        return first, last
    return max(first, int(sub.network_address)), min(last, int(sub.broadcast_address))


def first_free(start: int, last: int, taken_from_start: Iterable[int]) -> int | None:
    """Lowest address in [start, last] not in ``taken_from_start``, which
    yields the allocated addresses >= start in ascending order. Reads only
    as far as the first gap."""
    candidate = start
    for taken in taken_from_start:
        if taken > candidate:
            break
        candidate = taken + 1
    return candidate if candidate <= last else None
