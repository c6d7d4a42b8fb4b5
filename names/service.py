"""Names across hosts: the responder of a cluster member.

Fed by the cluster's segment (cluster.segment calls these hooks):
``attach``/``detach`` with a network's watch (its listeners open and close),
``records``/``record`` with the records the watch applies (other hosts'
endpoints), ``published``/``unpublished`` with this host's own endpoints,
which resolve as soon as they are published and are never taken from the
watch (a lease lost for a moment takes the records, not the containers).

Where it answers: every cluster network's gateway address, port 53, on
every host (the gateway is the same everywhere, and each host answers for
it on its own bridge, so a query never crosses the underlay), and one
host-wide address (``serve_host``: datapath.dnsaddress) for a daemon.json
that names one server for every network. Who sees what: a query's source
address is a container's address on the network it asked on (on the
host-wide address: on whichever network of this host holds it); that
container sees the names of every network it is on (``askers``, from this
host's store), as with Docker's own resolver. Other
queries, and names no endpoint of those networks holds, go to the host's
resolvers (``resolv_conf``), asked from the host's namespace.

The networks and endpoints the hooks are given are this host's stored
records (spec.stored's StoredNetwork and StoredEndpoint), read by
attribute; unannotated here, since names/ imports nothing of the project's.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Callable

from .server import Listener, Pool
from .table import NameTable
from .wire import Lookup, Upstreams

log = logging.getLogger("pontoon.names")
LOCAL = "local/"
REMOTE = "endpoints/"

HOST_WIDE = ""  # the host-wide listener's key among the networks' (no network ID is empty)

# (network ID, or None for any network of this host; source address) ->
# the cluster names (pools) of the asker's networks
Askers = Callable[[str | None, str], set]


class Names:
    def __init__(self, host_id: str, askers: Askers, resolv_conf: str = "/etc/resolv.conf", port: int = 53):
        self.table = NameTable()
        self._me = host_id
        self._askers = askers
        self._port = port
        self._pool = Pool()
        self._listeners: dict[str, Listener] = {}  # network ID -> its listener
        self._lock = threading.Lock()
        self.upstreams = Upstreams(resolv_conf, self._ours)

    # -- networks -------------------------------------------------------------------
    def attach(self, network) -> None:
        gateways = [str(ipaddress.ip_interface(p.gateway).ip) for p in network.ipam if p.gateway]
        with self._lock:
            if network.id in self._listeners or not gateways:
                return
            try:
                self._listeners[network.id] = Listener(
                    network.id, gateways, self._port, self._lookup_for(network.id), self.upstreams, self._pool)
            except OSError as exc:  # port 53 held by another server there: the network is served all the same
                log.error("no DNS on network %s's gateway %s: %s", network.id, ", ".join(gateways), exc)

    def serve_host(self, address: str) -> None:
        """Answer on ``address`` too (port as the gateways'), for any container
        of this host: an OSError if it cannot be bound."""
        with self._lock:
            if HOST_WIDE not in self._listeners:
                self._listeners[HOST_WIDE] = Listener("host-wide", [address], self._port, self._lookup_for(None),
                                                      self.upstreams, self._pool)

    def detach(self, network) -> None:
        with self._lock:
            listener = self._listeners.pop(network.id, None)
        if listener is not None:
            listener.close()
        self.table.drop(network.clustered.pool)

    def stop(self) -> None:
        with self._lock:
            listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            listener.close()
        self._pool.stop()

    def _ours(self) -> set[str]:
        with self._lock:
            return {a for listener in self._listeners.values() for a in listener.addresses}

    def _lookup_for(self, network_id: str | None) -> Callable[[str], Lookup]:
        def asker(source: str) -> Lookup:
            networks = self._askers(network_id, source)
            return lambda name: self.table.lookup(networks, name) if networks else None
        return asker

    # -- other hosts' endpoints (the watch) ----------------------------------------------
    def records(self, pool: str, records: dict) -> None:
        """A full read: ``records`` maps each record key the watch applies to
        its parsed record (cluster.records.EndpointRecord)."""
        self.table.replace(pool, REMOTE, {key: (r.names, r.addresses) for key, r in records.items()
                                          if r.names and r.host != self._me})

    def record(self, pool: str, key: str, record) -> None:
        """One record written (``record``) or gone or not applied (None)."""
        if record is None or not record.names:
            self.table.remove(pool, key)
        elif record.host != self._me:
            self.table.put(pool, key, record.names, record.addresses)

    # -- this host's endpoints ----------------------------------------------------------------
    def published(self, network, endpoint) -> None:
        """Also when the endpoint's names change (names given again)."""
        key = LOCAL + endpoint.id
        if not endpoint.names:
            self.table.remove(network.clustered.pool, key)
            return
        self.table.put(network.clustered.pool, key, endpoint.names, endpoint.ips)

    def unpublished(self, network, endpoint) -> None:
        self.table.remove(network.clustered.pool, LOCAL + endpoint.id)
