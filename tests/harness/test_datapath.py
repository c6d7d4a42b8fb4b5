"""The fake dockerd over the real socket, with real namespaces, bridges and veths.

The plugin's firewall rules are in place as in production, so these pass
whatever FORWARD policy the host has (dockerd sets DROP).
"""
from __future__ import annotations

import subprocess

from plugin.wiring import chain_prefix

from testbed.sandbox import ip


def links() -> set[str]:
    out = ip("-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_two_sandboxes_ping_each_other_and_the_gateway_v4_and_v6(dockerd):
    net = dockerd.create_network(subnet="10.131.0.0/24", ipv6=True, subnet6="fd00:131::/64")
    a, b = dockerd.run(net), dockerd.run(net)
    gw4, gw6 = a.join["Gateway"], a.join["GatewayIPv6"]
    assert a.sandbox.ping(b.address) and b.sandbox.ping(a.address)
    assert a.sandbox.ping(b.address_v6) and b.sandbox.ping(a.address_v6)
    assert a.sandbox.ping(gw4) and a.sandbox.ping(gw6)
    assert f"link/ether {a.mac}" in a.sandbox.link()


def test_mtu_is_the_one_asked_for(dockerd):
    net = dockerd.create_network(subnet="10.132.0.0/24", options={"com.docker.network.driver.mtu": "1400"})
    c = dockerd.run(net)
    assert " mtu 1400 " in c.sandbox.link()
    bridge = dockerd.oper_info(c)["bridge"]
    assert " mtu 1400 " in ip("link", "show", bridge).stdout
    assert c.sandbox.ping(c.join["Gateway"])


def test_fifty_sandboxes_reach_the_gateway(dockerd):
    net = dockerd.create_network(subnet="10.133.0.0/24")
    ctrs = [dockerd.run(net) for _ in range(50)]
    assert len({c.address for c in ctrs}) == 50
    unreachable = [c.address for c in ctrs if not c.sandbox.ping(c.join["Gateway"])]
    assert unreachable == []
    for c in ctrs:
        dockerd.stop(c)


def test_teardown_leaves_ip_link_as_before(dockerd, server):
    before = links()
    net = dockerd.create_network(subnet="10.134.0.0/24", options={"com.docker.network.bridge.name": "ptbr" + server.name[-6:]})
    ctrs = [dockerd.run(net) for _ in range(3)]
    infos = [dockerd.oper_info(c) for c in ctrs]
    ours = {infos[0]["bridge"]} | {i["host_veth"] for i in infos}
    assert ours <= links() - before
    for c in ctrs:
        dockerd.stop(c)
    dockerd.remove_network(net)
    # Other test runs may add links of their own meanwhile: compare ours.
    assert not ours & links()
    assert not {c.join["InterfaceName"]["SrcName"] for c in ctrs} & links()
    # and with its last network gone, the instance keeps no chain or jump
    prefix = chain_prefix(server.name)
    for tool in ("iptables-save", "ip6tables-save"):
        assert prefix not in subprocess.run([tool], capture_output=True, text=True, check=True).stdout


def test_reconcile_at_start_repairs_the_kernel(dockerd, server):
    net = dockerd.create_network(subnet="10.135.0.0/24")
    bridge = "pt-" + net.id[:12]
    ip("link", "del", bridge)
    orphan, orphan_peer = "ptv" + "0" * 6 + server.name[-6:], "ptc" + "0" * 6 + server.name[-6:]
    ip("link", "add", orphan, "type", "veth", "peer", "name", orphan_peer)
    # Tagged, as a crash before the commit leaves it. (An untagged one is a
    # user's and stays: tests/reliability/test_ownership.py, in a namespace
    # of its own, where no other run's reconcile can reach it.)
    ip("link", "set", orphan, "alias", f"pontoon:{server.name}")
    server.stop()
    server.start()
    out = ip("addr", "show", bridge).stdout
    assert "10.135.0.1/24" in out and ",UP" in out.split(">")[0]
    assert not {orphan, orphan_peer} & links()
    log = server.log()
    assert f"recreate missing bridge {bridge}" in log
    assert f"orphan veth {orphan}" in log or f"orphan veth {orphan_peer}" in log
    dockerd.remove_network(net)


def test_name_held_by_a_veth_is_refused_and_nothing_is_kept(dockerd, server):
    host, peer = "pty" + server.name[-8:], "ptx" + server.name[-8:]
    ip("link", "add", host, "type", "veth", "peer", "name", peer)
    try:
        status, reply = dockerd.client.call("NetworkDriver.CreateNetwork", {
            "NetworkID": "f" * 64, "Options": {"com.docker.network.generic": {"com.docker.network.bridge.name": host}},
            "IPv4Data": [{"Pool": "10.136.0.0/24", "Gateway": "10.136.0.1/24"}]})
        assert status == 409 and f'"{host}"' in reply["Err"]
        assert "10.136.0.1" not in ip("addr", "show", host).stdout
        assert server.inspect()["networks"] == []
    finally:
        ip("link", "del", host, check=False)
