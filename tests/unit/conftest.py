from __future__ import annotations

import pytest

from network_driver import network
from ipam_driver import driver as ipam
from plugin.app import create_app
from plugin.config import Settings
from plugin.inspect import collect
from plugin.store import Store
from testbed.client import Client, FlaskTransport
from testbed.fake_dockerd import FakeDockerd

from .fakes import FakeFirewall, FakeHostPorts, FakeLinks

# A host route the IPAM driver must steer clear of, as docker0 would be.
HOST_ROUTES = ["172.17.0.0/16", "10.0.2.0/24"]


class Plugin:
    """The app wired to a real store in a temp dir and fake kernel parts."""

    def __init__(self, state_dir):
        settings = Settings(state_dir=str(state_dir))
        self.store = Store(settings.state_dir)
        self.store.initialise()
        self.links = FakeLinks(HOST_ROUTES)
        self.firewall = FakeFirewall()
        self.host_ports = FakeHostPorts()
        self.network = network.NetworkDriver(self.store.transaction, self.store.snapshot, self.links, self.firewall,
                                             self.host_ports)
        self.ipam = ipam.IpamDriver(self.store.transaction, self.links.host_routes,
                                    settings.pools(v6=False), settings.pools(v6=True))
        self.app = create_app({**network.methods(self.network), **ipam.methods(self.ipam)})
        self.client = Client(FlaskTransport(self.app))

    def state(self) -> dict:
        """Everything stored and everything the fake kernel holds."""
        return {"store": collect(self.store), "bridges": dict(self.links.bridges),
                "veths": dict(self.links.veths), "rules": dict(self.firewall.networks),
                "ports": dict(self.firewall.ports), "held": set(self.host_ports.held)}


@pytest.fixture
def plugin(tmp_path) -> Plugin:
    return Plugin(tmp_path)


@pytest.fixture
def client(plugin) -> Client:
    return plugin.client


@pytest.fixture
def dockerd(client) -> FakeDockerd:
    return FakeDockerd(client)


@pytest.fixture
def refused(plugin):
    """Call a method expecting a 4xx, and check that nothing changed."""

    def check(method: str, body=None, status: int = 400, raw: bytes | None = None, says: str = "") -> str:
        before = plugin.state()
        got, reply = plugin.client.call(method, body, raw=raw)
        assert got == status, reply
        assert says in reply["Err"], reply["Err"]
        assert "Traceback" not in reply["Err"]
        assert plugin.state() == before
        return reply["Err"]

    return check
