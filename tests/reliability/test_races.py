"""Requests on one endpoint, or on one network, that interleave: request A is
stopped at a named point (tests/reliability/pauses.py), request B runs to its end,
then A goes on. No sleeps decide the order. Afterwards, with the real kernel
and iptables: no firewall rule or held host port outlives its stored port,
and no link outlives its endpoint (tests.reliability.kernel.problems, the
port holder, and a bind of the ports by "another process").

Each case is one that went wrong before its fix, named after what A does.
"""
from __future__ import annotations

import secrets
import socket
import subprocess
import threading

import pytest

from .pauses import Pauses

from .inprocess import in_process, recording
from .kernel import ours, problems, raw_snapshot

SUBNET, GATEWAY = "10.143.0.0/24", "10.143.0.1/24"
ADDRESSES = ("10.143.0.2/24", "10.143.0.3/24")


class Rig:
    def __init__(self, tmp_path, seen):
        self.pauses = Pauses()
        self.target = in_process(tmp_path, seen, pauses=self.pauses)
        self.plugin, self.seen, self.instance = self.target.plugin, seen, self.target.instance
        self.client = self.target.client
        self.network_id = secrets.token_hex(32)
        self.endpoints = [secrets.token_hex(32) for _ in ADDRESSES]
        self.base_port = 20000 + secrets.randbelow(10000)

    def ids(self, n: int = 0) -> dict:
        return {"NetworkID": self.network_id, "EndpointID": self.endpoints[n]}

    def create_network(self) -> None:
        self.client.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": self.network_id, "Options": {}, "IPv4Data": [{"Pool": SUBNET, "Gateway": GATEWAY}]})

    def endpoint_body(self, n: int = 0, mac: str = "") -> dict:
        return {**self.ids(n), "Interface": {"Address": ADDRESSES[n], "AddressIPv6": "", "MacAddress": mac}}

    def program_body(self, n: int, offset: int) -> dict:
        """Port 80 and 53 of endpoint ``n`` published on host port base + offset."""
        port = self.base_port + offset
        return {**self.ids(n), "Options": {"com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": port, "HostPortEnd": 0},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": port, "HostPortEnd": 0}]}}

    def call(self, method: str, body: dict, client=None):
        return (client or self.client).call(f"NetworkDriver.{method}", body)

    def paused(self, method: str, step: str, body: dict) -> "Paused":
        """Request A: ``method`` in a thread of its own, stopped before ``step``."""
        pause = self.pauses.at(f"NetworkDriver.{method}", step)
        a = Paused(lambda: self.call(method, body, recording(self.plugin, self.seen)), pause)
        pause.wait_reached()
        return a

    def check(self) -> None:
        """Store, kernel, firewall and held ports agree."""
        state = self.target.state()
        assert problems(state["store"], self.instance, self.seen, ipam=False) == []
        stored = {(p["proto"], p["host_ip"], p["host_port"]) for e in state["store"]["endpoints"] for p in e["ports"]}
        assert {tuple(k) for k in state["held"]} == stored
        for offset in (0, 1):
            for proto, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
                port = self.base_port + offset
                assert _bindable(kind, port) == ((proto, "0.0.0.0", port) not in stored), (proto, port)
        published = {e["id"] for e in state["store"]["endpoints"] if e["ports"]}
        for eid in self.endpoints:
            dnat = [line for line in _nat() if f"-E-{eid[:12]}" in line and "DNAT" in line]
            assert bool(dnat) == (eid in published), (eid, dnat)

    def remove_all(self) -> None:
        self.pauses = None
        for n in range(len(self.endpoints)):
            for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
                self.call(method, self.ids(n))
        self.call("DeleteNetwork", {"NetworkID": self.network_id})


class Paused(threading.Thread):
    def __init__(self, request, pause):
        super().__init__(daemon=True)
        self.request, self.pause = request, pause
        self.reply: tuple[int, dict] | None = None
        self.start()

    def run(self) -> None:
        self.reply = self.request()

    def finish(self) -> tuple[int, dict]:
        self.pause.release()
        self.join(60)
        assert not self.is_alive(), "request A did not finish after its release"
        return self.reply


def _bindable(kind: int, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _nat() -> list[str]:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.fixture
def rig(root, tmp_path, before, seen):
    rig = Rig(tmp_path, seen)
    rig.create_network()
    yield rig
    rig.remove_all()
    rig.check()
    assert ours(raw_snapshot(), seen) == ours(before, seen)


@pytest.mark.parametrize("method, step, left", [
    ("RevokeExternalConnectivity", "flush conntrack", [[]]),  # the endpoint, publishing nothing
    ("DeleteEndpoint", "delete veth", []),
])
def test_unpublishing_leaves_no_port_a_program_published_meanwhile(rig, method, step, left):
    rig.client.ok("NetworkDriver.CreateEndpoint", rig.endpoint_body())
    rig.client.ok("NetworkDriver.ProgramExternalConnectivity", rig.program_body(0, 0))
    # A has removed the rules of port +0 and not committed yet.
    a = rig.paused(method, step, rig.ids())
    assert rig.call("ProgramExternalConnectivity", rig.program_body(0, 1))[0] == 200
    assert a.finish()[0] == 200
    # A came last: no DNAT for +1 is left, and +1 is free (rig.check).
    assert [e["ports"] for e in rig.target.state()["store"]["endpoints"]] == left
    rig.check()


def test_delete_network_tears_down_an_endpoint_committed_after_its_snapshot(rig):
    rig.client.ok("NetworkDriver.CreateEndpoint", rig.endpoint_body(0))
    # A has read the network's endpoints (one) and removed the network's
    # rules, and is about to delete the veth it knows of.
    a = rig.paused("DeleteNetwork", "delete veth", {"NetworkID": rig.network_id})
    assert rig.call("CreateEndpoint", rig.endpoint_body(1))[0] == 200
    assert rig.call("ProgramExternalConnectivity", rig.program_body(1, 0))[0] == 200
    assert a.finish()[0] == 200
    state = rig.target.state()["store"]
    assert state["networks"] == [] and state["endpoints"] == []
    rig.check()


def test_a_failed_create_endpoint_spares_the_pair_another_request_stored(rig):
    """Two CreateEndpoints of one endpoint with different settings: the
    loser's undo used to delete the pair the winner adopted and stored."""
    a = rig.paused("CreateEndpoint", "veth made", rig.endpoint_body(0, mac="02:42:0a:8f:00:09"))
    assert rig.call("CreateEndpoint", rig.endpoint_body(0))[0] == 200
    status, reply = a.finish()
    assert status == 409 and "already exists with different settings" in reply["Err"]
    assert [e["id"] for e in rig.target.state()["store"]["endpoints"]] == [rig.endpoints[0]]
    rig.check()


def test_join_undoes_the_veth_it_made_for_an_endpoint_deleted_meanwhile(rig):
    rig.client.ok("NetworkDriver.CreateEndpoint", rig.endpoint_body())
    host_veth = rig.target.state()["store"]["endpoints"][0]["host_veth"]
    subprocess.run(["ip", "link", "del", host_veth], check=True)  # Join must make it again
    a = rig.paused("Join", "find bridge", {**rig.ids(), "SandboxKey": "/var/run/docker/netns/x"})
    assert rig.call("DeleteEndpoint", rig.ids())[0] == 200
    assert a.finish()[0] == 404
    assert rig.target.state()["store"]["endpoints"] == []
    rig.check()
