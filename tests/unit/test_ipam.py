"""The IpamDriver protocol against a real SQLite store."""
import ipaddress
import json

import pytest

LOCAL = "LocalDefault"


def pool(client, cidr="", sub="", v6=False, space=LOCAL):
    return client.ok("IpamDriver.RequestPool", {"AddressSpace": space, "Pool": cidr, "SubPool": sub, "V6": v6, "Options": {}})


def addr(client, pool_id, address="", gateway=False):
    opts = {"RequestAddressType": "com.docker.network.gateway"} if gateway else None
    return client.ok("IpamDriver.RequestAddress", {"PoolID": pool_id, "Address": address, "Options": opts})["Address"]


def test_default_pool_skips_host_routes(client):
    # 172.17.0.0/16 is a host route in the fixture (like docker0)
    assert pool(client)["Pool"] == "172.18.0.0/16"
    assert pool(client)["Pool"] == "172.19.0.0/16"


def test_default_ipv6_pool_is_ula(client):
    p = pool(client, v6=True)
    assert ipaddress.ip_network(p["Pool"]).subnet_of(ipaddress.ip_network("fc00::/7"))
    assert addr(client, p["PoolID"], gateway=True) == p["Pool"].replace("::/64", "::1/64")


def test_explicit_pool_and_overlap_conflict_names_both(client, refused):
    pool(client, "10.10.0.0/16")
    err = refused("IpamDriver.RequestPool", {"AddressSpace": LOCAL, "Pool": "10.10.5.0/24", "V6": False}, status=409)
    assert "10.10.5.0/24" in err and "10.10.0.0/16" in err


def test_spaces_are_independent(client):
    pool(client, "10.10.0.0/16")
    assert pool(client, "10.10.0.0/16", space="GlobalDefault")["Pool"] == "10.10.0.0/16"


def test_gateway_then_lowest_free_never_network_or_broadcast(client):
    p = pool(client, "10.20.0.0/30")["PoolID"]
    assert addr(client, p, gateway=True) == "10.20.0.1/30"
    assert addr(client, p) == "10.20.0.2/30"
    status, reply = client.call("IpamDriver.RequestAddress", {"PoolID": p, "Address": ""})
    assert status == 409 and "no free address" in reply["Err"]


def test_subpool_limits_container_addresses_not_gateway(client):
    p = pool(client, "10.30.0.0/24", "10.30.0.128/25")["PoolID"]
    assert addr(client, p, gateway=True) == "10.30.0.1/24"
    assert addr(client, p) == "10.30.0.128/24"
    assert addr(client, p, "10.30.0.5") == "10.30.0.5/24"


def test_released_address_is_reused_lowest_first(client):
    p = pool(client, "10.40.0.0/24")["PoolID"]
    got = [addr(client, p) for _ in range(5)]
    assert got[0] == "10.40.0.1/24"
    client.ok("IpamDriver.ReleaseAddress", {"PoolID": p, "Address": "10.40.0.3"})
    client.ok("IpamDriver.ReleaseAddress", {"PoolID": p, "Address": "10.40.0.2"})
    assert addr(client, p) == "10.40.0.2/24"
    assert addr(client, p) == "10.40.0.3/24"
    assert addr(client, p) == "10.40.0.6/24"


def test_explicit_address_taken_is_409(client, refused):
    p = pool(client, "10.50.0.0/24")["PoolID"]
    addr(client, p, "10.50.0.9")
    refused("IpamDriver.RequestAddress", {"PoolID": p, "Address": "10.50.0.9"}, status=409, says="already allocated")


def test_release_pool_frees_everything(client):
    p = pool(client, "10.60.0.0/24")["PoolID"]
    addr(client, p, gateway=True)
    client.ok("IpamDriver.ReleasePool", {"PoolID": p})
    p2 = pool(client, "10.60.0.0/24")["PoolID"]
    assert addr(client, p2, gateway=True) == "10.60.0.1/24"


def test_repeated_releases_succeed(client):
    p = pool(client, "10.70.0.0/24")["PoolID"]
    for _ in range(2):
        client.ok("IpamDriver.ReleaseAddress", {"PoolID": p, "Address": "10.70.0.77"})
    for _ in range(2):
        client.ok("IpamDriver.ReleasePool", {"PoolID": p})
    client.ok("IpamDriver.ReleaseAddress", {"PoolID": "LocalDefault/1.2.3.0/24", "Address": "1.2.3.4"})


def test_hint_stays_correct_after_out_of_order_releases(client):
    p = pool(client, "10.80.0.0/28")["PoolID"]
    got = {addr(client, p) for _ in range(14)}
    assert len(got) == 14
    for a in ("10.80.0.9", "10.80.0.4", "10.80.0.12"):
        client.ok("IpamDriver.ReleaseAddress", {"PoolID": p, "Address": a})
    assert [addr(client, p) for _ in range(3)] == ["10.80.0.4/28", "10.80.0.9/28", "10.80.0.12/28"]


