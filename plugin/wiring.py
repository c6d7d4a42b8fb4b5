"""The composition root: store, datapath, drivers and app, built from Settings."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from flask import Flask

from datapath.firewall import Firewall
from datapath.links import Links
from datapath.sysctl import Sysctl
from handlers import network
from ipam_plugin import driver as ipam

from . import testhook
from .app import create_app
from .config import Settings
from .store import Store


@dataclass
class Plugin:
    store: Store
    network: network.NetworkDriver
    app: Flask


def chain_prefix(name: str) -> str:
    """PONTOON for the default instance; another instance's chains get a tag
    of its name, so neither reconcile takes the other's chains for orphans.
    Short: iptables chain names stop at 28 characters."""
    if name == "pontoon":
        return "PONTOON"
    return "PONTOON" + hashlib.sha256(name.encode()).hexdigest()[:4].upper()


def build(settings: Settings, links=None, firewall=None) -> Plugin:
    """``links`` and ``firewall`` default to the real kernel ones; tests may
    hand in others (with fault hooks, say)."""
    crash = testhook.from_env()
    store = Store(settings.state_dir, before_commit=crash and (lambda: crash(testhook.COMMIT)))
    sysctl = Sysctl(settings.sysctl_net_dir)
    links = links or Links(faults=crash, owner=settings.name, sysctl=sysctl)
    firewall = firewall or Firewall(os.path.join(settings.state_dir, "firewall.lock"), faults=crash,
                                    chain_prefix=chain_prefix(settings.name), sysctl=sysctl)
    network_driver = network.NetworkDriver(store.transaction, store.snapshot, links, firewall)
    ipam_driver = ipam.IpamDriver(store.transaction, links.host_routes,
                                  settings.pools(v6=False), settings.pools(v6=True))
    app = create_app({**network.methods(network_driver), **ipam.methods(ipam_driver)})
    return Plugin(store, network_driver, app)
