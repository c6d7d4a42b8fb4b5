"""The segment seam of the network driver (network_driver/segment.py): when it is
called, and that each call is undone when a later step fails."""
from dataclasses import replace

import pytest

from network_driver import network
from spec.errors import Conflict
from spec.stored import ClusterPart

from .conftest import Plugin


class RecordingSegment:
    connectivity = "global"

    def __init__(self, refuse: str = ""):
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse
        self.store = None  # the plugin's, once it is made

    def _record(self, what: str, obj) -> None:
        if what == self.refuse:
            raise Conflict(f"segment refused {what}")
        self.calls.append((what, obj.id))

    def prepare(self, network):
        self._record("prepare", network)
        return replace(network, cluster=CLUSTER)

    def attach(self, network):
        self._record("attach", network)

    def detach(self, network):
        self._record("detach", network)

    def publish(self, network, endpoint):
        self._record("publish", endpoint)

    def unpublish(self, network, endpoint):
        self._record("unpublish", endpoint)

    def endpoints_changed(self, network):
        # What the store holds then: the call comes once the change is committed.
        with self.store.snapshot() as tx:
            self.calls.append(("endpoints_changed", ",".join(e.id[:1] for e in tx.list_endpoints(network.id))))

    def reconcile(self, networks, cut_short):
        return [f"segment of {n.id}" for n in networks] + [f"cut short {n.id}" for n in cut_short]


CLUSTER = ClusterPart("LocalDefault:10.92.0.0_24", 4242)  # the segment's fields


NET = {"NetworkID": "a" * 64, "Options": {},
       "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.92.0.0/24", "Gateway": "10.92.0.1/24"}]}
EP = {"NetworkID": "a" * 64, "EndpointID": "e" * 64, "Interface": {"Address": "10.92.0.9/24"}}


def driver(tmp_path, segment) -> tuple[Plugin, network.NetworkDriver]:
    plugin = Plugin(tmp_path)
    if segment is not None:
        segment.store = plugin.store
    return plugin, network.NetworkDriver(plugin.store.transaction, plugin.store.snapshot,
                                         plugin.links, plugin.firewall, plugin.host_ports,
                                         segment=segment)


def test_the_segment_is_called_at_each_step_and_its_fields_stored(tmp_path):
    segment = RecordingSegment()
    plugin, drv = driver(tmp_path, segment)
    assert drv.get_capabilities({}) == {"Scope": "local", "ConnectivityScope": "global", "GwAllocChecker": True}
    drv.create_network(NET)
    with plugin.store.snapshot() as tx:
        assert tx.get_network("a" * 64).cluster == CLUSTER
    drv.create_endpoint(EP)
    assert drv.reconcile()[-1] == f"segment of {'a' * 64}"
    drv.join({**EP, "SandboxKey": "/var/run/docker/netns/x"})
    drv.leave(EP)
    drv.delete_endpoint(EP)
    drv.delete_network({"NetworkID": "a" * 64})
    assert [c[0] for c in segment.calls] == ["prepare", "attach", "publish", "endpoints_changed", "unpublish",
                                             "endpoints_changed", "detach"]
    # Each told after its commit: after Join the endpoint is stored, after DeleteEndpoint it is gone.
    assert [c[1] for c in segment.calls if c[0] == "endpoints_changed"] == ["e", ""]


def test_without_a_segment_the_driver_is_the_single_host_one(tmp_path):
    plugin, drv = driver(tmp_path, None)
    assert drv.get_capabilities({}) == {"Scope": "local", "ConnectivityScope": "local", "GwAllocChecker": True}
    drv.create_network(NET)
    with plugin.store.snapshot() as tx:
        assert tx.get_network("a" * 64).cluster is None


@pytest.mark.parametrize("refuse, undone", [("prepare", []), ("attach", ["detach"])])
def test_a_refused_network_leaves_nothing(tmp_path, refuse, undone):
    segment = RecordingSegment(refuse)
    plugin, drv = driver(tmp_path, segment)
    with pytest.raises(Conflict, match=f"segment refused {refuse}"):
        drv.create_network(NET)
    assert plugin.links.bridges == {} and plugin.firewall.networks == {}
    assert [c[0] for c in segment.calls if c[0] != "prepare"] == undone


@pytest.mark.parametrize("refuse, kernel_step, undone", [
    ("publish", None, ["unpublish"]),       # the undo is registered first: a half-done publish goes too
    ("", "create_veth", []),                # the veth failed first: nothing was published
])
def test_a_failed_endpoint_is_unpublished(tmp_path, refuse, kernel_step, undone):
    segment = RecordingSegment(refuse)
    plugin, drv = driver(tmp_path, segment)
    drv.create_network(NET)
    if kernel_step:
        plugin.links.fail.add(kernel_step)
    with pytest.raises(Exception):
        drv.create_endpoint(EP)
    assert [c[0] for c in segment.calls if c[1] == "e" * 64] == undone
    assert plugin.links.veths == {}
    with plugin.store.snapshot() as tx:
        assert tx.get_endpoint("e" * 64) is None


def test_delete_network_unpublishes_an_endpoint_committed_after_its_snapshot(tmp_path):
    """An endpoint published after DeleteNetwork's detach (which removes
    the records of the endpoints it read) used to keep its record."""
    segment = RecordingSegment()
    plugin, drv = driver(tmp_path, segment)
    drv.create_network(NET)
    late = {**EP, "EndpointID": "f" * 64, "Interface": {"Address": "10.92.0.10/24"}}
    detach = segment.detach

    def detach_then_late(network):  # a concurrent CreateEndpoint, committed meanwhile
        detach(network)
        drv.create_endpoint(late)

    segment.detach = detach_then_late
    drv.delete_network({"NetworkID": "a" * 64})
    assert segment.calls[-3:] == [("detach", "a" * 64), ("publish", "f" * 64), ("unpublish", "f" * 64)]
    assert plugin.links.veths == {}
    with plugin.store.snapshot() as tx:
        assert tx.list_networks() == [] and tx.list_endpoints() == []


def test_a_network_cut_short_after_attach_is_handed_to_the_segment_at_start(tmp_path):
    """A crash between attach and the settling commit leaves a pending record
    with the segment's fields: reconcile forgets it, and hands it to the
    segment, whose device the single-host reconcile would not remove."""
    segment = RecordingSegment()
    plugin, drv = driver(tmp_path, segment)
    drv.create_network(NET)
    with plugin.store.transaction() as tx:
        record = tx.get_network("a" * 64)
        tx.put_network(replace(record, pending=True))
    assert drv.reconcile()[-1] == f"cut short {'a' * 64}"
    with plugin.store.snapshot() as tx:
        assert tx.get_network("a" * 64) is None


def test_vni_searches_start_spread_over_the_range_and_cover_it():
    from itertools import islice

    from cluster.keys import pool_name
    from cluster.segment import VNI_FIRST, VNI_LAST, vni_candidates

    starts = {next(vni_candidates(pool_name("LocalDefault", f"10.{a}.{b}.0/24")))
              for a in range(16) for b in range(64)}
    assert len(starts) >= 1020  # 1,024 /24s: a byte sum gave them 155 starts
    assert all(VNI_FIRST <= vni <= VNI_LAST for vni in starts)
    name = pool_name("LocalDefault", "10.1.2.0/24")
    first = list(islice(vni_candidates(name), 3))
    assert first[1] in (first[0] + 1, VNI_FIRST) and len(set(first)) == 3
