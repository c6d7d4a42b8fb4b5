"""A kernel or firewall step fails: the whole request is undone, in the kernel,
the firewall and the store, and the error names the step.

The app is built in-process with the real netlink and iptables parts, each
given a fault hook that fails one named step.
"""
from __future__ import annotations

import secrets
import subprocess

from datapath.firewall import Firewall
from datapath.links import Links
from plugin.config import Settings
from plugin.inspect import collect
from plugin.wiring import build
from tests.harness.client import Client, FlaskTransport

from .conftest import require_root
from .sandbox import ip


class FailAt:
    """Fault hook: records every step, raises at the chosen one."""

    def __init__(self, step: str | None = None):
        self.step, self.seen = step, []

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        if name == self.step:
            raise OSError(f"injected failure at {name}")


def make(tmp_path, hook: FailAt):
    settings = Settings(state_dir=str(tmp_path / secrets.token_hex(4)))
    plugin = build(settings, links=Links(faults=hook), firewall=Firewall(tmp_path / "fw.lock", faults=hook))
    plugin.store.initialise()
    return plugin, Client(FlaskTransport(plugin.app))


def kernel_traces(bridge: str, network_id: str) -> list[str]:
    """Anything of this network left in links, addresses or the firewall."""
    found = [line for line in ip("-o", "link", "show").stdout.splitlines() if bridge in line or "ptv" + network_id[:6] in line]
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
        found += [line for line in out.splitlines() if bridge in line or network_id[:12] in line]
    return found


def network_body(network_id: str, bridge: str) -> dict:
    return {"NetworkID": network_id,
            "Options": {"com.docker.network.enable_ipv6": True,
                        "com.docker.network.generic": {"com.docker.network.bridge.name": bridge,
                                                       "com.docker.network.driver.mtu": "1400"}},
            "IPv4Data": [{"Pool": "10.141.0.0/24", "Gateway": "10.141.0.1/24"}],
            "IPv6Data": [{"Pool": "fd00:141::/64", "Gateway": "fd00:141::1/64"}]}


def test_every_create_network_step_rolls_back(tmp_path):
    require_root()
    hook = FailAt()
    plugin, client = make(tmp_path, hook)
    network_id, bridge = secrets.token_hex(32), "ptrb" + secrets.token_hex(3)
    body = network_body(network_id, bridge)
    client.ok("NetworkDriver.CreateNetwork", body)
    steps = list(hook.seen)
    client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": network_id})
    assert any(s.startswith("add bridge") for s in steps) and any("firewall" in s for s in steps)
    for step in steps:
        hook.step = step
        status, reply = client.call("NetworkDriver.CreateNetwork", body)
        assert status == 500 and step in reply["Err"], (step, reply)
        assert kernel_traces(bridge, network_id) == [], step
        assert collect(plugin.store)["networks"] == []


def test_every_create_endpoint_step_rolls_back(tmp_path):
    require_root()
    hook = FailAt()
    plugin, client = make(tmp_path, hook)
    network_id, bridge = secrets.token_hex(32), "ptrb" + secrets.token_hex(3)
    client.ok("NetworkDriver.CreateNetwork", network_body(network_id, bridge))
    try:
        hook.seen.clear()
        endpoint_id = secrets.token_hex(32)
        body = {"NetworkID": network_id, "EndpointID": endpoint_id,
                "Interface": {"Address": "10.141.0.2/24", "AddressIPv6": "", "MacAddress": ""}}
        client.ok("NetworkDriver.CreateEndpoint", body)
        steps = list(hook.seen)
        client.ok("NetworkDriver.DeleteEndpoint", body)
        assert any(s.startswith("add veth") for s in steps)
        for step in steps:
            hook.step = step
            status, reply = client.call("NetworkDriver.CreateEndpoint", body)
            assert status == 500 and step in reply["Err"], (step, reply)
            assert "ptv" + endpoint_id[:12] not in ip("-o", "link", "show").stdout, step
            assert collect(plugin.store)["endpoints"] == []
        hook.step = None
    finally:
        client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": network_id})
    assert kernel_traces(bridge, network_id) == []
