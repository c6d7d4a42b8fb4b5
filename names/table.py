"""Which names each cluster network holds: the responder's only data.

A network is named as the cluster names it (its pool, ``keys.pool_name``),
the same on every host. An entry is one endpoint's name and addresses,
keyed by where it came from: an etcd record key for other hosts' endpoints
(fed from cluster.peerwatch.PeerWatch), ``local/<endpoint ID>`` for this
host's (fed when they are published). An endpoint holds several names (the
container's, its network aliases, its short ID); a name held by several
endpoints answers with all their addresses, as Docker's resolver does.
"""
from __future__ import annotations

import ipaddress
import threading
from typing import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NameTable:
    def __init__(self):
        self._lock = threading.Lock()
        # network -> name (lower case) -> key -> addresses
        self._names: dict[str, dict[str, dict[str, tuple[Address, ...]]]] = {}
        self._keys: dict[str, dict[str, tuple[str, ...]]] = {}  # network -> key -> its names

    def put(self, network: str, key: str, names: Iterable[str], addresses: Iterable[str]) -> None:
        parsed = tuple(ipaddress.ip_address(a) for a in addresses)
        held = tuple(dict.fromkeys(n.lower() for n in names))
        with self._lock:
            self._remove(network, key)
            for name in held:
                self._names.setdefault(network, {}).setdefault(name, {})[key] = parsed
            self._keys.setdefault(network, {})[key] = held

    def remove(self, network: str, key: str) -> None:
        with self._lock:
            self._remove(network, key)

    def replace(self, network: str, prefix: str, entries: dict[str, tuple[Iterable[str], Iterable[str]]]) -> None:
        """The network's entries whose keys start with ``prefix`` become
        ``entries`` (key -> (names, addresses)); the others stay (a full
        read of other hosts' records leaves this host's own)."""
        with self._lock:
            for key in [k for k in self._keys.get(network, {}) if k.startswith(prefix)]:
                self._remove(network, key)
        for key, (names, addresses) in entries.items():
            self.put(network, key, names, addresses)

    def drop(self, network: str) -> None:
        with self._lock:
            self._names.pop(network, None)
            self._keys.pop(network, None)

    def lookup(self, networks: Iterable[str], name: str) -> list[Address] | None:
        """Every address ``name`` has on ``networks``, or None if no
        endpoint of them holds it (the query is not ours to answer)."""
        name = name.lower()
        found: list[Address] | None = None
        with self._lock:
            for network in networks:
                held = self._names.get(network, {}).get(name)
                if held:
                    found = found or []
                    found += [a for addresses in held.values() for a in addresses if a not in found]
        return found

    def _remove(self, network: str, key: str) -> None:
        for name in self._keys.get(network, {}).pop(key, ()):
            held = self._names[network][name]
            held.pop(key, None)
            if not held:
                del self._names[network][name]
