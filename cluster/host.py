"""This host's presence in the cluster: the etcd client, the lease, liveness.

Nothing here runs before the first call that needs the cluster: ``etcd``
and ``lease_id()`` connect, grant the lease and start its threads on first use
(and ``lease_id()`` retries on the next call if etcd was down).

Where it runs: in cluster mode the server runs ONE gunicorn worker (see
plugin.config), and this object lives in it, so the host has one lease,
one keep-alive thread and one watch per network however many threads serve
requests. Not in the master (it forks workers, and threads do not survive
a fork) and not in a side process (the endpoint records ride on the lease,
so the lease belongs to the process that publishes them and dies with it:
kill -9 of Pontoon drops this host's endpoint records from etcd within the
TTL; the others keep their peers until the addresses are reclaimed, see
cluster.peerwatch.PeerWatch). gunicorn restarts a dead worker, which starts
afresh.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import Callable, Sequence

from spec.errors import Conflict

from . import keys
from .addrrecord import AddrHolder
from .hostrecord import HostRecord, Wireguard
from .records import BadRecord
from .identity import advertise_addr, boot_id
from .etcd import (Etcd, EtcdUnavailable, Lease, Tls, absent, delete_op, put_op, range_op, ranges, unchanged,
                   value_is)

log = logging.getLogger("pontoon.cluster")

LEASE_TTL_S = 15
# A host gone this long loses its address allocations: long enough that a
# partition or a reboot does not free addresses its containers still use.
GRACE_S = 600
REAP_EVERY_S = 60
MAX_REWRITE_PAUSE_S = 30.0


class HostIdTaken(Conflict):
    """Another host holds this host's ID in the cluster (``ClusterHost.claim``)."""

    def __init__(self, host_id: str, holder: str, ttl: int):
        super().__init__(
            f"host ID {host_id!r} is held in the cluster by another host, at {holder}: two hosts with one ID "
            f"would free and delete each other's addresses and endpoints, so this one does nothing in the "
            f"cluster while the other holds it (a cloned VM or state dir? give this host a state dir of its "
            f"own, or its own --host-id; if {holder} is this host before a crash and a reboot, the ID is "
            f"free again within the lease TTL, {ttl} s)")


