"""The endpoints of one container (its sandbox), which every DNS query asks
for (plugin.cluster.Room._askers): found by an index, not by reading every
endpoint of the host."""
from plugin.store import Store


def _endpoint(n: int, sandbox: str) -> dict:
    return {"id": f"{n:064x}", "network_id": f"{n % 2:064x}", "sandbox": sandbox, "address": f"10.0.{n % 2}.{n}/24"}


def test_a_sandboxs_endpoints_are_its_own_and_found_by_the_index(tmp_path):
    store = Store(str(tmp_path))
    store.initialise()  # as the server does at start: an older database gets the index there
    with store.transaction() as tx:
        for n, sandbox in enumerate(["/run/netns/a", "/run/netns/b", "/run/netns/a", ""]):
            tx.put_endpoint(_endpoint(n, sandbox))
    with store.snapshot() as tx:
        assert sorted(e["id"] for e in tx.endpoints_in_sandbox("/run/netns/a")) == [f"{0:064x}", f"{2:064x}"]
        assert tx.endpoints_in_sandbox("/run/netns/c") == []
        plan = tx._db.execute("EXPLAIN QUERY PLAN SELECT data FROM endpoints "
                              "WHERE json_extract(data, '$.sandbox') = ?", ("x",)).fetchall()
    assert any("endpoints_by_sandbox" in row[-1] for row in plan), plan
