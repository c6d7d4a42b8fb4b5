"""Issue 13 across hosts: three namespace hosts on one underlay, each with its
own clustered Pontoon and fake dockerd, a real etcd, real VXLAN. Each host
creates "the same" network (same subnet; its own network ID, as each
dockerd makes one), and the tests look at what users see: pings between
containers of different hosts, addresses, and the forwarding entries each
host's kernel holds."""
from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster import keys
from datapath.fastpath import BLOCK_BASE
from datapath.names import vxlan_name
from plugin.store import DB_NAME
from testbed.client import ProtocolError
from testbed.cluster import LEASE_TTL
from testbed.dockerd import wait_for
from testbed.sandbox import ip
from testbed.underlay import filter_packets, netns_exec

SUBNET = "10.90.0.0/24"
# What a watch event and a netlink change may take on a loaded machine, on
# top of the lease TTL for a dead host's endpoints to leave.
MARGIN = 5


def network_on_all(cluster, subnet: str = SUBNET):
    return [h.dockerd.create_network(subnet=subnet) for h in cluster.hosts]


def remote_neighbours(host, net) -> dict[str, str]:
    """Address -> MAC of the static entries on the host's VXLAN device of
    ``net``, read with the ip tool."""
    device = vxlan_name(net.id)
    out = ip("-n", host.ns, "-j", "neigh", "show", "dev", device, check=False)
    if out.returncode != 0:
        return {}
    return {n["dst"]: n["lladdr"] for n in json.loads(out.stdout or "[]") if "PERMANENT" in n.get("state", [])}


def fast_path_packets(host, net) -> tuple[int, int]:
    """Packets the host's fast path (datapath.fastpath) carried past its
    bridge on ``net``: into its containers from the VXLAN device, and out
    of them to other hosts (the block their veths share)."""
    device = vxlan_name(net.id)
    link = json.loads(ip("-n", host.ns, "-d", "-j", "link", "show", "dev", device).stdout)[0]
    vni = link["linkinfo"]["info_data"]["id"]

    def carried(*target: str) -> int:
        return filter_packets(netns_exec(host.ns, "tc", "-s", "filter", "show", *target).stdout)

    return carried("dev", device, "ingress"), carried("block", str(BLOCK_BASE + vni))


def bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def reaches(ctr, other, timeout: float = 10) -> bool:
    """The first peers arrive through etcd's watch, so allow them a moment."""
    try:
        wait_for(lambda: ctr.sandbox.ping(other.address), timeout=timeout, interval=0.1, what="ping")
        return True
    except TimeoutError:
        return False


def test_containers_reach_each_other_across_hosts(cluster):
    nets = network_on_all(cluster)
    ctrs = [h.dockerd.run(net) for h, net in zip(cluster.hosts, nets)]
    assert len({c.address for c in ctrs}) == 3  # one address plan
    for ctr in ctrs:
        for other in ctrs:
            if other is not ctr:
                assert reaches(ctr, other), f"{ctr.address} cannot reach {other.address}"
    # Container to container, the frames skip the bridges (and the host
    # tables br_netfilter would run them through) both ways.
    for host, net, ctr, other in zip(cluster.hosts, nets, ctrs, ctrs[1:] + ctrs[:1]):
        wait_for(lambda: ctr.sandbox.ping(other.address) and min(fast_path_packets(host, net)) > 0,
                 timeout=10, interval=0.2, what=f"the fast path of {host.id}")
    # One gateway address, and every host answers for it on its own bridge:
    # nothing crosses the underlay for it.
    gateway = nets[0].pool(False)["Gateway"]
    assert {net.pool(False)["Gateway"] for net in nets} == {gateway}
    counters = [h.host.vxlan_counter() for h in cluster.hosts]
    for ctr in ctrs:
        assert ctr.sandbox.ping(gateway)
    assert [c.packets() for c in counters] == [0, 0, 0]
    # Each host holds exactly the other hosts' endpoints and own addresses.
    mine = host_addresses(cluster)
    for host, net, ctr in zip(cluster.hosts, nets, ctrs):
        assert set(remote_neighbours(host, net)) == {bare(c.address) for c in ctrs if c is not ctr} | {
            address for holder, address in mine.items() if holder != host.id}


def test_icc_off_keeps_every_frame_on_the_bridge_and_its_rules(cluster):
    nets = [h.dockerd.create_network(subnet="10.91.0.0/24", options={"com.docker.network.bridge.enable_icc": "false"})
            for h in cluster.hosts]
    ctrs = [h.dockerd.run(net) for h, net in zip(cluster.hosts[:2], nets)]
    time.sleep(1)  # what a fast path would have taken to come
    assert not ctrs[0].sandbox.ping(ctrs[1].address)  # ICC off holds across hosts too
    for host, net in zip(cluster.hosts[:2], nets):
        out = subprocess.run(["ip", "netns", "exec", host.ns, "tc", "filter", "show", "dev", vxlan_name(net.id),
                              "ingress"], capture_output=True, text=True)
        assert "mirred" not in out.stdout


