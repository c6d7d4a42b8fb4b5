"""Cluster: crash anywhere. Two hosts of network namespaces on one
underlay, each with its real Pontoon (gunicorn, cluster mode, lease TTL
2 s, reclaim grace 6 s) on one real etcd. A host's server is SIGKILLed,
master and worker, by the test hook (plugin.testhook) just before a named
step: one of its etcd writes (``etcd <op> <kinds>``), a kernel step or
its store commit; in a request, in the republish of its records (at start,
or on a replaced lease), or in the reaper's reclaim of a dead host.

The kill points run as a chain: the server is started armed with the
first; when it dies there it is started again (as gunicorn's supervisor
or systemd would) armed with the next, the broken request is sent again
(as dockerd retries), and so on; each point is thus reached by a fresh
process from the state the kill before left, and each retry goes one step
further than the last. After every restart, and at the end, the cluster's
invariants (tests/multihost/invariants.py) must hold within a few seconds:

- no address is in two endpoint records; every record is a live host's,
  with its VTEP, and its addresses are held in ``addrs/`` by that host;
- every live host's stored endpoint has its record, and every record of a
  live host is one of its stored endpoints;
- every address claimed in ``addrs/`` is the network's (gateway, aux) or
  held in a live host's store (a dead host's, until its reclaim);
- once the hosts have removed the network, etcd holds nothing of ours but
  each host's presence (``hosts/``, ``seen/``, ``grace/``): no pool,
  member, gateway, address, index, network, VNI or record.
"""
from __future__ import annotations

import base64
import json
import time

import pytest

from cluster import keys
from cluster.etcd import KeyValue
from plugin import testhook
from testbed.client import Client, SocketTransport
from testbed.cluster import Cluster, PontoonHost
from testbed.fake_dockerd import FakeDockerd
from tests.reliability.recording import BROKEN

from . import invariants
from .conftest import require_tools

TTL, GRACE = 2, 6
REAP_EVERY = GRACE / 2  # cluster.host: min(60, grace / 2)
CONVERGE_S = 15
POLL_S = 0.2

