"""The networks of the container that asked a DNS query, which every query
asks for (cluster.mode.ClusterMode._askers): one query, found by the indexes
of addresses and sandboxes, not by reading every endpoint of the host nor
parsing whole records."""
from dataclasses import replace

from plugin.store import Store
from spec.stored import AskerNetwork, ClusterPart, NetworkOptions, StoredEndpoint, StoredNetwork

BOX = "/var/run/docker/netns/a"


def _network(n: int, cluster: ClusterPart | None) -> StoredNetwork:
    return StoredNetwork(f"{n:064x}", NetworkOptions(), (), (), "{}", bridge=f"pt-{n}", cluster=cluster)


def _pool(n: int) -> ClusterPart:
    return ClusterPart(f"LocalDefault/10.0.{n}.0/24", 4096 + n)


# Networks 0 and 1 are the cluster's, 2 is not, 3 is cut off from the cluster.
NETWORKS = [_network(0, _pool(0)), _network(1, _pool(1)), _network(2, None),
            _network(3, replace(_pool(3), lost="its pool is another's"))]


def _endpoint(n: int, network: int, sandbox: str, address: str = "") -> StoredEndpoint:
    """Endpoint ``n`` on ``network``, by default at address 10.0.<network>.<n>."""
    return StoredEndpoint(f"{network * 100 + n:064x}", f"{network:064x}", address or f"10.0.{network}.{n}/24", sandbox=sandbox)


def _asker(network: int) -> AskerNetwork:
    part = NETWORKS[network].cluster
    return AskerNetwork(NETWORKS[network].id, part and part.pool, NETWORKS[network].lost)


def _store(tmp_path, *endpoints: StoredEndpoint) -> Store:
    store = Store(str(tmp_path))
    store.initialise()  # as the server does at start: an older database gets the indexes there
    with store.transaction() as tx:
        for network in NETWORKS:
            tx.put_network(network)
        for endpoint in endpoints:
            tx.add_endpoint(endpoint)
    return store


def _asked(store: Store, ip: str, network: int | None) -> list[AskerNetwork]:
    with store.snapshot() as tx:
        return sorted(tx.asker_networks(ip, None if network is None else f"{network:064x}"), key=lambda n: n.id)


def test_a_containers_networks_are_every_network_its_sandbox_is_on(tmp_path):
    store = _store(tmp_path, *(_endpoint(5, n, BOX) for n in range(4)), _endpoint(6, 1, "/var/run/docker/netns/b"))
    every = [_asker(n) for n in range(4)]
    assert every[2].pool is None and every[3].lost and not every[0].lost
    assert _asked(store, "10.0.0.5", 0) == every  # asked on a cluster network
    assert _asked(store, "10.0.2.5", 2) == every  # on the one that is not the cluster's
    assert _asked(store, "10.0.1.5", None) == every  # on the host-wide address: one network holds it
    assert _asked(store, "10.0.1.6", 1) == [_asker(1)]  # another sandbox's


def test_an_address_no_endpoint_holds_on_the_network_asked_on_has_no_networks(tmp_path):
    store = _store(tmp_path, _endpoint(5, 0, BOX))
    assert _asked(store, "10.0.0.9", 0) == []
    assert _asked(store, "10.0.0.9", None) == []
    assert _asked(store, "10.0.0.5", 1) == []  # held, but on another network than the one asked on


def test_an_address_two_networks_hold_is_neither_containers_on_the_host_wide_address(tmp_path):
    store = _store(tmp_path, _endpoint(5, 0, BOX), _endpoint(6, 1, "/var/run/docker/netns/b", "10.0.0.5/24"))
    assert _asked(store, "10.0.0.5", None) == []
    assert _asked(store, "10.0.0.5", 1) == [_asker(1)]


def test_an_endpoint_not_joined_is_on_its_own_network_alone(tmp_path):
    # Unjoined endpoints all have the sandbox "": they are not one container.
    store = _store(tmp_path, _endpoint(5, 0, ""), _endpoint(6, 1, ""))
    assert _asked(store, "10.0.0.5", 0) == [_asker(0)]


def test_the_query_reads_by_the_indexes(tmp_path):
    store = _store(tmp_path, _endpoint(5, 0, BOX))
    statements: list[str] = []
    with store.snapshot() as tx:
        tx._db.set_trace_callback(statements.append)
        tx.asker_networks("10.0.0.5", None)
        tx._db.set_trace_callback(None)
        (query,) = [s for s in statements if "endpoint_ips" in s]
        plan = " / ".join(row[-1] for row in tx._db.execute("EXPLAIN QUERY PLAN " + query))
    assert "SCAN endpoints" not in plan and "SCAN networks" not in plan, plan
    assert "endpoint_ips_by_ip" in plan and "endpoints_by_sandbox" in plan, plan
