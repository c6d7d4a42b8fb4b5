"""A kernel or firewall step fails: the whole request is undone, in the kernel,
the firewall and the store, and the error names the step. A lock stays
held by someone else: the request is refused with a 503 naming the lock,
and changes nothing.

For every multi-step method, a successful call records its steps; then each
step fails in turn, from the same starting state, and afterwards the store
and this test's kernel objects are exactly as before the call. The app is
built in-process with the real netlink and iptables parts, each given a
fault hook.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from plugin.inspect import collect

from .inprocess import in_process
from .kernel import Seen, bridge_state, ours, problems, raw_snapshot

SUBNET, GATEWAY, ADDRESS = "10.141.0.0/24", "10.141.0.1/24", "10.141.0.2/24"
SUBNET6, GATEWAY6, ADDRESS6 = "fd00:141::/64", "fd00:141::1/64", "fd00:141::2/64"
# Short, so that waiting out a held lock costs the tests little; nothing
# else here holds a lock for long.
LOCK_TIMEOUT_S = 0.3
FIREWALL, STORE = "the firewall lock", "the store's write lock"


class FailAt:
    """Fault hook: records every step, raises at the chosen one, once: a
    kernel that kept refusing would refuse the rollback's own steps too."""

    def __init__(self):
        self.step: str | None = None
        self.seen: list[str] = []

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        if name == self.step:
            self.step = None
            raise OSError(f"injected failure at {name}")


