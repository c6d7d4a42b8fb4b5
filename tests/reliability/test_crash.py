"""Crash anywhere: the plugin is SIGKILLed (master and worker) at named points
of every state-changing method, restarted (reconcile runs), and dockerd goes
on as it would: it sends the broken request again and finishes the
lifecycle. Right after each restart the kernel and the store must agree;
after everything is removed, nothing is stored and the host's links,
addresses, routes and firewall are as before.
"""
from __future__ import annotations

import random
import secrets
import subprocess
import threading

import pytest

from plugin import testhook
from testbed.fake_dockerd import FakeDockerd, new_id

from . import figures
from .kernel import Seen, bridge_state, ours, problems, raw_snapshot
from .recording import BROKEN, recording_client

MTU = "com.docker.network.driver.mtu"
EMPTY = {"networks": [], "endpoints": [], "pools": [], "addresses": []}

# (method, step prefix[#n]); see plugin.testhook. "commit" is after all the
# kernel work and before the store's COMMIT.
KILL_POINTS = [
    ("IpamDriver.RequestPool", "commit"),
    ("IpamDriver.RequestAddress", "commit"),
    ("NetworkDriver.CreateNetwork", "add bridge"),
    ("NetworkDriver.CreateNetwork", "tag"),  # bridge made, not yet tagged as ours
    ("NetworkDriver.CreateNetwork", "set mtu"),
    ("NetworkDriver.CreateNetwork", "add address#2"),  # IPv4 gateway on, IPv6 not
    ("NetworkDriver.CreateNetwork", "set route_localnet"),
    # One restore per family brings a new instance's base chains and the network's;
    # the families run at once, so at either kill the other may be in or not.
    ("NetworkDriver.CreateNetwork", "apply ipv4 firewall"),
    ("NetworkDriver.CreateNetwork", "apply ipv6 firewall"),
    ("NetworkDriver.CreateNetwork", "commit"),  # the network's names and bridge recorded, pending
    ("NetworkDriver.CreateNetwork", "commit#2"),  # everything made, the network not yet settled
    ("NetworkDriver.CreateEndpoint", "add veth"),
    ("NetworkDriver.CreateEndpoint", "tag"),  # pair made in its final shape, neither end tagged
    ("NetworkDriver.CreateEndpoint", "tag#2"),  # host end tagged and hairpin on, peer not
    ("NetworkDriver.CreateEndpoint", "commit"),
    ("NetworkDriver.Join", "commit"),
    ("NetworkDriver.ProgramExternalConnectivity", "apply ipv4 firewall"),
    ("NetworkDriver.ProgramExternalConnectivity", "commit"),
    ("NetworkDriver.RevokeExternalConnectivity", "apply ipv4 firewall"),
    ("NetworkDriver.RevokeExternalConnectivity", "flush conntrack"),  # rules gone, store not
    ("NetworkDriver.RevokeExternalConnectivity", "commit"),
    ("NetworkDriver.Leave", "commit"),
    ("NetworkDriver.DeleteEndpoint", "delete veth"),
    ("NetworkDriver.DeleteEndpoint", "commit"),
    ("IpamDriver.ReleaseAddress", "commit"),
    ("NetworkDriver.DeleteNetwork", "apply ipv4 firewall"),
    ("NetworkDriver.DeleteNetwork", "apply ipv6 firewall"),
    ("NetworkDriver.DeleteNetwork", "delete bridge"),
    ("NetworkDriver.DeleteNetwork", "commit"),
    ("IpamDriver.ReleasePool", "commit"),
]


def lifecycle(dockerd: FakeDockerd, index: int) -> None:
    """docker network create --ipv6 -o mtu=1400; docker run -p 80; stop; network rm."""
    net = dockerd.create_network(subnet=f"10.197.{index}.0/24", ipv6=True,
                                 subnet6=f"fd00:197:{index}::/64", options={MTU: "1400"})
    ctr = dockerd.run(net, ports=[("tcp", 80, "", 0, 0)])
    dockerd.stop(ctr)
    dockerd.remove_network(net)


def assert_consistent(server, seen: Seen) -> None:
    assert problems(server.inspect(), server.name, seen) == []


def assert_clean(server, seen: Seen, before: dict) -> None:
    """Nothing stored, and what the test could have touched is as before."""
    assert server.inspect() == EMPTY
    assert ours(raw_snapshot(), seen) == ours(before, seen)


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: f"{p[0].split('.')[1]}:{p[1]}")
def test_kill_9_at(point, servers, before, seen, sandboxes):
    method, step = point
    server = servers()
    crashes: list[str] = []

    def restart(broken_method: str) -> None:
        assert not crashes, f"a second crash, in {broken_method}"
        crashes.append(broken_method)
        server.wait_exit()  # it killed itself, master and worker
        server.start()
        assert_consistent(server, seen)

    server.start(env={testhook.ENV: f"{method}:{step}"})
    dockerd = FakeDockerd(recording_client(server.socket_path, seen, restart), sandboxes)
    lifecycle(dockerd, KILL_POINTS.index(point))
    assert crashes == [method], "the kill point was never reached"
    assert_clean(server, seen, before)
    figures.append("kill_points", f"{method}:{step}")


