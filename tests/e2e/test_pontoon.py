"""Every user path against a real dockerd, with Pontoon as a plain process
and as a managed plugin (the `pontoon` fixture runs each test in both modes).

Containers are few and each one carries many checks: starting a container
costs about a second here, and the suite must stay well under 15 minutes.
The daemon restart goes last in the file because it restarts everything.
"""

import ipaddress
import json

import pytest

from testbed.dockerd import Dockerd
from testbed.plugins import DEFAULT_POOLS, DEFAULT_POOLS_V6, inspect_state
from tests.e2e.helpers import (
    Footprint, eventually, firewall_dump, http_get, links,
    published_port, random_subnet_v4, random_subnet_v6,
)

pytestmark = pytest.mark.e2e

MTU = "com.docker.network.driver.mtu"


def _outbound_masquerade(rules, subnet):
    """Source NAT for traffic leaving the bridge (not the hairpin rule for
    DNATed traffic that published ports need either way)."""
    return [line for line in rules.splitlines()
            if f"-s {subnet}" in line and "! -o" in line and "MASQUERADE" in line]


def test_defaults_names_ports_and_cleanup(scene):
    net = scene.network()
    info = scene.net_inspect(net)
    (config,) = info["IPAM"]["Config"]
    subnet = ipaddress.ip_network(config["Subnet"])
    pool, size = DEFAULT_POOLS.rsplit(":", 1)
    assert subnet.subnet_of(ipaddress.ip_network(pool)) and subnet.prefixlen == int(size), \
        f"{subnet} is not from the configured default pools {DEFAULT_POOLS}"
    a = scene.container(net, "-p", "80")
    b = scene.container(net)
    addr_a = scene.address(a, net)
    assert ipaddress.ip_address(addr_a) in subnet

    # By address, and by name through Docker's embedded DNS.
    assert scene.pings(b, addr_a)
    assert scene.pings(b, a)
    assert scene.sh(b, f"wget -qO- http://{a}/").stdout == "pontoon-e2e\n"
    routes = scene.sh(a, "ip route").stdout
    assert f"default via {config['Gateway'].split('/')[0]}" in routes

    # A published port answers on the host, on loopback and outside address.
    host_ip, port = published_port(scene, a)
    assert host_ip == "0.0.0.0"
    assert http_get(scene.dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
    assert http_get(scene.dockerd, Dockerd.UPLINK_ADDRESS, port) == "pontoon-e2e\n"

    footprint = Footprint(scene, net)
    assert footprint.bridge in links(scene.dockerd)
    rules = firewall_dump(scene.dockerd)
    assert footprint.bridge in rules
    assert _outbound_masquerade(rules, subnet), f"no MASQUERADE for {subnet}"
    scene.rm_container(a)
    scene.rm_container(b)
    scene.rm_network(net)
    footprint.assert_gone()


def test_subnet_gateway_range_aux_static_ip_and_mac(scene):
    subnet = ipaddress.ip_network(random_subnet_v4())
    hosts = list(subnet.hosts())
    gateway, aux, static = hosts[-1], hosts[128], hosts[199]
    ip_range = ipaddress.ip_network(f"{hosts[127]}/25", strict=False)
    net = scene.network("--subnet", subnet, "--gateway", gateway, "--ip-range", ip_range,
                        "--aux-address", f"reserved={aux}")
    mac = "02:42:0a:0b:0c:0d"
    a = scene.container(net, "--ip", static, "--mac-address", mac)
    b = scene.container(net)

    # The container sees what was asked for, in its own namespace.
    link = scene.sh(a, "ip addr show eth0").stdout
    assert f"inet {static}/{subnet.prefixlen}" in link
    assert f"link/ether {mac}" in link
    assert f"default via {gateway}" in scene.sh(a, "ip route").stdout

    auto = ipaddress.ip_address(scene.address(b, net))
    assert auto in ip_range, f"{auto} is outside --ip-range {ip_range}"
    assert auto not in (aux, gateway, static)
    assert scene.pings(b, static)
    assert scene.pings(a, b)


def test_ipv6_with_and_without_subnet(scene):
    v6_subnet = random_subnet_v6()
    static6 = ipaddress.ip_network(v6_subnet)[0x10]
    with_subnet = scene.network("--ipv6", "--subnet", random_subnet_v4(),
                                "--subnet", v6_subnet)
    a = scene.container(with_subnet, "--ip6", static6)
    b = scene.container(with_subnet)
    assert f"inet6 {static6}/64" in scene.sh(a, "ip -6 addr show eth0").stdout
    assert scene.pings(b, static6)
    assert scene.pings(a, scene.address(b, with_subnet, v6=True))

    # Without an IPv6 subnet, Pontoon's IPAM picks one from its v6 pools.
    auto = scene.network("--ipv6")
    c = scene.container(auto)
    d = scene.container(auto)
    v6_configs = [cfg for cfg in scene.net_inspect(auto)["IPAM"]["Config"]
                  if ":" in cfg["Subnet"]]
    assert v6_configs, "no IPv6 subnet on an --ipv6 network without --subnet"
    auto_subnet = ipaddress.ip_network(v6_configs[0]["Subnet"])
    pool, size = DEFAULT_POOLS_V6.rsplit(":", 1)
    assert auto_subnet.subnet_of(ipaddress.ip_network(pool)) and auto_subnet.prefixlen == int(size)
    addr_d = scene.address(d, auto, v6=True)
    assert ipaddress.ip_address(addr_d) in auto_subnet
    assert scene.pings(c, addr_d)


def test_internal_network_stays_inside(scene, dockerd):
    net = scene.network("--internal")
    a = scene.container(net)
    b = scene.container(net)
    assert scene.pings(a, b)
    assert "default" not in scene.sh(a, "ip route").stdout
    # The host's address on dockerd's own bridge is local, yet unreachable
    # from an internal network.
    docker0 = dockerd.host("ip", "-4", "-o", "addr", "show", "docker0").stdout.split()[3]
    assert not scene.pings(a, docker0.split("/")[0])


def test_bridge_options(scene):
    bridge = f"pe2eb{scene.uid}"
    subnet = random_subnet_v4()
    net = scene.network(
        "--subnet", subnet,
        "-o", f"com.docker.network.bridge.name={bridge}",
        "-o", f"{MTU}=1400",
        "-o", "com.docker.network.bridge.enable_icc=false",
        "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
        "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "-o", "com.docker.network.container_iface_prefix=pe",
    )
    assert links(scene.dockerd)[bridge]["mtu"] == 1400
    a = scene.container(net, "-p", "80")
    b = scene.container(net)
    link = scene.sh(a, "ip link show pe0").stdout
    assert "mtu 1400" in link
    # enable_icc=false: containers on the bridge do not reach each other.
    assert not scene.pings(b, scene.address(a, net))
    # enable_ip_masquerade=false: no source NAT for the subnet.
    assert not _outbound_masquerade(firewall_dump(scene.dockerd), subnet)
    # host_binding_ipv4: `-p 80` binds the given address only.
    host_ip, port = published_port(scene, a)
    assert host_ip == "127.0.0.1"
    assert http_get(scene.dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
    assert http_get(scene.dockerd, Dockerd.UPLINK_ADDRESS, port, timeout=2) is None

    footprint = Footprint(scene, net)
    assert footprint.bridge == bridge
    scene.rm_container(a)
    scene.rm_container(b)
    scene.rm_network(net)
    footprint.assert_gone()


def test_inhibit_ipv4(scene):
    bridge = f"pe2ei{scene.uid}"
    net = scene.network("-o", f"com.docker.network.bridge.name={bridge}",
                        "-o", "com.docker.network.bridge.inhibit_ipv4=true")
    a = scene.container(net)
    b = scene.container(net)
    host_view = scene.dockerd.host("ip", "-j", "-4", "addr", "show", "dev", bridge).stdout
    assert not [addr for link in json.loads(host_view) for addr in link.get("addr_info", [])], \
        f"inhibit_ipv4 left an IPv4 address on {bridge}"
    assert scene.pings(a, b)


def test_pontoon_driver_with_default_ipam_and_bridge_with_pontoon_ipam(scene):
    net = scene.network(ipam="default")
    a = scene.container(net)
    b = scene.container(net)
    assert scene.pings(a, b)

    subnet = random_subnet_v4()
    bridged = scene.network("--subnet", subnet, driver="bridge")
    c = scene.container(bridged)
    d = scene.container(bridged)
    assert scene.pings(c, d)
    pools = [p["cidr"] for p in inspect_state(scene.pontoon.state_dir)["pools"]]
    assert subnet in pools, f"{subnet} was not allocated by Pontoon's IPAM: {pools}"


def test_connect_and_disconnect_running_container(scene):
    first = scene.network()
    second = scene.network()
    a = scene.container(first)
    b = scene.container(second)
    scene.docker("network", "connect", second, a, timeout=60)
    assert "inet " in scene.sh(a, "ip addr show eth1").stdout
    assert scene.pings(a, b)
    assert scene.pings(b, a)
    former = scene.address(a, second)
    scene.docker("network", "disconnect", second, a, timeout=60)
    assert scene.sh(a, "ip link show eth1", check=False).returncode != 0
    assert not scene.pings(b, former)
    assert scene.pings(a, scene.address(scene.container(first), first))
    # Only b's endpoint is left on the second network in Pontoon's store.
    second_id = scene.net_inspect(second)["Id"]
    b_endpoint = scene.dockerd.inspect("container", b)["NetworkSettings"]["Networks"][second]
    stored = [e["id"] for e in inspect_state(scene.pontoon.state_dir)["endpoints"]
              if e["network_id"] == second_id]
    assert stored == [b_endpoint["EndpointID"]]


@pytest.mark.xfail(strict=True, reason=(
    "no dockerd shows a remote driver's published ports: moby daemon/network.go, "
    "getEndpointPortMapInfo, type-asserts EndpointOperInfo's portmap to its own "
    "[]PortBinding; a remote driver's JSON decodes to []interface{}. "
    "`python -m plugin inspect ports` shows them instead"))
def test_docker_port_shows_remote_driver_mapping(scene):
    net = scene.network()
    a = scene.container(net, "-p", "80")
    # The mapping exists and works, and `inspect ports` (published_port)
    # shows it; only dockerd's views of it are empty.
    _, port = published_port(scene, a)
    assert http_get(scene.dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
    ps = scene.docker("ps", "--filter", f"name={a}", "--format", "{{.Ports}}", timeout=20)
    assert str(port) in ps.stdout
    assert scene.docker("port", a, "80/tcp", check=False, timeout=20).stdout.strip()


def test_isolated_from_docker_bridge(scene, dockerd):
    net = scene.network()
    a = scene.container(net)
    on_bridge = scene.container("bridge")
    assert not scene.pings(a, scene.address(on_bridge, "bridge"))
    assert not scene.pings(on_bridge, scene.address(a, net))


def test_bad_option_reaches_the_cli(scene, dockerd, pontoon):
    name = scene.name("bad")
    proc = dockerd.docker("network", "create", "-d", pontoon.driver, "--ipam-driver",
                          pontoon.driver, "-o", f"{MTU}=abc", name, check=False,
                          timeout=60)
    assert proc.returncode != 0
    assert MTU in proc.stderr and "abc" in proc.stderr, proc.stderr
    assert dockerd.docker("network", "inspect", name, check=False,
                          timeout=20).returncode != 0


def test_restart_pontoon_keeps_containers_connected(scene):
    net = scene.network()
    a = scene.container(net, "-p", "80")
    b = scene.container(net)
    scene.pontoon.restart()
    assert scene.pings(b, a)
    _, port = published_port(scene, a)
    assert http_get(scene.dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
    c = scene.container(net)
    assert scene.pings(c, a)
    assert scene.pings(a, c)


def test_restart_dockerd(scene, dockerd):
    net = scene.network()
    a = scene.container(net, "-p", "80")
    b = scene.container(net)
    dockerd.restart()
    # Without live-restore the daemon stopped the containers; start them.
    scene.docker("start", a, b, timeout=120)
    eventually(lambda: scene.pings(b, a), timeout=20, what=f"{b} to ping {a}")
    _, port = published_port(scene, a)
    assert http_get(scene.dockerd, "127.0.0.1", port) == "pontoon-e2e\n"
    c = scene.container(net)
    assert scene.pings(c, b)
