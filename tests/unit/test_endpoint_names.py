"""Container names (dockerd 29's RequestAddress option) from the IPAM request
to the endpoint and into its cluster record, parsed strictly at each edge."""
import json

import pytest

from cluster import records
from spec import names
from spec.errors import BadRequest

from .test_network import NID, net_body

OPTION = "com.docker.network.endpoint.name"
POOLS = [__import__("ipaddress").ip_network("10.90.0.0/24")]


@pytest.mark.parametrize("good", ["web", "Web-1", "a", "db_primary", "x.y", "a" * 63, "1abc"])
def test_good_names(good):
    assert names.endpoint_name("name", good) == good


@pytest.mark.parametrize("bad", ["", "-web", "_web", "web.", "a..b", "a" * 64, "web server", "wéb", "a/b",
                                 "web\n", 7, None, ["web"], ".".join(["a" * 60] * 3)])
def test_bad_names_are_refused_naming_the_value(bad):
    with pytest.raises(BadRequest):
        names.endpoint_name("name", bad)


def test_a_bad_option_drops_the_name_only():
    assert names.optional_name({OPTION: "web"}) == "web"
    assert names.optional_name({OPTION: "no good"}) is None
    assert names.optional_name({}) is None and names.optional_name(None) is None


def _network(dockerd):
    return dockerd.create_network(subnet="10.1.0.0/24")


def test_the_name_given_at_request_address_is_the_endpoints(plugin, dockerd):
    net = _network(dockerd)
    named = dockerd.run(net, name="web")
    anonymous = dockerd.run(net)
    with plugin.store.snapshot() as tx:
        assert tx.get_endpoint(named.endpoint_id).name == "web"
        assert "name" not in tx.get_endpoint(anonymous.endpoint_id).to_json()


def test_a_released_address_forgets_its_name(plugin, dockerd, client):
    net = _network(dockerd)
    pool = net.pool(False)["PoolID"]
    got = client.ok("IpamDriver.RequestAddress", {"PoolID": pool, "Address": "", "Options": {OPTION: "old"}})
    client.ok("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": got["Address"].split("/")[0]})
    again = client.ok("IpamDriver.RequestAddress", {"PoolID": pool, "Address": got["Address"].split("/")[0],
                                                    "Options": None})
    with plugin.store.snapshot() as tx:
        assert tx.address_name("LocalDefault", again["Address"].split("/")[0]) is None


def test_a_gateway_takes_no_name(plugin, client):
    pool = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.3.0.0/24",
                                                "SubPool": "", "Options": {}, "V6": False})["PoolID"]
    client.ok("IpamDriver.RequestAddress", {"PoolID": pool, "Address": "", "Options": {
        "RequestAddressType": "com.docker.network.gateway", OPTION: "gw"}})
    with plugin.store.snapshot() as tx:
        assert tx.address_name("LocalDefault", "10.3.0.1") is None


def test_an_old_network_driver_request_without_ipam_names_still_works(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", {"NetworkID": NID, "EndpointID": "ef" * 32,
                                               "Interface": {"Address": "10.1.0.9/24"}, "Options": {}})
    with plugin.store.snapshot() as tx:
        assert "name" not in tx.get_endpoint("ef" * 32).to_json()


def _record(**over):
    raw = {"host": "h1", "vtep": "192.0.2.1", "mac": "02:00:00:00:00:01", "addresses": ["10.90.0.5"]}
    raw.update(over)
    return json.dumps(raw)


def test_a_records_name_is_parsed():
    assert records.endpoint("endpoints/p/h1/e", _record(name="web"), POOLS, set()).name == "web"
    assert records.endpoint("endpoints/p/h1/e", _record(), POOLS, set()).name is None


@pytest.mark.parametrize("bad", ["a b", "x" * 200, 5, ["web"], "-"])
def test_a_bad_name_skips_the_name_not_the_record(bad, caplog):
    record = records.endpoint("endpoints/p/h1/e", _record(name=bad), POOLS, set())
    assert record.name is None and record.addresses == ("10.90.0.5",)
    assert "name is skipped" in caplog.text


def test_aliases_keep_the_good_ones_once():
    assert names.usable(["www", "WWW", "no good", 7, "abcdef012345"]) == ("www", "abcdef012345")
    assert names.usable("www") == () and names.usable(None) == ()


def test_a_records_aliases_are_parsed_and_a_bad_one_costs_itself():
    import ipaddress
    import json

    from cluster import records

    raw = {"host": "h2", "vtep": "192.0.2.2", "mac": "02:00:00:00:00:05", "addresses": ["10.9.0.5"],
           "name": "web", "aliases": ["www", "bad name", "abcdef012345"]}
    record = records.endpoint("endpoints/p/h2/e1", json.dumps(raw), [ipaddress.ip_network("10.9.0.0/24")], set())
    assert record.names == ("web", "www", "abcdef012345")


def test_a_container_name_on_two_hosts_is_a_clash_and_a_shared_alias_is_not():
    from cluster.view import clashes

    endpoints = [{"pool": "10.9.0.0/24", "id": "e1", "host": "h1", "name": "web", "aliases": ["www"]},
                 {"pool": "10.9.0.0/24", "id": "e2", "host": "h2", "name": "Web", "aliases": ["www"]},
                 {"pool": "10.9.0.0/24", "id": "e3", "host": "h2", "name": "db", "aliases": ["www"]}]
    assert clashes(endpoints) == [{"pool": "10.9.0.0/24", "name": "web",
                                   "endpoints": [{"id": "e1", "host": "h1"}, {"id": "e2", "host": "h2"}]}]
