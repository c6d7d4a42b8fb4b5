"""Whole container lifecycles through the fake dockerd, and `inspect`."""
import json
import subprocess
import sys

from plugin import inspect


def test_network_with_every_ipam_option(plugin, dockerd):
    net = dockerd.create_network(subnet="10.99.0.0/24", ip_range="10.99.0.128/25", gateway="10.99.0.1",
                                 aux={"host1": "10.99.0.5"}, ipv6=True, subnet6="fd00:99::/64",
                                 options={"com.docker.network.bridge.name": "brx", "com.docker.network.driver.mtu": "1400"})
    c1 = dockerd.run(net, ip="10.99.0.200", ip6="fd00:99::200", mac="02:42:0a:63:00:c8")
    c2 = dockerd.run(net)
    assert c2.address == "10.99.0.128/24" and c2.address_v6 == "fd00:99::2/64"
    assert c1.join["Gateway"] == "10.99.0.1" and c1.join["GatewayIPv6"] == "fd00:99::1"
    info = dockerd.oper_info(c1)
    assert info["bridge"] == "brx" and info["mac"] == "02:42:0a:63:00:c8"
    assert plugin.links.bridges["brx"].addresses == ("10.99.0.1/24", "fd00:99::1/64")
    for c in (c1, c2):
        dockerd.stop(c)
    dockerd.remove_network(net)
    state = plugin.state()
    assert all(not v for v in state["store"].values())
    assert not state["bridges"] and not state["veths"] and not state["rules"] and not state["ports"]


def test_inspect_tables_and_json(plugin, dockerd, tmp_path):
    net = dockerd.create_network(subnet="10.11.0.0/24")
    dockerd.run(net, ports=[("tcp", 80, "", 8080, 8080)])
    text = inspect.render(inspect.collect(plugin.store))
    assert "NETWORKS (1)" in text and "pt-" + net.id[:12] in text
    assert "*:8080->80/tcp" not in text and "0.0.0.0:8080->80/tcp" in text
    assert "10.11.0.1" in text and "gateway" in text
    out = subprocess.run([sys.executable, "-m", "plugin", "inspect", "--state-dir", str(plugin.store.state_dir), "--json"],
                         capture_output=True, text=True, check=True).stdout
    state = json.loads(out)
    assert [a["address"] for a in state["addresses"]] == ["10.11.0.1", "10.11.0.2"]
    assert state["endpoints"][0]["ports"][0]["host_port"] == 8080


def test_inspect_ports_view(plugin, dockerd):
    """`inspect ports`: each published port beside its endpoint, network and
    container address, in text and JSON (dockerd cannot show them)."""
    net = dockerd.create_network(subnet="10.12.0.0/24")
    dockerd.run(net, ports=[("tcp", 80, "", 8080, 8080), ("udp", 53, "127.0.0.1", 5353, 5353)])
    dockerd.run(net)
    args = [sys.executable, "-m", "plugin", "inspect", "ports", "--state-dir", str(plugin.store.state_dir)]
    rows = json.loads(subprocess.run([*args, "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    (endpoint,) = [e for e in inspect.collect(plugin.store)["endpoints"] if e["ports"]]
    assert rows == [
        {"endpoint_id": endpoint["id"], "network_id": net.id, "proto": "tcp", "host_ip": "0.0.0.0",
         "host_port": 8080, "container_ip": "10.12.0.2", "container_port": 80},
        {"endpoint_id": endpoint["id"], "network_id": net.id, "proto": "udp", "host_ip": "127.0.0.1",
         "host_port": 5353, "container_ip": "10.12.0.2", "container_port": 53},
    ]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    assert text[0] == "PUBLISHED PORTS (2)"
    assert text[2].split() == [endpoint["id"][:12], net.id[:12], "10.12.0.2:80", "0.0.0.0:8080", "tcp"]
    assert text[3].split() == [endpoint["id"][:12], net.id[:12], "10.12.0.2:53", "127.0.0.1:5353", "udp"]


def test_inspect_without_state_says_so(tmp_path):
    run = subprocess.run([sys.executable, "-m", "plugin", "inspect", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "no state in" in run.stderr
