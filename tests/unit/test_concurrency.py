"""Kernel work runs outside the store's write lock: what a request commits
when another one changed the store while its veth or bridge was being made."""
import contextlib
import sqlite3

import pytest

from plugin.store import Store

from .test_network import EID, NID, endpoint_body, net_body
from .test_stored import old_endpoint, old_network, put_raw

OTHER = "ef" * 32


def meanwhile(plugin, method: str, action, after: bool = False) -> list:
    """Run ``action`` once, as a concurrent request would while this one
    works outside the lock: just before the fake kernel's ``method`` runs, or
    just after it; the returned list receives what ``action`` returned."""
    real = getattr(plugin.links, method)
    results: list = []

    def interleaved(*args, **kwargs):
        setattr(plugin.links, method, real)  # the concurrent request calls it too
        if after:
            done = real(*args, **kwargs)
            results.append(action())
            return done
        results.append(action())
        return real(*args, **kwargs)

    setattr(plugin.links, method, interleaved)
    return results


def test_endpoint_whose_network_goes_while_its_veth_is_made_is_not_kept(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    meanwhile(plugin, "create_veth", lambda: plugin.network.delete_network({"NetworkID": NID}), after=True)
    status, reply = client.call("NetworkDriver.CreateEndpoint", endpoint_body())
    assert status == 404 and f"network {NID}" in reply["Err"], reply
    assert plugin.links.veths == {} and plugin.state()["store"]["endpoints"] == []


def test_address_taken_meanwhile_is_refused_and_the_veth_goes(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    meanwhile(plugin, "create_veth", lambda: plugin.network.create_endpoint({**endpoint_body(), "EndpointID": OTHER}))
    status, reply = client.call("NetworkDriver.CreateEndpoint", endpoint_body())
    assert status == 409 and f"already used by endpoint {OTHER}" in reply["Err"]
    assert list(plugin.links.veths) == ["ptv" + OTHER[:12]]
    assert [e["id"] for e in plugin.state()["store"]["endpoints"]] == [OTHER]


def test_the_same_endpoint_made_twice_at_once_keeps_one_veth(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    done = meanwhile(plugin, "create_veth", lambda: plugin.network.create_endpoint(endpoint_body()))
    reply = client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    assert done == [reply]
    assert list(plugin.links.veths) == ["ptv" + EID[:12]]
    assert [e["id"] for e in plugin.state()["store"]["endpoints"]] == [EID]


def test_the_same_network_made_twice_at_once_keeps_its_bridge_and_rules(plugin, client):
    done = meanwhile(plugin, "create_bridge", lambda: plugin.network.create_network(net_body()))
    client.ok("NetworkDriver.CreateNetwork", net_body())
    assert done == [{}]
    assert list(plugin.links.bridges) == ["pt-" + NID[:12]] and list(plugin.firewall.networks) == [NID]
    assert [n["id"] for n in plugin.state()["store"]["networks"]] == [NID]


def test_publishing_nothing_writes_nothing(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    commits = []
    plugin.store._before_commit = lambda: commits.append(1)
    client.ok("NetworkDriver.ProgramExternalConnectivity",
              {"NetworkID": NID, "EndpointID": EID, "Options": {}})
    assert commits == []


@pytest.mark.parametrize("v6", [False, True])
def test_addresses_of_endpoints_stored_before_the_index_are_indexed(tmp_path, v6):
    """A store written before endpoint_ips existed: its endpoints' addresses
    still block reuse once the plugin starts."""
    store = Store(str(tmp_path))
    store.initialise()
    address = "fd00::5/64" if v6 else "10.1.0.5/24"
    endpoint = old_endpoint(address="" if v6 else address, address_v6=address if v6 else "")
    put_raw(store, "endpoints", endpoint)  # as the older code stored it: no index rows
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        db.execute("PRAGMA user_version = 0")  # nor a version
    Store(str(tmp_path)).initialise()
    with store.snapshot() as tx:
        assert tx.address_holder(NID, address.split("/")[0]) == EID
        assert tx.get_endpoint(EID).to_json() == {**endpoint, "tag": EID[:12]}


def test_networks_and_endpoints_stored_before_tags_get_unique_ones(tmp_path):
    """A store written before tags: each network takes its ID's first 12
    characters unless an earlier one holds them (two such networks shared a
    chain), each endpoint the tag in its veth name; the rest is kept."""
    store = Store(str(tmp_path))
    store.initialise()
    first, second = "ab" * 6 + "0" * 52, "ab" * 6 + "1" * 52
    old = [old_network(nid, bridge) for nid, bridge in ((first, "br-a"), (second, "br-b"))]
    for network in old:
        put_raw(store, "networks", network)
    put_raw(store, "endpoints", old_endpoint(network_id=first))
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        db.execute("PRAGMA user_version = 1")
    Store(str(tmp_path)).initialise()
    with store.snapshot() as tx:
        networks = {n.id: n.to_json() for n in tx.list_networks()}
        assert networks[first] == {**old[0], "tag": first[:12], "adopted": None}
        assert networks[second]["tag"] not in (first[:12], "") and len(networks[second]["tag"]) == 12
        assert tx.network_by_tag(networks[second]["tag"]).id == second
        assert tx.get_endpoint(EID).tag == EID[:12]
        assert tx.endpoint_by_veth("ptv" + EID[:12]).id == EID