# Kill points of CreateNetwork with a bridge name of the user's (-o
# com.docker.network.bridge.name), made by Pontoon or adopted.
NAMED_BRIDGE_POINTS = [("add bridge", False), ("tag", False), ("set mtu", False), ("commit#2", False),
                       ("pin mac", True), ("add address#2", True), ("set route_localnet", True),
                       ("apply ipv4 firewall", True), ("commit#2", True)]


@pytest.mark.parametrize("step,adopt", NAMED_BRIDGE_POINTS, ids=lambda v: str(v))
def test_kill_9_while_creating_a_named_bridge(step, adopt, servers, before, seen, sandboxes):
    """A bridge Pontoon made under the user's name goes with its network
    even when the create was cut short (a retry used to take it for adopted
    and never delete it); one it adopted comes back as it was, its own
    addresses, MTU, sysctls and down state included."""
    server = servers()
    name = "ptn" + secrets.token_hex(4)
    if adopt:
        seen.users.add(name)  # the user's: stored or not, it stays
        subprocess.run(["ip", "link", "add", name, "mtu", "1300", "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "192.0.2.9/24", "dev", name], check=True)
        subprocess.run(["ip", "addr", "add", "10.199.7.1/24", "dev", name], check=True)  # our gateway too
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    found = bridge_state(name)
    crashes: list[str] = []

    def restart(broken_method: str) -> None:
        crashes.append(broken_method)
        server.wait_exit()
        server.start()
        assert_consistent(server, seen)
        assert server.inspect()["networks"] == [], "a network whose create was cut short is not kept"
        assert bridge_state(name) == found, "reconcile gives the bridge back, or deletes the one it made"

    server.start(env={testhook.ENV: f"NetworkDriver.CreateNetwork:{step}"})
    dockerd = FakeDockerd(recording_client(server.socket_path, seen, restart), sandboxes)
    net = dockerd.create_network(subnet="10.199.7.0/24", ipv6=True, subnet6="fd00:199:7::/64",
                                 options={MTU: "1400", "com.docker.network.bridge.name": name})
    assert crashes == ["NetworkDriver.CreateNetwork"], "the kill point was never reached"
    assert bridge_state(name)["alias"] == ("" if adopt else f"pontoon:{server.name}")
    dockerd.stop(dockerd.run(net))
    dockerd.remove_network(net)
    assert bridge_state(name) == found
    if adopt:
        subprocess.run(["ip", "link", "del", name], check=True)
    assert_clean(server, seen, before)


def churn(client, thread: int, cycles: list, errors: list) -> None:
    """One dockerd client's loop of networks with two published containers,
    until the server dies under it."""
    dockerd = FakeDockerd(client)
    for n in range(1000):
        try:
            net = dockerd.create_network(subnet=f"10.198.{thread * 40 + n % 40}.0/24", network_id=new_id())
            ctrs = [dockerd.run(net, ports=[("tcp", 80, "", 0, 0)]) for _ in range(2)]
            for ctr in ctrs:
                dockerd.stop(ctr)
            dockerd.remove_network(net)
        except BROKEN:
            return
        except Exception as exc:  # any refusal before the kill is a failure
            errors.append(exc)
            return
        cycles.append(thread)


def clean_up_like_dockerd(client, seen: Seen, state: dict, pools: set[str]) -> None:
    """What dockerd sends for what it knew: deletes of every endpoint and
    network it had asked for (known to the plugin or not), then pool releases."""
    network_of = {e["id"]: e["network_id"] for e in state["endpoints"]}
    for eid in sorted(seen.endpoints):
        ids = {"NetworkID": network_of.get(eid, "0"), "EndpointID": eid}
        for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
            client.ok(f"NetworkDriver.{method}", ids)
    for nid in sorted(seen.networks):
        client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    for pool in sorted(pools):
        client.ok("IpamDriver.ReleasePool", {"PoolID": pool})


def test_concurrent_lifecycles_killed_at_random(servers, before, seen):
    threads, rng = 6, random.Random()
    server = servers(workers=2, threads=8)
    server.start()
    client = recording_client(server.socket_path, seen)
    cycles: list[int] = []
    errors: list[Exception] = []
    workers = [threading.Thread(target=churn, args=(client, t, cycles, errors)) for t in range(threads)]
    for w in workers:
        w.start()
    workers[0].join(rng.uniform(1.0, 4.0))
    server.kill()
    for w in workers:
        w.join(60)
    # Work was in flight (on a slow host the kill may come before any
    # lifecycle completes; what matters is what happens after it).
    assert errors == [] and seen.networks, errors
    figures.append("concurrent_kills", {"threads": threads, "cycles_before_kill": len(cycles),
                                        "endpoints": len(seen.endpoints), "networks": len(seen.networks)})

    server.start()
    # kill -9 left a stale socket file; its replacement is as private, and
    # the only inet sockets hold the published ports stored (held again)
    assert server.socket_is_private()
    assert server.held_ports() == {(p["proto"], p["host_port"])
                                   for e in server.inspect()["endpoints"] for p in e["ports"]}
    assert_consistent(server, seen)
    state = server.inspect()
    clean_up_like_dockerd(client, seen, state, client.transport.pools_acked)
    # A pool committed whose answer the kill cut off is unknown to dockerd:
    # at most one per request in flight, and an operator's ReleasePool frees it.
    unknown = [p["id"] for p in server.inspect()["pools"]]
    assert len(unknown) <= threads
    clean_up_like_dockerd(client, Seen(), state, set(unknown))
    assert_clean(server, seen, before)
