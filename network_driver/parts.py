"""What every piece of the NetworkDriver works with: the store's
transactions and the collaborators (links, firewall, segment, host ports,
test hook), handed in once by ``NetworkDriver`` and shared by its pieces
(networks, endpoints, publishing, reconcile). Here rather than in the
driver's module, which imports the pieces: they would import it back. A
piece that calls another is handed it, and they import one another one way
only: networks -> endpoints -> publishing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager

from spec.errors import found
from spec.stored import StoredEndpoint, StoredNetwork

from .records import _settled
from .segment import Segment
from .store import NetworkStore

if TYPE_CHECKING:  # the kernel's parts, or a test's fakes of them: imported for the types only
    from datapath.firewall import Firewall
    from datapath.hostports import Holder
    from datapath.links import Links

Transaction = Callable[[], ContextManager[NetworkStore]]


@dataclass(frozen=True)
class Parts:
    transaction: Transaction
    snapshot: Transaction
    links: Links
    firewall: Firewall
    segment: Segment
    host_ports: Holder
    hook: Callable[[str], None] | None = None


class Part:
    """The base of each piece: the collaborators under the names the
    driver's code has always used, and the lookups every piece needs."""

    def __init__(self, parts: Parts):
        self._tx = parts.transaction
        self._snapshot = parts.snapshot
        self._links = parts.links
        self._firewall = parts.firewall
        self._segment = parts.segment
        self._ports = parts.host_ports
        self._hook = parts.hook

    def _point(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)

    # -- lookups -------------------------------------------------------------------
    @staticmethod
    def _network(tx: NetworkStore, network_id: str) -> StoredNetwork:
        return found(_settled(tx.get_network(network_id)), f"network {network_id} is not a Pontoon network")

    @staticmethod
    def _endpoint(tx: NetworkStore, endpoint_id: str) -> StoredEndpoint:
        return found(tx.get_endpoint(endpoint_id), f"endpoint {endpoint_id} is not a Pontoon endpoint")
