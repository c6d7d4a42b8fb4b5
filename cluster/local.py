"""What cluster mode needs of this host, handed in by the composition root.

``cluster.mode.ClusterMode`` reads this host's settings, reads and marks
this host's stored networks, endpoints and pools, and asks which gateway
addresses a stored network's bridge carries. Those live above cluster/
(plugin.config, plugin.store, the network driver's ``bridge_spec``), which
cluster/ may not import: these Protocols say what is used, and plugin.wiring
hands in the real ones.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Protocol

from spec.stored import AskerNetwork, StoredEndpoint, StoredNetwork

# A stored network's gateway addresses on this host's bridge (interfaces, "10.0.0.1/24").
Gateways = Callable[[StoredNetwork], tuple[str, ...]]


class ModeSettings(Protocol):
    """The settings cluster mode reads (plugin.config.Settings has them)."""

    name: str
    state_dir: str
    etcd_endpoints: list[str]
    advertise_addr: str
    host_id: str
    etcd_ca: str
    etcd_cert: str
    etcd_key: str
    lease_ttl: int
    reclaim_grace: int
    dns_resolv_conf: str
    dns_port: int
    dns_address: str
    encrypt: bool
    docker_socket: str


class LocalTransaction(Protocol):
    """The store calls cluster mode makes in one transaction (plugin.store.Transaction)."""

    def list_networks(self) -> list[StoredNetwork]: ...
    def get_network(self, network_id: str) -> StoredNetwork | None: ...
    def put_network(self, network: StoredNetwork) -> None: ...
    def list_endpoints(self, network_id: str | None = None) -> list[StoredEndpoint]: ...
    def get_endpoint(self, endpoint_id: str) -> StoredEndpoint | None: ...
    def put_endpoint(self, endpoint: StoredEndpoint) -> None: ...
    def asker_networks(self, ip: str, network_id: str | None) -> list[AskerNetwork]: ...
    def list_pools(self) -> list[dict]: ...
    def list_addresses(self, pool_id: str) -> list[tuple[int, str]]: ...


class LocalStore(Protocol):
    """This host's store (plugin.store.Store)."""

    def transaction(self) -> AbstractContextManager[LocalTransaction]: ...
    def snapshot(self) -> AbstractContextManager[LocalTransaction]: ...
