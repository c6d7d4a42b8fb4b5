"""The composition root: store, datapath, drivers and app, built from Settings."""
from __future__ import annotations

import os
from dataclasses import dataclass

from flask import Flask

from datapath.firewall import Firewall
from datapath.links import Links
from handlers import network
from ipam_plugin import driver as ipam

from .app import create_app
from . import testhook
from .config import Settings
from .store import Store


@dataclass
class Plugin:
    store: Store
    network: network.NetworkDriver
    app: Flask


def build(settings: Settings, links=None, firewall=None) -> Plugin:
    """``links`` and ``firewall`` default to the real kernel ones; tests may
    hand in others (with fault hooks, say)."""
    crash = testhook.from_env()
    store = Store(settings.state_dir, before_commit=crash and (lambda: crash(testhook.COMMIT)))
    links = links or Links(faults=crash, owner=settings.name)
    firewall = firewall or Firewall(os.path.join(settings.state_dir, "firewall.lock"), faults=crash)
    network_driver = network.NetworkDriver(store.transaction, store.snapshot, links, firewall)
    ipam_driver = ipam.IpamDriver(store.transaction, links.host_routes,
                                  settings.pools(v6=False), settings.pools(v6=True))
    app = create_app({**network.methods(network_driver), **ipam.methods(ipam_driver)})
    return Plugin(store, network_driver, app)
