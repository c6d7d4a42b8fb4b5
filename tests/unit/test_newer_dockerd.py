"""What dockerd 27, 28 and 29 add to the NetworkDriver protocol, and Docker
28's bridge options, through the Flask test client (moby
daemon/libnetwork/drivers/remote, network.go, drivers/bridge)."""
import ipaddress

import pytest

from .test_network import EID, NID, PORTMAP, endpoint_body, generic, net_body, port
from .test_stored import get_raw, put_raw, set_version

V6ONLY = {"com.docker.network.enable_ipv4": False, "com.docker.network.enable_ipv6": True}
BRIDGE = "pt-" + NID[:12]


def v6_only(client, **generic_options):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={**V6ONLY, **generic(**generic_options)}, IPv4Data=None,
        IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body(Address="", AddressIPv6="fd00:1::2/64"))


def test_ipv6_only_network_has_no_ipv4_anywhere(plugin, client):
    v6_only(client)
    assert plugin.links.bridges[BRIDGE].addresses == ("fd00:1::1/64",)
    rules = plugin.firewall.networks[NID]
    assert rules.subnets_v4 == () and not rules.ipv4
    reply = client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/x"})
    assert reply["GatewayIPv6"] == "fd00:1::1" and "Gateway" not in reply
    # "-p 8080:80" arrives with no host address: "::" here. An all-address
    # IPv4 entry ("-p 0.0.0.0:8080:80") has nothing to go to, and is skipped.
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {
        PORTMAP: [port(80, 8080), port(80, 8080, host_ip="0.0.0.0")]}})
    (binding,) = plugin.firewall.ports[EID].bindings
    assert (binding.host_ip, binding.container_ip, binding.host_port) == ("::", "fd00:1::2", 8080)


def test_ipv6_only_with_an_empty_ipv4_data_list(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options=V6ONLY, IPv4Data=[], IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    assert plugin.links.bridges[BRIDGE].addresses == ("fd00:1::1/64",)


def test_ipv6_only_with_an_automatic_pool(plugin, dockerd):
    net = dockerd.create_network(ipv4=False, ipv6=True)
    pool = ipaddress.ip_network(net.pool(True)["Pool"])
    assert pool.version == 6 and pool.prefixlen == 64 and net.pool(False) is None
    ctr = dockerd.run(net, ports=[("tcp", 80, "", 8080, 8080)])
    assert ctr.address == "" and ipaddress.ip_interface(ctr.address_v6).ip in pool
    assert set(ctr.join) == {"InterfaceName", "GatewayIPv6"}
    assert [p["IP"] for p in dockerd.oper_info(ctr)[PORTMAP]] == [str(ipaddress.ip_interface(ctr.address_v6).ip)]
    dockerd.cleanup()
    assert plugin.links.bridges == {} and plugin.firewall.networks == {}


@pytest.mark.parametrize("options, says", [
    ({"com.docker.network.enable_ipv4": False}, "leave the network no address family"),
    ({"com.docker.network.enable_ipv4": "nope"}, 'enable_ipv4="nope" is not a boolean'),
])
def test_bad_address_families(refused, options, says):
    refused("NetworkDriver.CreateNetwork", net_body(Options=options, IPv4Data=None), says=says)


def test_ipv4_data_on_a_network_without_ipv4_is_400(refused):
    refused("NetworkDriver.CreateNetwork", net_body(Options=V6ONLY), says="enable_ipv4 is false")


@pytest.mark.parametrize("options, skip4, skip6", [
    ({}, False, False),
    ({"com.docker.network.internal": True}, False, False),
    # inhibit_ipv4 alone: the containers' default route may still use the gateway
    (generic(**{"bridge.inhibit_ipv4": "true"}), False, False),
    ({"com.docker.network.internal": True, **generic(**{"bridge.inhibit_ipv4": "true"})}, True, False),
    ({"com.docker.network.internal": True, **generic(**{"bridge.gateway_mode_ipv4": "isolated"})}, True, False),
    ({"com.docker.network.internal": True, **generic(**{"bridge.gateway_mode_ipv6": "isolated"})}, False, True),
    (None, False, False),
])
def test_gw_alloc_check_skips_only_gateways_pontoon_never_uses(client, options, skip4, skip6):
    assert client.ok("NetworkDriver.GetCapabilities")["GwAllocChecker"] is True
    reply = client.ok("NetworkDriver.GwAllocCheck", {"Options": options})
    assert reply == {"SkipIPv4": skip4, "SkipIPv6": skip6}


def test_gw_alloc_check_refuses_what_create_network_would(refused):
    refused("NetworkDriver.GwAllocCheck", {"Options": generic(**{"bridge.gateway_mode_ipv4": "bridged"})},
            says='gateway_mode_ipv4="bridged" is not a gateway mode')


def test_isolated_network_without_gateways(plugin, dockerd):
    net = dockerd.create_network(ipv4=False, ipv6=True, internal=True, options={
        "com.docker.network.bridge.gateway_mode_ipv6": "isolated"})
    assert net.pool(True)["Gateway"] == ""  # dockerd skipped it, as GwAllocCheck said
    ctr = dockerd.run(net)
    assert plugin.links.bridges[f"pt-{net.id[:12]}"].addresses == ()
    assert set(ctr.join) == {"InterfaceName"}
    assert plugin.firewall.networks[net.id].gateway_mode_v6 == "isolated"


def test_isolated_keeps_a_gateway_dockerd_allocated_off_the_bridge(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(Options={
        "com.docker.network.internal": True, **generic(**{"bridge.gateway_mode_ipv4": "isolated"})}))
    assert plugin.links.bridges[BRIDGE].addresses == ()


def test_gateway_modes_trusted_interfaces_and_host_addresses_reach_the_rules(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(Options={
        "com.docker.network.enable_ipv6": True, **generic(**{
            "bridge.gateway_mode_ipv4": "routed", "bridge.gateway_mode_ipv6": "nat-unprotected",
            "bridge.trusted_host_interfaces": "eth1::vpn0", "host_ipv4": "192.0.2.1", "host_ipv6": "2001:db8::1"})},
        IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    rules = plugin.firewall.networks[NID]
    assert (rules.gateway_mode_v4, rules.gateway_mode_v6) == ("routed", "nat-unprotected")
    assert rules.trusted_interfaces == ("eth1", "vpn0")
    assert (rules.host_ipv4, rules.host_ipv6) == ("192.0.2.1", "2001:db8::1")
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {
        PORTMAP: [port(80, 8080)]}})
    assert plugin.firewall.ports[EID].routed == ("ipv4",)


def test_networks_stored_before_gateway_modes_are_nat(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    network = get_raw(plugin.store, "networks", NID)  # as an older Pontoon stored it
    for key in ("ipv4", "gateway_mode_ipv4", "gateway_mode_ipv6", "trusted_interfaces", "host_ipv4", "host_ipv6"):
        del network["options"][key]
    put_raw(plugin.store, "networks", network)
    set_version(plugin.store, 2)
    plugin.store.initialise()  # the next start's migration
    plugin.firewall.networks.clear()
    plugin.network.reconcile()
    rules = plugin.firewall.networks[NID]
    assert (rules.gateway_mode_v4, rules.gateway_mode_v6, rules.ipv4) == ("nat", "nat", True)


@pytest.mark.parametrize("options, says", [
    (generic(**{"bridge.gateway_mode_ipv4": "isolated"}), "needs an --internal network"),
    (generic(**{"bridge.gateway_mode_ipv6": "NAT"}), 'gateway_mode_ipv6="NAT" is not a gateway mode'),
    (generic(**{"bridge.trusted_host_interfaces": "eth0:bad/name"}), '"bad/name" is not a valid interface name'),
    (generic(**{"bridge.name": "br7", "bridge.trusted_host_interfaces": "br7"}), "names the network's own bridge"),
    (generic(host_ipv4="2001:db8::1"), 'host_ipv4="2001:db8::1" is not an IPv4 address'),
    (generic(host_ipv6="192.0.2.1"), 'host_ipv6="192.0.2.1" is not an IPv6 address'),
])
def test_bad_bridge_options_are_400(refused, options, says):
    refused("NetworkDriver.CreateNetwork", net_body(Options=options), says=says)


def test_newer_endpoint_options_are_accepted(client):
    """sysctls (27.0), ifname (28.0): dockerd applies them itself; the
    remote Join reply has no field to name the interface."""
    client.ok("NetworkDriver.CreateNetwork", net_body())
    options = {"com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.log_martians=1",
               "com.docker.network.endpoint.ifname": "web0", PORTMAP: []}
    client.ok("NetworkDriver.CreateEndpoint", {**endpoint_body(), "Options": options})
    reply = client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/x",
                                              "Options": options})
    assert reply["InterfaceName"]["DstPrefix"] == "eth"
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {
        **options, "com.docker.network.driver.private.no_proxy_6to4": True}})


