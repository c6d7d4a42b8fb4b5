"""Which cluster networks get a host address, and how the store's records
of them are read back (cluster.hostaddr; the claim and the kernel part run
against a real etcd and real namespaces in tests/multihost)."""
from __future__ import annotations

from dataclasses import replace

from cluster import hostaddr
from network_driver.network import bridge_spec
from plugin import inspect
from spec.stored import ClusterPart, IpamData, NetworkOptions, StoredNetwork


def on_bridge(network: StoredNetwork) -> tuple[str, ...]:
    return bridge_spec(network).addresses


def network(ipv4=("10.90.0.0/24", "10.90.0.1/24"), ipv6=(), host_address=None, **options) -> StoredNetwork:
    return StoredNetwork("n" * 64, NetworkOptions(**{"mtu": 1450, "inhibit_ipv4": False, **options}),
                         _pool(ipv4), _pool(ipv6), "{}", bridge="ptb-n",
                         cluster=ClusterPart("LocalDefault:10.90.0.0_24", 4100, host_address))


def _pool(data: tuple) -> tuple[IpamData, ...]:
    return (IpamData(data[0], data[1]),) if data else ()


def test_a_network_whose_bridge_carries_its_ipv4_gateway_gets_one():
    assert hostaddr.target(network(), on_bridge) == ("LocalDefault:10.90.0.0_24", "10.90.0.1/24")


def test_none_where_the_host_is_not_meant_to_reach_the_containers():
    assert hostaddr.target(network(inhibit_ipv4=True), on_bridge) is None
    assert hostaddr.target(network(gateway_mode_ipv4="isolated"), on_bridge) is None


def test_none_on_an_ipv6_only_network():
    assert hostaddr.target(network(ipv4=(), ipv6=("fd00:90::/64", "fd00:90::1/64")), on_bridge) is None


def test_the_stored_host_addresses_are_kept_at_rejoin():
    held = network(host_address="10.90.0.254/24")
    single = replace(network(), cluster=None)
    assert hostaddr.held_pairs([held, network(), single]) == {("LocalDefault:10.90.0.0_24", 0x0A5A00FE)}


def test_inspect_shows_the_host_address_of_each_cluster_network():
    held = network(host_address="10.90.0.254/24")
    state = {"networks": [], "endpoints": [], "pools": [], "addresses": []}
    assert "HOST ADDRESSES" not in inspect.render(state)  # single host: no section
    held = replace(held, options=replace(held.options, internal=False, ipv6=False))
    text = inspect.render({**state, "networks": [held.to_json()]})
    assert "HOST ADDRESSES" in text and "10.90.0.254/24" in text
