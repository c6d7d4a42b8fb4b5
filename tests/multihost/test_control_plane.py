"""The cluster control plane against a real etcd: allocation, agreement,
endpoint records and their watches, outages, compaction."""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster import keys
from cluster.etcd import Etcd, EtcdUnavailable, Watch
from tests.harness.client import ProtocolError

from .control import Host, Peer

SUBNET = "10.90.0.0/24"


@pytest.fixture
def hosts(tmp_path, etcd):
    made = []

    def make(n: int = 3, ttl: int = 15) -> list[Host]:
        for i in range(n):
            made.append(Host(tmp_path / f"h{i}", etcd.url, f"host{i}", f"192.0.2.{i + 1}", ttl))
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
    a.room.host.etcd.delete(keys.key("pools", keys.pool_name("LocalDefault", SUBNET)))
    status, reply = a.client.call("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "10.90.0.5"})
    assert status == 404 and pool["PoolID"] in reply["Err"]
    a.client.ok("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})
    left = [kv.key for kv in a.room.host.etcd.read_prefix(keys.ROOT)[0]]
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
    etcd = a.room.host.etcd
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
    (stored,) = b.room._stored()[0]
    assert stored["options"]["mtu"] == 1400


def test_default_mtu_is_the_underlay_minus_vxlan_overhead_and_vni_is_shared(hosts):
    a, b = hosts(2)
    a.dockerd.create_network(subnet=SUBNET)
    b.dockerd.create_network(subnet=SUBNET)
    (na,), (nb,) = a.room._stored()[0], b.room._stored()[0]
    assert na["options"]["mtu"] == nb["options"]["mtu"] == 1450
    assert na["cluster"]["vni"] == nb["cluster"]["vni"] >= 4096
    assert a.network.get_capabilities({}) == {"Scope": "local", "ConnectivityScope": "global", "GwAllocChecker": True}


def test_without_subnet_each_host_gets_a_pool_no_host_holds(hosts):
    a, b = hosts(2)
    pa = a.dockerd.create_network().pools[0]["Pool"]
    pb = b.dockerd.create_network().pools[0]["Pool"]
    assert not ipaddress.ip_network(pa).overlaps(ipaddress.ip_network(pb))
    # and b may join a's, as the other hosts of that network do
    assert b.dockerd.create_network(subnet=pa).pools[0]["Pool"] == pa


def test_endpoints_become_peers_of_the_other_hosts_only(hosts):
    a, b, c = hosts()
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    ctr = a.dockerd.run(nets[0])
    peer = Peer(ctr.mac.lower(), ctr.address.split("/")[0], "192.0.2.1")
    wait_until(lambda: b.overlay.all_peers() == {peer}, 5)
    assert a.overlay.all_peers() == set()  # its own endpoint is on its bridge
    assert c.overlay.all_peers() == set() and c.room.segment.watched() == []  # no network, no watch
    a.dockerd.stop(ctr)
    wait_until(lambda: b.overlay.all_peers() == set(), 5)


def test_one_host_deleting_the_network_leaves_it_to_the_others(hosts):
    a, b = hosts(2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr_b = b.dockerd.run(net_b)
    a.dockerd.remove_network(net_a)
    assert a.room.segment.watched() == []
    etcd = b.room.host.etcd
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
    detach = a.room.segment.detach

    def detach_then_late(network):  # a CreateEndpoint committed after DeleteNetwork read the endpoints
        detach(network)
        a.network.create_endpoint({"NetworkID": net_a.id, "EndpointID": "e" * 64,
                                   "Interface": {"Address": "10.90.0.9/24"}})

    a.room.segment.detach = detach_then_late
    a.client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": net_a.id})
    assert a.room._stored() == ([], [])
    assert b.room.host.etcd.read_prefix(keys.prefix("endpoints"))[0] == []


def test_a_dead_hosts_endpoints_leave_within_the_lease_ttl(hosts):
    ttl = 3
    a, b = hosts(2, ttl=ttl)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    a.stop(revoke=False)  # as kill -9 would: the lease is left to expire
    took = wait_until(lambda: b.overlay.all_peers() == set(), ttl + 3)
    assert took > 1  # gone by expiry, not at once
    # its address is not freed with the lease: a partition must not free addresses
    with pytest.raises(ProtocolError) as refused:
        b.dockerd.run(net_b, ip=ctr.address.split("/")[0])
    assert refused.value.status == 409


def test_with_etcd_stopped_cluster_calls_fail_fast_and_work_again_after(hosts, etcd):
    (a,) = hosts(1)
    net = a.dockerd.create_network(subnet=SUBNET)
    etcd.stop()
    start = time.monotonic()
    with pytest.raises(ProtocolError) as refused:
        a.dockerd.run(net)
    assert time.monotonic() - start < 5
    assert refused.value.status == 503 and "etcd is unreachable" in str(refused.value)
    assert a.room._stored()[1] == []  # nothing half-made
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
    client.compact(now)

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
    wait_until(lambda: b.overlay.all_peers() == set(), 6)

    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1", ttl=3)
    try:
        again.room.worker_started()  # a stored cluster network: rejoin at once
        wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
        assert again.room.segment.watched() == [net_a.id]
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
    old = a.room.host.live()
    # As if etcd had been away longer than the TTL: the lease is gone.
    b.room.host.etcd.call("/kv/lease/revoke", {"ID": old})
    wait_until(lambda: b.overlay.all_peers() == set(), 3)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    assert a.room.host.live() != old
    assert b.room.host.etcd.get(keys.key("hosts", "host0")).lease == a.room.host.live()


def test_a_host_gone_past_the_grace_period_loses_its_addresses(hosts):
    a, b = hosts(2, ttl=2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    held = a.dockerd.run(net_a).address.split("/")[0]
    a.stop(revoke=False)
    wait_until(lambda: b.room.host.etcd.get(keys.key("hosts", "host0")) is None, 5)
    grace = b.room.host.grace
    assert b.room.host.reap(now=time.time() + grace / 2) == []  # not yet: a partition is not a death
    with pytest.raises(ProtocolError):
        b.dockerd.run(net_b, ip=held)
    assert b.room.host.reap(now=time.time() + grace + 1) == ["host0"]
    assert b.dockerd.run(net_b, ip=held).address == f"{held}/24"
    assert b.room.host.etcd.read_prefix(keys.prefix("held", "host0"))[0] == []


def test_a_reclaim_pass_with_every_host_alive_reads_two_counts_only(hosts, monkeypatch):
    a, b = hosts(2)
    a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    assert b.room.host.etcd.counts(keys.prefix("hosts"), keys.prefix("seen")) == [2, 2]
    calls = []
    monkeypatch.setattr(b.room.host.etcd, "call", lambda path, body, **kw: calls.append(body) or
                        type(b.room.host.etcd).call(b.room.host.etcd, path, body, **kw))
    assert b.room.host.reap(now=time.time() + 10 * b.room.host.grace) == []
    (txn,) = calls
    assert all(op["request_range"]["count_only"] for op in txn["success"])


def test_containers_stop_and_networks_go_while_etcd_is_away(hosts, etcd):
    a, b = hosts(2)
    net_a, net_b = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    wait_until(lambda: len(b.overlay.all_peers()) == 1, 5)
    etcd.stop()
    a.dockerd.stop(ctr)  # no 503: the cluster's part waits for etcd
    a.dockerd.remove_network(net_a)
    assert a.room._stored() == ([], [])
    etcd.start()
    assert a.room.host.retry_pending() == 0
    wait_until(lambda: b.overlay.all_peers() == set(), 5)
    etcd_client = b.room.host.etcd
    assert [kv.key for kv in etcd_client.read_prefix(keys.prefix("members"))[0]] == [
        keys.prefix("members", keys.pool_name("LocalDefault", SUBNET)) + "host1"]
    assert b.dockerd.run(net_b, ip=ctr.address.split("/")[0]).address == ctr.address  # freed


@pytest.mark.parametrize("others", [0, 1])
def test_a_pool_released_during_an_outage_is_left_after_a_restart(hosts, tmp_path, etcd, monkeypatch, others):
    """ReleasePool's leave waits in memory for etcd; a restart meanwhile
    used to lose it, and the membership blocked the pool's removal."""
    from plugin import cluster as room

    monkeypatch.setattr(room, "RETRY_S", 0.2)
    a, *rest = hosts(1 + others)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, *rest)]
    pool = keys.pool_name("LocalDefault", SUBNET)
    etcd.stop()
    a.dockerd.remove_network(nets[0])
    a.stop(revoke=False)
    assert (tmp_path / "h0" / room.OWED_FILE).exists()
    again = Host(tmp_path / "h0", etcd.url, "host0", "192.0.2.1")
    try:
        again.room.worker_started()  # no network stored: the owed teardown alone brings it to etcd
        etcd.start()
        client = Etcd([etcd.url])
        members = lambda: [kv.key.rsplit("/", 1)[1] for kv in client.read_prefix(keys.prefix("members", pool))[0]]
        wait_until(lambda: members() == [h.room.host.host_id for h in rest], 5)
        assert (client.get(keys.key("pools", pool)) is None) == (others == 0)  # the last member takes the pool
        assert (client.get(keys.key("nets", pool)) is None) == (others == 0)
        wait_until(lambda: not (tmp_path / "h0" / room.OWED_FILE).exists(), 5)
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
        leave, calls = again.room.ipam.leave_forgotten, []

        def flaky(pools):
            calls.append(pools)
            if len(calls) == 1:
                raise EtcdUnavailable("etcd is unreachable (as if it went away again)")
            return leave(pools)

        monkeypatch.setattr(again.room.ipam, "leave_forgotten", flaky)
        with pytest.raises(EtcdUnavailable):
            again.room.host.live()
        again.room.host.live()
        assert len(calls) == 2
        assert Etcd([etcd.url]).read_prefix(keys.prefix("pools"))[0] == []
    finally:
        again.stop()


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