@pytest.mark.parametrize("body, status, says", [
    ({"AddressSpace": "nope", "Pool": ""}, 400, 'AddressSpace "nope"'),
    ({"AddressSpace": LOCAL, "Pool": "", "SubPool": "10.0.0.0/25"}, 400, "without a Pool"),
    ({"AddressSpace": LOCAL, "Pool": "10.0.0.1/24"}, 400, '"10.0.0.1/24" is not a valid subnet'),
    ({"AddressSpace": LOCAL, "Pool": "10.0.0.0/33"}, 400, "Pool"),
    ({"AddressSpace": LOCAL, "Pool": "fd00::/64", "V6": False}, 400, "is IPv6 but V6 is False"),
    ({"AddressSpace": LOCAL, "Pool": "10.0.0.0/24", "SubPool": "10.0.1.0/25"}, 400, "not inside Pool"),
    ({"AddressSpace": LOCAL, "Pool": "10.0.0.0/24", "SubPool": "fd00::/64"}, 400, "not an IPv4 value"),
    ({"AddressSpace": 7}, 400, "AddressSpace"),
    ({"Pool": "10.0.0.0/24"}, 400, "AddressSpace"),
])
def test_bad_pool_requests(refused, body, status, says):
    refused("IpamDriver.RequestPool", body, status=status, says=says)


@pytest.mark.parametrize("address, status, says", [
    ("10.90.0.0", 400, "network or broadcast"),
    ("10.90.0.255", 400, "network or broadcast"),
    ("10.91.0.1", 400, "not in pool 10.90.0.0/24"),
    ("fd00::1", 400, "not an IPv4 value"),
    ("banana", 400, '"banana" is not a valid IP address'),
])
def test_bad_address_requests(client, refused, address, status, says):
    p = pool(client, "10.90.0.0/24")["PoolID"]
    refused("IpamDriver.RequestAddress", {"PoolID": p, "Address": address}, status=status, says=says)


def test_unknown_pool_is_404(refused):
    refused("IpamDriver.RequestAddress", {"PoolID": "LocalDefault/9.9.9.0/24", "Address": ""}, status=404, says="9.9.9.0/24")


def test_release_of_malformed_address_is_400(client, refused):
    p = pool(client, "10.95.0.0/24")["PoolID"]
    refused("IpamDriver.ReleaseAddress", {"PoolID": p, "Address": "10.95.0.300"}, says="10.95.0.300")


def test_a_slash_8_and_a_slash_64_hold_the_same_state(plugin, client):
    import os
    size = os.path.getsize
    pool(client, "10.0.0.0/8")
    pool(client, "fd99::/64", v6=True)
    state = plugin.state()["store"]
    assert [p["cidr"] for p in state["pools"]] == ["10.0.0.0/8", "fd99::/64"]
    assert state["addresses"] == []
    assert size(plugin.store.path) < 200_000


def test_any_pool_of_a_size_from_the_default_pools(client):
    """dockerd 29 passes "--subnet 0.0.0.0/24" and "::/N" to RequestPool
    unchanged (moby docker-v29.1.0 libnetwork/network.go
    ipamAllocateVersion), meaning any /24 (any /N) of the default pools,
    as its own allocator reads it (ipams/defaultipam/allocator.go
    RequestPool, address_space.go allocatePredefinedPool)."""
    # 172.17.0.0/16 is a host route in the fixture.
    first = pool(client, "0.0.0.0/24")
    assert first["Pool"] == "172.18.0.0/24" and first["PoolID"] == "LocalDefault/172.18.0.0/24"
    assert pool(client, "0.0.0.0/24")["Pool"] == "172.18.1.0/24"
    assert pool(client, "0.0.0.0/20")["Pool"] == "172.18.16.0/20"  # not over the /24s held
    assert pool(client)["Pool"] == "172.19.0.0/16"
    assert pool(client, "0.0.0.0/0")["Pool"] == "172.20.0.0/16"  # /0: the default size
    v6 = pool(client, "::/56", v6=True)["Pool"]
    assert ipaddress.ip_network(v6).prefixlen == 56
    assert ipaddress.ip_network(v6).subnet_of(ipaddress.ip_network("fd70:6f6e:746f::/48"))
    assert addr(client, first["PoolID"], gateway=True) == "172.18.0.1/24"


@pytest.mark.parametrize("body, says", [
    ({"Pool": "0.0.0.0/8"}, 'Pool "0.0.0.0/8" asks for any /8, which no default pool can hold'),
    ({"Pool": "::/40", "V6": True}, 'Pool "::/40" asks for any /40, which no default pool can hold'),
    ({"Pool": "0.0.0.0/24", "SubPool": "0.0.0.0/25"}, 'SubPool "0.0.0.0/25" given with Pool "0.0.0.0/24"'),
    ({"Pool": "::/64", "V6": False}, 'Pool "::/64" is IPv6 but V6 is False'),
])
def test_bad_any_pool_sizes_are_400(refused, plugin, body, says):
    refused("IpamDriver.RequestPool", {"AddressSpace": LOCAL, **body}, says=says)


def test_request_address_checks_the_endpoint_name_and_does_not_keep_it(plugin, client, refused):
    """dockerd 29 adds com.docker.network.endpoint.name (moby network.go
    CreateEndpoint); Go sends it as a string, anything else is refused."""
    p = pool(client, "10.92.0.0/24")["PoolID"]
    name = "com.docker.network.endpoint.name"
    client.ok("IpamDriver.RequestAddress", {"PoolID": p, "Address": "", "Options": {name: "web-1", "x.y": "z"}})
    refused("IpamDriver.RequestAddress", {"PoolID": p, "Address": "", "Options": {name: 7}},
            says=f"Options.{name} 7 is not a string")
    assert "web-1" not in json.dumps(plugin.state(), default=str)