# (method, step[#n]) in the order a lifecycle reaches them (see
# plugin.testhook; etcd steps are named by the kinds of record they write).
# host1 makes the pool and removes it last; host2 joins it and leaves.
CREATOR_POINTS = [
    ("IpamDriver.RequestPool", "etcd txn hosts"),  # first contact: the claim of the host ID
    ("IpamDriver.RequestPool", "etcd put seen"),
    ("IpamDriver.RequestPool", "etcd put grace"),
    ("IpamDriver.RequestPool", "etcd txn pools members"),  # the pool and its first member, one transaction
    ("IpamDriver.RequestPool", "commit"),  # in the cluster, not in the store
    ("IpamDriver.RequestAddress", "etcd txn gateway addrs"),
    ("IpamDriver.RequestAddress", "commit"),  # the gateway fixed in the cluster, not stored
    ("NetworkDriver.CreateNetwork", "etcd txn nets vnis netof"),  # the network's VNI, options, pools
    ("NetworkDriver.CreateNetwork", "commit"),
    ("NetworkDriver.CreateNetwork", "add vxlan"),
    ("NetworkDriver.CreateNetwork", "enslave"),  # the VXLAN device made, not on the bridge
    ("NetworkDriver.CreateNetwork", "commit#2"),
    ("IpamDriver.RequestAddress", "etcd txn addrs held"),  # a container's address claim
    ("IpamDriver.RequestAddress", "commit"),  # claimed in the cluster, not stored
    ("NetworkDriver.CreateEndpoint", "etcd put endpoints"),  # the record publish
    ("NetworkDriver.CreateEndpoint", "commit"),  # published, not stored
    ("NetworkDriver.Join", "commit"),
    ("NetworkDriver.DeleteEndpoint", "etcd txn endpoints"),
    ("NetworkDriver.DeleteEndpoint", "commit"),
    ("IpamDriver.ReleaseAddress", "commit"),
    ("IpamDriver.ReleaseAddress", "etcd txn addrs held"),  # released in the store, not in the cluster
    # dockerd releases the pool before it deletes the network.
    ("IpamDriver.ReleasePool", "commit"),
    ("IpamDriver.ReleasePool", "etcd txn members pools gateway addrs nets netof vnis"),  # the last member's leave
    ("NetworkDriver.DeleteNetwork", "delete vxlan"),
    ("NetworkDriver.DeleteNetwork", "commit"),
]
JOINER_POINTS = [
    ("IpamDriver.RequestPool", "etcd txn pools members"),  # a member of a pool another host made
    ("IpamDriver.RequestPool", "commit"),
    ("NetworkDriver.CreateNetwork", "add vxlan"),
    ("NetworkDriver.CreateNetwork", "commit#2"),
    ("IpamDriver.RequestAddress", "etcd txn addrs held"),
    ("IpamDriver.RequestAddress", "commit"),
    ("NetworkDriver.CreateEndpoint", "etcd put endpoints"),
    ("NetworkDriver.CreateEndpoint", "commit"),
    ("NetworkDriver.DeleteEndpoint", "etcd txn endpoints"),
    ("IpamDriver.ReleaseAddress", "etcd txn addrs held"),
    ("IpamDriver.ReleasePool", "commit"),
    ("IpamDriver.ReleasePool", "etcd txn members pools"),  # not the last: the pool stays
    ("NetworkDriver.DeleteNetwork", "commit"),
]
# The start-up rejoin of a host with a network and a container, then the
# records written again on a lease replaced after it was revoked.
REJOIN_POINTS = [
    ("Cluster.rejoin", "etcd txn hosts"),  # the claim of the host ID, its last process's lease alive
    ("Cluster.rejoin", "etcd put seen"),
    ("Cluster.rejoin", "etcd put grace"),
    ("Cluster.rejoin", "etcd txn endpoints"),  # the endpoint's record, compared on its address claim
]
REWRITE_POINTS = [
    ("Cluster.republish", "etcd txn hosts"),
    ("Cluster.republish", "etcd put seen"),
    ("Cluster.republish", "etcd txn endpoints"),
]
# host2's reaper reclaiming host1, dead for good: host1 is a member of a
# pool with host2 and the only member of another.
RECLAIM_POINTS = [
    ("Cluster.reclaim", "etcd txn held addrs"),  # before freeing host1's first address (and its index entry)
    ("Cluster.reclaim", "etcd txn held addrs#2"),  # (a fresh process: its first freed, killed before the second)
    ("Cluster.reclaim", "etcd txn members pools"),  # before ending its membership of the shared pool
    ("Cluster.reclaim", "etcd txn members pools#2"),  # before removing the pool it alone held, with every record
    ("Cluster.reclaim", "etcd txn held seen"),  # everything freed; the index and seen/ not yet
]


def read_etcd(cluster: Cluster) -> dict[str, KeyValue]:
    """Everything under our root, read with etcdctl inside the underlay."""
    out = json.loads(cluster.etcd.ctl("get", keys.ROOT, "--prefix", "-w", "json").stdout)
    return {kv.key: kv for kv in (
        KeyValue(base64.b64decode(raw["key"]).decode(), base64.b64decode(raw.get("value", "")).decode(),
                 int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)), int(raw.get("lease", 0)))
        for raw in out.get("kvs") or [])}


def violations(cluster: Cluster, live: list[PontoonHost], away: set[str] = frozenset()) -> list[str]:
    contents = read_etcd(cluster)
    records, holding = invariants.records(contents), invariants.holders(contents)
    found = invariants.record_violations(records, holding, {h.id: h.address for h in live})
    stored = {}
    for host in live:
        state = host.server.inspect()
        networks = {n["id"]: n for n in state["networks"] if "cluster" in n}
        found += invariants.store_violations(host.id, networks, state["endpoints"], records, holding, contents)
        stored[host.id] = invariants.stored_pairs(state)
    return found + invariants.claim_violations(holding, stored, away)


def converged(cluster: Cluster, live: list[PontoonHost], what: str, away: set[str] = frozenset()) -> None:
    """The invariants hold on two reads in a row within CONVERGE_S (a
    restarted host rejoins in a thread of its own; a killed process's
    records go with its lease)."""
    began, held = time.monotonic(), 0
    while True:
        found = violations(cluster, live, away)
        held = 0 if found else held + 1
        if held == 2:
            return
        if time.monotonic() - began > CONVERGE_S:
            raise AssertionError(f"{what}: the invariants do not hold after {CONVERGE_S}s:\n  " + "\n  ".join(found))
        time.sleep(POLL_S)


