"""The NetworkDriver protocol with a real store and fake kernel parts."""
import ipaddress
import threading

import pytest

from datapath.hostports import Key
from testbed.fake_dockerd import new_id

NID = "ab" * 32
EID = "cd" * 32


def net_body(**over):
    body = {"NetworkID": NID, "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.1.0.0/24", "Gateway": "10.1.0.1/24"}],
            "IPv6Data": []}
    body.update(over)
    return body


def generic(**opts):
    return {"com.docker.network.generic": {f"com.docker.network.{k}": v for k, v in opts.items()}}


def test_default_network_gets_a_pt_bridge_with_its_gateway(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    spec = plugin.links.bridges["pt-" + NID[:12]]
    assert spec.addresses == ("10.1.0.1/24",) and spec.mtu is None
    rules = plugin.firewall.networks[NID]
    assert rules.subnets_v4 == ("10.1.0.0/24",) and rules.icc and rules.masquerade and not rules.internal


def test_bridge_options(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(Options=generic(**{
        "bridge.name": "br-x1", "driver.mtu": "1400", "bridge.enable_icc": "false",
        "bridge.enable_ip_masquerade": "0", "bridge.inhibit_ipv4": "true"})))
    spec = plugin.links.bridges["br-x1"]
    assert spec.mtu == 1400 and spec.addresses == ()
    rules = plugin.firewall.networks[NID]
    assert not rules.icc and not rules.masquerade


def test_ipv6_gateway_on_the_bridge(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={"com.docker.network.enable_ipv6": True},
        IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    assert plugin.links.bridges["pt-" + NID[:12]].addresses == ("10.1.0.1/24", "fd00:1::1/64")


@pytest.mark.parametrize("options, says", [
    (generic(**{"bridge.nmae": "x"}), 'unknown network option "com.docker.network.bridge.nmae"'),
    ({"com.docker.network.generic": {"foo": "bar"}}, 'unknown network option "foo"'),
    (generic(**{"driver.mtu": "abc"}), 'com.docker.network.driver.mtu="abc" is not an MTU'),
    (generic(**{"driver.mtu": "67"}), 'mtu="67"'),
    (generic(**{"driver.mtu": "1000000"}), 'mtu="1000000"'),
    (generic(**{"bridge.enable_icc": "maybe"}), 'enable_icc="maybe" is not a boolean'),
    (generic(**{"bridge.host_binding_ipv4": "::1"}), 'host_binding_ipv4="::1" is not an IPv4 address'),
    (generic(**{"bridge.name": "a" * 16}), "is not a valid interface name"),
    (generic(**{"bridge.name": "a/b"}), "is not a valid interface name"),
    # iptables would read these as options ("-i -j ACCEPT")
    (generic(**{"bridge.name": "-j"}), "not starting with -"),
    (generic(**{"container_iface_prefix": "-o"}), "not starting with -"),
    (generic(**{"bridge.host_binding_ipv4": "127.0.0.1/8"}), 'host_binding_ipv4="127.0.0.1/8"'),
    (generic(**{"container_iface_prefix": "x" * 14}), "container_iface_prefix"),
    ({"com.docker.network.generic": "x"}, "is not an object"),
    ({"com.docker.network.internal": "sure"}, "com.docker.network.internal"),
    ({"com.docker.network.enable_ipv6": True, **generic(**{"driver.mtu": "1200"})}, "IPv6 minimum"),
])
def test_bad_options_are_400_naming_them(refused, options, says):
    refused("NetworkDriver.CreateNetwork", net_body(Options=options), says=says)


@pytest.mark.parametrize("name", ["eth0", "lo", "docker0"])
def test_host_interfaces_are_refused_as_bridges(refused, name):
    refused("NetworkDriver.CreateNetwork", net_body(Options=generic(**{"bridge.name": name})), status=409, says=name)


@pytest.mark.parametrize("over, says", [
    ({"IPv4Data": [{"Pool": "10.1.0.0/33"}]}, "IPv4Data[0].Pool"),
    ({"IPv4Data": [{"Pool": "fd00::/64"}]}, "not an IPv4 value"),
    ({"IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.2.0.1/24"}]}, "not in pool"),
    ({"IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.1.0.1"}]}, "not an address in CIDR form"),
    ({"IPv4Data": [{"Pool": "10.1.0.0/24", "AuxAddresses": {"h": "10.9.0.1/24"}}]}, "AuxAddresses['h']"),
    ({"IPv6Data": [{"Pool": "10.1.0.0/24"}]}, "IPv6Data[0].Pool"),
    ({"NetworkID": ""}, "NetworkID"),
    ({"NetworkID": NID + "\n"}, "NetworkID"),
    ({"IPv6Data": [{"Pool": "fd00::%eth0/64"}]}, "zone"),
    ({"IPv6Data": [{"Pool": "fd00::/64", "Gateway": "fd00::1%x\n-A INPUT -j ACCEPT/64"}]}, "zone"),
    ({"IPv6Data": [{"Pool": "fd00::/64", "AuxAddresses": {"h": "fd00::9%lo"}}]}, "zone"),
])
def test_bad_ipam_data(refused, over, says):
    refused("NetworkDriver.CreateNetwork", net_body(**over), says=says)


