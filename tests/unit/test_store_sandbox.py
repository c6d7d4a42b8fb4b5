"""The endpoints of one container (its sandbox), which every DNS query asks
for (cluster.mode.ClusterMode._askers): found by an index, not by reading every
endpoint of the host."""
from plugin.store import Store
from spec.stored import StoredEndpoint


def _endpoint(n: int, sandbox: str) -> StoredEndpoint:
    return StoredEndpoint(f"{n:064x}", f"{n % 2:064x}", sandbox=sandbox, address=f"10.0.{n % 2}.{n}/24")


def test_a_sandboxs_endpoints_are_its_own_and_found_by_the_index(tmp_path):
    store = Store(str(tmp_path))
    store.initialise()  # as the server does at start: an older database gets the index there
    with store.transaction() as tx:
        for n, sandbox in enumerate(["/run/netns/a", "/run/netns/b", "/run/netns/a", ""]):
            tx.put_endpoint(_endpoint(n, sandbox))
    with store.snapshot() as tx:
        assert sorted(e.id for e in tx.endpoints_in_sandbox("/run/netns/a")) == [f"{0:064x}", f"{2:064x}"]
        assert tx.endpoints_in_sandbox("/run/netns/c") == []
        plan = tx._db.execute("EXPLAIN QUERY PLAN SELECT data FROM endpoints "
                              "WHERE json_extract(data, '$.sandbox') = ?", ("x",)).fetchall()
    assert any("endpoints_by_sandbox" in row[-1] for row in plan), plan


def test_an_addresss_holders_on_every_network_are_found_by_the_index(tmp_path):
    """The host-wide DNS address names no network: its askers are found by
    address alone (two networks of one host may both hold it)."""
    store = Store(str(tmp_path))
    store.initialise()
    with store.transaction() as tx:
        for n, (network, address) in enumerate([(0, "10.0.0.5/24"), (1, "10.0.0.5/24"), (1, "10.0.1.6/24")]):
            tx.add_endpoint(StoredEndpoint(f"{n:064x}", f"{network:064x}", sandbox="", address=address))
    with store.snapshot() as tx:
        assert sorted(tx.address_holders("10.0.0.5")) == [f"{0:064x}", f"{1:064x}"]
        assert tx.address_holders("10.0.1.6") == [f"{2:064x}"]
        assert tx.address_holders("10.0.9.9") == []
        plan = tx._db.execute("EXPLAIN QUERY PLAN SELECT endpoint_id FROM endpoint_ips WHERE ip = ?",
                              ("x",)).fetchall()
    assert any("endpoint_ips_by_ip" in row[-1] for row in plan), plan
