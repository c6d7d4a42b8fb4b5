"""The composition root: store, datapath, drivers and app, built from Settings."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from datapath.firewall import Firewall
from datapath.hostports import Holder
from datapath.links import Links
from datapath.sysctl import Sysctl
from network_driver import network
from ipam_driver import driver as ipam
from spec.stored import StoredNetwork

from . import testhook
from .config import Settings
from .store import Store

if TYPE_CHECKING:
    from flask import Flask


@dataclass
class Plugin:
    store: Store
    network: network.NetworkDriver
    app: Flask
    # What the worker runs when it starts (cluster mode: rejoin the cluster).
    worker_started: Callable[[], None] | None = None


def chain_prefix(name: str) -> str:
    """PONTOON for the default instance; another instance's chains get a tag
    of its name, so neither reconcile takes the other's chains for orphans.
    Short: iptables chain names stop at 28 characters."""
    if name == "pontoon":
        return "PONTOON"
    return "PONTOON" + hashlib.sha256(name.encode()).hexdigest()[:4].upper()


def _links(settings: Settings, crash) -> Links:
    return Links(faults=crash, owner=settings.name, sysctl=Sysctl(settings.sysctl_net_dir))


def build_network_driver(settings: Settings, store: Store, links=None, firewall=None,
                         crash: testhook.Hook | None = None, host_ports=None, segment=None) -> network.NetworkDriver:
    """The network driver alone, without Flask: all the start-up reconcile
    needs (the crash hook fires only inside requests, so reconcile has none).
    ``links``, ``firewall`` and ``host_ports`` as for ``build``."""
    firewall = firewall or Firewall(os.path.join(settings.state_dir, "firewall.lock"), faults=crash,
                                    chain_prefix=chain_prefix(settings.name),
                                    sysctl=Sysctl(settings.sysctl_net_dir), lock_timeout=settings.lock_timeout)
    if segment is None and settings.clustered:
        segment = _cluster_mode(settings, store).segment  # the reconcile child: VXLAN devices only
    return network.NetworkDriver(store.transaction, store.snapshot, links or _links(settings, crash), firewall,
                                 host_ports or Holder(), hook=crash, segment=segment)


def _cluster_mode(settings: Settings, store: Store):
    """Cluster mode's pieces; imported only in cluster mode."""
    from cluster.mode import ClusterMode

    return ClusterMode(settings, store, bridge_gateways)


def bridge_gateways(stored: StoredNetwork) -> tuple[str, ...]:
    """The gateway addresses a stored network's bridge carries: what
    cluster mode asks of the network driver (cluster.local.Gateways)."""
    return network.bridge_spec(stored).addresses


def build(settings: Settings, links=None, firewall=None, host_ports=None,
          hook: testhook.Hook | None = None) -> Plugin:
    """``links`` and ``firewall`` default to the real kernel ones; tests may
    hand in others (with fault hooks, say). ``host_ports`` holds published
    ports: the server's port keeper (plugin.portkeeper), else a holder in
    this process. ``hook`` replaces the test hook of the environment
    (plugin.testhook): tests in one process pause requests with it."""
    # Flask is imported here rather than with this module, so that the server
    # can start its reconcile child (plugin.server) before paying for it.
    from .app import create_app

    crash = hook or testhook.from_env()
    store = Store(settings.state_dir, before_commit=crash and (lambda: crash(testhook.COMMIT)),
                  lock_timeout=settings.lock_timeout)
    links = links or _links(settings, crash)
    cluster_mode = _cluster_mode(settings, store) if settings.clustered else None
    if cluster_mode is not None:  # the cluster's etcd writes and VXLAN steps are kill points too
        cluster_mode.host.faults = cluster_mode.segment.overlay.faults = crash
    network_driver = build_network_driver(settings, store, links, firewall, crash, host_ports,
                                          cluster_mode and cluster_mode.segment)
    ipam_driver = ipam.IpamDriver(store.transaction, links.host_routes,
                                  settings.pools(v6=False), settings.pools(v6=True))
    if cluster_mode is not None:
        ipam_driver = cluster_mode.wrap_ipam(ipam_driver, links.host_routes,
                                     settings.pools(v6=False), settings.pools(v6=True))
    app = create_app({**network.methods(network_driver), **ipam.methods(ipam_driver)})
    return Plugin(store, network_driver, app, cluster_mode and cluster_mode.worker_started)
