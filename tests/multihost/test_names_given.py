"""Names given by dockerd's Engine API (cluster.mode.ClusterMode.give_names, which
names/engine.py calls) in the cluster: the endpoint's etcd record written
again with them, a clash shown by inspect, and no record left behind by a
removal that read the endpoint before its names changed. In-process members
on a real etcd (tests/multihost/control.py)."""
from __future__ import annotations

import json

from cluster import keys
from plugin import cli

from .test_control_plane import SUBNET, _records_of, hosts, wait_until  # noqa: F401 (hosts: the fixture)


def _record(host, owner: str) -> dict:
    found = _records_of(host, owner)
    return json.loads(found[0].value) if found else {}


def test_given_names_are_written_into_the_record_once(hosts):
    a, b = hosts(2)
    net_a, _ = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    short = ctr.endpoint_id[:12]
    a.cluster_mode.give_names(ctr.endpoint_id, "web", ["www", "WWW", "not a name", short])
    record = _record(b, "host0")
    assert (record["name"], record["aliases"]) == ("web", ["www", short])
    with a.store.snapshot() as tx:
        assert list(tx.get_endpoint(ctr.endpoint_id).aliases) == ["www", short]
    revision = _records_of(b, "host0")[0].mod_revision
    a.cluster_mode.give_names(ctr.endpoint_id, "web", ["www", short])  # the same again: nothing written
    assert _records_of(b, "host0")[0].mod_revision == revision
    a.cluster_mode.give_names(ctr.endpoint_id, "site", [short])  # renamed, its alias gone
    assert (_record(b, "host0")["name"], _record(b, "host0")["aliases"]) == ("site", [short])


def test_a_removal_that_read_the_endpoint_before_its_names_leaves_no_record(hosts):
    a, b = hosts(2)
    net_a, _ = a.dockerd.create_network(subnet=SUBNET), b.dockerd.create_network(subnet=SUBNET)
    ctr = a.dockerd.run(net_a)
    with a.store.snapshot() as tx:
        before, network = tx.get_endpoint(ctr.endpoint_id), tx.get_network(net_a.id)
    a.cluster_mode.give_names(ctr.endpoint_id, "web", [])
    assert _record(b, "host0")["name"] == "web"
    a.cluster_mode.segment.unpublish(network, before)  # DeleteEndpoint's snapshot was taken before the names
    assert _records_of(b, "host0") == []
    a.cluster_mode.give_names(ctr.endpoint_id, "web2", [])  # after the unpublish: not made again
    assert _records_of(b, "host0") == []


def test_a_name_on_two_hosts_is_shown_as_a_clash(hosts, tmp_path, capsys, etcd):
    a, b = hosts(2)
    nets = [h.dockerd.create_network(subnet=SUBNET) for h in (a, b)]
    one, two = (h.dockerd.run(n) for h, n in zip((a, b), nets))
    a.cluster_mode.give_names(one.endpoint_id, "web", [])
    b.cluster_mode.give_names(two.endpoint_id, "web", [])
    wait_until(lambda: len(a.cluster_mode.host.etcd.read_prefix(keys.prefix("endpoints"))[0]) == 2, 5)
    assert cli.main(["inspect", "--state-dir", str(tmp_path / "h0"), "--etcd-endpoints", etcd.url]) == 0
    out = capsys.readouterr().out
    clash = out[out.index("NAME CLASHES"):]
    assert "web" in clash and f"{one.endpoint_id[:12]}@host0" in clash and f"{two.endpoint_id[:12]}@host1" in clash