def test_create_network_repeat_same_is_ok_different_is_409(client, refused):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateNetwork", net_body())
    refused("NetworkDriver.CreateNetwork", net_body(Options=generic(**{"driver.mtu": "1400"})), status=409,
            says="already exists with different settings")


def test_two_networks_cannot_share_a_bridge(client, refused):
    client.ok("NetworkDriver.CreateNetwork", net_body(Options=generic(**{"bridge.name": "brshared"})))
    refused("NetworkDriver.CreateNetwork", net_body(NetworkID=new_id(), Options=generic(**{"bridge.name": "brshared"})),
            status=409, says='bridge "brshared" already serves network')


def test_user_bridge_is_adopted_and_kept(plugin, client):
    plugin.links.user_bridges.add("bruser")
    client.ok("NetworkDriver.CreateNetwork", net_body(Options=generic(**{"bridge.name": "bruser"})))
    client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
    assert "bruser" in plugin.links.bridges


@pytest.mark.parametrize("bridge", ["", "bruser"])
def test_create_network_asks_the_kernel_outside_the_store_write_lock(plugin, client, bridge):
    """Every other call waits on that lock: a network's create must not hold
    it while it looks at links."""
    plugin.links.user_bridges.add("bruser")
    writable = []

    def watching(look):
        def wrapped(name):
            done = threading.Event()

            def write():
                with plugin.store.transaction():
                    done.set()

            threading.Thread(target=write, daemon=True).start()
            writable.append(done.wait(2))
            return look(name)
        return wrapped

    plugin.links.link_exists = watching(plugin.links.link_exists)
    plugin.links.survey_bridge = watching(plugin.links.survey_bridge)
    client.ok("NetworkDriver.CreateNetwork", net_body(Options=generic(**{"bridge.name": bridge}) if bridge else {}))
    assert writable and all(writable)


def test_a_tag_taken_while_a_create_looked_at_links_is_planned_again(plugin, client):
    other = NID[:12] + "ef" * 26  # shares the first tag of NID
    look = plugin.links.link_exists
    raced = []

    def create_other_meanwhile(name):
        if not raced:
            raced.append(name)
            client.ok("NetworkDriver.CreateNetwork", net_body(
                NetworkID=other, IPv4Data=[{"AddressSpace": "LocalDefault", "Pool": "10.2.0.0/24"}]))
        return look(name)

    plugin.links.link_exists = create_other_meanwhile
    client.ok("NetworkDriver.CreateNetwork", net_body())
    with plugin.store.snapshot() as tx:
        tags = {n.id: n.tag for n in tx.list_networks()}
    assert tags[other] == NID[:12] and tags[NID] != NID[:12]
    assert "pt-" + tags[NID] in plugin.links.bridges


@pytest.mark.parametrize("step", ["create_bridge", "add_network"])
def test_failed_create_network_leaves_nothing(plugin, client, step):
    before = plugin.state()
    plugin.firewall.fail.add(step)
    plugin.links.fail.add(step)
    status, reply = client.call("NetworkDriver.CreateNetwork", net_body())
    assert status == 500 and step in reply["Err"]
    assert plugin.state() == before


def endpoint_body(**iface):
    interface = {"Address": "10.1.0.2/24", "AddressIPv6": "", "MacAddress": ""}
    interface.update(iface)
    return {"NetworkID": NID, "EndpointID": EID, "Interface": interface,
            "Options": {"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": []}}