def test_concurrent_allocations_are_distinct(cluster):
    nets = network_on_all(cluster)

    def allocate(host, net):
        return host.dockerd.client.ok("IpamDriver.RequestAddress", {
            "PoolID": net.pool(False)["PoolID"], "Address": "", "Options": None})["Address"]

    jobs = [(h, n) for h, n in zip(cluster.hosts, nets) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        got = list(pool.map(lambda job: allocate(*job), jobs))
    assert len(got) == 60 and len(set(got)) == 60
    assert nets[0].pool(False)["Gateway"] not in got


def test_address_held_on_one_host_is_refused_on_another(cluster):
    a, b, _ = cluster.hosts
    net_a, net_b, _ = network_on_all(cluster)
    a.dockerd.client.ok("IpamDriver.RequestAddress", {
        "PoolID": net_a.pool(False)["PoolID"], "Address": "10.90.0.50", "Options": None})
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.client.ok("IpamDriver.RequestAddress", {
            "PoolID": net_b.pool(False)["PoolID"], "Address": "10.90.0.50", "Options": None})
    assert refused.value.status == 409 and "10.90.0.50" in refused.value.body["Err"]


def test_an_aux_address_is_the_networks_on_every_host(cluster):
    nets = [h.dockerd.create_network(subnet=SUBNET, aux={"router": "10.90.0.5"}) for h in cluster.hosts]
    assert {n.pool(False)["aux"]["router"] for n in nets} == {"10.90.0.5/24"}
    a, b = cluster.hosts[:2]
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.run(nets[1], ip="10.90.0.5")
    assert refused.value.status == 409 and "10.90.0.5" in refused.value.body["Err"]
    ctrs = [a.dockerd.run(nets[0]), b.dockerd.run(nets[1])]
    assert "10.90.0.5/24" not in [c.address for c in ctrs]
    assert reaches(*ctrs)


def test_a_dead_plugins_containers_stay_reachable_and_it_comes_back(cluster):
    """Issue 18 #6: a host's Pontoon killed takes its endpoint records with
    its lease, but not its containers, which run on: the other hosts used to
    drop them within the TTL, cutting traffic over a healthy underlay. They
    keep them until the addresses are reclaimed (docs/cluster.md, "Liveness by
    lease"), and the restarted host writes them again."""
    a, b, c = cluster.hosts
    nets = network_on_all(cluster)
    ctrs = [h.dockerd.run(net) for h, net in zip(cluster.hosts, nets)]
    assert reaches(ctrs[0], ctrs[2])
    kept = bare(ctrs[2].address)

    c.kill()
    time.sleep(LEASE_TTL + MARGIN)  # its lease and records gone
    for host, net in zip((a, b), nets):
        assert kept in remote_neighbours(host, net), f"{host.id} dropped the dead plugin's endpoint"
    assert reaches(ctrs[0], ctrs[2]) and reaches(ctrs[1], ctrs[2])  # its container is still there
    assert reaches(ctrs[0], ctrs[1])  # the living are untouched

    c.start()  # its start-up reconcile publishes its endpoints again
    assert reaches(ctrs[0], ctrs[2]) and reaches(ctrs[2], ctrs[1])
    for host, net in zip((a, b), nets):
        assert kept in remote_neighbours(host, net)


def test_a_restart_with_a_lost_store_removes_our_vxlan_devices_only(cluster):
    c = cluster.hosts[2]
    net = c.dockerd.create_network(subnet=SUBNET)
    ours = vxlan_name(net.id)
    stranger = "ptx" + secrets.token_hex(6)  # our prefix, no tag of ours: a user's
    ip("-n", c.ns, "link", "add", stranger, "type", "vxlan", "id", "7", "dstport", "4789")
    c.kill()
    for path in c.server.state_dir.glob(DB_NAME + "*"):
        path.unlink()  # the store deleted while Pontoon was down
    c.dockerd.networks.remove(net)  # that dockerd forgot it too
    c.start()  # the start-up reconcile: the device's network is in no store record
    assert ip("-n", c.ns, "link", "show", ours, check=False).returncode != 0
    assert ip("-n", c.ns, "link", "show", stranger, check=False).returncode == 0
    ip("-n", c.ns, "link", "del", stranger)


def test_etcd_outage_keeps_traffic_and_fails_new_calls_fast(cluster):
    a, b, _ = cluster.hosts
    net_a, net_b, _ = network_on_all(cluster)
    ctr_a, ctr_b = a.dockerd.run(net_a), b.dockerd.run(net_b)
    assert reaches(ctr_a, ctr_b)

    cluster.etcd.stop()
    assert ctr_a.sandbox.ping(ctr_b.address) and ctr_b.sandbox.ping(ctr_a.address)
    began = time.monotonic()
    status, reply = a.dockerd.client.call("IpamDriver.RequestAddress", {
        "PoolID": net_a.pool(False)["PoolID"], "Address": "", "Options": None})
    took = time.monotonic() - began
    assert status >= 400 and "etcd" in reply["Err"].lower(), reply
    assert took < 10, f"a call needing etcd took {took:.1f}s to fail"
    assert ctr_a.sandbox.ping(ctr_b.address)  # still, after the failed call

    cluster.etcd.start()
    later = wait_for(lambda: _try_run(b, net_b), timeout=LEASE_TTL + MARGIN, interval=0.5,
                     what="cluster calls to work again once etcd is back")
    assert reaches(ctr_a, later)


def _try_run(host, net):
    try:
        return host.dockerd.run(net)
    except ProtocolError:
        return None


def test_one_host_deleting_the_network_leaves_it_to_the_others(cluster):
    a, b, c = cluster.hosts
    nets = network_on_all(cluster)
    ctrs = [h.dockerd.run(net) for h, net in zip(cluster.hosts, nets)]
    assert reaches(ctrs[0], ctrs[2])

    c.dockerd.cleanup()  # its container stops and `docker network rm` runs there
    assert ip("-n", c.ns, "link", "show", vxlan_name(nets[2].id), check=False).returncode != 0
    gone = bare(ctrs[2].address)
    for host, net in zip((a, b), nets):
        wait_for(lambda: gone not in remote_neighbours(host, net), timeout=MARGIN, interval=0.2,
                 what=f"{host.id} to drop the leaving host's endpoint")
    assert reaches(ctrs[0], ctrs[1]) and reaches(ctrs[1], ctrs[0])
    # and the others still allocate on it
    assert a.dockerd.run(nets[0]).address not in {ctrs[0].address, ctrs[1].address}


def host_addresses(cluster) -> dict[str, str]:
    """Host -> its own address on the network, as ``addrs/`` holds it (kind "host")."""
    lines = cluster.etcd.ctl("get", "--prefix", "/pontoon/addrs/").stdout.splitlines()
    out = {}
    for key, value in zip(lines[::2], lines[1::2]):
        held = json.loads(value)
        if held["kind"] == "host":
            out[held["host"]] = str(ipaddress.ip_address(int(key.rsplit("/", 1)[1], 16)))
    return out


def bridge_addresses(host, gateway: str) -> set[str]:
    """The addresses of the host's bridge that carries ``gateway``."""
    for link in json.loads(ip("-n", host.ns, "-j", "addr", "show").stdout):
        found = {a["local"] for a in link.get("addr_info", [])}
        if gateway in found:
            return found
    return set()


LISTEN = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(); print("ready", flush=True)
c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
CONNECT = """
import socket, sys
print(socket.create_connection((sys.argv[1], 8080), timeout=5).recv(100).decode())
"""


def test_a_host_reaches_containers_on_other_hosts(cluster):
    """Issue 18 #12: from a host itself (a health check, a ``--network host``
    proxy), not from a container. Its bridge shares the gateway address
    with every host's, so before each host had an address of its own the
    far container's reply went to its own host's bridge."""
    a, b, c = cluster.hosts
    net_a, net_b, _ = network_on_all(cluster)
    gateway = bare(net_a.pool(False)["Gateway"])
    ctr_b = b.dockerd.run(net_b)
    wait_for(lambda: a.run("ping", "-c1", "-W", "2", bare(ctr_b.address), check=False).returncode == 0,
             timeout=10, interval=0.2, what="host1 itself to reach host2's container")

    mine = host_addresses(cluster)
    assert set(mine) == {a.id, b.id, c.id} and len(set(mine.values())) == 3
    assert all(ipaddress.ip_address(x) in ipaddress.ip_network(SUBNET) for x in mine.values())
    held = cluster.etcd.keys(f"/pontoon/held/{a.id}/")
    assert [k for k in held if k.endswith(keys.hexaddr(int(ipaddress.ip_address(mine[a.id]))))]
    assert mine[a.id] in bridge_addresses(a, gateway) and mine[b.id] in bridge_addresses(b, gateway)
    assert [n["cluster"]["host_address"] for n in a.server.inspect()["networks"]] == [f"{mine[a.id]}/24"]

    # TCP too, and the far container sees host1's own address as the source.
    server = subprocess.Popen(["ip", "netns", "exec", ctr_b.sandbox.ns, sys.executable, "-c", LISTEN],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        got = a.run(sys.executable, "-c", CONNECT, bare(ctr_b.address)).stdout.strip()
        assert got == mine[a.id]
    finally:
        server.kill()
        server.wait()

    a.dockerd.remove_network(net_a)
    assert a.id not in host_addresses(cluster)
    assert not [k for k in cluster.etcd.keys(f"/pontoon/held/{a.id}/")]
    assert not [k for k in cluster.etcd.keys("/pontoon/endpoints/") if f"/{a.id}/" in k]
    assert mine[b.id] in bridge_addresses(b, gateway)  # the others keep theirs
    assert mine[a.id] not in {x["local"] for link in json.loads(ip("-n", a.ns, "-j", "addr", "show").stdout)
                              for x in link.get("addr_info", [])}
