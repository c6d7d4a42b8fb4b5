"""``addrs/<pool>/<addr>``: who holds an address of a cluster pool.

Written by the IPAM driver (cluster.ipam: a container's address, the
gateway, aux addresses) and by cluster.hostaddr (the host's own), compared
by value in every transaction that frees or takes an address over
(``value_is``), so its bytes are ``value``'s and nothing else. Its fields
have not changed since the first version.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .records import BadRecord, dump, load, text

log = logging.getLogger("pontoon.cluster")

# The holder of the network's own allocations (the gateway's and aux
# addresses'), which belong to every member, not one host.
GATEWAY_HOLDER = "*"


@dataclass(frozen=True)
class AddrHolder:
    host: str  # a host ID, or GATEWAY_HOLDER
    kind: str  # "address" (a container's), "host" (cluster.hostaddr), "gateway" or "aux"

    @property
    def holder(self) -> str:
        """The host the address is given to ("" for the network's own)."""
        return "" if self.host == GATEWAY_HOLDER else self.host

    def value(self) -> str:
        return dump({"host": self.host, "kind": self.kind})

    @classmethod
    def parse(cls, key: str, value: str) -> AddrHolder:
        raw = load(key, value)
        return cls(text(key, raw, "host"), text(key, raw, "kind"))


def holder(key: str, value: str) -> str:
    """The host the ``addrs/`` record at ``key`` gives its address to: ""
    for the network's own, and for a record that does not parse (logged),
    so that no host's endpoint record is applied with that address."""
    try:
        return AddrHolder.parse(key, value).holder
    except BadRecord as exc:
        log.error("address record taken for the network's: %s", exc)
        return ""