def test_endpoint_gets_a_derived_mac_only_in_the_reply_when_not_given(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    reply = client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    assert reply == {"Interface": {"MacAddress": "02:42:0a:01:00:02"}}
    veth = next(iter(plugin.links.veths.values()))
    assert veth.mac == "02:42:0a:01:00:02" and veth.bridge == "pt-" + NID[:12]
    # a retry of the same request answers the same
    assert client.ok("NetworkDriver.CreateEndpoint", endpoint_body()) == reply


def test_endpoint_with_given_mac_replies_nothing(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    assert client.ok("NetworkDriver.CreateEndpoint", endpoint_body(MacAddress="02:42:0A:63:00:C8")) == {}
    assert next(iter(plugin.links.veths.values())).mac == "02:42:0a:63:00:c8"


@pytest.mark.parametrize("iface, says", [
    ({"Address": "10.1.0.2"}, "Interface.Address"),
    ({"Address": "10.9.0.2/24"}, "not in the network's subnets"),
    ({"AddressIPv6": "10.1.0.3/24"}, "not an IPv6 value"),
    ({"MacAddress": "02:42:0a"}, "Interface.MacAddress"),
    ({"MacAddress": "01:00:5e:00:00:01"}, "multicast"),
    ({"MacAddress": "02:42:0a:01:00:02\n"}, "Interface.MacAddress"),
    ({"AddressIPv6": "fd00:1::2%eth0/64"}, "zone"),
])
def test_bad_endpoints(client, refused, iface, says):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    refused("NetworkDriver.CreateEndpoint", endpoint_body(**iface), says=says)


@pytest.mark.parametrize("address, says", [
    ("10.1.0.1/24", "gateway"),
    ("10.1.0.2/24", "already used by endpoint " + EID),
])
def test_an_address_in_use_is_409(client, refused, address, says):
    """Two endpoints could be given one address, and so one derived MAC,
    against the "no address held twice" invariant of tests/reliability."""
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    refused("NetworkDriver.CreateEndpoint", {**endpoint_body(Address=address), "EndpointID": "ef" * 32},
            status=409, says=says)


def test_endpoint_on_unknown_network_is_404(refused):
    refused("NetworkDriver.CreateEndpoint", endpoint_body(), status=404, says=NID)


def test_failed_veth_leaves_no_endpoint(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    before = plugin.state()
    plugin.links.fail.add("create_veth")
    status, _ = client.call("NetworkDriver.CreateEndpoint", endpoint_body())
    assert status == 500
    assert plugin.state() == before


def test_join_answers_interface_and_gateways(client):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={"com.docker.network.enable_ipv6": True, **generic(container_iface_prefix="ctr")},
        IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body(AddressIPv6="fd00:1::2/64"))
    reply = client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/x", "Options": {}})
    assert reply == {"InterfaceName": {"SrcName": "ptc" + EID[:12], "DstPrefix": "ctr"},
                     "Gateway": "10.1.0.1", "GatewayIPv6": "fd00:1::1"}


def test_join_names_the_gateway_of_the_endpoints_own_subnet(client):
    """With several subnets (moby's multi-subnet networks), the gateway of the
    subnet that holds the address: another one is off the container's link."""
    client.ok("NetworkDriver.CreateNetwork", net_body(IPv4Data=[
        {"AddressSpace": "LocalDefault", "Pool": "10.1.0.0/24", "Gateway": "10.1.0.100/24"},
        {"AddressSpace": "LocalDefault", "Pool": "10.2.0.0/24", "Gateway": "10.2.0.100/24"}]))
    for eid, address, gateway in (("e1" * 32, "10.2.0.50/24", "10.2.0.100"),
                                  ("e2" * 32, "10.1.0.50/24", "10.1.0.100")):
        client.ok("NetworkDriver.CreateEndpoint", {**endpoint_body(Address=address), "EndpointID": eid})
        reply = client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": eid, "SandboxKey": "/x"})
        assert reply["Gateway"] == gateway


def test_internal_network_join_has_no_gateway(client):
    client.ok("NetworkDriver.CreateNetwork", net_body(Options={"com.docker.network.internal": True}))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    reply = client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/x"})
    assert "Gateway" not in reply and "GatewayIPv6" not in reply


def test_join_recreates_a_missing_veth(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    plugin.links.veths.clear()
    client.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/x"})
    assert list(plugin.links.veths) == ["ptv" + EID[:12]]


def test_failed_delete_endpoint_keeps_it_and_a_retry_succeeds(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    before = plugin.state()
    plugin.links.fail.add("delete_veth")
    status, _ = client.call("NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID})
    assert status == 500
    assert plugin.state() == before
    plugin.links.fail.clear()
    client.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID})
    assert plugin.links.veths == {} and plugin.state()["store"]["endpoints"] == []


def test_unknown_ids_on_teardown_succeed_twice(client):
    ids = {"NetworkID": NID, "EndpointID": EID}
    for _ in range(2):
        for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
            client.ok(f"NetworkDriver.{method}", ids)
        client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})


def test_delete_network_removes_leftover_endpoints(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
    assert plugin.links.bridges == {} and plugin.links.veths == {} and plugin.firewall.networks == {}
    assert plugin.state()["store"]["endpoints"] == []


PORTMAP = "com.docker.network.portmap"


def program(client, portmap, eid=EID):
    return client.ok("NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": NID, "EndpointID": eid, "Options": {
            PORTMAP: portmap, "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}]}})


def port(port, host_port=0, end=0, proto=6, host_ip=""):
    return {"Proto": proto, "IP": "", "Port": port, "HostIP": host_ip, "HostPort": host_port, "HostPortEnd": end}


def test_published_ports_show_in_oper_info(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    program(client, [port(80, 8080, 8080), port(53, 5353, 5353, proto=17, host_ip="127.0.0.1"), port(90), port(91, 9000, 9001)])
    value = client.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID})["Value"]
    assert value[PORTMAP] == [
        {"Proto": 6, "IP": "10.1.0.2", "Port": 80, "HostIP": "0.0.0.0", "HostPort": 8080, "HostPortEnd": 8080},
        {"Proto": 17, "IP": "10.1.0.2", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353, "HostPortEnd": 5353},
        {"Proto": 6, "IP": "10.1.0.2", "Port": 90, "HostIP": "0.0.0.0", "HostPort": 49153, "HostPortEnd": 49153},
        {"Proto": 6, "IP": "10.1.0.2", "Port": 91, "HostIP": "0.0.0.0", "HostPort": 9000, "HostPortEnd": 9000},
    ]
    assert value["com.docker.network.endpoint.exposedports"] == [{"Proto": 6, "Port": 80}]
    assert len(plugin.firewall.ports[EID].bindings) == 4
    client.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": NID, "EndpointID": EID})
    assert plugin.firewall.ports == {}
    assert client.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID})["Value"][PORTMAP] == []


def test_host_port_held_by_another_endpoint_is_409_and_ranges_skip_it(client, refused):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    other = "ef" * 32
    client.ok("NetworkDriver.CreateEndpoint", {**endpoint_body(Address="10.1.0.3/24"), "EndpointID": other})
    program(client, [port(80, 8080, 8080)])
    refused("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": other, "Options": {
        PORTMAP: [port(80, 8080, 8080, host_ip="127.0.0.1")]}}, status=409, says="host port 8080/tcp")
    program(client, [port(80, 8080, 8081), port(81, 8080, 8081, proto=17)], eid=other)
    value = client.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": other})["Value"]
    assert [p["HostPort"] for p in value[PORTMAP]] == [8081, 8080]