def test_request_address_takes_the_endpoint_name(client):
    pool = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.3.0.0/24", "V6": False})
    reply = client.ok("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "",
                                                   "Options": {"com.docker.network.endpoint.name": "web"}})
    assert reply["Address"] == "10.3.0.1/24"


def dual_stack_endpoint(client):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={"com.docker.network.enable_ipv6": True},
        IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body(AddressIPv6="fd00:1::2/64"))


def program_as_29(client, ipv6_elsewhere: bool):
    """dockerd 29 sends the sandbox's portmap (one entry per host address
    family), flagged when another endpoint is the IPv6 gateway."""
    options = {PORTMAP: [port(80, 8080, host_ip="0.0.0.0"), port(80, 8080, host_ip="::")]}
    if ipv6_elsewhere:
        options["com.docker.network.driver.private.no_proxy_6to4"] = True
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": options})


def families(plugin) -> list[str]:
    return sorted(ipaddress.ip_address(b.host_ip).version for b in plugin.firewall.ports[EID].bindings)


def test_each_program_call_publishes_its_own_families(plugin, client):
    dual_stack_endpoint(client)
    program_as_29(client, ipv6_elsewhere=False)
    assert families(plugin) == [4, 6]
    # Another endpoint became the IPv6 gateway: this one keeps IPv4 only.
    program_as_29(client, ipv6_elsewhere=True)
    assert families(plugin) == [4]
    value = client.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID})["Value"]
    assert [p["HostIP"] for p in value[PORTMAP]] == ["0.0.0.0"]
    # ... and the IPv6 role back.
    program_as_29(client, ipv6_elsewhere=False)
    assert families(plugin) == [4, 6]
    client.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": NID, "EndpointID": EID})
    assert plugin.firewall.ports == {}


def test_an_ipv4_gateway_leaves_ipv6_host_ports_free_for_the_ipv6_one(plugin, client):
    dual_stack_endpoint(client)
    program_as_29(client, ipv6_elsewhere=True)
    other = "ef" * 32
    client.ok("NetworkDriver.CreateEndpoint", {**endpoint_body(Address="", AddressIPv6="fd00:1::3/64"),
                                                "EndpointID": other})
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": other, "Options": {
        PORTMAP: [port(80, 8080, host_ip="0.0.0.0"), port(80, 8080, host_ip="::")]}})
    (binding,) = plugin.firewall.ports[other].bindings
    assert (binding.host_ip, binding.container_ip) == ("::", "fd00:1::3")
