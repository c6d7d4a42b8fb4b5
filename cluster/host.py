"""This host's presence in the cluster: the etcd client, the lease, liveness.

Nothing here runs before the first call that needs the cluster: ``etcd``
and ``live()`` connect, grant the lease and start its threads on first use
(and ``live()`` retries on the next call if etcd was down).

Where it runs: in cluster mode the server runs ONE gunicorn worker (see
plugin.config), and this object lives in it, so the host has one lease,
one keep-alive thread and one watch per network however many threads serve
requests. Not in the master (it forks workers, and threads do not survive
a fork) and not in a side process (the endpoint records ride on the lease,
so the lease belongs to the process that publishes them and dies with it:
kill -9 of Pontoon drops this host's endpoints from the others' datapath
within the TTL). gunicorn restarts a dead worker, which starts afresh.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Callable

from . import keys
from .identity import advertise_addr
from .etcd import Etcd, EtcdUnavailable, Lease, Tls, delete_op, value_is

log = logging.getLogger("pontoon.cluster")

LEASE_TTL_S = 15
# A host gone this long loses its address allocations: long enough that a
# partition or a reboot does not free addresses its containers still use.
GRACE_S = 600
REAP_EVERY_S = 60


def addr_value(host_id: str, kind: str) -> str:
    """An address key's value; one spelling, so a transaction can compare it."""
    return json.dumps({"host": host_id, "kind": kind}, sort_keys=True)


