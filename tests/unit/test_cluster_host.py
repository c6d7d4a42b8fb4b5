"""cluster.host.ClusterHost against a fake etcd: what a call does while
another thread is stuck talking to etcd.

Each etcd call is bounded, but taking the lease is several of them (the
host ID's claim, the grant, the start-up reconcile), so the thread doing it
can hold the lease lock far longer than one call; a call that comes in
meanwhile must fail like a bare call to a dead etcd, not wait for it.
"""
from __future__ import annotations

import threading
import time

import pytest

from cluster.etcd import EtcdUnavailable
from cluster.host import ClusterHost

BOUND_S = 0.5


class HangingEtcd:
    """Every call blocks until ``release`` (an etcd that accepted the
    connection and answers nothing, at the pace of a slow trickle)."""

    call_bound = BOUND_S

    def __init__(self):
        self.released = threading.Event()
        self.entered = threading.Event()

    def _hang(self, *_args, **_kw):
        self.entered.set()
        self.released.wait(30)
        raise EtcdUnavailable("etcd is unreachable (fake: released)")

    get = put = txn = call = _hang


@pytest.fixture
def hung_host():
    host = ClusterHost(["http://192.0.2.1:2379"], "web1", advertise="192.0.2.11")
    host._etcd = HangingEtcd()
    yield host
    host._etcd.released.set()
    host.stop(revoke=False)


def _call_live(host: ClusterHost, out: dict) -> threading.Thread:
    def run():
        start = time.monotonic()
        try:
            out["lease"] = host.lease_id()
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            out["error"] = exc
        out["took"] = time.monotonic() - start
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_call_waiting_behind_a_hung_lease_grant_fails_within_one_calls_bound(hung_host):
    first, second = {}, {}
    holder = _call_live(hung_host, first)
    assert hung_host._etcd.entered.wait(5), "the first call never reached etcd"
    waiter = _call_live(hung_host, second)
    waiter.join(BOUND_S + 5)
    assert not waiter.is_alive(), "a call behind a hung etcd waited past the bound (for ever)"
    assert isinstance(second["error"], EtcdUnavailable)
    assert second["error"].status == 503
    assert BOUND_S * 0.9 <= second["took"] < BOUND_S + 2
    message = str(second["error"])
    assert "waited 0.5 s for another call that is taking this host's lease" in message
    assert "http://192.0.2.1:2379" in message
    assert holder.is_alive(), "the first call should still be stuck in etcd"
    hung_host._etcd.released.set()
    holder.join(5)
    assert isinstance(first["error"], EtcdUnavailable)


def test_a_call_after_the_lease_is_had_does_not_queue_on_the_lock(hung_host):
    class Had:
        id = 0x1234

        def stop(self, revoke=True):
            pass
    hung_host._lease = Had()
    with hung_host._lock:  # another thread in the middle of something under the lock
        start = time.monotonic()
        assert hung_host.lease_id() == 0x1234
        assert time.monotonic() - start < 0.1


def test_the_record_parsers_do_not_load_the_ipam_driver():
    """The records (the network's holder spelling among them) are read
    without the IPAM driver the readers have no business with."""
    from testbed.server import fresh_python

    fresh_python("import sys\nimport cluster.records, cluster.addrrecord, cluster.hostrecord, cluster.netrecord\n"
                 "assert 'cluster.ipam' not in sys.modules\n")