def test_a_port_a_host_process_holds_is_409_and_ranges_skip_it(plugin, client, refused):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    plugin.host_ports.busy = {Key("tcp", "0.0.0.0", 22), Key("udp", "0.0.0.0", 5000)}
    refused("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {
        PORTMAP: [port(53, 53, proto=17), port(80, 22)]}}, status=409,
        says="host port 22/tcp on 0.0.0.0 is in use on the host")
    program(client, [port(80, 5000, 5001, proto=17)])
    assert plugin.host_ports.held == {Key("udp", "0.0.0.0", 5001)}


def test_held_ports_follow_the_stored_ones(plugin, client):
    """Claimed by Program, let go by Revoke, DeleteEndpoint and DeleteNetwork."""
    ids = {"NetworkID": NID, "EndpointID": EID}
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    program(client, [port(80, 8080), port(81)])
    assert plugin.host_ports.held == {Key("tcp", "0.0.0.0", 8080), Key("tcp", "0.0.0.0", 49153)}
    program(client, [port(80, 8090)])  # a new portmap replaces the old one
    assert plugin.host_ports.held == {Key("tcp", "0.0.0.0", 8090)}
    client.ok("NetworkDriver.RevokeExternalConnectivity", ids)
    assert plugin.host_ports.held == set()
    program(client, [port(80, 8080)])
    client.ok("NetworkDriver.DeleteEndpoint", ids)
    assert plugin.host_ports.held == set()
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    program(client, [port(80, 8080)])
    client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
    assert plugin.host_ports.held == set()


@pytest.mark.parametrize("entry, says", [
    (port(80, proto=7), "Proto 7"),
    (port(0), "Port 0"),
    (port(80, 70000), "HostPort 70000"),
    (port(80, 9001, 9000), "HostPortEnd 9000 is below HostPort 9001"),
    (port(80, host_ip="nope"), "HostIP"),
    (port(80, host_ip="127.0.0.1/32"), "HostIP \"127.0.0.1/32\" has a prefix length"),
    (port(80, host_ip="fe80::1%eth0"), "zone"),
    (port(65536), "Port 65536"),
    (port(80, 8080, 70000), "HostPortEnd 70000"),
    (port(80, -1), "HostPort -1"),
    (port(80, 9001, 1), "HostPortEnd 1 is below HostPort 9001"),
])
def test_bad_portmaps(client, refused, entry, says):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    refused("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {PORTMAP: [entry]}},
            says=says)


