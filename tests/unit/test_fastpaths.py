"""The fast path's plan (datapath.fastpath.render) and its keeper
(cluster.fastpaths), without a kernel: the kernel side is
tests/datapath/test_fastpath.py."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from cluster import fastpaths
from cluster.fastpaths import FastPaths
from datapath.fastpath import BLOCK_BASE, FastPath, render
from spec.stored import ClusterPart, LostAddress, NetworkOptions, StoredEndpoint, StoredNetwork

A, B, C = "02:42:0a:00:00:02", "02:42:0a:00:00:03", "02:42:0a:01:00:04"


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_render_tables_on_the_device_and_in_the_block():
    path = FastPath("vx0", 7, ((A, "ve1"),))
    out = lines(render(path, {B, C}, {}))
    block = BLOCK_BASE + 7
    assert out[:2] == ["qdisc replace dev vx0 clsact", "filter del dev vx0 ingress"]
    assert f"qdisc add dev ve1 ingress_block {block} clsact" in out
    assert f"filter add dev vx0 ingress prio 1 protocol all u32 ht 1:02: match ether dst {A} " \
           f"action mirred egress redirect dev ve1" in out
    for mac in (B, C):
        assert f"filter add block {block} prio 1 protocol all u32 ht 1:{mac[-2:]}: match ether dst {mac} " \
               f"action mirred egress redirect dev vx0" in out
    # The block is emptied before it is filled, and only once a veth takes it.
    assert out.index(f"qdisc add dev ve1 ingress_block {block} clsact") < out.index(f"filter del block {block}")


@pytest.mark.parametrize("now, want", [
    ({}, ["qdisc add dev ve1 ingress_block {block} clsact"]),
    ({"ve1": None}, ["qdisc del dev ve1 clsact", "qdisc add dev ve1 ingress_block {block} clsact"]),
    ({"ve1": 99}, ["qdisc del dev ve1 clsact", "qdisc add dev ve1 ingress_block {block} clsact"]),
    ({"ve1": BLOCK_BASE + 7}, []),
])
def test_render_attaches_a_veth_to_the_block_only_when_it_is_not(now, want):
    out = lines(render(FastPath("vx0", 7, ((A, "ve1"),)), set(), now))
    assert [line for line in out if line.startswith("qdisc") and "ve1" in line] == \
        [w.format(block=BLOCK_BASE + 7) for w in want]


def test_render_without_local_endpoints_empties_the_device_and_leaves_the_block():
    out = lines(render(FastPath("vx0", 7, ()), {B}, {}))
    assert out == ["qdisc replace dev vx0 clsact", "filter del dev vx0 ingress"]


def test_render_takes_a_veth_that_is_no_longer_the_networks_out_of_the_block():
    out = lines(render(FastPath("vx0", 7, ((A, "ve1"),)), set(), {"ve1": BLOCK_BASE + 7, "ve2": BLOCK_BASE + 7,
                                                               "other": 99}))
    assert [line for line in out if line.startswith("qdisc del")] == ["qdisc del dev ve2 clsact"]


def test_render_never_sends_a_local_mac_away():
    out = render(FastPath("vx0", 7, ((A, "ve1"),)), {A, B}, {})
    assert f"match ether dst {A} action mirred egress redirect dev vx0" not in out
    assert f"match ether dst {B} action mirred egress redirect dev vx0" in out


# -- the keeper ---------------------------------------------------------------------------

def network(net_id: str, icc: bool = True, lost: str | None = None, cluster: bool = True) -> StoredNetwork:
    return StoredNetwork(net_id, NetworkOptions(icc=icc), (), (), "", tag=net_id[:12], bridge="br",
                         cluster=ClusterPart("pool", 4100, lost=lost) if cluster else None)


class Store:
    def __init__(self, networks, endpoints):
        self.networks = {n.id: n for n in networks}
        self.endpoints = endpoints

    @contextmanager
    def snapshot(self):
        yield self

    def list_networks(self):
        return list(self.networks.values())

    def get_network(self, network_id):
        return self.networks.get(network_id)

    def list_endpoints(self, network_id=None):
        return [e for e in self.endpoints if network_id is None or e.network_id == network_id]


class Keeper:
    """A FastPaths whose apply records its calls, and whose host stops when told."""

    def __init__(self, store, fail: int = 0, available: bool = True):
        self.store = store
        self.calls: list[tuple] = []
        self.called = threading.Event()
        self.fail = fail
        self.stop = threading.Event()
        self.pauses: list[float] = []  # what the keeper waited, other than to look for its stop
        self.paths = FastPaths(store, self.apply, lambda tag: "vx-" + tag, self.wait_stopped, lambda: available)

    def wait_stopped(self, seconds: float) -> bool:
        if seconds:
            self.pauses.append(seconds)
        return self.stop.wait(seconds)

    def apply(self, vxlan, vni, local):
        self.calls.append((vxlan, vni, local))
        self.called.set()
        if self.fail:
            self.fail -= 1
            raise OSError("tc refused")

    def wait(self, n: int, rounds: int = 200) -> list[tuple]:
        for _ in range(rounds):
            if len(self.calls) >= n:
                return self.calls
            self.called.wait(0.05)
            self.called.clear()
        return self.calls


@pytest.fixture
def keepers():
    made = []
    yield lambda *a, **k: made.append(Keeper(*a, **k)) or made[-1]
    for keeper in made:
        keeper.stop.set()


def test_start_rebuilds_every_cluster_network_with_its_usable_endpoints(keepers):
    endpoints = [
        StoredEndpoint("e1", "n1", mac=A, host_veth="ve1"),
        StoredEndpoint("e2", "n1", mac=B, host_veth="ve2", lost=LostAddress("10.0.0.3", "h2")),  # another host's now
        StoredEndpoint("e3", "n1", mac=C, host_veth=""),  # no veth: nothing to redirect to
        StoredEndpoint("e4", "n2", mac=C, host_veth="ve4"),
    ]
    keeper = keepers(Store([network("n1"), network("n2"), network("local1", cluster=False)], endpoints))
    keeper.paths.start(keeper.store.list_networks())
    assert sorted(keeper.wait(2)) == [("vx-n1", 4100, ((A, "ve1"),)), ("vx-n2", 4100, ((C, "ve4"),))]


def test_icc_off_and_cut_off_networks_get_no_fast_path(keepers):
    keeper = keepers(Store([network("n1", icc=False), network("n2", lost="reclaimed"), network("n3")], []))
    keeper.paths.start(keeper.store.list_networks())
    assert [c[0] for c in keeper.wait(1)] == ["vx-n3"]
    for network_id in ("n1", "n2", "gone", "n3"):  # taken in this order: n3's rebuild comes after the others'
        keeper.paths.touch(network_id)
    assert [c[0] for c in keeper.wait(2)] == ["vx-n3", "vx-n3"]


def test_a_failed_rebuild_is_tried_again_and_again_more_slowly(keepers, monkeypatch):
    monkeypatch.setattr(fastpaths, "RETRY_S", 0.01)
    keeper = keepers(Store([network("n1")], []), fail=3)
    keeper.paths.start(keeper.store.list_networks())
    assert len(keeper.wait(4)) == 4
    assert keeper.pauses == [0.01, 0.02, 0.04]  # less and less often while it keeps failing


def test_a_touch_rebuilds_again(keepers):
    store = Store([network("n1")], [])
    keeper = keepers(store)
    keeper.paths.start(keeper.store.list_networks())
    keeper.wait(1)
    store.endpoints.append(StoredEndpoint("e1", "n1", mac=A, host_veth="ve1"))
    keeper.paths.touch("n1")
    assert keeper.wait(2)[-1] == ("vx-n1", 4100, ((A, "ve1"),))


def test_nothing_runs_where_the_host_has_no_fast_path(keepers):
    keeper = keepers(Store([network("n1")], []), available=False)
    keeper.paths.start(keeper.store.list_networks())
    keeper.paths.touch("n1")
    assert keeper.wait(1, rounds=10) == []
