"""Keeps each cluster network's fast path (datapath.fastpath) as this host's
store and the network's VXLAN device say.

One thread makes every rebuild: a request or a peer watch only marks its
network (``touch``), so none of them waits for tc, and a burst of peers
arriving costs one rebuild rather than one each. A rebuild that fails is
tried again a second later, and less and less often while it keeps failing
(a kernel without the tc parts used); meanwhile frames take the bridge,
which is slower, never wrong.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from spec.stored import StoredNetwork

from .local import LocalStore

log = logging.getLogger("pontoon.cluster")

RETRY_S = 1.0  # after a failed rebuild, doubled while rebuilds keep failing
RETRY_MAX_S = 60.0
# The thread looks for its stop this often while nothing changes.
IDLE_S = 5.0

# datapath.fastpath.apply: (VXLAN device, VNI, ((container MAC, host veth), ...))
Apply = Callable[[str, int, tuple[tuple[str, str], ...]], None]


class FastPaths:
    def __init__(self, store: LocalStore, apply: Apply, vxlan_name: Callable[[str], str],
                 stopped: Callable[[float], bool], available: Callable[[], bool]):
        """``vxlan_name``: a network's tag -> its VXLAN device's name;
        ``stopped``: waits up to its seconds for the host to stop, and says
        whether it has (ClusterHost.wait_stopped); ``available``: whether
        this host can have fast paths at all (asked once, in the thread)."""
        self._store = store
        self._apply = apply
        self._vxlan_name = vxlan_name
        self._stopped = stopped
        self._available = available
        self._dirty: set[str] = set()
        self._changed = threading.Condition()

    def touch(self, network_id: str) -> None:
        """The network's endpoints or peers changed: rebuild it soon."""
        with self._changed:
            self._dirty.add(network_id)
            self._changed.notify()

    def start(self, networks: list[StoredNetwork]) -> None:
        """At the worker's start, with the store's networks (the worker
        reads them anyway): every cluster network once (a rebuild finds
        what changed while no process ran), then as touched."""
        for network in networks:
            if network.cluster is not None:
                self.touch(network.id)
        threading.Thread(target=self._run, name="pontoon-fast-path", daemon=True).start()

    def _run(self) -> None:
        if not self._available():
            return
        pause = RETRY_S
        while not self._stopped(0):
            with self._changed:
                if not self._dirty:
                    self._changed.wait(IDLE_S)
                dirty, self._dirty = self._dirty, set()
            failed = {network_id for network_id in sorted(dirty) if not self._rebuilt(network_id)}
            if not failed:
                pause = RETRY_S
            elif not self._stopped(pause):
                pause = min(pause * 2, RETRY_MAX_S)
                with self._changed:
                    self._dirty |= failed

    def _rebuilt(self, network_id: str) -> bool:
        with self._store.snapshot() as tx:
            network = tx.get_network(network_id)
            endpoints = tx.list_endpoints(network_id) if network is not None else []
        # ICC off: the network's rules must see every frame, so none of
        # them is ever given a fast path.
        if network is None or network.cluster is None or network.lost or not network.options.icc:
            return True
        local = tuple((e.mac, e.host_veth) for e in endpoints if e.mac and e.host_veth and e.lost is None)
        try:
            self._apply(self._vxlan_name(network.tag), network.clustered.vni, local)
        except Exception as exc:  # noqa: BLE001  # a tool's or the kernel's refusal: tried again
            log.warning("fast path of network %s not rebuilt (frames take the bridge meanwhile): %s",
                        network_id, exc)
            return False
        return True
