"""What newer dockerds send. IPv6-only networks (``--ipv4=false``) and
GwAllocCheck come with dockerd 28: on an older one those cases are expected
failures naming the version, never passes (its CLI and daemon have no such
flag or call)."""

import ipaddress
import json

import pytest

from testbed.dockerd import Dockerd
from testbed.plugins import inspect_state
from tests.e2e.helpers import http_get, random_subnet_v4, random_subnet_v6

pytestmark = pytest.mark.e2e

NEEDS = (28, 0)


def needs_dockerd(scene, version=NEEDS):
    server = scene.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    found = tuple(int(part) for part in server.split(".")[:2])
    if found < version:
        pytest.xfail(f"dockerd {server} has no --ipv4=false nor GwAllocCheck (dockerd >= 28.0)")


def bridge_addresses(scene, network, family):
    info = scene.net_inspect(network)
    (stored,) = [n for n in inspect_state(scene.pontoon.state_dir)["networks"] if n["id"] == info["Id"]]
    out = scene.dockerd.host("ip", "-j", family, "addr", "show", "dev", stored["bridge"]).stdout
    return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])
            if a.get("scope") == "global"]


def test_ipv6_only_network_with_an_automatic_pool(scene):
    needs_dockerd(scene)
    net = scene.network("--ipv4=false", "--ipv6")
    info = scene.net_inspect(net)
    (config,) = info["IPAM"]["Config"]
    subnet = ipaddress.ip_network(config["Subnet"])
    assert subnet.version == 6 and not info.get("EnableIPv4", False)
    a = scene.container(net)
    b = scene.container(net)
    assert scene.address(a, net) == ""
    addr_a = scene.address(a, net, v6=True)
    assert ipaddress.ip_address(addr_a) in subnet
    assert "inet " not in scene.sh(a, "ip -4 addr show eth0").stdout
    assert f"default via {config['Gateway']}" in scene.sh(a, "ip -6 route").stdout
    assert scene.sh(b, f"wget -qO- http://[{addr_a}]/").stdout == "pontoon-e2e\n"
    assert bridge_addresses(scene, net, "-4") == []
    assert bridge_addresses(scene, net, "-6") == [config["Gateway"]]


def test_gw_alloc_check_spares_the_gateway_of_an_isolated_network(scene):
    needs_dockerd(scene)
    net = scene.network("--internal", "-o", "com.docker.network.bridge.gateway_mode_ipv4=isolated")
    (config,) = scene.net_inspect(net)["IPAM"]["Config"]
    assert not config.get("Gateway"), f"dockerd allocated gateway {config.get('Gateway')} all the same"
    a = scene.container(net)
    b = scene.container(net)
    assert scene.pings(a, b)
    assert bridge_addresses(scene, net, "-4") == []
    # The host has no address on the bridge, hence no way to the containers.
    ping = scene.dockerd.host("ping", "-c1", "-W1", scene.address(a, net), check=False)
    assert ping.returncode != 0


def test_one_host_port_on_both_families(scene):
    """``0.0.0.0`` and ``::`` are separate host addresses: the same host port
    is published on each, to the container's address of that family."""
    net = scene.network("--ipv6", "--subnet", random_subnet_v4(), "--subnet", random_subnet_v6())
    # A fixed host port: dockerd has a network namespace of its own.
    a = scene.container(net, "-p", "0.0.0.0:18080:80", "-p", "[::]:18080:80")
    endpoint_id = scene.dockerd.inspect("container", a)["NetworkSettings"]["Networks"][net]["EndpointID"]
    (endpoint,) = [e for e in inspect_state(scene.pontoon.state_dir)["endpoints"] if e["id"] == endpoint_id]
    assert sorted((p["host_ip"], p["host_port"]) for p in endpoint["ports"]) == [("0.0.0.0", 18080), ("::", 18080)]
    assert http_get(scene.dockerd, Dockerd.UPLINK_ADDRESS, 18080) == "pontoon-e2e\n"