class ClusterHost:
    def __init__(self, endpoints: list[str], host_id: str, advertise: str = "",
                 ttl: int = LEASE_TTL_S, grace: float = GRACE_S, tls: Tls = Tls(), owed: str = ""):
        """``owed``: a file that exists while teardown is postponed (see
        ``tolerate``), so a restart knows it must reach etcd at once."""
        self.endpoints = endpoints
        self.tls = tls
        self.host_id = host_id
        self._advertise = advertise
        self.ttl = ttl
        self.grace = grace
        self._etcd: Etcd | None = None
        self._lease: Lease | None = None
        self._lock = threading.Lock()
        self._on_live: list[Callable[[int], None]] = []
        self._on_new_lease: list[Callable[[int], None]] = []
        self._stop = threading.Event()
        self._pending: list[tuple[str, Callable[[], None]]] = []  # teardown postponed by an outage
        self._pending_lock = threading.Lock()
        self._owed = owed

    @property
    def etcd(self) -> Etcd:
        if self._etcd is None:
            self._etcd = Etcd(self.endpoints, tls=self.tls)
        return self._etcd

    @property
    def advertise(self) -> str:
        if not self._advertise:
            self._advertise = advertise_addr(self.endpoints[0])
        return self._advertise

    def when_live(self, first: Callable[[int], None], new_lease: Callable[[int], None] | None = None) -> None:
        """``first(lease)`` runs once the host has its lease (the start-up
        reconcile with the cluster); ``new_lease(lease)`` after a lease was
        lost and replaced."""
        self._on_live.append(first)
        if new_lease is not None:
            self._on_new_lease.append(new_lease)

    def live(self) -> int:
        """The lease ID, granting it (and announcing the host) on first use."""
        with self._lock:
            if self._lease is None:
                lease = Lease(self.etcd, self.ttl, self._lease_replaced)
                lease.start()
                try:
                    self._announce(lease.id)
                    # The start-up reconcile with the cluster, before the
                    # lease counts as had: etcd failing half-way through it
                    # means all of it again at the next call, not a host
                    # left half-reconciled for the life of the process.
                    for first in self._on_live:
                        first(lease.id)
                except EtcdUnavailable:
                    lease.stop()
                    raise
                self._lease = lease
                threading.Thread(target=self._reaper, name="pontoon-reaper", daemon=True).start()
            return self._lease.id

    def _announce(self, lease: int) -> None:
        self.etcd.put(keys.key("hosts", self.host_id), json.dumps({"advertise": self.advertise}), lease)
        self.etcd.put(keys.key("seen", self.host_id), json.dumps(time.time()))

    def _lease_replaced(self, lease: int) -> None:
        self._announce(lease)
        for new_lease in self._on_new_lease:
            new_lease(lease)

    def stop(self, revoke: bool = True) -> None:
        """``revoke=False`` leaves the lease to expire, as a killed process would."""
        self._stop.set()
        if self._lease is not None:
            self._lease.stop(revoke)

    # -- teardown while etcd is away -----------------------------------------------
    def tolerate(self, what: str, step: Callable[[], None]) -> None:
        """Run a teardown step that needs etcd (all are idempotent); while etcd
        is away, keep it for the periodic pass instead of failing the call:
        `docker stop` and `docker network rm` must work during an outage,
        and what they leave in etcd (a record, an allocation this host no
        longer holds) harms no one until it is gone. The steps live in
        memory; the ``owed`` file outlives a restart, whose rejoin (see
        plugin.cluster.Room) then does from the store what they would have."""
        try:
            step()
        except EtcdUnavailable as exc:
            log.warning("%s postponed until etcd is back: %s", what, exc)
            with self._pending_lock:
                self._pending.append((what, step))
                if self._owed:
                    open(self._owed, "a").close()

    def owes(self) -> bool:
        """Whether teardown was postponed, by this process or one before it."""
        return bool(self._owed) and os.path.exists(self._owed)

    def retry_pending(self) -> int:
        """Run the postponed steps again; returns how many are still waiting."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for what, step in pending:
            self.tolerate(what, step)
        with self._pending_lock:
            if not self._pending and self.owes():
                os.unlink(self._owed)
            return len(self._pending)

    # -- reclaiming the addresses of hosts gone for good ---------------------------
    def _reaper(self) -> None:
        while not self._stop.wait(min(REAP_EVERY_S, self.grace / 2)):
            try:
                self.retry_pending()
                self.etcd.put(keys.key("seen", self.host_id), json.dumps(time.time()))
                self.reap()
            except EtcdUnavailable as exc:
                log.warning("reclaim pass skipped: %s", exc)
            except Exception:
                log.exception("reclaim pass failed")

    def reap(self, now: float | None = None) -> list[str]:
        """Free the addresses of every host without a live key whose last
        sign of life is older than the grace period; returns those hosts."""
        now = time.time() if now is None else now
        # Every live host has both keys, so equal counts mean no one is
        # gone: the usual pass reads two numbers, not 2·H records from
        # every host each minute (which would grow with H² cluster-wide).
        live_count, seen_count = self.etcd.counts(keys.prefix("hosts"), keys.prefix("seen"))
        if seen_count <= live_count:
            return []
        live = {kv.key.rsplit("/", 1)[1] for kv in self.etcd.read_prefix(keys.prefix("hosts"))[0]}
        gone = []
        for kv in self.etcd.read_prefix(keys.prefix("seen"))[0]:
            host_id = kv.key.rsplit("/", 1)[1]
            if host_id in live or now - float(kv.value) < self.grace:
                continue
            self.release_held(host_id, lambda _pool, _addr: False)
            self.etcd.delete(kv.key)
            gone.append(host_id)
            log.info("reclaimed the addresses of host %s, gone for more than %ds", host_id, self.grace)
        return gone

    def release_held(self, host_id: str, keep: Callable[[str, int], bool]) -> int:
        """Delete the address allocations of ``host_id`` for which ``keep(pool, addr)``
        is false; returns how many went."""
        prefix = keys.prefix("held", host_id)
        gone = 0
        for kv in self.etcd.read_prefix(prefix)[0]:
            pool, _, hexa = kv.key[len(prefix):].partition("/")
            if keep(pool, int(hexa, 16)):
                continue
            # Compared on the holder: the address may have been freed and
            # claimed by another host since (the pool gone and made again).
            self.etcd.txn([value_is(keys.prefix("addrs", pool) + hexa, addr_value(host_id, "address"))],
                          [delete_op(kv.key), delete_op(keys.prefix("addrs", pool) + hexa)], [delete_op(kv.key)])
            gone += 1
        return gone