class Rig:
    """The app with real kernel parts and a fault hook, a client that records
    what it sent, and the bodies of one network with one endpoint."""

    def __init__(self, tmp_path, seen: Seen):
        self.hook, self.seen = FailAt(), seen
        self.target = in_process(tmp_path, seen, faults=self.hook, lock_timeout=LOCK_TIMEOUT_S)
        self.plugin, self.client, self.instance = self.target.plugin, self.target.client, self.target.instance
        self.lock_files = {FIREWALL: tmp_path / "fw.lock", STORE: Path(self.plugin.store.path + ".writer")}
        self.network_id, self.endpoint_id = secrets.token_hex(32), secrets.token_hex(32)
        self.ids = {"NetworkID": self.network_id, "EndpointID": self.endpoint_id}
        self.host_port = 20000 + secrets.randbelow(10000)
        self.bridge = "ptrb" + self.instance[-6:]
        self.pools = [self._allocate(subnet, v6, addresses)
                      for subnet, v6, addresses in ((SUBNET, False, (GATEWAY, ADDRESS)),
                                                    (SUBNET6, True, (GATEWAY6, ADDRESS6)))]

    def _allocate(self, subnet: str, v6: bool, addresses: tuple[str, ...]) -> str:
        """What dockerd asks of IPAM before the network and endpoint exist."""
        pool = self.client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": subnet, "V6": v6})["PoolID"]
        for address in addresses:
            self.client.ok("IpamDriver.RequestAddress", {"PoolID": pool, "Address": address.split("/")[0]})
        return pool

    def create_network(self) -> None:
        self.client.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": self.network_id,
            "Options": {"com.docker.network.enable_ipv6": True,
                        "com.docker.network.generic": {"com.docker.network.bridge.name": self.bridge,
                                                       "com.docker.network.driver.mtu": "1400"}},
            "IPv4Data": [{"Pool": SUBNET, "Gateway": GATEWAY}],
            "IPv6Data": [{"Pool": SUBNET6, "Gateway": GATEWAY6}]})

    def create_endpoint(self) -> None:
        self.client.ok("NetworkDriver.CreateEndpoint", {
            **self.ids, "Interface": {"Address": ADDRESS, "AddressIPv6": ADDRESS6, "MacAddress": ""}})

    def join(self) -> None:
        self.client.ok("NetworkDriver.Join", {**self.ids, "SandboxKey": "/var/run/docker/netns/x"})

    def publish(self) -> None:
        self.client.ok("NetworkDriver.ProgramExternalConnectivity", {**self.ids, "Options": {
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": self.host_port, "HostPortEnd": 0},
                {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": self.host_port, "HostPortEnd": 0}]}})

    def call(self, method: str) -> Callable[[], None]:
        body = {"NetworkID": self.network_id} if method == "DeleteNetwork" else self.ids
        return lambda: self.client.ok(f"NetworkDriver.{method}", body)

    def every_step_fails_in_turn(self, do: Callable[[], None], redo: Callable[[], None]) -> list[str]:
        """Run ``do`` once recording its steps, ``redo`` back to the state
        before it, then fail each step of ``do`` in turn: a 500 naming the
        step, and the store and kernel as before. Returns the steps."""
        self.hook.seen.clear()
        do()
        steps = list(self.hook.seen)
        redo()
        assert steps, "no kernel step to fail"
        for step in steps:
            before = self.target.state()
            self.hook.step = step
            with pytest.raises(Exception) as failed:
                do()
            assert failed.value.status == 500 and step in failed.value.body["Err"], (step, failed.value)
            assert self.target.state() == before, step
            assert problems(before["store"], self.instance, self.seen) == [], step
        return steps

    def refused_while_held(self, do: Callable[[], None], *locks: str) -> None:
        """With each lock held in turn through a file of its own (as another
        process would), ``do`` is a 503 naming the lock, and changes nothing."""
        for lock in locks:
            before = self.target.state()
            fd = os.open(self.lock_files[lock], os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with pytest.raises(Exception) as refused:
                    do()
            finally:
                os.close(fd)
            assert refused.value.status == 503 and lock in refused.value.body["Err"], (lock, refused.value)
            assert self.target.state() == before, lock

    def remove_all(self) -> None:
        self.hook.step = None
        for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint", "DeleteNetwork"):
            self.call(method)()
        for pool in self.pools:
            self.client.ok("IpamDriver.ReleasePool", {"PoolID": pool})


@pytest.fixture
def rig(root, tmp_path, before, seen):
    rig = Rig(tmp_path, seen)
    yield rig
    rig.remove_all()
    assert all(rows == [] for rows in collect(rig.plugin.store).values())
    assert ours(raw_snapshot(), seen) == ours(before, seen)


def test_create_network(rig):
    steps = rig.every_step_fails_in_turn(rig.create_network, rig.call("DeleteNetwork"))
    assert any(s.startswith("add bridge") for s in steps) and any("firewall" in s for s in steps)


def test_delete_network_with_an_endpoint(rig):
    def recreate():
        rig.create_network()
        rig.create_endpoint()

    recreate()
    steps = rig.every_step_fails_in_turn(rig.call("DeleteNetwork"), recreate)
    assert any(s.startswith("delete bridge") for s in steps) and any(s.startswith("delete veth") for s in steps)


def test_create_endpoint(rig):
    rig.create_network()
    steps = rig.every_step_fails_in_turn(rig.create_endpoint, rig.call("DeleteEndpoint"))
    assert any(s.startswith("add veth") for s in steps)


def test_program_external_connectivity(rig):
    rig.create_network()
    rig.create_endpoint()
    rig.join()
    steps = rig.every_step_fails_in_turn(rig.publish, rig.call("RevokeExternalConnectivity"))
    assert "apply ipv4 firewall" in steps


def test_revoke_external_connectivity(rig):
    rig.create_network()
    rig.create_endpoint()
    rig.join()
    rig.publish()
    steps = rig.every_step_fails_in_turn(rig.call("RevokeExternalConnectivity"), rig.publish)
    assert any(s.startswith("flush conntrack") for s in steps)


def test_delete_endpoint_with_published_ports(rig):
    """dockerd revokes first, but at its start it deletes stale endpoints
    whatever state they are in."""
    def recreate():
        rig.create_endpoint()
        rig.join()
        rig.publish()

    rig.create_network()
    recreate()
    steps = rig.every_step_fails_in_turn(rig.call("DeleteEndpoint"), recreate)
    assert any(s.startswith("delete veth") for s in steps)


def test_a_held_lock_is_a_503_that_changes_nothing(rig):
    """Each method that changes state, with each lock it takes held by
    another: refused, nothing changed; once the lock is free, it succeeds."""
    steps = [
        (rig.create_network, (FIREWALL, STORE)),
        (rig.create_endpoint, (STORE,)),
        (rig.join, (STORE,)),
        (rig.publish, (FIREWALL, STORE)),
        (rig.call("RevokeExternalConnectivity"), (FIREWALL, STORE)),
        (rig.publish, ()),
        (rig.call("Leave"), (STORE,)),
        (rig.call("DeleteEndpoint"), (FIREWALL, STORE)),
        (rig.call("DeleteNetwork"), (FIREWALL, STORE)),
    ]
    for do, locks in steps:
        rig.refused_while_held(do, *locks)
        do()


@pytest.fixture
def users_bridge(rig):
    """A bridge of the user's under the name the rig's network asks for:
    its own addresses (the network's gateway among them), MTU 1300, IPv6
    off, down."""
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("link", "add", rig.bridge, "mtu", "1300", "type", "bridge")
    rig.seen.users.add(rig.bridge)
    for address in ("192.0.2.41/24", GATEWAY):
        ip("addr", "add", address, "dev", rig.bridge)
    with open(f"/proc/sys/net/ipv6/conf/{rig.bridge}/disable_ipv6", "w") as f:
        f.write("1")
    yield bridge_state(rig.bridge)
    subprocess.run(["ip", "link", "del", rig.bridge], capture_output=True)


def test_create_and_delete_network_on_an_adopted_bridge(rig, users_bridge):
    """Whichever step fails, an adopted bridge is as it was; and deleting the
    network gives it back as found: its addresses, MTU, sysctls, down."""
    found = users_bridge
    steps = rig.every_step_fails_in_turn(rig.create_network, rig.call("DeleteNetwork"))
    assert f"set route_localnet {rig.bridge}" in steps and not any(s.startswith("tag") for s in steps)
    assert bridge_state(rig.bridge) == found
    rig.create_network()
    assert bridge_state(rig.bridge)["sysctls"]["ipv4/route_localnet"] == "1"
    steps = rig.every_step_fails_in_turn(rig.call("DeleteNetwork"), rig.create_network)
    assert {f"restore mtu 1300 of {rig.bridge}", f"restore ipv6/disable_ipv6 1 on {rig.bridge}",
            f"restore ipv4/route_localnet 0 on {rig.bridge}", f"set {rig.bridge} down as it was"} <= set(steps)
    rig.call("DeleteNetwork")()
    assert bridge_state(rig.bridge) == found