def clean(cluster: Cluster, what: str) -> None:
    """Nothing of ours in etcd but the hosts' presence; nothing stored."""
    began = time.monotonic()
    while True:
        left = invariants.leftovers(read_etcd(cluster), {h.id for h in cluster.hosts})
        stores = [h.id for h in cluster.hosts if _stored_anything(h)]
        if not left and not stores:
            return
        if time.monotonic() - began > CONVERGE_S:
            raise AssertionError(f"{what}: left in etcd {left}, stores not empty {stores}")
        time.sleep(POLL_S)


def _stored_anything(host: PontoonHost) -> bool:
    state = host.server.inspect()
    return bool(state["networks"] or state["endpoints"] or state["pools"])


class Retrying:
    """dockerd's side of a socket whose server died under a request:
    ``on_crash(method)``, then the request again."""

    def __init__(self, host: PontoonHost, on_crash):
        self.host, self.on_crash = host, on_crash

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        while True:
            try:
                return SocketTransport(self.host.server.socket_path).post(path, data)
            except BROKEN:
                self.on_crash(path.lstrip("/"))


class Chain:
    """The kill points of one host, armed one at a time (see the module)."""

    def __init__(self, cluster: Cluster, victim: PontoonHost, points: list[tuple[str, str]]):
        self.cluster, self.victim, self.points = cluster, victim, points
        self.hit: list[tuple[str, str]] = []
        self.live = list(cluster.hosts)
        self.away: set[str] = set()

    def env(self) -> dict[str, str]:
        if len(self.hit) == len(self.points):
            return {}
        method, step = self.points[len(self.hit)]
        return {testhook.ENV: f"{method}:{step}"}

    def start(self) -> None:
        """(Re)start the victim armed with the next point."""
        self.victim.server.start(env=self.env())

    def died(self, method: str) -> None:
        """The victim died (under a request of ``method``, or in a thread
        of the cluster's): it must be at the armed point's method; start it
        again with the next and check."""
        assert len(self.hit) < len(self.points), f"{self.victim.id} died in {method}, past the last kill point"
        point = self.points[len(self.hit)]
        assert method == point[0], f"{self.victim.id} died in {method}, armed for {point}"
        self.victim.server.wait_exit()
        self.hit.append(point)
        self.start()
        if self.env() and self.points[len(self.hit)][0] == "Cluster.rejoin":
            return  # this process is to die in its rejoin, before its records are back: the next checks
        converged(self.cluster, self.live, f"{self.victim.id} restarted after kill -9 at {point}", self.away)

    def wait_death(self, timeout: float) -> None:
        """For a point outside any request: the victim dies on its own."""
        try:
            self.victim.server.proc.wait(timeout)
        except Exception:
            raise AssertionError(f"{self.victim.id} never reached {self.points[len(self.hit)]}") from None
        self.died(self.points[len(self.hit)][0])

    def done(self) -> None:
        assert self.hit == self.points, f"kill points not reached: {self.points[len(self.hit):]}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two hosts, kept across this module's tests (each leaves the cluster
    clean, and checks it)."""
    require_tools()
    with Cluster(tmp_path_factory.mktemp("kill9"), hosts=2,
                 flags=("--lease-ttl", str(TTL), "--reclaim-grace", str(GRACE))) as made:
        yield made


def dockerds(pair: Cluster, chain: Chain) -> list[FakeDockerd]:
    """Each host's dockerd; the victim's retries after its server died."""
    out = []
    for host in pair.hosts:
        client = Client(Retrying(host, chain.died) if host is chain.victim else SocketTransport(host.server.socket_path))
        out.append(FakeDockerd(client, host.sandboxes))
    return out


def restart_armed(chain: Chain) -> None:
    chain.victim.server.stop()
    chain.start()


@pytest.mark.parametrize("role", ["creator", "joiner"])
def test_kill_9_at_every_cluster_step_of_a_lifecycle(role, pair):
    """host1 makes the cluster network (pool, gateway, VNI), host2 joins it;
    a container on each; both stopped; host2 removes its network, host1
    last. The victim is host1 (``creator``) or host2 (``joiner``)."""
    subnet = f"10.93.{1 if role == 'creator' else 2}.0/24"
    victim = pair.hosts[0 if role == "creator" else 1]
    chain = Chain(pair, victim, CREATOR_POINTS if role == "creator" else JOINER_POINTS)
    restart_armed(chain)
    d1, d2 = dockerds(pair, chain)
    net1 = d1.create_network(subnet=subnet)
    net2 = d2.create_network(subnet=subnet)
    c1, c2 = d1.run(net1), d2.run(net2)
    converged(pair, pair.hosts, "both containers running")
    d1.stop(c1)
    d2.stop(c2)
    d2.remove_network(net2)
    d1.remove_network(net1)
    chain.done()
    converged(pair, pair.hosts, "both networks removed")
    clean(pair, "both networks removed")


def test_kill_9_in_the_republish(pair):
    """host1 with a network and a container is restarted, and its rejoin
    (the endpoint's record written again, compared on its address) killed
    at each step; then its lease is revoked from outside, and the records'
    rewrite on the new lease killed at each step. Its container's record
    must come back every time, and nothing be left at the end."""
    h1, h2 = pair.hosts
    chain = Chain(pair, h1, REJOIN_POINTS + REWRITE_POINTS)
    d1, d2 = dockerds(pair, chain)
    net1, net2 = d1.create_network(subnet="10.93.3.0/24"), d2.create_network(subnet="10.93.3.0/24")
    c1, c2 = d1.run(net1), d2.run(net2)
    converged(pair, pair.hosts, "both containers running")
    restart_armed(chain)
    for _ in REJOIN_POINTS:
        chain.wait_death(CONVERGE_S)
    for _ in REWRITE_POINTS:
        revoke(pair, h1)
        chain.wait_death(CONVERGE_S)
    chain.done()
    d1.stop(c1)
    d2.stop(c2)
    d2.remove_network(net2)
    d1.remove_network(net1)
    clean(pair, "both networks removed")


def revoke(pair: Cluster, host: PontoonHost) -> None:
    """host's lease revoked from outside, as etcd ends a lease not kept alive."""
    lease = read_etcd(pair)[keys.key("hosts", host.id)].lease
    pair.etcd.ctl("lease", "revoke", f"{lease:x}")


def held_by(contents: dict, host_id: str) -> list[str]:
    """What the cluster holds of ``host_id`` besides its presence on a lease
    (which ends with it): seen/, its claims and their index, memberships."""
    return sorted(key for key, kv in contents.items()
                  if key == keys.key("seen", host_id) or key.startswith(keys.prefix("held", host_id))
                  or (key.startswith(keys.prefix("members")) and key.endswith("/" + host_id))
                  or (key.startswith(keys.prefix("addrs")) and json.loads(kv.value).get("host") == host_id))


def test_kill_9_in_the_reclaim_of_a_dead_host(pair):
    """host1 (a container on a pool shared with host2, another on a pool of
    its own) is killed for good; host2's reaper, reclaiming it past the
    grace, is killed at each step, restarted, and finishes the reclaim:
    host1's addresses, memberships, index and seen/ gone, its own pool
    with every record of its network. Then host1 comes back (its networks
    orphans now) and dockerd removes everything on both hosts."""
    h1, h2 = pair.hosts
    chain = Chain(pair, h2, RECLAIM_POINTS)
    d1, d2 = dockerds(pair, chain)
    shared1, shared2 = d1.create_network(subnet="10.93.4.0/24"), d2.create_network(subnet="10.93.4.0/24")
    alone = d1.create_network(subnet="10.93.5.0/24")
    c1, c2, c3 = d1.run(shared1), d2.run(shared2), d1.run(alone)
    converged(pair, pair.hosts, "three containers running")
    restart_armed(chain)
    h1.kill()
    chain.live, chain.away = [h2], {h1.id}
    for _ in RECLAIM_POINTS:
        chain.wait_death(TTL + GRACE + 3 * REAP_EVERY)
    chain.done()
    began = time.monotonic()
    while held_by(read_etcd(pair), h1.id):
        assert time.monotonic() - began < GRACE + 3 * REAP_EVERY, \
            f"host1 is never reclaimed: {held_by(read_etcd(pair), h1.id)}"
        time.sleep(POLL_S)
    chain.away = set()
    converged(pair, [h2], "host1 reclaimed")
    assert keys.key("pools", keys.pool_name("LocalDefault", "10.93.5.0/24")) not in read_etcd(pair)
    h1.start()
    chain.live = pair.hosts
    converged(pair, pair.hosts, "host1 back")
    d2.stop(c2)
    d2.remove_network(shared2)
    d1.stop(c1)
    d1.stop(c3)
    d1.remove_network(shared1)
    d1.remove_network(alone)
    clean(pair, "every network removed")