class ClusterHost:
    faults = None  # the test hook for the etcd client's writes (plugin.testhook); set by plugin.wiring
    def __init__(self, endpoints: list[str], host_id: str, advertise: str = "",
                 ttl: int = LEASE_TTL_S, grace: float = GRACE_S, tls: Tls = Tls(), owed: str = "",
                 token: str = ""):
        """``owed``: a file that exists while teardown is postponed (see
        ``now_or_later``), so a restart knows it must reach etcd at once.
        ``token``: this host's instance token, kept in its state dir
        (``identity.host_token``; see ``claim``)."""
        self.endpoints = endpoints
        self.tls = tls
        self.host_id = host_id
        self._advertise = advertise
        self.ttl = ttl
        self.grace = grace
        self._etcd: Etcd | None = None
        self._lease: Lease | None = None
        self._grace_lease: Lease | None = None
        self._rewrite_lock = threading.Lock()
        self._rewrite_lease = 0  # the lease the records are to be written again on (see _lease_replaced)
        self._rewriter: threading.Thread | None = None
        self._rewritten = threading.Event()  # clear while a replaced lease's records are being written again
        self._rewritten.set()
        self._lock = threading.Lock()
        self._on_live: list[Callable[[int], None]] = []
        self._on_new_lease: list[Callable[[int], None]] = []
        self._on_reaped: list[Callable[[str, list[dict]], object]] = []
        self._stop = threading.Event()
        self._pending: list[tuple[str, Callable[[], None]]] = []  # teardown postponed by an outage
        self._pending_lock = threading.Lock()
        self._owed = owed
        self._token = token or secrets.token_hex(16)
        self._boot = boot_id()
        self.wireguard: Wireguard | None = None  # this host's identity for the others, in hosts/<id> (see _record)
        self._taken: HostIdTaken | None = None  # set while another host holds the ID (see _lease_replaced)

    @property
    def etcd(self) -> Etcd:
        if self._etcd is None:
            self._etcd = Etcd(self.endpoints, tls=self.tls)
            self._etcd.faults = self.faults
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

    def when_reaped(self, hook: Callable[[str, list[dict]], object]) -> None:
        """``hook(host_id, away)`` runs in the reclaim pass for each host
        reclaimed, after its addresses: it ends what else the host held
        (its pool memberships, ``ClusterIpam.leave_all``), each removal
        compared on ``away`` (the host's absence) in its transaction."""
        self._on_reaped.append(hook)

    def lease_id(self) -> int:
        """The lease ID, granting it (and announcing the host) on first use.

        Only one thread connects, grants and claims at a time; the others
        wait for it, but no longer than one etcd call may take: its calls
        are each bounded, not all of them together (a slow etcd, or a
        start-up reconcile of many endpoints), and a dockerd call must fail
        with a 503 in about the time a bare call would, not queue behind it."""
        bound = self.etcd.call_bound
        if self._lease is not None and self._taken is None:
            self._await_rewrite(bound)
            return self._lease.id  # had: no need to queue behind a thread that is claiming again
        if not self._lock.acquire(timeout=bound):
            raise EtcdUnavailable(
                f"etcd is slow or unreachable ({', '.join(self.endpoints)}): waited {bound:g} s for another "
                f"call that is taking this host's lease (claiming its host ID, granting the lease, the start-up "
                f"reconcile with the cluster); try again")
        try:
            if self._lease is None:
                # Another host holding this ID: refused before anything is
                # written, not even a lease (each call, and the start-up
                # thread, asks again: the other host may go away).
                self.check_claim()
                lease = Lease(self.etcd, self.ttl, self._lease_replaced)
                lease.start()
                try:
                    self._announce(lease.id)  # the claim first: refused, nothing else is written
                    self._stay_within_grace()
                    # The start-up reconcile with the cluster, before the
                    # lease counts as had: etcd failing half-way through it
                    # means all of it again at the next call, not a host
                    # left half-reconciled for the life of the process.
                    for first in self._on_live:
                        first(lease.id)
                except (EtcdUnavailable, HostIdTaken):
                    lease.stop()
                    raise
                self._lease = lease
                threading.Thread(target=self._reaper, name="pontoon-reaper", daemon=True).start()
            elif self._taken is not None:
                self._claim_again()
            return self._lease.id
        finally:
            self._lock.release()

    def _await_rewrite(self, bound: float) -> None:
        """A call while a replaced lease's records are being written again
        waits for them, up to one call's bound: the host is announced
        before its pool memberships are taken up again, and a claim in that
        gap was refused as from a host the reclaim ended (409, "remove the
        network"), for a network about to be whole again. The rewrite's own
        steps do not wait for themselves."""
        if threading.current_thread() is self._rewriter or self._rewritten.wait(bound):
            return
        raise EtcdUnavailable(f"this host lost its lease while etcd was away and is writing its records "
                              f"again; waited {bound:g} s for it; try again")

    def _announce(self, lease: int) -> None:
        self.claim(lease)
        self.etcd.put(keys.key("seen", self.host_id), json.dumps(time.time()))

    # -- one host per host ID ------------------------------------------------------
    # The rule: ``hosts/<id>`` is created if absent, on the host's lease, with
    # its advertise address, its instance token (made once, kept in the state
    # dir) and the kernel's boot ID. Found present, it is taken over (in a
    # transaction comparing what was read) only if all three are this host's:
    # this host's previous process, in this boot, from this state dir, whose
    # lease outlives it for up to a TTL after a kill -9 or a restart. Any
    # other holder is another host with this ID (a cloned VM or state dir: the
    # token is cloned too, the boot ID and, unless given, the address are
    # not), and this host is refused (HostIdTaken, 409) before it writes
    # anything. A holder that is really gone loses the key with its lease,
    # within the TTL; then the next call, or the start-up thread, claims it.
    def _record(self) -> HostRecord:
        """``hosts/<id>``: who holds the ID, and what this host publishes
        for the others (its WireGuard identity)."""
        return HostRecord(self.advertise, self._token, self._boot, self.wireguard)

    def _held(self, value: str) -> HostRecord | None:
        try:
            return HostRecord.parse(keys.key("hosts", self.host_id), value)
        except BadRecord:
            return None

    def _ours(self, value: str) -> bool:
        """Whether a ``hosts/<id>`` value was written by this host (see the rule)."""
        held, mine = self._held(value), self._record()
        return held is not None and (held.advertise, held.token, held.boot) == (mine.advertise, mine.token, mine.boot)

    def _taken_by(self, value: str) -> HostIdTaken:
        held = self._held(value)
        return HostIdTaken(self.host_id, held.advertise if held else "an unknown address", self.ttl)

    def check_claim(self) -> None:
        """Raise HostIdTaken if another host holds this host's ID: one read, no write."""
        held = self.etcd.get(keys.key("hosts", self.host_id))
        if held is not None and not self._ours(held.value):
            raise self._taken_by(held.value)

    def claim(self, lease: int) -> None:
        """Hold ``hosts/<id>`` on ``lease``, or raise HostIdTaken (see the rule)."""
        key = keys.key("hosts", self.host_id)
        mine = self._record().value()
        for _ in range(10):
            reply = self.etcd.txn([absent(key)], [put_op(key, mine, lease)], [range_op(key, "", 1, keys_only=False)])
            if reply.get("succeeded"):
                return
            found = (ranges(reply) or [[]])[0]
            if not found:
                continue  # gone since the compare: create it again
            if not self._ours(found[0].value):
                raise self._taken_by(found[0].value)
            # This host's own claim, from its previous process (or a lease of
            # this one's that was lost): onto this lease, unless it changed.
            if self.etcd.txn([unchanged(found[0])], [put_op(key, mine, lease)]).get("succeeded"):
                return
        raise EtcdUnavailable(f"host ID {self.host_id!r}: its record in etcd kept changing; trying again later")

    def _claim_again(self) -> None:
        """The ID was found held by another host when a lost lease was
        replaced: claim it on the current lease now, and write again what
        rode on the lost one. Until then ``_taken`` refuses every call."""
        assert self._lease is not None  # only ever called once the lease is had (``live``)
        lease = self._lease.id
        try:
            self._announce(lease)
        except HostIdTaken as exc:
            self._taken = exc
            raise
        for new_lease in self._on_new_lease:
            new_lease(lease)
        self._taken = None
        log.info("host ID %r is this host's again", self.host_id)

    def _stay_within_grace(self) -> None:
        """``grace/<host>`` rides on a lease of its own whose TTL is the
        grace period, kept alive like the other: it is gone once the host
        has been away for the grace period by etcd's clock, not by any
        host's wall clock (a host whose clock is ahead would reclaim the
        addresses of one that is only partitioned)."""
        if self._grace_lease is None:
            lease = Lease(self.etcd, int(self.grace), self._within_grace)
            lease.start()
            try:
                self._within_grace(lease.id)
            except EtcdUnavailable:
                lease.stop()
                raise
            self._grace_lease = lease

    def _within_grace(self, lease: int) -> None:
        if self._taken is None:  # refused: grace/<id> is the other host's to write
            self.etcd.put(keys.key("grace", self.host_id), "", lease)

    def _lease_replaced(self, lease: int) -> None:
        """In the keep-alive thread, which must go on keeping the new lease
        alive: the host's records are written again by a thread of its own
        (a republish of many endpoints can take longer than a TTL, which
        used to expire the new lease in the middle of it), and again after
        a failure until it is done (a failed one used to be dropped)."""
        with self._rewrite_lock:
            self._rewrite_lease = lease
            self._rewritten.clear()
            if self._rewriter is None:
                self._rewriter = threading.Thread(target=self._rewrite, name="pontoon-rewrite", daemon=True)
                self._rewriter.start()

    def _rewrite(self) -> None:
        pause, done = 1.0, 0
        while not self._stop.is_set():
            with self._rewrite_lock:
                lease = self._rewrite_lease
                if lease == done:  # nothing newer asked for since
                    self._rewriter = None
                    self._rewritten.set()
                    return
            try:
                self._write_again(lease)
                done, pause = lease, 1.0
                continue
            except EtcdUnavailable as exc:
                log.warning("writing this host's records again failed: %s; again in %.0fs", exc, pause)
            except Exception:  # a bug: the records are owed all the same, and calls wait on them
                log.exception("writing this host's records again failed; again in %.0fs", pause)
            self._stop.wait(pause)
            pause = min(pause * 2, MAX_REWRITE_PAUSE_S)

    def _write_again(self, lease: int) -> None:
        try:
            self._announce(lease)
        except HostIdTaken as exc:
            # Another host took the ID while this one was away: nothing of
            # this host's is written again (it would be that host's), and
            # every call is refused until the ID is free (``_claim_again``).
            self._taken = exc
            log.error("lease replaced, but %s", exc)
            return
        for new_lease in self._on_new_lease:
            new_lease(lease)
        self._taken = None

    def renewed_lease(self, stale: int) -> int:
        """The lease after ``stale``, which etcd said is gone: a call in the
        gap between the lease's expiry and the keep-alive noticing waits up
        to a TTL for the new one, rather than fail."""
        return self._lease.renewed(stale, self.ttl) if self._lease is not None else stale

    def stop(self, revoke: bool = True) -> None:
        """``revoke=False`` leaves the lease to expire, as a killed process would."""
        self._stop.set()
        for lease in (self._lease, self._grace_lease):
            if lease is not None:
                lease.stop(revoke)

    def wait_stopped(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped meanwhile; whether it was stopped."""
        return self._stop.wait(seconds)

    # -- teardown while etcd is away -----------------------------------------------
    def now_or_later(self, what: str, step: Callable[[], None]) -> None:
        """Run a teardown step that needs etcd (all are idempotent); while etcd
        is away, keep it for the periodic pass instead of failing the call:
        `docker stop` and `docker network rm` must work during an outage,
        and what they leave in etcd (a record, an allocation this host no
        longer holds) harms no one until it is gone. The steps live in
        memory; the ``owed`` file outlives a restart, whose rejoin (see
        cluster.mode.ClusterMode) then does from the store what they would have.

        A step may run long after it was made, when this host has made the
        same things again (the subnet created again, the address claimed
        again), so no step deletes blindly: each removes only the records
        it was made for. The rule: a step is made with ``etcd.revision``,
        the highest revision any reply had carried, and removes only
        records last written (a membership, endpoint records: mod_revision)
        or created (an address claim: create_revision) at or below it.
        Every write of this process before the step was made is at or below
        that mark, every write made after is above it. An endpoint's own
        record, which a lost lease has written again (same value, new
        revision), is compared on its value instead: the key names the
        endpoint, the value its MAC and addresses. A record found beyond
        the mark stays, and so does one of an earlier process this one had
        not yet seen (its rejoin frees those from the store)."""
        try:
            self._may_write()
            step()
        except EtcdUnavailable as exc:
            log.warning("%s postponed until etcd is back: %s", what, exc)
            with self._pending_lock:
                self._pending.append((what, step))
                self.owe()

    def _may_write(self) -> None:
        """Before a teardown step: HostIdTaken while another host holds this
        host's ID, whose records the step would remove (a step is never
        postponed for it: the ID may stay the other's for good)."""
        if self._taken is not None:
            raise self._taken
        if self._lease is None:  # not claimed by this process yet: look
            self.check_claim()

    def owe(self) -> None:
        """Note in the ``owed`` file that etcd holds something of this host's
        that its store does not (see ``now_or_later``): the next start rejoins
        at once, and the rejoin frees it from the store."""
        if self._owed:
            open(self._owed, "a").close()

    def owes(self) -> bool:
        """Whether teardown was postponed, by this process or one before it."""
        return bool(self._owed) and os.path.exists(self._owed)

    def retry_pending(self) -> int:
        """Run the postponed steps again; returns how many are still waiting."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for i, (what, step) in enumerate(pending):
            try:
                self.now_or_later(what, step)
            except HostIdTaken:
                with self._pending_lock:
                    self._pending[:0] = pending[i:]
                raise
        with self._pending_lock:
            if not self._pending and self.owes():
                os.unlink(self._owed)
            return len(self._pending)

    # -- reclaiming the addresses of hosts gone for good ---------------------------
    def _reaper(self) -> None:
        while not self._stop.wait(min(REAP_EVERY_S, self.grace / 2)):
            try:
                self.lease_id()  # a host whose ID another took claims it again (HostIdTaken until then)
                self.retry_pending()
                self.etcd.put(keys.key("seen", self.host_id), json.dumps(time.time()))
                self.reap()
            except EtcdUnavailable as exc:
                log.warning("reclaim pass skipped: %s", exc)
            except HostIdTaken as exc:
                log.error("reclaim pass skipped: %s", exc)
            except Exception:
                log.exception("reclaim pass failed")

    def reap(self) -> list[str]:
        """Free the addresses of every host that has been away for the grace
        period (no ``hosts/`` key, and its ``grace/`` key expired: etcd's
        clock), and end its pool memberships (``when_reaped``); returns
        those hosts. Each release is fenced on the host being away still,
        so a host that comes back meanwhile keeps all."""
        # Every host within the grace has both keys, so equal counts mean
        # no one to reclaim: the usual pass reads two numbers, not 2·H
        # records from every host each minute (H² cluster-wide).
        seen_count, grace_count = self.etcd.counts(keys.prefix("seen"), keys.prefix("grace"))
        if seen_count <= grace_count:
            return []
        present = {kv.key.rsplit("/", 1)[1] for kind in ("hosts", "grace")
                   for kv in self.etcd.read_prefix(keys.prefix(kind))[0]}
        gone = []
        for kv in self.etcd.read_prefix(keys.prefix("seen"))[0]:
            host_id = kv.key.rsplit("/", 1)[1]
            if host_id in present:
                continue
            away = [absent(keys.key("hosts", host_id)), absent(keys.key("grace", host_id))]
            self.release_held(host_id, lambda _pool, _addr: False, away)
            try:
                for hook in self._on_reaped:  # its pool memberships (ClusterIpam.leave_all)
                    hook(host_id, away)
            except EtcdUnavailable:
                raise
            except Exception:  # seen/ stays: the next pass tries again
                log.exception("reclaiming what host %s held failed", host_id)
                continue
            # Last, and only if still away: the index of what it held
            # (entries of addresses others have claimed since) and seen/.
            if self.etcd.txn(away, [delete_op(keys.prefix("held", host_id), prefix=True),
                                    delete_op(kv.key)]).get("succeeded"):
                gone.append(host_id)
                log.info("reclaimed the addresses and pool memberships of host %s, away for more than %ds",
                         host_id, self.grace)
        return gone

    def release_held(self, host_id: str, keep: Callable[[str, int], bool], fence: Sequence[dict] = ()) -> int:
        """Delete the address allocations of ``host_id`` for which ``keep(pool, addr)``
        is false, each only while ``fence``'s compares hold; returns how many went."""
        prefix = keys.prefix("held", host_id)
        gone = 0
        for kv in self.etcd.read_prefix(prefix)[0]:
            pool, _, hexa = kv.key[len(prefix):].partition("/")
            if keep(pool, int(hexa, 16)):
                continue
            # Compared on the holder: the address may have been freed and
            # claimed by another host since (the pool gone and made again);
            # then only the stale index entry goes (not when fenced: a
            # failed fence says nothing about the entry). The entry names
            # the claim's kind: empty for a container's address, "host" for
            # the host's own (cluster.hostaddr).
            kind = kv.value or "address"
            reply = self.etcd.txn([value_is(keys.prefix("addrs", pool) + hexa, AddrHolder(host_id, kind).value()),
                                   *fence],
                                  [delete_op(kv.key), delete_op(keys.prefix("addrs", pool) + hexa)],
                                  [] if fence else [delete_op(kv.key)])
            gone += bool(reply.get("succeeded"))
        return gone