def test_a_host_address_of_a_family_the_endpoint_lacks_is_left_to_the_other_gateway(plugin, client):
    """dockerd 29 may make another network's endpoint the IPv6 gateway and
    still sends this one the whole portmap (see docs/docker-29.md): the
    "::1" entry is skipped, not a 400 that fails the container."""
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    client.ok("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID, "Options": {
        PORTMAP: [port(80, 8080, host_ip="::1"), port(81, 8081, host_ip="127.0.0.1")]}})
    (binding,) = plugin.firewall.ports[EID].bindings
    assert (binding.host_ip, binding.host_port) == ("127.0.0.1", 8081)


def test_failed_port_rules_leave_nothing(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    before = plugin.state()
    plugin.firewall.fail.add("add_ports")
    status, _ = client.call("NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": NID, "EndpointID": EID, "Options": {PORTMAP: [port(80, 8080)]}})
    assert status == 500
    assert plugin.state() == before


def test_no_op_methods(client):
    for method in ("DiscoverNew", "DiscoverDelete"):
        assert client.ok(f"NetworkDriver.{method}", {"DiscoveryType": 1, "DiscoveryData": {}}) == {}
    assert client.ok("NetworkDriver.AllocateNetwork", {"NetworkID": NID}) == {}
    assert client.ok("NetworkDriver.FreeNetwork", {"NetworkID": NID}) == {}


def test_reconcile_restores_kernel_from_store(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body())
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body())
    plugin.links.bridges.clear()
    plugin.links.veths.clear()
    plugin.links.bridges["pt-orphan00000"] = object()
    changes = plugin.network.reconcile()
    assert sorted(changes) == sorted([f"recreated bridge pt-{NID[:12]}", f"recreated veth ptv{EID[:12]}",
                                      "deleted orphan pt-orphan00000"])
    assert set(plugin.links.bridges) == {"pt-" + NID[:12]}


@pytest.mark.parametrize("first, second", [
    ("127.0.0.1", "::ffff:127.0.0.1"), ("::1", "0:0::1"), ("::1", "0000:0000:0000:0000:0000:0000:0000:0001"),
    ("fd00:1::9", "FD00:1:0::9"),
])
def test_a_host_address_spelled_two_ways_is_one_address(plugin, client, refused, first, second):
    """Stored, compared and written in canonical form: the second spelling
    cannot publish the port the first holds."""
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={"com.docker.network.enable_ipv6": True}, IPv6Data=[{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body(AddressIPv6="fd00:1::2/64"))
    other = "ef" * 32
    client.ok("NetworkDriver.CreateEndpoint", {**endpoint_body(Address="10.1.0.3/24", AddressIPv6="fd00:1::3/64"),
                                               "EndpointID": other})
    program(client, [port(80, 8080, 8080, host_ip=first)])
    refused("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": other, "Options": {
        PORTMAP: [port(80, 8080, 8080, host_ip=second)]}}, status=409, says="host port 8080/tcp")
    value = client.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID})["Value"]
    canonical = str(ipaddress.ip_address(first))
    assert [p["HostIP"] for p in value[PORTMAP]] == [canonical]
    assert [b.host_ip for b in plugin.firewall.ports[EID].bindings] == [canonical]


def test_addresses_are_stored_canonical(plugin, client):
    client.ok("NetworkDriver.CreateNetwork", net_body(
        Options={"com.docker.network.enable_ipv6": True},
        IPv4Data=[{"Pool": "10.1.0.0/24", "Gateway": "10.1.0.1/24", "AuxAddresses": {"h": "10.1.0.9/24"}}],
        IPv6Data=[{"Pool": "FD00:1:0::/64", "Gateway": "fd00:1:0:0::1/64", "AuxAddresses": {"h": "FD00:1::9"}}]))
    client.ok("NetworkDriver.CreateEndpoint", endpoint_body(AddressIPv6="FD00:1:0::2/64", MacAddress="02:AA:0A:01:00:02"))
    store = plugin.state()["store"]
    [net], [ep] = store["networks"], store["endpoints"]
    assert net["ipv6"] == [{"pool": "fd00:1::/64", "gateway": "fd00:1::1/64", "aux": {"h": "fd00:1::9"}}]
    assert net["ipv4"][0]["aux"] == {"h": "10.1.0.9"}
    assert (ep["address_v6"], ep["mac"]) == ("fd00:1::2/64", "02:aa:0a:01:00:02")
