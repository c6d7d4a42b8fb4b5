"""The names the test hook (plugin.testhook) gives the etcd client's
writes: what tests/multihost/test_cluster_crash.py arms its kill points on."""
from __future__ import annotations

from cluster import keys
from cluster.etcd import Etcd, absent, delete_op, put_op, range_op, step_name, txn_op


def test_a_write_is_named_by_the_kinds_it_writes_in_order_once_each():
    claim = [put_op(keys.key("addrs", "p", "0a"), "x"), put_op(keys.key("held", "h1", "p/0a"), "")]
    assert step_name("txn", claim) == "etcd txn addrs held"
    nested = [delete_op(keys.key("members", "p", "h1")), txn_op([], [delete_op(keys.key("held", "h1", "p/0a"))]),
              delete_op(keys.key("members", "p", "h2"))]
    assert step_name("txn", nested) == "etcd txn members held"


def test_only_writes_reach_the_hook():
    etcd, names = Etcd(["http://127.0.0.1:1"]), []
    etcd.faults = names.append
    etcd.call = lambda path, body, **kw: {"succeeded": True, "responses": []}
    etcd.txn([], [range_op(keys.prefix("seen"), keys.prefix("seen") + "\xff", 0)])  # a read: counts()
    etcd.txn([absent(keys.key("nets", "p"))], [put_op(keys.key("nets", "p"), "{}"), put_op(keys.key("vnis", 7), "p")])
    etcd.put(keys.key("seen", "h1"), "1")
    etcd.delete(keys.key("gateway", "p"))
    etcd.get(keys.key("pools", "p"))
    assert names == ["etcd txn nets vnis", "etcd put seen", "etcd delete gateway"]
