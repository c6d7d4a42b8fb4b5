"""Cluster mode for one process (--etcd-endpoints given).

Imported only then: without --etcd-endpoints nothing of ``cluster`` (nor
etcd3gw) is loaded. Builds the pieces ``plugin.wiring`` hands the drivers:
the segment (``cluster.segment.ClusterSegment``) and the IPAM driver
(``cluster.ipam.ClusterIpam`` around the local one), and says what the
worker does when it starts. What it needs of this host (its settings, its
store, the gateways of a stored network) is handed in as
``cluster.local`` describes: nothing here calls back up into plugin/ or
network_driver/.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import replace

from cluster import hostaddr, keys
from cluster.dataplane import Dataplane
from cluster.fastpaths import FastPaths
from cluster.etcd import EtcdUnavailable, Tls
from cluster.host import ClusterHost, HostIdTaken
from cluster.hostrecord import Wireguard
from cluster.identity import host_id, host_token
from cluster.ipam import ClusterIpam, held_pairs
from cluster.segment import ClusterSegment, Lost
from datapath.errors import DatapathError
from names.engine import EngineNames
from names.service import Names
from spec import names as spec_names
from spec.stored import LostAddress, StoredEndpoint, StoredNetwork

from .local import Gateways, LocalStore, ModeSettings

log = logging.getLogger("pontoon.cluster")
RETRY_S = 5
REFUSED_RETRY_MAX_S = 60  # the start-up thread, while another host holds this host's ID
NEW_KEY_POLL_S = 0.5  # how often the worker looks for a key ``rotate-key`` left (see _take_new_keys)


def datapath_overlay(owner: str):
    """The VXLAN datapath and its types (datapath.overlay), loaded on first need."""
    from datapath import names, overlay

    dp = Dataplane(VxlanSpec=overlay.VxlanSpec, Peer=overlay.Peer, default_mtu=overlay.default_mtu,
                   underlay_mtu=overlay.underlay_mtu, vxlan_name=names.vxlan_name)
    return overlay.Overlay(owner), dp


def etcd_tls(settings: ModeSettings) -> Tls:
    return Tls(settings.etcd_ca, settings.etcd_cert, settings.etcd_key)


OWED_FILE = "cluster-teardown-owed"  # in the state dir: see ClusterHost.now_or_later


def cluster_host(settings: ModeSettings) -> ClusterHost:
    return ClusterHost(settings.etcd_endpoints, settings.host_id or host_id(settings.state_dir),
                       settings.advertise_addr, settings.lease_ttl, settings.reclaim_grace, etcd_tls(settings),
                       os.path.join(settings.state_dir, OWED_FILE), host_token(settings.state_dir))


class ClusterMode:
    """Everything of cluster mode for one process."""

    def __init__(self, settings: ModeSettings, store: LocalStore, gateways: Gateways, overlay=None,
                 dp: Dataplane | None = None, host_kernel=None):
        """``gateways``: a stored network's gateway addresses on this host's
        bridge (the driver's ``bridge_spec``); ``overlay`` and ``dp`` as for
        ClusterSegment, the real ones by default; ``host_kernel``: the
        kernel part of host addresses (datapath.hostaddr, the default with
        the real overlay), None for none."""
        self.host = cluster_host(settings)
        self.store = store
        self.settings = settings
        guard = tunnel = fastpaths = None
        self._loopback = None  # datapath.dnsaddress with the real datapath: the host-wide DNS address
        if overlay is None:
            from datapath import dnsaddress, fastpath
            from datapath import hostaddr as host_kernel
            from datapath.overlay import VXLAN_PORT
            from datapath.vxlanguard import VxlanGuard
            from datapath.wireguard import Tunnel

            overlay, dp = datapath_overlay(settings.name)
            self._loopback = dnsaddress
            guard = VxlanGuard(settings.name, VXLAN_PORT)
            tunnel = Tunnel(settings.name, settings.state_dir, self.host.host_id)
            fastpaths = FastPaths(store, fastpath.apply, dp.vxlan_name, self.host.wait_stopped, fastpath.available)
            identity = tunnel.identity()  # only the public key leaves the host
            if identity is not None:
                self.host.wireguard = Wireguard(**identity)
        assert dp is not None, "a fake overlay comes with its dataplane"
        addresses = None if host_kernel is None else \
            hostaddr.HostAddresses(self.host, host_kernel, self._remember_host_address, gateways)
        self.segment = ClusterSegment(self.host, overlay, dp, addresses, guard, tunnel, settings.encrypt,
                                      fastpaths)
        self.names = Names(self.host.host_id, self._askers, settings.dns_resolv_conf, settings.dns_port) \
            if settings.dns_port else None
        self.segment.names = self.names
        self.engine_names = EngineNames(settings.docker_socket, self._cluster_network_ids, self.give_names) \
            if self.names is not None and settings.docker_socket else None
        self.ipam: ClusterIpam | None = None
        self._unannounced = False  # a new WireGuard key in force that hosts/<id> does not show yet

    def wrap_ipam(self, local, host_routes, pools_v4, pools_v6) -> ClusterIpam:
        self.ipam = ClusterIpam(local, self.host, host_routes, pools_v4, pools_v6, self._networked)
        self.host.when_live(self._rejoin, self._republish)
        self.host.when_reaped(self.ipam.leave_all)  # a host away past the grace: its pool memberships end
        return self.ipam

    def _networked(self, pool: str) -> bool:
        """Whether a stored network (pending ones too) is on the cluster pool
        ``pool``. dockerd reserves a network's aux addresses between
        RequestPool and CreateNetwork, and never replays them (nor anything
        else) at a restart, so no network on the pool means the network's
        creation is under way."""
        with self.store.snapshot() as tx:
            return any(pool in keys.pool_names(n) for n in tx.list_networks() if n.cluster is not None)

    def _remember_host_address(self, network_id: str, address: str | None) -> None:
        with self.store.transaction() as tx:
            stored = tx.get_network(network_id)
            if stored is None:  # deleted meanwhile: nothing to record it in
                return
            tx.put_network(replace(stored, cluster=replace(stored.clustered, host_address=address or None)))

    def _stored(self) -> tuple[list[StoredNetwork], list[StoredEndpoint]]:
        with self.store.snapshot() as tx:
            return tx.list_networks(), tx.list_endpoints()

    def _rejoin(self, lease: int) -> None:
        """The first time this process has its lease: free the cluster's
        addresses of this host that the store no longer holds, end its
        memberships of pools the store no longer holds, publish the stored
        endpoints again and follow the stored networks' peers. That is all
        a teardown postponed by an outage would have done (the endpoint
        records of an earlier process ride on its lease, which expires), so
        the steps this process postponed before now are done or moot."""
        with self.store.snapshot() as tx:
            pools = tx.list_pools()
            held = held_pairs(pools, tx.list_addresses) | hostaddr.held_pairs(tx.list_networks())
        assert self.ipam is not None  # wrap_ipam made it, then asked for this
        freed = self.ipam.reconcile(lambda: held)
        if freed:
            log.info("reconcile: freed %d cluster address(es) this host no longer holds", freed)
        for name in self.ipam.leave_forgotten({keys.pool_name(p["space"], p["cidr"]) for p in pools}):
            log.info("reconcile: left cluster pool %s, which this host no longer holds", name)
        self._republish(lease)
        self.host.retry_pending()

    def _republish(self, lease: int) -> None:
        assert self.ipam is not None  # wrap_ipam made it, then asked for this
        with self.segment.deletes_seen():  # DeleteEndpoint, DeleteNetwork meanwhile (see there)
            networks, endpoints = self._stored()
            with self.store.snapshot() as tx:
                pools = {keys.pool_name(p["space"], p["cidr"]) for p in tx.list_pools()}
            cut = {n.id: self._cut_off(n, why) for n, why in self.segment.cut_off(networks, pools)}
            networks = [cut.get(n.id, n) for n in networks]
            # A cut-off network's pool is another's now (or no one's): its
            # membership is not taken up again.
            pools -= {n.clustered.pool for n in networks if n.lost}
            for name in self.ipam.member_again(pools):  # ended by a reclaim while this host was away
                log.warning("back after the reclaim grace: member of cluster pool %s again", name)
            lost = {taken.endpoint.id: taken for taken in self.segment.resume(networks, endpoints, lease, pools)}
        for endpoint in endpoints:
            self._mark(endpoint, lost.get(endpoint.id))
        by_id = {n.id: n for n in networks if n.cluster is not None and not n.lost}
        if self.names is None:
            return
        for endpoint in endpoints:  # published again, not through segment.publish: told here
            if endpoint.network_id in by_id and endpoint.id not in lost:
                self.names.published(by_id[endpoint.network_id], endpoint)

    def _askers(self, network_id: str | None, source: str) -> set[str]:
        """The cluster networks (by pool) of the container whose address on
        network ``network_id`` (None: on whichever network of this host holds
        it, if only one does) is ``source``: every network its sandbox is
        on. None for an address no endpoint here holds (the host itself, a
        container of another network routed through the host)."""
        try:
            source = str(ipaddress.ip_address(source))
        except ValueError:
            return set()
        with self.store.snapshot() as tx:
            networks = tx.asker_networks(source, network_id)
        return {n.pool for n in networks if n.pool is not None and not n.lost}

    def _cluster_network_ids(self) -> set[str]:
        with self.store.snapshot() as tx:
            return {n.id for n in tx.list_networks() if n.cluster is not None and not n.lost}

    def give_names(self, endpoint_id: str, name: str, aliases: list[str]) -> None:
        """The names dockerd's Engine API gives a container's endpoint
        (names.engine): kept in the store, and in the endpoint's record if
        it is published (a lost endpoint is not; an outage's rejoin
        publishes the store's names). Nothing is written when they are the
        ones held already."""
        kept = spec_names.usable([name] if name else [])  # a name DNS cannot answer for: the aliases still can
        others = list(spec_names.usable([*kept, *aliases])[len(kept):])
        with self.store.transaction() as tx:
            before = tx.get_endpoint(endpoint_id)
            network = tx.get_network(before.network_id) if before is not None else None
            if before is None or network is None or network.cluster is None:
                return
            after = replace(before, name=kept[0] if kept else None, aliases=tuple(others))
            if after == before:
                return
            tx.put_endpoint(after)
        if network.lost or before.lost:
            return
        try:
            self.segment.rename(network, before, after)
        except EtcdUnavailable as exc:
            log.warning("endpoint %s's names are kept, and published when etcd is back: %s", endpoint_id, exc)

    def _cut_off(self, network: StoredNetwork, why: str) -> StoredNetwork:
        """Mark ``network`` in the store as cut off from the cluster (so no
        restart puts its VXLAN device back) before taking it out of the
        cluster's datapath; ``inspect`` shows it, and its endpoints are lost.
        Returns it marked."""
        log.error("network %s is cut off from the cluster: %s; its containers reach only this host's until it "
                  "is removed and created again", network.id, why)
        network = replace(network, cluster=replace(network.clustered, lost=why))
        with self.store.transaction() as tx:
            stored = tx.get_network(network.id)
            if stored is not None:
                tx.put_network(replace(stored, cluster=network.cluster))
        self.segment.abandon(network)
        return network

    def _mark(self, endpoint: StoredEndpoint, taken: Lost | None) -> None:
        """Record in the store (``inspect`` shows it) whether the endpoint
        lost an address to another host: it stays out of the cluster's
        datapath until the container is removed, and says so loudly."""
        mark = None if taken is None else LostAddress(taken.address, taken.holder)
        if taken is not None:
            log.error("endpoint %s not published: its address %s is %s; its container is unreachable from "
                      "other hosts until it is removed and run again", endpoint.id, taken.address,
                      f"held by host {taken.holder} now" if taken.holder else "in a pool the cluster no longer holds")
        if endpoint.lost == mark:
            return
        with self.store.transaction() as tx:
            stored = tx.get_endpoint(endpoint.id)
            if stored is not None:
                tx.put_endpoint(replace(stored, lost=mark))

    def worker_started(self) -> None:
        """In the worker, at start: only when the store holds a cluster
        network, or an outage postponed teardown, is etcd needed now (and
        then in a thread of its own, so a missing etcd delays nothing);
        otherwise at the first call."""
        if self.engine_names is not None:
            self.engine_names.start()
        if self._loopback is not None:
            threading.Thread(target=self._serve_host_wide, name="pontoon-dns-address", daemon=True).start()
        networks, _ = self._stored()
        if self.segment.fastpaths is not None:
            self.segment.fastpaths.start(networks)
        if self.segment.tunnel is not None:
            threading.Thread(target=self._take_new_keys, name="pontoon-rotate-key", daemon=True).start()
        if not any(n.cluster is not None for n in networks) and not self.host.owes():
            return

        def connect() -> None:
            pause = RETRY_S
            while True:
                try:
                    self.host.lease_id()
                    return
                except EtcdUnavailable as exc:
                    pause = RETRY_S
                    log.warning("the cluster is needed at start but %s; retrying in %ds", exc, RETRY_S)
                except HostIdTaken as exc:
                    # Nothing was done in etcd (no rejoin: it would free the
                    # other host's addresses). Asked again, more and more
                    # slowly: the other host may go away.
                    log.error("this host is refused in the cluster: %s; asking again in %ds", exc, pause)
                if self.host.wait_stopped(pause):
                    return
                pause = min(pause * 2, REFUSED_RETRY_MAX_S)

        threading.Thread(target=connect, name="pontoon-rejoin", daemon=True).start()

    def _serve_host_wide(self) -> None:
        """The host-wide DNS address on lo (one of an earlier setting goes),
        and the responder on it. In a thread: netlink's import and calls
        delay nothing of the worker's start."""
        assert self._loopback is not None
        address = self.settings.dns_address if self.names is not None else ""
        try:
            ours = self._loopback.settle(address, self.settings.name)
            if self.names is not None and address:
                self.names.serve_host(address)
                log.info("DNS for every container of this host on %s%s", address,
                         "" if ours else " (an address of the host's own, not Pontoon's)")
        except (DatapathError, OSError) as exc:
            log.error("no host-wide DNS on %s: %s (each network's gateway still answers)", address, exc)

    def _take_new_keys(self) -> None:
        """``python -m plugin rotate-key`` leaves a new WireGuard key in the
        state dir (datapath.wireguard.offer_key), polled for here. Why a
        file polled for: the plugin socket speaks dockerd's protocol alone
        (one schema per dockerd method), the worker's PID is in no file
        and gunicorn's master keeps the usual signals for itself, while the
        state dir is root's alone (0700) and the key never leaves it; a
        stat twice a second costs nothing. Taken, the key is in force at
        once, and published (hosts/<id>, then this host's records of the
        encrypted networks written again, so the peers' watches read it);
        while etcd is away, publishing is tried again at each poll."""
        tunnel = self.segment.tunnel
        assert tunnel is not None  # started only with a tunnel
        while not self.host.wait_stopped(NEW_KEY_POLL_S):
            try:
                identity = tunnel.take_next_key()
                if identity is not None:
                    log.info("WireGuard key rotated: this host's public key is %s", identity["key"])
                    self.host.wireguard = Wireguard(**identity)
                    self._unannounced = True
                if self._unannounced:
                    self.host.claim(self.host.lease_id())  # hosts/<id> rewritten with it
                    self.segment.announce_key()
                    self._unannounced = False
            except EtcdUnavailable as exc:
                log.warning("the new WireGuard key is in force but not yet published: %s; trying again", exc)
            except Exception:
                log.exception("taking the new WireGuard key failed")
