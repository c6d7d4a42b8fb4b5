"""The cluster control plane against a real etcd: allocation, agreement,
endpoint records and their watches, outages, compaction."""
from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster import keys
from cluster.etcd import Etcd, EtcdUnavailable, Lease, Watch
from cluster.host import HostIdTaken
from cluster.hostrecord import Wireguard
from datapath.wireguard import tunnel_address
from testbed.client import ProtocolError

from .control import Host, Peer
from .proxy import CuttableRelay, SilentableRelay

SUBNET = "10.90.0.0/24"


@pytest.fixture
def hosts(tmp_path, etcd):
    made = []

    def make(n: int = 3, ttl: int = 15, **more) -> list[Host]:
        for i in range(n):
            made.append(Host(tmp_path / f"h{i}", etcd.url, f"host{i}", f"192.0.2.{i + 1}", ttl, **more))
        return made[-n:]

    yield make
    for host in made:
        host.stop()


def wait_until(check, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` held; fails the test at ``timeout``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(step)
    return time.monotonic() - start


def _reclaimed(host: Host, gone: str = "host0") -> None:
    """``host``'s reclaim pass reclaimed ``gone`` (or its reaper thread, which
    runs every half grace, did a moment before: the same pass)."""
    assert host.cluster_mode.host.reap() in ([gone], [])
    wait_until(lambda: host.cluster_mode.host.etcd.get(keys.key("seen", gone)) is None, 5)


def _records_of(host: Host, owner: str = "host0") -> list:
    """``owner``'s endpoint records in etcd, as ``host`` reads them."""
    return [kv for kv in host.cluster_mode.host.etcd.read_prefix(keys.prefix("endpoints"))[0]
            if kv.key.rsplit("/", 2)[-2] == owner]


def test_one_subnet_on_three_hosts_is_one_network_with_one_gateway(hosts):
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in hosts()]
    assert {n.pools[0]["Gateway"] for n in nets} == {"10.90.0.1/24"}
    assert len({n.id for n in nets}) == 3  # each dockerd's own network ID, one cluster network


def test_concurrent_allocations_on_three_hosts_are_all_distinct(hosts):
    three = hosts()
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in three]
    barrier = threading.Barrier(60)

    def allocate(i: int) -> str:
        host, net = three[i % 3], nets[i % 3]
        barrier.wait()
        return host.client.ok("IpamDriver.RequestAddress",
                              {"PoolID": net.pools[0]["PoolID"], "Address": "", "Options": None})["Address"]

    with ThreadPoolExecutor(60) as pool:
        got = list(pool.map(allocate, range(60)))
    assert len(set(got)) == 60, sorted(got)
    assert "10.90.0.1/24" not in got  # the gateway
    assert all(ipaddress.ip_interface(a).ip in ipaddress.ip_network(SUBNET) for a in got)


def test_an_address_held_on_one_host_is_refused_on_another(hosts):
    a, b = hosts(2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a, ip="10.90.0.50")
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.run(net_b, ip="10.90.0.50")
    assert refused.value.status == 409
    assert "10.90.0.50" in str(refused.value) and "host0" in str(refused.value)
    # Automatic allocation on b steps over it, and over a's first ones too.
    a.dockerd.run(net_a)
    got = b.dockerd.run(net_b).address
    assert got not in ("10.90.0.50/24", "10.90.0.2/24")


def test_an_ip_range_is_shared_filled_and_reused_below_each_hosts_hint(hosts):
    a, b = hosts(2)
    net_a = a.dockerd.create_network(subnet=SUBNET, ip_range="10.90.0.8/29")
    net_b = b.dockerd.create_network(subnet=SUBNET, ip_range="10.90.0.8/29")
    # Interleaved, so each host's next candidate is mostly taken by the other.
    got = [(a, net_a), (b, net_b)] * 4
    ctrs = [host.dockerd.run(net) for host, net in got]
    assert sorted(c.address for c in ctrs) == sorted(f"10.90.0.{i}/24" for i in range(8, 16))
    with pytest.raises(ProtocolError) as full:
        b.dockerd.run(net_b)
    assert full.value.status == 409 and "range 10.90.0.8/29 of pool 10.90.0.0/24" in str(full.value)
    # a frees its lowest; b, whose hint is past the range, finds it by
    # looking again from the bottom.
    lowest = min((c for c in ctrs if c.network is net_a), key=lambda c: ipaddress.ip_interface(c.address).ip)
    a.dockerd.stop(lowest)
    assert b.dockerd.run(net_b).address == lowest.address


def test_an_address_in_a_pool_the_cluster_no_longer_holds_is_refused_and_changes_nothing(hosts, etcd):
    (a,) = hosts(1)
    net = a.dockerd.create_network(subnet=SUBNET)
    Etcd([etcd.url]).delete(keys.key("pools", keys.pool_name("LocalDefault", SUBNET)))
    before = set(Etcd([etcd.url]).read_prefix(keys.ROOT)[0])
    for address in ("", "10.90.0.77"):
        with pytest.raises(ProtocolError) as refused:
            a.client.ok("IpamDriver.RequestAddress", {"PoolID": net.pools[0]["PoolID"], "Address": address,
                                                      "Options": None})
        assert refused.value.status == 404 and net.pools[0]["PoolID"] in str(refused.value)
    assert set(Etcd([etcd.url]).read_prefix(keys.ROOT)[0]) == before
    with a.store.snapshot() as tx:
        assert [kind for _, kind in tx.list_addresses(net.pools[0]["PoolID"])] == ["gateway"]


def test_aux_addresses_are_the_networks_on_every_host(hosts):
    a, b, c = hosts()
    # One that is not a usable address of the pool is refused before etcd.
    pool = a.client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": SUBNET, "V6": False})
    status, reply = a.client.call("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "10.90.0.255"})
    assert status == 400 and "10.90.0.255" in reply["Err"]
    # One in a pool the cluster no longer holds is a 404 and writes nothing.
    a.cluster_mode.host.etcd.delete(keys.key("pools", keys.pool_name("LocalDefault", SUBNET)))
    status, reply = a.client.call("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "10.90.0.5"})
    assert status == 404 and pool["PoolID"] in reply["Err"]
    a.client.ok("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})
    left = [kv.key for kv in a.cluster_mode.host.etcd.read_prefix(keys.ROOT)[0]]
    assert not [key for key in left if "/addrs/" in key or "/members/" in key]
    aux = {"router": "10.90.0.5"}
    nets = [h.dockerd.create_network(subnet=SUBNET, aux=aux) for h in (a, b, c)]
    assert [n.pools[0]["aux"] for n in nets] == [{"router": "10.90.0.5/24"}] * 3
    # A container's --ip on it is refused on every host, naming what holds it;
    # automatic allocation steps over it.
    for host, net in zip((a, b, c), nets):
        with pytest.raises(ProtocolError) as refused:
            host.dockerd.run(net, ip="10.90.0.5")
        assert refused.value.status == 409
        assert "10.90.0.5" in str(refused.value) and "aux address" in str(refused.value)
    assert [a.dockerd.run(nets[0]).address for _ in range(4)][-1] == "10.90.0.6/24"
    # An aux address a container holds is refused to a host creating the network.
    held = b.dockerd.run(nets[1]).address.split("/")[0]
    c.dockerd.remove_network(nets[2])
    with pytest.raises(ProtocolError) as refused:
        c.dockerd.create_network(subnet=SUBNET, aux={**aux, "other": held})
    assert refused.value.status == 409 and held in str(refused.value) and "host1" in str(refused.value)
    c.client.ok("IpamDriver.ReleasePool", {"PoolID": f"LocalDefault/{SUBNET}"})  # as dockerd does then
    # One host's release of the network ends nothing for the others.
    etcd = a.cluster_mode.host.etcd
    aux_key = keys.prefix("addrs", keys.pool_name("LocalDefault", SUBNET)) + keys.hexaddr(
        int(ipaddress.ip_address("10.90.0.5")))
    a.dockerd.cleanup()
    assert etcd.get(aux_key) is not None
    assert c.dockerd.create_network(subnet=SUBNET, aux=aux).pools[0]["aux"] == {"router": "10.90.0.5/24"}
    b.dockerd.cleanup()
    c.dockerd.cleanup()
    assert etcd.read_prefix(keys.prefix("addrs"))[0] == []  # the last member took it


def test_a_host_disagreeing_on_an_option_gets_409_naming_it(hosts):
    a, b = hosts(2)
    a.dockerd.create_network(subnet=SUBNET, options={"com.docker.network.driver.mtu": "1400"})
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.create_network(subnet=SUBNET, options={"com.docker.network.driver.mtu": "1300"})
    assert refused.value.status == 409
    assert "com.docker.network.driver.mtu=1300" in str(refused.value)
    assert "holds com.docker.network.driver.mtu=1400" in str(refused.value)
    # Without -o mtu, b takes the cluster's.
    b.dockerd.create_network(subnet=SUBNET)
    (stored,) = b.cluster_mode._stored()[0]
    assert stored.options.mtu == 1400


def test_default_mtu_is_the_underlay_minus_vxlan_overhead_and_vni_is_shared(hosts):
    a, b = hosts(2)
    a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    (na,), (nb,) = a.cluster_mode._stored()[0], b.cluster_mode._stored()[0]
    assert na.options.mtu == nb.options.mtu == 1450
    assert na.cluster.vni == nb.cluster.vni >= 4096
    assert a.network.get_capabilities({}) == {"Scope": "local", "ConnectivityScope": "global", "GwAllocChecker": True}


def test_without_subnet_each_host_gets_a_pool_no_host_holds(hosts):
    a, b = hosts(2)
    pa = a.dockerd.create_network().pools[0]["Pool"]
    pb = b.dockerd.create_network().pools[0]["Pool"]
    assert not ipaddress.ip_network(pa).overlaps(ipaddress.ip_network(pb))
    # and b may join a's, as the other hosts of that network do
    assert b.dockerd.create_network(subnet=pa).pools[0]["Pool"] == pa


def test_any_pool_of_a_size_is_one_no_host_holds(hosts):
    """dockerd 29 sends "--subnet 0.0.0.0/24" unchanged (moby
    docker-v29.1.0 libnetwork/network.go ipamAllocateVersion): any /24 of
    the default pools that no host holds; a size no default pool can hold
    is a 400 before etcd is asked."""
    a, b = hosts(2)
    pa = a.dockerd.create_network(subnet="0.0.0.0/24").pools[0]["Pool"]
    pb = b.dockerd.create_network(subnet="0.0.0.0/24").pools[0]["Pool"]
    assert ipaddress.ip_network(pa).prefixlen == ipaddress.ip_network(pb).prefixlen == 24
    assert not ipaddress.ip_network(pa).overlaps(ipaddress.ip_network(pb))
    with pytest.raises(ProtocolError) as refused:
        a.dockerd.create_network(subnet="0.0.0.0/4")
    assert refused.value.status == 400 and 'Pool "0.0.0.0/4" asks for any /4' in str(refused.value)
    name = "com.docker.network.endpoint.name"
    with pytest.raises(ProtocolError) as refused:
        a.dockerd.client.ok("IpamDriver.RequestAddress", {"PoolID": f"LocalDefault/{pa}", "Options": {name: ["x"]}})
    assert refused.value.status == 400 and name in str(refused.value)


def _netof(host: Host) -> dict[str, str]:
    prefix = keys.prefix("netof")
    return {kv.key[len(prefix):]: kv.value for kv in host.cluster_mode.host.etcd.read_prefix(prefix)[0]}


def test_an_automatic_ipv6_pool_comes_from_the_cluster(hosts):
    """Issue 18 #10: ``--ipv6`` with an IPv4 subnet and no IPv6 one gave each
    host an IPv6 pool of its own on one VXLAN segment. The second host now
    joins the cluster network's IPv6 pool; the network record lists both."""
    a, b = hosts(2)
    na, nb = (h.dockerd.create_network(subnet=SUBNET, ipv6=True) for h in (a, b))
    assert na.pools[1]["Pool"] == nb.pools[1]["Pool"] and na.pools[1]["Gateway"] == nb.pools[1]["Gateway"]
    (sa,), (sb,) = a.cluster_mode._stored()[0], b.cluster_mode._stored()[0]
    assert (sa.cluster.pool, sa.cluster.vni) == (sb.cluster.pool, sb.cluster.vni)
    record = json.loads(a.cluster_mode.host.etcd.get(keys.key("nets", sa.cluster.pool)).value)
    assert sorted(keys.cidr_of(p)[1] for p in record["pools"]) == sorted([SUBNET, na.pools[1]["Pool"]])
    for h, n in ((a, na), (b, nb)):
        h.dockerd.remove_network(n)
    assert _netof(a) == {} and a.cluster_mode.host.etcd.read_prefix(keys.prefix("nets"))[0] == []


@pytest.mark.parametrize("first, second, says", [
    ({"ipv6": True, "subnet6": "fd00:91::/64"}, {"ipv6": True, "subnet6": "fd00:92::/64"}, "holds subnets"),
    ({}, {"ipv6": True, "subnet6": "fd00:92::/64"}, "holds --ipv6=false"),  # --ipv6 is agreed too
    ({"ipv6": True, "subnet6": "fd00:92::/64"}, {}, "holds --ipv6=true"),
], ids=["another IPv6 subnet", "an IPv6 subnet more", "an IPv6 subnet less"])
def test_a_host_whose_network_has_other_subnets_gets_409_naming_them(hosts, first, second, says):
    """Issue 18 #10: the network was named by its first pool only, so hosts
    with different further subnets shared a segment: now all must agree."""
    a, b = hosts(2)
    net = a.dockerd.create_network(subnet=SUBNET, **first)
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.create_network(subnet=SUBNET, **second)
    assert refused.value.status == 409 and says in str(refused.value) and SUBNET in str(refused.value)
    a.dockerd.remove_network(net)
    assert _netof(a) == {}


def test_a_pool_belongs_to_one_cluster_network(hosts):
    """An IPv6-only network on a subnet, and a dual-stack one whose IPv6
    subnet it is, are two segments on one pool: refused, either way round."""
    a, b = hosts(2)
    v6only = a.dockerd.create_network(ipv4=False, ipv6=True, subnet6="fd00:93::/64")
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.create_network(subnet=SUBNET, ipv6=True, subnet6="fd00:93::/64")
    assert refused.value.status == 409 and "belongs to cluster network fd00:93::/64" in str(refused.value)
    a.dockerd.remove_network(v6only)
    dual = a.dockerd.create_network(subnet=SUBNET, ipv6=True, subnet6="fd00:93::/64")
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.create_network(ipv4=False, ipv6=True, subnet6="fd00:93::/64")
    assert refused.value.status == 409 and "holds subnets" in str(refused.value)
    assert set(_netof(a).values()) == {keys.pool_name("LocalDefault", SUBNET)}
    a.dockerd.remove_network(dual)
    assert _netof(a) == {}


def test_endpoints_become_peers_of_the_other_hosts_only(hosts):
    a, b, c = hosts()
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    ctr = a.dockerd.run(nets[0])
    peer = Peer(ctr.mac.lower(), ctr.address.split("/")[0], "192.0.2.1")
    wait_until(lambda: b.overlay.all_peers() == {peer}, 5)
    assert a.overlay.all_peers() == set()  # its own endpoint is on its bridge
    assert c.overlay.all_peers() == set() and c.cluster_mode.segment.watched() == []  # no network, no watch
    a.dockerd.stop(ctr)
    wait_until(lambda: b.overlay.all_peers() == set(), 5)


def test_one_host_deleting_the_network_leaves_it_to_the_others(hosts):
    a, b = hosts(2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr_b = b.dockerd.run(net_b)
    a.dockerd.remove_network(net_a)
    assert a.cluster_mode.segment.watched() == []
    etcd = b.cluster_mode.host.etcd
    assert etcd.get(keys.key("pools", keys.pool_name("LocalDefault", SUBNET))) is not None
    assert b.dockerd.run(net_b).address != ctr_b.address
    b.dockerd.cleanup()
    # the last member leaving takes every record of the network with it
    assert etcd.read_prefix(keys.prefix("pools"))[0] == []
    assert etcd.read_prefix(keys.prefix("addrs"))[0] == []
    assert etcd.read_prefix(keys.prefix("nets"))[0] == []


def test_an_endpoint_committed_while_its_network_is_deleted_leaves_no_record(hosts):
    a, b = hosts(2)
    net_a, _ = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    detach = a.cluster_mode.segment.detach

    def detach_then_late(network):  # a CreateEndpoint committed after DeleteNetwork read the endpoints
        detach(network)
        a.network.create_endpoint({"NetworkID": net_a.id, "EndpointID": "e" * 64,
                                   "Interface": {"Address": "10.90.0.9/24"}})

    a.cluster_mode.segment.detach = detach_then_late
    a.client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": net_a.id})
    assert a.cluster_mode._stored() == ([], [])
    assert b.cluster_mode.host.etcd.read_prefix(keys.prefix("endpoints"))[0] == []


def test_a_dead_hosts_endpoints_stay_in_the_datapath_until_their_addresses_are_reclaimed(hosts):
    """Issue 18 #6: the records of a host whose lease ended (kill -9 of
    Pontoon, or a cut from etcd but not from its peers) leave etcd within
    the TTL, but its containers may run on: the peers used to drop them
    then, cutting their traffic although the underlay was fine. The peers
    stay until the address is given to another host's container."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    peers = b.overlay.all_peers()
    a.stop(revoke=False)  # as kill -9 would: the lease is left to expire
    took = wait_until(lambda: _records_of(b) == [], 2 + 3)
    assert took > 1  # gone by expiry, not at once
    time.sleep(0.5)
    assert b.overlay.all_peers() == peers  # kept
    # its address is not freed with the lease: a partition must not free addresses
    held = ctr.address.split("/")[0]
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.run(net_b, ip=held)
    assert refused.value.status == 409
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("grace", "host0")) is None, 10)
    _reclaimed(b)  # its address freed and its pool membership ended: the peer goes (the members' watch)
    wait_until(lambda: b.overlay.all_peers() == set(), 3)
    b.dockerd.run(net_b, ip=held)  # the address is free to give again


def test_a_record_gone_while_the_watch_was_down_is_kept_as_its_event_would_have(hosts):
    """The fault lab's finding (seed 2937721909): a host's lease ended while
    another's watch stream was down (an etcd restart), so no DELETE came;
    the full read after it dropped the peers the event would have kept."""
    a, b = hosts(2, ttl=2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    net_b = b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    peers = b.overlay.all_peers()
    (watch,) = [w for i, w in b.cluster_mode.segment._watches.items() if i == net_b.id]
    watch.stop()  # the stream down: no event from now on
    a.stop(revoke=False)
    wait_until(lambda: _records_of(b) == [], 5)
    watch._sync(b.cluster_mode.host.etcd.read_prefix(watch._watch.prefix)[0])  # the read after the break
    assert b.overlay.all_peers() == peers


def test_a_live_hosts_deleted_record_leaves_the_datapath_at_once(hosts):
    a, b = hosts(2, ttl=2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    a.dockerd.stop(ctr)
    wait_until(lambda: b.overlay.all_peers() == set(), 2)


def test_with_etcd_stopped_cluster_calls_fail_fast_and_work_again_after(hosts, etcd):
    (a,) = hosts(1)
    net = a.dockerd.create_network(subnet=SUBNET)
    etcd.stop()
    start = time.monotonic()
    with pytest.raises(ProtocolError) as refused:
        a.dockerd.run(net)
    assert time.monotonic() - start < 5
    assert refused.value.status == 503 and "etcd is unreachable" in str(refused.value)
    assert a.cluster_mode._stored()[1] == []  # nothing half-made
    etcd.start()
    ctr = a.dockerd.run(net)
    assert ctr.address == "10.90.0.2/24"


def test_watch_reads_again_when_its_revision_was_compacted(etcd):
    client = Etcd([etcd.url])
    prefix = keys.prefix("test")
    client.put(prefix + "old", "1")
    _, stale = client.read_prefix(prefix)
    client.put(prefix + "new", "2")
    client.delete(prefix + "old")
    _, now = client.read_prefix(prefix)
    client.call("/kv/compaction", {"revision": now, "physical": True})

    class Behind(Etcd):
        """Its first read answers from before the compaction, as a watch
        that fell behind would have."""
        first = True

        def read_prefix(self, p):
            if self.first:
                self.first = False
                return [], stale
            return super().read_prefix(p)

    syncs = []
    watch = Watch(Behind([etcd.url]), prefix, lambda kvs: syncs.append(sorted(kv.key for kv in kvs)),
                  lambda kind, kv: syncs.append((kind, kv.key)))
    watch.start()
    try:
        wait_until(lambda: len(syncs) >= 2, 5)
        assert syncs[:2] == [[], [prefix + "new"]]  # no stale events replayed: a fresh read
        assert watch.resyncs == 1
        client.put(prefix + "later", "3")
        wait_until(lambda: ("PUT", prefix + "later") in syncs, 5)
    finally:
        watch.stop()


def test_calls_to_a_stopped_etcd_raise_clearly_within_seconds(etcd):
    client = Etcd([etcd.url])
    etcd.stop()
    start = time.monotonic()
    with pytest.raises(EtcdUnavailable, match="etcd is unreachable"):
        client.get("/pontoon/x")
    assert time.monotonic() - start < 3


def test_a_restart_publishes_again_and_frees_what_the_store_lost(hosts, tmp_path, etcd, capsys):
    a, b = hosts(2, ttl=3)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    # An allocation the store never recorded (a crash between the two commits).
    stray = a.client.ok("IpamDriver.RequestAddress", {"PoolID": net_a.pools[0]["PoolID"], "Address": "",
                                                      "Options": None})["Address"]
    with a.store.transaction() as tx:
        tx.delete_address(net_a.pools[0]["PoolID"], int(ipaddress.ip_interface(stray).ip))
    a.stop(revoke=False)
    wait_until(lambda: _records_of(b) == [], 6)

    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", ttl=3)
    try:
        again.cluster_mode.worker_started()  # a stored cluster network: rejoin at once
        wait_until(lambda: len(_records_of(b)) == 1 and again.cluster_mode.segment.watched() == [net_a.id], 5)
        assert len(b.overlay.all_peers()) == 1
        # the stray address is free again, the container's is not
        assert b.dockerd.run(net_b, ip=stray.split("/")[0]).address == stray
        with pytest.raises(ProtocolError):
            b.dockerd.run(net_b, ip=ctr.address.split("/")[0])

        from plugin import cli
        assert cli.main(["inspect", "--state-dir", str(tmp_path / "h0"), "--etcd-endpoints", etcd.url]) == 0
        out = capsys.readouterr().out
        assert "CLUSTER HOSTS (2)" in out and "host0" in out and "192.0.2.1" in out
        assert f"{SUBNET}  LocalDefault" in out and "host0 host1" in out
        assert "CLUSTER ENDPOINTS (2)" in out and ctr.endpoint_id[:12] in out
    finally:
        again.stop()


def test_a_lost_lease_is_replaced_and_the_endpoints_written_again(hosts):
    a, b = hosts(2, ttl=2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    old = a.cluster_mode.host.lease_id()
    # As if etcd had been away longer than the TTL: the lease is gone.
    peers = b.overlay.all_peers()
    b.cluster_mode.host.etcd.call("/kv/lease/revoke", {"ID": old})
    wait_until(lambda: a.cluster_mode.host._lease.id != old and len(_records_of(b)) == 1, 5)
    assert b.overlay.all_peers() == peers  # kept in place throughout (#6)
    assert a.cluster_mode.host.lease_id() != old
    assert b.cluster_mode.host.etcd.get(keys.key("hosts", "host0")).lease == a.cluster_mode.host.lease_id()


def test_a_lease_is_kept_alive_again_as_soon_as_etcd_is_back(etcd):
    """A keep-alive that failed is tried again within a second, not a third
    of the TTL later: otherwise two short cuts with a moment between them
    end a grace lease, and the host's addresses are reclaimed although it
    was never away for the grace (the fault lab's seed 2935039361)."""
    relay = CuttableRelay((etcd.address, etcd.client_port))
    lease = Lease(Etcd([relay.url]), 6, lambda _id: None)
    outside = Etcd([etcd.url])
    try:
        lease.start()
        began = time.monotonic()
        # The keep-alive at 2 s goes out on a connection the cut silenced,
        # and fails at its read timeout (4 s), etcd having been back since 2.5 s.
        relay.cut("reject")
        time.sleep(2.5)
        relay.mend()
        time.sleep(began + 5.5 - time.monotonic())
        remaining = int(outside.call("/lease/timetolive", {"ID": lease.id}).get("TTL", 0))
        # Tried again at once, it was refreshed at about 4.5 s (5 s left);
        # left to the next tick (at 6 s) it has about 0.5 s left.
        assert remaining >= 3, f"lease has {remaining}s left, 3 s after etcd came back"
    finally:
        lease.stop()
        relay.close()


def test_a_host_gone_past_the_grace_period_loses_its_addresses(hosts):
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    held = a.dockerd.run(net_a).address.split("/")[0]
    a.stop(revoke=False)
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("hosts", "host0")) is None, 5)
    assert b.cluster_mode.host.reap() == []  # not yet: a partition is not a death
    with pytest.raises(ProtocolError):
        b.dockerd.run(net_b, ip=held)
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("grace", "host0")) is None, 10)
    _reclaimed(b)
    assert b.dockerd.run(net_b, ip=held).address == f"{held}/24"
    assert b.cluster_mode.host.etcd.read_prefix(keys.prefix("held", "host0"))[0] == []


def test_the_grace_period_is_etcds_clock_not_a_hosts(hosts, monkeypatch):
    """A reaper whose clock runs ahead (or a host whose clock lags) used to
    reclaim the addresses of a host that was only partitioned."""
    from cluster import host as cluster_host

    a, b = hosts(2, ttl=2, reclaim_grace=6)
    a.dockerd.run(a.dockerd.create_network(subnet=SUBNET))
    a.stop(revoke=False)
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("hosts", "host0")) is None, 5)
    monkeypatch.setattr(cluster_host.time, "time", lambda: 10 ** 12)  # b's clock, far ahead
    assert b.cluster_mode.host.reap() == []
    assert b.cluster_mode.host.etcd.read_prefix(keys.prefix("held", "host0"))[0] != []


def test_a_reclaim_is_fenced_on_the_host_being_away_still(hosts, monkeypatch):
    """The host comes back between the reaper's read and its release: it
    keeps every address (the release compared only the holder before)."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    held = a.dockerd.run(a.dockerd.create_network(subnet=SUBNET)).address.split("/")[0]
    a.stop(revoke=False)
    reaper = b.cluster_mode.host
    release = reaper.release_held

    def back_first(*args):
        reaper.etcd.put(keys.key("hosts", "host0"), '{"advertise": "192.0.2.1"}')  # as its announce does
        return release(*args)

    monkeypatch.setattr(reaper, "release_held", back_first)  # its reaper thread's passes too
    wait_until(lambda: reaper.etcd.get(keys.key("grace", "host0")) is None, 10)
    assert reaper.reap() == []
    pool = keys.pool_name("LocalDefault", SUBNET)
    address = reaper.etcd.get(keys.prefix("addrs", pool) + keys.hexaddr(int(ipaddress.ip_address(held))))
    assert address is not None and '"host0"' in address.value
    assert reaper.etcd.get(keys.key("seen", "host0")) is not None


@pytest.mark.parametrize("how", ["restarted", "lease replaced"])
def test_a_host_back_after_its_addresses_were_reclaimed_publishes_only_what_it_holds(hosts, tmp_path, etcd, how):
    """No duplicate address: host0 is away past the grace, host1 is given
    one of its addresses; when host0 comes back (its process restarted, or
    its lease replaced by its keep-alive), it publishes again only the
    endpoints whose addresses it still holds (claiming back a freed one),
    and marks the other lost, in its store and in inspect. Before, it
    published both, and the last record written won every peer's FDB."""
    from plugin import inspect

    a, b, c = hosts(3, ttl=2, reclaim_grace=6)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b, c)]
    taken = a.dockerd.run(nets[0]).address.split("/")[0]
    kept = a.dockerd.run(nets[0]).address.split("/")[0]
    wait_until(lambda: len(c.overlay.all_peers()) == 2, 5)
    if how == "restarted":
        a.stop(revoke=False)
    else:  # cut off from etcd: both its leases end there, while its process runs on
        outside = Etcd([etcd.url])
        for lease in (a.cluster_mode.host._lease, a.cluster_mode.host._grace_lease):
            lease._stop.set()
            outside.call("/kv/lease/revoke", {"ID": lease.id})
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("grace", "host0")) is None, 10)
    _reclaimed(b)
    winner = b.dockerd.run(nets[1], ip=taken)
    if how == "restarted":
        back = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", 2, reclaim_grace=6)
        back.cluster_mode.host.lease_id()
    else:  # reachable again: what its keep-alive does on finding the lease gone
        back = a
        lease = a.cluster_mode.host._lease
        lease.id = lease._grant()
        lease._on_new(lease.id)
        # The records written again, in a thread of their own.
        wait_until(lambda: a.cluster_mode.host._rewriter is None, 10)
    try:
        records = [json.loads(kv.value) for kv in b.cluster_mode.host.etcd.read_prefix(keys.prefix("endpoints"))[0]]
        holders = sorted((r["host"], addr) for r in records for addr in r["addresses"])
        assert holders == sorted([("host1", taken), ("host0", kept)])
        pool = keys.pool_name("LocalDefault", SUBNET)
        claim = b.cluster_mode.host.etcd.get(keys.prefix("addrs", pool) + keys.hexaddr(int(ipaddress.ip_address(kept))))
        assert '"host0"' in claim.value  # claimed back
        wait_until(lambda: {(p.address, p.vtep) for p in c.overlay.all_peers()}
                   == {(taken, "192.0.2.2"), (kept, "192.0.2.1")}, 5)
        (lost,) = [e.to_json() for e in back.cluster_mode._stored()[1] if e.lost]
        assert lost["lost"] == {"address": taken, "holder": "host1"}
        assert lost["address"].startswith(taken + "/")
        text = inspect.render(inspect.collect(back.store))
        assert "LOST TO THE CLUSTER" in text and "host1" in text
        assert winner.address == f"{taken}/24"
    finally:
        if back is not a:
            back.stop()


def test_a_reclaim_pass_with_every_host_alive_reads_two_counts_only(hosts, monkeypatch):
    a, b = hosts(2)
    a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    assert b.cluster_mode.host.etcd.counts(keys.prefix("hosts"), keys.prefix("seen")) == [2, 2]
    calls = []
    monkeypatch.setattr(b.cluster_mode.host.etcd, "call", lambda path, body, **kw: calls.append(body) or
                        type(b.cluster_mode.host.etcd).call(b.cluster_mode.host.etcd, path, body, **kw))
    assert b.cluster_mode.host.reap() == []
    (txn,) = [body for body in calls if "compare" in body]  # not the watches' own calls
    assert all(op["request_range"]["count_only"] for op in txn["success"])


def test_containers_stop_and_networks_go_while_etcd_is_away(hosts, etcd):
    a, b = hosts(2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    etcd.stop()
    a.dockerd.stop(ctr)  # no 503: the cluster's part waits for etcd
    a.dockerd.remove_network(net_a)
    assert a.cluster_mode._stored() == ([], [])
    etcd.start()
    assert a.cluster_mode.host.retry_pending() == 0
    wait_until(lambda: b.overlay.all_peers() == set(), 5)
    etcd_client = b.cluster_mode.host.etcd
    assert [kv.key for kv in etcd_client.read_prefix(keys.prefix("members"))[0]] == [
        keys.prefix("members", keys.pool_name("LocalDefault", SUBNET)) + "host1"]
    assert b.dockerd.run(net_b, ip=ctr.address.split("/")[0]).address == ctr.address  # freed


@pytest.mark.parametrize("others", [0, 1])
def test_a_pool_released_during_an_outage_is_left_after_a_restart(hosts, tmp_path, etcd, monkeypatch, others):
    """ReleasePool's leave waits in memory for etcd; a restart meanwhile
    used to lose it, and the membership blocked the pool's removal."""
    from cluster import mode as cluster_mode

    monkeypatch.setattr(cluster_mode, "RETRY_S", 0.2)
    a, *rest = hosts(1 + others)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, *rest)]
    pool = keys.pool_name("LocalDefault", SUBNET)
    etcd.stop()
    a.dockerd.remove_network(nets[0])
    a.stop(revoke=False)
    assert (tmp_path / "h0" / cluster_mode.OWED_FILE).exists()
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1")
    try:
        again.cluster_mode.worker_started()  # no network stored: the owed teardown alone brings it to etcd
        etcd.start()
        client = Etcd([etcd.url])
        members = lambda: [kv.key.rsplit("/", 1)[1] for kv in client.read_prefix(keys.prefix("members", pool))[0]]
        wait_until(lambda: members() == [h.cluster_mode.host.host_id for h in rest], 5)
        assert (client.get(keys.key("pools", pool)) is None) == (others == 0)  # the last member takes the pool
        assert (client.get(keys.key("nets", pool)) is None) == (others == 0)
        wait_until(lambda: not (tmp_path / "h0" / cluster_mode.OWED_FILE).exists(), 5)
    finally:
        again.stop()


def test_a_rejoin_cut_short_by_etcd_is_done_again_at_the_next_call(hosts, tmp_path, etcd, monkeypatch):
    (a,) = hosts(1)
    a.dockerd.create_network(subnet=SUBNET)
    etcd.stop()
    a.dockerd.cleanup()  # the pool's leave is postponed
    a.stop(revoke=False)
    etcd.start()
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1")
    try:
        leave, calls = again.cluster_mode.ipam.leave_forgotten, []

        def flaky(pools):
            calls.append(pools)
            if len(calls) == 1:
                raise EtcdUnavailable("etcd is unreachable (as if it went away again)")
            return leave(pools)

        monkeypatch.setattr(again.cluster_mode.ipam, "leave_forgotten", flaky)
        with pytest.raises(EtcdUnavailable):
            again.cluster_mode.host.lease_id()
        again.cluster_mode.host.lease_id()
        assert len(calls) == 2
        assert Etcd([etcd.url]).read_prefix(keys.prefix("pools"))[0] == []
    finally:
        again.stop()


# -- postponed teardown replayed over a new network (issue 18 #1) ----------------------------
POOL = keys.pool_name("LocalDefault", SUBNET)


def _peer(ctr, vtep: str) -> Peer:
    return Peer(ctr.mac.lower(), ctr.address.split("/")[0], vtep)


def _addr_key(address: str) -> str:
    return keys.prefix("addrs", POOL) + keys.hexaddr(int(ipaddress.ip_interface(address).ip))


def _network_records_hold(client: Etcd, host: Host, members: list[str], ctrs: list) -> None:
    """The invariants of SUBNET's network after ``host`` made it again:
    every record of the network there, ``members`` its members, and each
    of ``ctrs`` (``host``'s containers) with its claim and its endpoint
    record, nothing else of ``host``'s."""
    (network,) = host.cluster_mode._stored()[0]
    assert client.get(keys.key("pools", POOL)) is not None
    assert client.get(keys.key("nets", POOL)) is not None
    assert client.get(keys.key("vnis", network.cluster.vni)).value == POOL
    gateway = client.get(keys.key("gateway", POOL))
    assert gateway is not None and f"{ipaddress.ip_address(int(gateway.value))}/24" == network.ipv4[0].gateway
    assert sorted(kv.key.rsplit("/", 1)[1] for kv in client.read_prefix(keys.prefix("members", POOL))[0]) == members
    me = host.cluster_mode.host.host_id
    for ctr in ctrs:
        claim = client.get(_addr_key(ctr.address))
        assert claim is not None and json.loads(claim.value) == {"host": me, "kind": "address"}
    held = {kv.key for kv in client.read_prefix(keys.prefix("held", me))[0]}
    assert held == {keys.prefix("held", me) + POOL + "/" + _addr_key(c.address).rsplit("/", 1)[1] for c in ctrs}
    records = {kv.key for kv in client.read_prefix(keys.prefix("endpoints", POOL) + me + "/")[0]}
    assert records == {keys.prefix("endpoints", POOL) + f"{me}/{c.endpoint_id}" for c in ctrs}


def _removed_in_an_outage_then_made_again(host, etcd, ctr, net):
    """``docker stop`` and ``network rm`` while etcd is away (their cluster
    part waits), then the network and a container made again on the same
    subnet once etcd is back, before the waiting teardown runs; then it
    runs. Returns the new network and container."""
    etcd.stop()
    host.dockerd.stop(ctr)
    host.dockerd.remove_network(net)
    etcd.start()
    again = host.dockerd.create_network(subnet=SUBNET)
    new = host.dockerd.run(again)
    assert host.cluster_mode.host.retry_pending() == 0
    return again, new


def test_a_network_removed_during_an_outage_and_made_again_keeps_the_new_ones_records(hosts, etcd):
    """host0 removes the network while etcd is away, and makes it again on
    the same subnet, with a container, before its postponed teardown runs.
    The teardown used to delete the new network's records with the old's:
    host0's membership and every endpoint record of it on the pool, so
    host1 dropped the new container."""
    a, b = hosts(2)
    net_a, _ = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    old = a.dockerd.run(net_a)
    wait_until(lambda: b.overlay.all_peers() == {_peer(old, "192.0.2.1")}, 5)
    again, new = _removed_in_an_outage_then_made_again(a, etcd, old, net_a)
    # Watch events come in revision order: once host1 has one published
    # after the replay, it has applied what the replay did. (An address of
    # its own: the old container's, freed by the replay, would give the
    # old container's peer again, which host1 had before the outage.)
    later = a.dockerd.run(again, ip="10.90.0.100")
    wait_until(lambda: _peer(later, "192.0.2.1") in b.overlay.all_peers(), 20)
    assert b.overlay.all_peers() == {_peer(new, "192.0.2.1"), _peer(later, "192.0.2.1")}
    client = Etcd([etcd.url])
    _network_records_hold(client, a, ["host0", "host1"], [new, later])
    assert client.get(_addr_key(old.address)) is None  # what the teardown was for did go
    assert client.get(keys.prefix("endpoints", POOL) + f"host0/{old.endpoint_id}") is None


def test_a_sole_members_network_made_again_before_its_teardown_runs_keeps_every_record(hosts, etcd):
    """The same with host0 the pool's only member: the postponed leave of
    the last member used to take the pool, its gateway, its addresses, its
    network record and its VNI from under the new network's container."""
    (a,) = hosts(1)
    net = a.dockerd.create_network(subnet=SUBNET)
    old = a.dockerd.run(net)
    again, new = _removed_in_an_outage_then_made_again(a, etcd, old, net)
    client = Etcd([etcd.url])
    _network_records_hold(client, a, ["host0"], [new])
    # and the cluster allocates around them: the next address is neither
    # the gateway nor the new container's
    assert a.dockerd.run(again).address not in (new.address, again.pools[0]["Gateway"])
    a.dockerd.cleanup()
    assert client.read_prefix(keys.prefix("pools"))[0] == []  # the real last leave still takes it all
    assert client.read_prefix(keys.prefix("addrs"))[0] == []


def test_an_address_released_while_cut_off_and_claimed_again_here_keeps_its_new_claim(hosts, etcd, monkeypatch):
    """host0, cut off from etcd, stops a container with --ip X: the release
    waits. host0 stays away past the grace, host1 reclaims its addresses;
    back, host0 runs a new container with --ip X, then the postponed
    release runs. It used to free the new claim (compared on the holder
    only, which is host0 again), so host1 could take X too."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    address = "10.90.0.50"
    old = a.dockerd.run(net_a, ip=address)

    def cut(*_args, **_kwargs):
        raise EtcdUnavailable("etcd is unreachable (host0 is cut off)")

    monkeypatch.setattr(a.cluster_mode.host.etcd, "call", cut)
    a.dockerd.stop(old)  # the cluster's part waits
    client = Etcd([etcd.url])
    wait_until(lambda: client.get(keys.key("grace", "host0")) is None, 15)

    def reclaimed() -> bool:
        b.cluster_mode.host.reap()  # host1's reclaim pass (its own thread may run one first)
        return client.get(_addr_key(address)) is None

    wait_until(reclaimed, 10)
    monkeypatch.undo()  # back: its keep-alive finds its lease gone and takes a new one
    wait_until(lambda: client.get(keys.key("hosts", "host0")) is not None, 10)
    new = a.dockerd.run(net_a, ip=address)
    assert a.cluster_mode.host.retry_pending() == 0
    claim = client.get(_addr_key(address))
    assert claim is not None and json.loads(claim.value) == {"host": "host0", "kind": "address"}
    assert client.get(keys.prefix("held", "host0") + POOL + "/" + _addr_key(address).rsplit("/", 1)[1]) is not None
    assert client.get(keys.prefix("endpoints", POOL) + f"host0/{new.endpoint_id}") is not None
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.run(net_b, ip=address)
    assert refused.value.status == 409 and "host0" in str(refused.value)
    a.dockerd.stop(new)  # with etcd there, the release frees it at once
    assert b.dockerd.run(net_b, ip=address).address == f"{address}/24"


def test_a_call_while_a_host_back_past_the_grace_writes_its_records_again_waits_for_them(hosts, etcd, monkeypatch):
    """host0 is cut off past the grace (host1 ends its membership); back,
    its new lease is announced before its memberships are taken up again.
    A `docker run` in between used to be refused (409 "remove the network
    and create it again"), for a network that was about to be whole."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a)
    reach, away = a.cluster_mode.host.etcd.call, threading.Event()
    away.set()

    def cut(*args, **kwargs):
        if away.is_set():
            raise EtcdUnavailable("etcd is unreachable (host0 is cut off)")
        return reach(*args, **kwargs)

    monkeypatch.setattr(a.cluster_mode.host.etcd, "call", cut)
    client = Etcd([etcd.url])
    wait_until(lambda: client.get(keys.key("grace", "host0")) is None, 15)
    membership = keys.prefix("members", POOL) + "host0"

    def reclaimed() -> bool:
        b.cluster_mode.host.reap()
        return client.get(membership) is None

    wait_until(reclaimed, 10)
    taking_up = a.cluster_mode.ipam.member_again

    def slowly(pools):  # the window between the announce and the memberships, made wide
        time.sleep(1.5)
        return taking_up(pools)

    monkeypatch.setattr(a.cluster_mode.ipam, "member_again", slowly)
    away.clear()  # back: its keep-alive finds its lease gone and takes a new one
    wait_until(lambda: client.get(keys.key("hosts", "host0")) is not None, 10, step=0.01)
    assert client.get(membership) is None  # inside the window
    new = a.dockerd.run(net_a)
    assert client.get(membership) is not None
    claim = client.get(_addr_key(new.address.split("/")[0]))
    assert claim is not None and json.loads(claim.value) == {"host": "host0", "kind": "address"}


def test_calls_go_to_the_next_endpoint_when_one_is_down(etcd):
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        client = Etcd([f"http://127.0.0.1:{closed.getsockname()[1]}", etcd.url])
        client.put("/pontoon/test/k", "v")
        assert client.get("/pontoon/test/k").value == "v"
    client.chunk = 2  # a prefix read in several chunks, all at one revision
    for i in range(5):
        client.put(f"/pontoon/test/p/{i}", str(i))
    kvs, _ = client.read_prefix("/pontoon/test/p/")
    assert [kv.value for kv in kvs] == ["0", "1", "2", "3", "4"]


# -- one host ID, one host (issue 18 #4) ----------------------------------------------------
def _contents(etcd_url: str) -> dict:
    """Every record of ours in etcd: key -> (value, lease)."""
    return {kv.key: (kv.value, kv.lease) for kv in Etcd([etcd_url]).read_prefix(keys.ROOT)[0]}


def _clone(tmp_path, source: str, name: str):
    """A copy of a host's state dir (host-id, host-token and store), as a
    cloned VM image carries."""
    import shutil

    shutil.copytree(tmp_path / source, tmp_path / name)
    return tmp_path / name


def test_a_second_host_with_one_host_id_is_refused_and_does_nothing(hosts, tmp_path, etcd, monkeypatch, caplog):
    from cluster import mode as cluster_mode

    monkeypatch.setattr(cluster_mode, "RETRY_S", 0.1)
    a, _, c = hosts()
    net_a = a.dockerd.create_network(subnet=SUBNET)
    c.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    state = _clone(tmp_path, "h0", "clone")
    later = a.dockerd.run(net_a)  # not in the clone's store: its rejoin would free the address
    wait_until(lambda: len(c.overlay.all_peers()) == 2, 5)
    before, peers = _contents(etcd.url), c.overlay.all_peers()

    clone = Host(state, etcd.url, "host0", "192.0.2.9")
    try:
        clone.cluster_mode.worker_started()  # a stored cluster network: it connects at once, in a thread
        wait_until(lambda: any("host ID 'host0'" in r.getMessage() for r in caplog.records), 5)
        with pytest.raises(HostIdTaken) as refused:
            clone.cluster_mode.host.lease_id()
        assert refused.value.status == 409
        assert "'host0'" in str(refused.value) and "192.0.2.1" in str(refused.value)
        pool_id = net_a.pools[0]["PoolID"]
        for method, body in [("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": SUBNET}),
                             ("IpamDriver.RequestAddress", {"PoolID": pool_id, "Address": "", "Options": None}),
                             ("IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": later.address.split("/")[0]}),
                             ("NetworkDriver.DeleteEndpoint", {"NetworkID": net_a.id, "EndpointID": ctr.endpoint_id}),
                             ("IpamDriver.ReleasePool", {"PoolID": pool_id})]:
            status, reply = clone.client.call(method, body)
            assert status == 409 and "'host0'" in reply["Err"] and "192.0.2.1" in reply["Err"], (method, reply)
        time.sleep(0.5)  # a few more attempts of the start-up thread
        assert _contents(etcd.url) == before
        assert c.overlay.all_peers() == peers
        assert a.cluster_mode.host.lease_id()  # the holder is untouched, and goes on
        assert a.dockerd.run(net_a).address not in (ctr.address, later.address)
    finally:
        clone.stop()


def test_a_restart_of_the_same_host_takes_its_id_over_from_its_killed_process(hosts, tmp_path, etcd):
    a, _, c = hosts()
    net_a = a.dockerd.create_network(subnet=SUBNET)
    c.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(c.overlay.all_peers()) == 1, 5)
    old = a.cluster_mode.host.lease_id()
    a.stop(revoke=False)  # kill -9: its lease, and hosts/host0 on it, live on for the TTL
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1")
    try:
        assert Etcd([etcd.url]).get(keys.key("hosts", "host0")).lease == old
        new = again.cluster_mode.host.lease_id()
        assert new != old and Etcd([etcd.url]).get(keys.key("hosts", "host0")).lease == new
        assert again.cluster_mode.segment.watched() == [net_a.id]
        assert {p.address for p in c.overlay.all_peers()} == {ctr.address.split("/")[0]}
        got = again.client.ok("IpamDriver.RequestAddress", {"PoolID": net_a.pools[0]["PoolID"], "Address": "",
                                                            "Options": None})["Address"]
        assert got not in (ctr.address, "10.90.0.1/24")
    finally:
        again.stop()


def test_the_same_state_dir_after_a_reboot_waits_for_its_old_lease(hosts, tmp_path, etcd, monkeypatch):
    """Same token and address but another boot: a crash and a quick reboot,
    or a clone configured with the same address. Refused while the old
    lease lives (a clone's never ends); claimed once it ended."""
    from cluster import host as cluster_host

    (a,) = hosts(1, ttl=2)
    a.dockerd.create_network(subnet=SUBNET)
    a.cluster_mode.host.lease_id()
    a.stop(revoke=False)
    monkeypatch.setattr(cluster_host, "boot_id", lambda: "another-boot")
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", ttl=2)
    try:
        with pytest.raises(HostIdTaken) as refused:
            again.cluster_mode.host.lease_id()
        assert refused.value.status == 409 and "192.0.2.1" in str(refused.value)
        wait_until(lambda: Etcd([etcd.url]).get(keys.key("hosts", "host0")) is None, 5)
        assert again.cluster_mode.host.lease_id()
    finally:
        again.stop()


def test_a_refused_host_claims_the_id_once_its_holder_is_gone(hosts, tmp_path, etcd, monkeypatch):
    from cluster import mode as cluster_mode

    monkeypatch.setattr(cluster_mode, "RETRY_S", 0.1)
    (a,) = hosts(1, ttl=2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a)
    clone = Host(_clone(tmp_path, "h0", "clone"), etcd.url, "host0", "192.0.2.9", ttl=2)
    try:
        with pytest.raises(HostIdTaken):
            clone.cluster_mode.host.lease_id()
        clone.cluster_mode.worker_started()
        a.stop(revoke=False)  # the holder dies: its lease ends within the TTL
        holder = lambda: Etcd([etcd.url]).get(keys.key("hosts", "host0"))
        # One read per look: the dead holder's record may expire between two.
        wait_until(lambda: "192.0.2.9" in getattr(holder(), "value", ""), 10)
        wait_until(lambda: clone.cluster_mode.segment.watched() == [net_a.id], 5)  # rejoined, in the start-up thread
        assert holder().lease == clone.cluster_mode.host.lease_id()
    finally:
        clone.stop()


def test_a_lost_lease_is_not_replaced_over_another_host_holding_the_id(hosts, tmp_path, etcd):
    a, b = hosts(2, ttl=3)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    other = Host(tmp_path / "other", etcd.url, "host0", "192.0.2.9", ttl=3)  # its own state dir, a's ID
    try:
        old = a.cluster_mode.host.lease_id()
        # As if a had been cut off from etcd past its TTL, and the other
        # host had come up meanwhile.
        b.cluster_mode.host.etcd.call("/kv/lease/revoke", {"ID": old})
        other.cluster_mode.host.lease_id()
        wait_until(lambda: a.cluster_mode.host._lease.id != old, 5)  # a's keep-alive got a new lease...
        time.sleep(0.3)
        held = Etcd([etcd.url]).get(keys.key("hosts", "host0"))
        # ...and did not take the ID.
        assert "192.0.2.9" in held.value and held.lease == other.cluster_mode.host.lease_id()
        assert _records_of(b) == []  # nor published its endpoints again
        with pytest.raises(ProtocolError) as refused:
            a.dockerd.run(net_a)
        assert refused.value.status == 409 and "192.0.2.9" in str(refused.value)
    finally:
        other.stop()


def test_malformed_and_hostile_records_are_skipped_and_the_rest_served(hosts, etcd):
    """Records written from outside with etcdctl: not JSON, a zero MAC, the
    gateway's address, a host field that is not its key's, an address
    another host holds in addrs/, and a host's own address sent to a VTEP
    that is not the one its hosts/ record advertises. Each is skipped (before, the first raised
    in the watch, which re-read every second, and the others went into the
    kernel); the real records are served, at a full read and as events."""
    a, b, c = hosts(3)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    real = a.dockerd.run(nets[0])
    real_ip = real.address.split("/")[0]
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    endpoints = keys.prefix("endpoints", keys.pool_name("LocalDefault", SUBNET))
    record = {"host": "ghost", "vtep": "192.0.2.66", "mac": "02:42:0a:5a:00:63", "addresses": ["10.90.0.99"]}
    hostile = {
        "ghost/notjson": "{not json",
        "ghost/zeromac": {**record, "mac": "00:00:00:00:00:00"},
        "ghost/gateway": {**record, "addresses": ["10.90.0.1"]},
        "ghost/notitsown": {**record, "host": "host0"},
        "ghost/stolen": {**record, "addresses": [real_ip]},   # addrs/ gives it to host0
        "ghost/unallocated": record,                         # addrs/ gives 10.90.0.99 to no one
        "ghost/outside": {**record, "addresses": ["10.91.0.5"]},
        # under host0, an address addrs/ gives host0: only the VTEP is not its
        "host0/wrongvtep": {**record, "host": "host0", "addresses": [real_ip]},
    }
    for key, value in hostile.items():
        etcd.ctl("put", endpoints + key, value if isinstance(value, str) else json.dumps(value))
    later = a.dockerd.run(nets[0])  # the watch still serves what comes after
    served = {real_ip, later.address.split("/")[0]}
    wait_until(lambda: {p.address for p in b.overlay.all_peers()} == served, 5)
    assert {p.vtep for p in b.overlay.all_peers()} == {"192.0.2.1"}
    # A host joining now reads them all at once: the same.
    c.dockerd.create_network(subnet=SUBNET)
    wait_until(lambda: {p.address for p in c.overlay.all_peers()} == served, 5)
    assert {p.vtep for p in c.overlay.all_peers()} == {"192.0.2.1"}


def test_a_record_with_a_bad_name_is_parsed_and_logged_once_per_event(hosts, etcd, caplog):
    """An endpoint record rewritten from outside with a name DNS cannot
    answer for: its peers stay, its name is skipped, and each host that
    watches the network says so once. Before, an event's record was parsed
    twice (for its addresses' holders, then to apply it), and logged twice."""
    a, b = hosts(2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    a.dockerd.run(nets[0])
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    (kv,), _ = Etcd([etcd.url]).read_prefix(keys.prefix("endpoints"))
    caplog.set_level("ERROR", logger="pontoon.cluster")

    def said() -> int:
        return sum(kv.key in r.getMessage() and "name is skipped" in r.getMessage() for r in caplog.records)

    etcd.ctl("put", kv.key, json.dumps({**json.loads(kv.value), "name": "no good"}))
    wait_until(lambda: said() >= 2, 5)  # both hosts watch the network
    time.sleep(1.0)  # a second parse of either event would be logged by now
    assert said() == 2
    assert len(b.overlay.all_peers()) == 1


def test_a_record_removed_leaves_the_peer_another_record_still_wants(hosts, etcd):
    """Two records want one (MAC, address): removing one used to take the
    kernel's entries from under the other until the next full read."""
    a, b = hosts(2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    a.dockerd.run(nets[0])
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    (kv,), _ = Etcd([etcd.url]).read_prefix(keys.prefix("endpoints"))
    twin = kv.key.rsplit("/", 1)[0] + "/twin"
    etcd.ctl("put", twin, kv.value)
    time.sleep(0.5)
    etcd.ctl("del", twin)
    time.sleep(0.5)
    (peer,) = b.overlay.all_peers()
    assert peer.address in kv.value and peer.mac in kv.value


def test_a_watch_whose_stream_went_silent_reads_again(hosts, tmp_path, etcd, monkeypatch):
    """host1 reaches etcd through a relay whose open connections then go
    silent (a lost FIN, a NAT's forgotten entry): its watch stream stays
    open and delivers nothing. Before, the watch waited on it forever and
    host0's next container never reached host1's datapath; now a stream
    silent past the bound is read again in full."""
    from cluster import etcd as etcd_module

    monkeypatch.setattr(etcd_module, "WATCH_SILENCE_S", 2.0)
    host, port = etcd.url.removeprefix("http://").rsplit(":", 1)
    relay = SilentableRelay((host, int(port)))
    (a,) = hosts(1)
    b = Host(tmp_path / "relayed", relay.url, "host1", "192.0.2.2")
    try:
        net_a = a.dockerd.create_network(subnet=SUBNET)
        b.dockerd.create_network(subnet=SUBNET)
        a.dockerd.run(net_a)
        wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
        relay.silence_open_connections()
        a.dockerd.run(net_a)
        wait_until(lambda: len(b.overlay.all_peers()) == 2, 10)
    finally:
        b.stop()
        relay.close()


@pytest.mark.parametrize("deleted", ["endpoint", "network"])
def test_a_delete_during_the_start_up_republish_stays_deleted(hosts, tmp_path, etcd, monkeypatch, deleted):
    """DeleteEndpoint (and DeleteNetwork) while a restarted host publishes
    its stored endpoints again: the republish, working from the store it
    read before, used to write the deleted endpoint's record back on the
    live lease, where it stayed for the life of the process (and a deleted
    network got its watch back)."""
    from cluster.segment import ClusterSegment

    a, b = hosts(2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    ctr = a.dockerd.run(nets[0])
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    a.stop(revoke=False)
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1")
    republish = ClusterSegment._republish_batch

    def deleted_first(segment, batch, lease, pools):
        if segment is again.cluster_mode.segment:  # the store was read; the delete comes now
            again.dockerd.containers.append(ctr)  # dockerd's, which outlived Pontoon's restart
            again.dockerd.networks.append(nets[0])
            again.dockerd.stop(ctr)
            if deleted == "network":
                again.dockerd.remove_network(nets[0])
        return republish(segment, batch, lease, pools)

    monkeypatch.setattr(ClusterSegment, "_republish_batch", deleted_first)
    try:
        again.cluster_mode.host.lease_id()
        mine = keys.prefix("endpoints", keys.pool_name("LocalDefault", SUBNET)) + "host0/"
        assert again.cluster_mode.host.etcd.read_prefix(mine)[0] == []
        wait_until(lambda: b.overlay.all_peers() == set(), 5)
        assert again.cluster_mode.segment.watched() == ([] if deleted == "network" else [nets[0].id])
    finally:
        again.stop()


def test_a_republish_writes_its_endpoints_in_batches(hosts, tmp_path, etcd, monkeypatch):
    """Issue 18 #5: a republish (at start, or with a replaced lease) took two
    round trips per endpoint; now two per batch of REPUBLISH_BATCH, the
    address checks unchanged (one of the endpoints lost its address to
    another host meanwhile, and is the only one not published)."""
    from cluster.segment import REPUBLISH_BATCH, ClusterSegment

    a, b = hosts(2, ttl=2, reclaim_grace=6)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    ctrs = [a.dockerd.run(nets[0]) for _ in range(30)]
    a.stop(revoke=False)
    wait_until(lambda: b.cluster_mode.host.etcd.get(keys.key("grace", "host0")) is None, 10)
    _reclaimed(b)
    taken = ctrs[7].address.split("/")[0]
    b.dockerd.run(nets[1], ip=taken)  # given to host1 while host0 was away
    calls, resume = [], ClusterSegment.resume

    def counted(segment, *args):
        txn = segment.host.etcd.txn
        monkeypatch.setattr(segment.host.etcd, "txn", lambda *a, **k: calls.append(1) or txn(*a, **k))
        try:
            return resume(segment, *args)
        finally:
            monkeypatch.setattr(segment.host.etcd, "txn", txn)

    monkeypatch.setattr(ClusterSegment, "resume", counted)
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", ttl=2, reclaim_grace=6)
    try:
        began = time.monotonic()
        again.cluster_mode.host.lease_id()
        took = time.monotonic() - began
        published = {kv.key.rsplit("/", 1)[1] for kv in _records_of(b)}
        assert published == {c.endpoint_id for c in ctrs} - {ctrs[7].endpoint_id}
        batches = -(-len(ctrs) // REPUBLISH_BATCH)
        # two per batch, and the failed batch's endpoints one by one (two each)
        assert len(calls) <= 2 * batches + 2 * REPUBLISH_BATCH, calls
        print(f"republished {len(ctrs) - 1} endpoints in {len(calls)} transactions, {took:.2f}s")
    finally:
        again.stop()


# -- a dead host's pool memberships (issue 18 #11) ---------------------------------------------
def _members(client: Etcd, pool: str = POOL) -> list[str]:
    return sorted(kv.key.rsplit("/", 1)[1] for kv in client.read_prefix(keys.prefix("members", pool))[0])


def _killed_past_the_grace(dead: Host, reaper: Host) -> None:
    """``dead`` killed (its leases left to expire), then away past the grace."""
    dead.stop(revoke=False)
    wait_until(lambda: reaper.cluster_mode.host.etcd.get(keys.key("hosts", dead.cluster_mode.host.host_id)) is None, 5)
    wait_until(lambda: reaper.cluster_mode.host.etcd.get(keys.key("grace", dead.cluster_mode.host.host_id)) is None, 10)


@pytest.mark.parametrize("option", ["mtu", "internal"])
def test_a_dead_sole_members_pool_is_reclaimed_and_the_subnet_made_again_with_other_options(hosts, option):
    """host0 alone holds the subnet's network, and dies. Its membership
    used to outlive it, and with it the pool, gateway, network record and
    VNI: the subnet could never be made again with other options (a 409
    naming the option, for good)."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    a.dockerd.run(a.dockerd.create_network(subnet=SUBNET))
    vni = a.cluster_mode._stored()[0][0].cluster.vni
    _killed_past_the_grace(a, b)
    client = b.cluster_mode.host.etcd
    _reclaimed(b)
    assert _members(client) == []
    assert client.get(keys.key("pools", POOL)) is None
    assert client.get(keys.key("gateway", POOL)) is None
    assert client.get(keys.key("nets", POOL)) is None
    assert client.get(keys.key("vnis", vni)) is None
    assert client.read_prefix(keys.prefix("addrs", POOL))[0] == []
    assert client.read_prefix(keys.prefix("held", "host0"))[0] == []
    assert client.get(keys.key("seen", "host0")) is None
    if option == "mtu":
        net = b.dockerd.create_network(subnet=SUBNET, options={"com.docker.network.driver.mtu": "1300"})
    else:
        net = b.dockerd.create_network(subnet=SUBNET, internal=True)
    (stored,) = b.cluster_mode._stored()[0]
    assert (stored.options.mtu == 1300) if option == "mtu" else stored.options.internal
    assert b.dockerd.run(net).address == "10.90.0.2/24"  # host0's container's address, free again
    assert _members(client) == ["host1"]


def test_a_dead_hosts_membership_ends_and_the_pool_stays_for_the_live_member(hosts):
    """host0 and host1 both hold the network; host0 dies. Its membership
    ends (and its addresses go); the pool and every record of the network
    stay for host1, whose container keeps its address."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    gone = a.dockerd.run(net_a)
    kept = b.dockerd.run(net_b)
    _killed_past_the_grace(a, b)
    client = b.cluster_mode.host.etcd
    _reclaimed(b)
    assert _members(client) == ["host1"]
    _network_records_hold(client, b, ["host1"], [kept])
    assert client.get(_addr_key(gone.address)) is None
    # host1 is the last member now: its leave takes the network with it
    b.dockerd.cleanup()
    assert client.read_prefix(keys.prefix("pools"))[0] == [] and client.read_prefix(keys.prefix("nets"))[0] == []


def test_a_membership_reclaim_is_fenced_on_the_host_being_away_still(hosts, monkeypatch):
    """host0 comes back between the reaper's read of its memberships and
    their removal: it keeps its membership, and the pool stays."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    a.dockerd.run(a.dockerd.create_network(subnet=SUBNET))
    reaper, ipam = b.cluster_mode.host, b.cluster_mode.ipam
    leave, back = ipam._leave, []

    def back_first(*args, **kwargs):
        reaper.etcd.put(keys.key("hosts", "host0"), '{"advertise": "192.0.2.1"}')  # as its announce does
        back.append(args)
        return leave(*args, **kwargs)

    monkeypatch.setattr(ipam, "_leave", back_first)  # its reaper thread's passes too
    _killed_past_the_grace(a, b)
    assert reaper.reap() == []
    assert back  # the reaper got as far as the membership's removal
    assert _members(reaper.etcd) == ["host0"]
    for kind in ("pools", "gateway", "nets"):
        assert reaper.etcd.get(keys.key(kind, POOL)) is not None
    assert reaper.etcd.get(keys.key("seen", "host0")) is not None


def test_a_host_back_after_its_membership_was_reclaimed_is_a_member_again(hosts, tmp_path, etcd):
    """host0's membership was reclaimed, then it restarts with its network
    in its store: it is a member again, so host1 leaving (the last member
    but for it) does not take the pool from under host0's container."""
    a, b = hosts(2, ttl=2, reclaim_grace=6)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    _killed_past_the_grace(a, b)
    client = b.cluster_mode.host.etcd
    _reclaimed(b)
    assert _members(client) == ["host1"]
    back = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", 2, reclaim_grace=6)
    try:
        back.cluster_mode.host.lease_id()
        assert _members(client) == ["host0", "host1"]
        b.dockerd.cleanup()
        _network_records_hold(client, back, ["host0"], [ctr])
    finally:
        back.stop()


@pytest.mark.parametrize("first", ["slow, then failing", "failing at once"])
def test_a_failed_republish_is_tried_again_on_the_new_lease_kept_meanwhile(hosts, etcd, monkeypatch, first):
    """host0's lease is gone (revoked from outside, as after an outage
    longer than the TTL) and its first republish fails. It used to run in
    the keep-alive thread: one that took three TTLs let the new lease
    expire in the middle of it, and a failure was never tried again."""
    a, b = hosts(2, ttl=2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    a.dockerd.run(nets[0])
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    resume, leases = a.cluster_mode.segment.resume, []

    def failing_first(networks, endpoints, lease, pools):
        leases.append(lease)
        if len(leases) == 1:
            if first.startswith("slow"):
                time.sleep(3 * a.cluster_mode.host.ttl)
            raise EtcdUnavailable("etcd is unreachable (injected in the test)")
        return resume(networks, endpoints, lease, pools)

    monkeypatch.setattr(a.cluster_mode.segment, "resume", failing_first)
    old = a.cluster_mode.host.lease_id()
    Etcd([etcd.url]).call("/kv/lease/revoke", {"ID": old})
    wait_until(lambda: _records_of(b) == [], 5)
    wait_until(lambda: len(_records_of(b)) == 1, 20)
    assert len(leases) == 2 and leases[0] == leases[1] == a.cluster_mode.host.lease_id() != old
    assert b.cluster_mode.host.etcd.get(keys.key("hosts", "host0")).lease == leases[0]


def test_a_docker_run_in_the_gap_after_a_lost_lease_waits_for_the_new_one(hosts, etcd):
    """Between the lease's expiry and the keep-alive noticing, every docker
    run used to get a 503 (its record was put on the lost lease)."""
    a, b = hosts(2, ttl=2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    old = a.cluster_mode.host.lease_id()
    Etcd([etcd.url]).call("/kv/lease/revoke", {"ID": old})
    ctr = a.dockerd.run(nets[0])
    record = b.cluster_mode.host.etcd.get(keys.prefix("endpoints", keys.pool_name("LocalDefault", SUBNET))
                                  + f"host0/{ctr.endpoint_id}")
    assert record is not None and record.lease == a.cluster_mode.host.lease_id() != old
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)


def test_a_host_whose_underlay_cannot_carry_the_networks_mtu_is_refused(hosts):
    """The MTU is the cluster's (the first host's underlay less 50); a host
    whose underlay is smaller used to join and drop every full-size frame
    to and from the others (VXLAN packets are not fragmented)."""
    
    from .control import DP

    a, b = hosts(2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.cluster_mode.segment.dp = dataclasses.replace(DP, default_mtu=lambda _local: 1400)
    with pytest.raises(ProtocolError, match="MTU 1450 of cluster network 10.90.0.0/24 .* at most 1400"):
        b.dockerd.create_network(subnet=SUBNET)
    with pytest.raises(ProtocolError, match="MTU 1500 .* at most 1450"):
        a.dockerd.create_network(subnet="10.90.1.0/24", options={"com.docker.network.driver.mtu": "1500"})
    assert b.cluster_mode._stored() == ([], [])
    a.dockerd.run(net_a)  # the network as it was


@pytest.mark.parametrize("made", ["with a subnet", "from the default pools"])
def test_a_pool_made_between_the_overlap_check_and_the_create_is_seen(hosts, monkeypatch, made):
    """host1 makes an overlapping pool right after host0's overlap check
    read the cluster's pools: host0's create used to succeed, two
    overlapping pools in one cluster. Its create compares the pools' range
    now, fails, and looks again."""
    a, b = hosts(2)
    read = a.ipam._cluster_pools
    ran = []

    def then_another_host(*args):
        found = read(*args)
        if not ran:
            ran.append(b.dockerd.create_network(subnet="10.199.0.0/16"))  # covers host0's pick
        return found

    monkeypatch.setattr(a.ipam, "_cluster_pools", then_another_host)
    if made == "with a subnet":
        with pytest.raises(ProtocolError, match="overlaps pool 10.199.0.0/16 held in the cluster"):
            a.dockerd.create_network(subnet="10.199.7.0/24")
    else:
        from ipam_driver.allocator import PoolBase

        monkeypatch.setattr(a.ipam, "_defaults", {4: [PoolBase.parse("10.199.0.0/16:24")], 6: a.ipam._defaults[6]})
        with pytest.raises(ProtocolError, match="no free IPv4 default pool"):
            a.dockerd.create_network()
    assert ran
    pools = [kv.key for kv in b.cluster_mode.host.etcd.read_prefix(keys.prefix("pools"))[0]]
    assert pools == [keys.key("pools", keys.pool_name("LocalDefault", "10.199.0.0/16"))]


class CountingTunnel:
    """A WireGuard tunnel that counts what the segment asks of it."""

    def __init__(self, host_id: str):
        self.address = tunnel_address(host_id)
        self.syncs = 0

    @staticmethod
    def implementation() -> str:
        return "wireguard-go"

    @staticmethod
    def network_mtu(underlay_mtu: int, _advertise: str) -> int:
        return underlay_mtu - 130

    def up(self, *_args) -> None:
        pass

    def down(self) -> None:
        pass

    def sync_peers(self, _wanted: dict, prune: bool) -> None:
        self.syncs += 1


def test_a_plain_networks_members_changing_leaves_the_tunnels_peers_unasked(hosts):
    """With an encrypted network beside a plain one, a container coming or
    going on the plain one changes the guard's members, not the tunnel's
    peers: WireGuard is not asked for them again (two tool runs each)."""
    a, b = hosts(2)
    for host in (a, b):
        host.cluster_mode.segment.tunnel = CountingTunnel(host.cluster_mode.host.host_id)
        key = base64.b64encode(bytes(32)).decode()
        host.cluster_mode.host.wireguard = Wireguard(key, tunnel_address(host.cluster_mode.host.host_id), 51820)
    sealed = [h.dockerd.create_network(subnet="10.92.0.0/24", options={"pontoon.encrypted": "true"})
              for h in (a, b)]
    plain = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    b.dockerd.run(sealed[1])
    wait_until(lambda: len(a.overlay.all_peers()) == 1, 5)
    tunnel = a.cluster_mode.segment.tunnel
    syncs = tunnel.syncs
    assert syncs >= 1  # the encrypted network's peer was given to the tunnel
    b.dockerd.run(plain[1])
    wait_until(lambda: len(a.overlay.all_peers()) == 2, 5)
    assert tunnel.syncs == syncs


def test_a_lease_ending_asks_once_whether_its_host_went_away_not_once_per_record(hosts, monkeypatch):
    """A lease's end deletes every record of its host in one revision; each
    watcher asks etcd once whether the host went away, not once per record
    (a host with hundreds of containers made hundreds of reads on every
    other host at once)."""
    a, b = hosts(2, ttl=2)
    net_a = a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    for _ in range(5):
        a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 5, 5)
    asked = []
    etcd = b.cluster_mode.host.etcd
    real = etcd.range

    def range_(key, *args, **kwargs):
        if key.startswith(keys.prefix("hosts")) and kwargs.get("revision"):
            asked.append(key)
        return real(key, *args, **kwargs)

    monkeypatch.setattr(etcd, "range", range_)
    a.stop(revoke=False)  # the lease left to expire: its 5 records go in one revision
    wait_until(lambda: _records_of(b) == [], 2 + 3)
    time.sleep(0.3)  # the watch's events applied
    assert asked == [keys.key("hosts", "host0")]
    assert len(b.overlay.all_peers()) == 5  # all kept, as before
