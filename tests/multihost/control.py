"""In-process cluster hosts for the control-plane tests: each with its own
SQLite store, the real drivers and cluster code, a real etcd, and fake
kernel parts (tests/unit/fakes.py, ``FakeOverlay``) recording what the
datapath would be asked to do. The datapath itself is tested by the
cross-host tests with real namespaces and VXLAN."""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from network_driver import network
from ipam_driver import driver as ipam
from plugin.app import create_app
from cluster.dataplane import Dataplane
from cluster.mode import ClusterMode
from plugin.config import Settings
from plugin.store import Store
from plugin.wiring import bridge_gateways
from testbed.client import Client, FlaskTransport
from testbed.fake_dockerd import FakeDockerd
from tests.unit.fakes import FakeFirewall, FakeHostPorts, FakeLinks

UNDERLAY_MTU = 1500


@dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    local: str
    bridge: str
    mtu: int | None
    port: int = 4789


@dataclass(frozen=True)
class Peer:
    mac: str
    address: str
    vtep: str


class FakeOverlay:
    """The contract of datapath.overlay.Overlay, in memory."""

    def __init__(self):
        self.devices: dict[str, VxlanSpec] = {}
        self.entries: dict[str, set[Peer]] = {}
        self.lock = threading.Lock()

    def create(self, spec):
        with self.lock:
            self.devices[spec.name] = spec
            self.entries.setdefault(spec.name, set())

    def delete(self, spec, untagged=False):
        with self.lock:
            self.devices.pop(spec.name, None)
            self.entries.pop(spec.name, None)

    def reconcile(self, wanted):
        with self.lock:
            orphans = sorted(set(self.devices) - set(wanted))
        for name in orphans:
            self.delete(self.devices[name])
        return [f"orphan vxlan {name} removed" for name in orphans]

    def add_peer(self, spec, peer):
        with self.lock:
            self.entries.setdefault(spec.name, set()).add(peer)

    def remove_peer(self, spec, peer):
        with self.lock:
            self.entries.get(spec.name, set()).discard(peer)

    def sync_peers(self, spec, peers):
        with self.lock:
            before = self.entries.get(spec.name, set())
            self.entries[spec.name] = set(peers)
            return [f"+{p}" for p in peers - before] + [f"-{p}" for p in before - peers]

    def peers(self, spec):
        with self.lock:
            return set(self.entries.get(spec.name, set()))

    def all_peers(self) -> set[Peer]:
        with self.lock:
            return set().union(*self.entries.values()) if self.entries else set()


class FakeHostKernel:
    """The contract of datapath.hostaddr, in memory: each bridge's host
    address and the MAC the bridge answers for it with."""

    def __init__(self):
        self.addresses: dict[str, str] = {}
        self.macs: dict[str, str] = {}
        self.lock = threading.Lock()

    def add(self, bridge, address, gateway):
        with self.lock:
            self.addresses[bridge] = address
            return self.macs.setdefault(bridge, "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5)))

    def remove(self, bridge, address, gateway):
        with self.lock:
            if self.addresses.get(bridge) == address:
                del self.addresses[bridge]


DP = Dataplane(VxlanSpec=VxlanSpec, Peer=Peer, default_mtu=lambda _local: UNDERLAY_MTU - 50,
               underlay_mtu=lambda _local: UNDERLAY_MTU, vxlan_name=lambda network_id: "vx" + network_id[:12])


class Host:
    """One cluster member: ``client`` speaks the protocol as its dockerd would.

    Subclasses (the fault lab's processes) change what the process starts
    with through two hooks, not by making the member again: ``kernel_parts``
    (the fake kernel it finds) and ``datapath`` (what its cluster mode calls
    the overlay through)."""

    def __init__(self, state_dir, etcd_url: str, host_id: str, advertise: str, ttl: int = 15, **more):
        """``more``: other settings (the etcd TLS files, the reclaim grace);
        no DNS unless ``dns_port`` is given (these hosts share one namespace)."""
        settings = Settings(state_dir=str(state_dir), etcd_endpoints=[etcd_url], host_id=host_id,
                            advertise_addr=advertise, lease_ttl=ttl, **{"dns_port": 0, **more})
        self.store = Store(settings.state_dir)
        self.store.initialise()
        self.overlay, self.links, self.firewall, self.ports, self.host_kernel = self.kernel_parts()
        self.cluster_mode = ClusterMode(settings, self.store, bridge_gateways, self.datapath(self.overlay), DP,
                                        self.host_kernel)
        self.network = network.NetworkDriver(self.store.transaction, self.store.snapshot, self.links,
                                             self.firewall, self.ports, segment=self.cluster_mode.segment)
        local = ipam.IpamDriver(self.store.transaction, self.links.host_routes,
                                settings.pools(v6=False), settings.pools(v6=True))
        self.ipam = self.cluster_mode.wrap_ipam(local, self.links.host_routes, settings.pools(v6=False),
                                        settings.pools(v6=True))
        self.app = create_app({**network.methods(self.network), **ipam.methods(self.ipam)})
        self.client = Client(FlaskTransport(self.app))
        self.dockerd = FakeDockerd(self.client)

    def kernel_parts(self) -> tuple:
        """The overlay, links, firewall and host ports this process finds:
        new, empty ones; and the kernel part of host addresses, none here
        (many assertions count peers exactly)."""
        return FakeOverlay(), FakeLinks(["10.0.2.0/24"]), FakeFirewall(), FakeHostPorts(), None

    def datapath(self, overlay):
        """What the cluster mode calls for the overlay: the overlay itself."""
        return overlay

    def stop(self, revoke: bool = True) -> None:
        self.cluster_mode.segment.stop()
        self.cluster_mode.host.stop(revoke)
