"""Where a network's segment is made and where its shared state lives.

The network driver makes the bridge, veths and rules of every network; the
segment is what a network has beyond this host. On one host there is
nothing beyond it: ``LocalSegment`` does nothing, and the single-host path
is the whole story. In a cluster (``cluster.segment.ClusterSegment``) the
segment agrees the network's options with the other hosts, adds a VXLAN
device to the bridge, publishes this host's endpoints and follows the
others'. The driver calls these at fixed points of each method, each
paired with its undo, and never asks which kind it has.
"""
from __future__ import annotations

from typing import Protocol

from spec.errors import BadRequest
from spec.stored import StoredEndpoint, StoredNetwork


class Segment(Protocol):
    connectivity: str  # GetCapabilities' ConnectivityScope

    def prepare(self, network: StoredNetwork) -> StoredNetwork:
        """Before anything is made: check (and settle) what must agree
        beyond this host; returns the network as it is to be stored."""

    def attach(self, network: StoredNetwork) -> None:
        """After the bridge exists: join the segment (idempotent)."""

    def detach(self, network: StoredNetwork) -> None:
        """Before the bridge goes (idempotent)."""

    def publish(self, network: StoredNetwork, endpoint: StoredEndpoint) -> None:
        """Make the endpoint known beyond this host (idempotent)."""

    def unpublish(self, network: StoredNetwork, endpoint: StoredEndpoint) -> None:
        """Idempotent."""

    def endpoints_changed(self, network: StoredNetwork) -> None:
        """After Join or DeleteEndpoint has committed: what the segment
        derives from this host's endpoints and their veths (a Join may have
        made a veth again, with a new index) follows. Never fails the call."""

    def reconcile(self, networks: list[StoredNetwork], cut_short: list[StoredNetwork]) -> list[str]:
        """At start, in the reconcile child: the kernel side only, of the
        stored ``networks`` and of those whose create a crash cut short
        (pending records, whose bridge reconcile has just given back)."""


class LocalSegment:
    """One host: the bridge is the whole segment."""

    connectivity = "local"

    def prepare(self, network: StoredNetwork) -> StoredNetwork:
        if network.options.encrypted:
            raise BadRequest('option pontoon.encrypted="true": only a cluster network (--etcd-endpoints) '
                             'crosses hosts; on one host there is nothing to encrypt')
        return network

    def attach(self, network: StoredNetwork) -> None:
        pass

    def detach(self, network: StoredNetwork) -> None:
        pass

    def publish(self, network: StoredNetwork, endpoint: StoredEndpoint) -> None:
        pass

    def unpublish(self, network: StoredNetwork, endpoint: StoredEndpoint) -> None:
        pass

    def endpoints_changed(self, network: StoredNetwork) -> None:
        pass

    def reconcile(self, networks: list[StoredNetwork], cut_short: list[StoredNetwork]) -> list[str]:
        return []
