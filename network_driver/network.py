"""The NetworkDriver protocol: networks and endpoints, in the store and the kernel.

Each state-changing method reads what it needs from a snapshot, makes its
kernel and firewall changes under a ``Rollback`` (each with its undo), and
commits last in one short store transaction, which checks again what a
concurrent request may have changed meanwhile. Kernel work stays outside the
store's write lock (shared by every worker and thread), so the
requests of other containers never queue behind a veth being made or
deleted. If anything fails, the undos run and the store keeps nothing; if
the process dies before the commit, reconcile at the next start removes the
orphans, or recreates what a delete had removed.

Published host ports are the exception: they are picked from the stored
ones, so ProgramExternalConnectivity does its firewall work inside the
transaction (RevokeExternalConnectivity frees them only at its commit, so
it needs no lock for its own). Each published port is also held by a bound
socket (``ports``, see datapath.hostports and plugin.portkeeper), claimed
and let go inside the transaction that stores and forgets it, so a port is
held exactly while it is stored.

Races. Kernel work outside the lock works from a snapshot, so every commit
checks what changed since and finishes the job for it under the lock (the
rare case pays, not the usual one): Revoke and DeleteEndpoint remove the
rules of ports a concurrent Program published meanwhile, and forget and let
go exactly what is stored at their commit; DeleteNetwork tears down the
endpoints committed after its snapshot; an undo deletes a veth only if no
stored endpoint owns it (another request for the same endpoint may have
adopted and committed it), and a request that adopted a pair checks at its
commit that the pair is still there. ``hook`` (plugin.testhook) names the
points between steps where tests stop a request to force an interleaving.

The pieces, along the protocol's objects: ``networks``, ``endpoints``,
``publishing`` (host ports) and ``reconcile`` (start-up), each a ``Part``
(``parts``: the transactions and collaborators they share), and
``records`` (stored records -> datapath descriptions, request checks).
``NetworkDriver`` is the one face the server, the cluster and the tests see.
"""
from __future__ import annotations

from typing import Callable

from datapath.hostports import Key

from . import options as opts
from .endpoints import Endpoints
from .networks import Networks
from .parts import Parts, Transaction
from .publishing import Publishing
from .reconcile import Startup
from .records import bridge_spec, endpoint_ports, network_rules, veth_spec
from .segment import LocalSegment, Segment

__all__ = ["NetworkDriver", "Transaction", "bridge_spec", "endpoint_ports", "methods", "network_rules",
           "veth_spec"]


class NetworkDriver:
    def __init__(self, transaction: Transaction, snapshot: Transaction, links, firewall, host_ports,
                 hook: Callable[[str], None] | None = None, segment: Segment | None = None):
        self._segment = segment or LocalSegment()
        parts = Parts(transaction, snapshot, links, firewall, self._segment, host_ports, hook)
        self._publishing = Publishing(parts)
        self._endpoints = Endpoints(parts, self._publishing)
        self._networks = Networks(parts, self._endpoints, self._publishing)
        self._startup = Startup(parts)

    # -- capabilities and no-ops ------------------------------------------------
    def get_capabilities(self, _body: dict) -> dict:
        # GwAllocChecker: dockerd 28+ then asks GwAllocCheck before it
        # allocates gateways; older ones ignore the field.
        return {"Scope": "local", "ConnectivityScope": self._segment.connectivity, "GwAllocChecker": True}

    def gw_alloc_check(self, body: dict) -> dict:
        """{"Options": <as CreateNetwork's>} -> {"SkipIPv4", "SkipIPv6"}: which
        gateway addresses Pontoon would never put on the bridge or give a
        container, so dockerd need not take them from the pool. The same
        cases as Docker's bridge driver. Bad options are refused here
        already, with CreateNetwork's message."""
        options = opts.parse(body.get("Options"))
        return {"SkipIPv4": options.isolated("ipv4") or (options.inhibit_ipv4 and options.internal),
                "SkipIPv6": options.isolated("ipv6")}

    def nothing_to_do(self, _body: dict) -> dict:
        """Discovery and swarm allocation calls: a local driver has nothing to do."""
        return {}

    # -- networks ------------------------------------------------------------
    def create_network(self, body: dict) -> dict:
        return self._networks.create_network(body)

    def delete_network(self, body: dict) -> dict:
        return self._networks.delete_network(body)

    # -- endpoints -------------------------------------------------------------
    def create_endpoint(self, body: dict) -> dict:
        return self._endpoints.create_endpoint(body)

    def delete_endpoint(self, body: dict) -> dict:
        return self._endpoints.delete_endpoint(body)

    def endpoint_oper_info(self, body: dict) -> dict:
        return self._endpoints.endpoint_oper_info(body)

    def join(self, body: dict) -> dict:
        return self._endpoints.join(body)

    def leave(self, body: dict) -> dict:
        return self._endpoints.leave(body)

    # -- published ports ---------------------------------------------------------
    def program_external_connectivity(self, body: dict) -> dict:
        return self._publishing.program_external_connectivity(body)

    def revoke_external_connectivity(self, body: dict) -> dict:
        return self._publishing.revoke_external_connectivity(body)

    def stored_ports(self) -> list[Key]:
        return self._publishing.stored_ports()

    # -- start-up ---------------------------------------------------------------
    def reconcile(self) -> list[str]:
        return self._startup.reconcile()


def methods(driver: NetworkDriver) -> dict:
    """The NetworkDriver protocol: path -> callable(body) -> reply body."""
    return {
        "NetworkDriver.GetCapabilities": driver.get_capabilities,
        "NetworkDriver.GwAllocCheck": driver.gw_alloc_check,
        "NetworkDriver.CreateNetwork": driver.create_network,
        "NetworkDriver.DeleteNetwork": driver.delete_network,
        "NetworkDriver.CreateEndpoint": driver.create_endpoint,
        "NetworkDriver.EndpointOperInfo": driver.endpoint_oper_info,
        "NetworkDriver.DeleteEndpoint": driver.delete_endpoint,
        "NetworkDriver.Join": driver.join,
        "NetworkDriver.Leave": driver.leave,
        "NetworkDriver.ProgramExternalConnectivity": driver.program_external_connectivity,
        "NetworkDriver.RevokeExternalConnectivity": driver.revoke_external_connectivity,
        "NetworkDriver.DiscoverNew": driver.nothing_to_do,
        "NetworkDriver.DiscoverDelete": driver.nothing_to_do,
        "NetworkDriver.AllocateNetwork": driver.nothing_to_do,
        "NetworkDriver.FreeNetwork": driver.nothing_to_do,
    }
