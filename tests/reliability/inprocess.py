"""The app built in-process (Flask test client) with the real netlink and
iptables parts, under an instance name of its own, and a client that
records what it sends."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from datapath.firewall import Firewall
from datapath.hostports import Holder
from datapath.links import Links
from datapath.locks import DEFAULT_TIMEOUT_S
from datapath.steps import FaultHook
from plugin.config import Settings
from plugin.inspect import collect
from plugin.wiring import Plugin, build, chain_prefix
from testbed.client import Client, FlaskTransport

from .kernel import Seen, view
from .recording import RecordingTransport


@dataclass
class InProcess:
    plugin: Plugin
    client: Client
    instance: str
    seen: Seen
    host_ports: Holder

    @property
    def app(self) -> Flask:
        return self.plugin.app

    def state(self) -> dict:
        """The store, this instance's objects in the kernel, and the host ports it holds."""
        return {"store": collect(self.plugin.store), "kernel": view(self.instance, self.seen),
                "held": self.host_ports.held()}

    def delete_everything(self) -> None:
        """Delete through the protocol every endpoint, network and pool the
        store holds, or that a request named (an accepted request may have
        used an ID ``seen`` does not track, and its bridge and chains must
        not outlive the test), and check the store is empty."""
        client, stored = self.client, collect(self.plugin.store)
        for eid in sorted(self.seen.endpoints | {e["id"] for e in stored["endpoints"]}):
            client.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": "0", "EndpointID": eid})
        for nid in sorted(self.seen.networks | {n["id"] for n in stored["networks"]}):
            client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
        for pool in collect(self.plugin.store)["pools"]:
            client.ok("IpamDriver.ReleasePool", {"PoolID": pool["id"]})
        left = collect(self.plugin.store)
        assert all(rows == [] for rows in left.values()), left



def in_process(workdir: Path, seen: Seen, faults: FaultHook | None = None, instance: str = "",
               pauses: FaultHook | None = None, lock_timeout: float = DEFAULT_TIMEOUT_S) -> InProcess:
    """``instance``: the name of one built before on the same ``workdir``.
    The firewall's lock file is ``workdir/fw.lock``. ``faults`` hooks the
    kernel and firewall steps; ``pauses`` (tests.reliability.pauses.Pauses) those,
    the driver's points and the commits."""
    instance = instance or "ptr" + secrets.token_hex(4)
    settings = Settings(name=instance, state_dir=str(workdir / "state"), lock_timeout=lock_timeout)
    faults = faults or pauses
    host_ports = Holder()  # the ports are held by this process, as by the server's master
    plugin = build(settings, links=Links(faults=faults, owner=instance),
                   firewall=Firewall(workdir / "fw.lock", faults=faults, chain_prefix=chain_prefix(instance),
                                     lock_timeout=lock_timeout),
                   host_ports=host_ports, hook=pauses)
    seen.watch(instance)
    plugin.store.initialise()
    return InProcess(plugin, recording(plugin, seen), instance, seen, host_ports)


def recording(plugin: Plugin, seen: Seen) -> Client:
    """A client of the app that records what it sends (one per thread)."""
    return Client(RecordingTransport(FlaskTransport(plugin.app), seen))
