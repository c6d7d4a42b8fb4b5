"""In-memory stand-ins for the kernel side, for tests of the protocol logic.

They keep what a real kernel would hold, so tests can check that a refused
or rolled-back request left nothing behind. ``fail`` names methods that
raise as the kernel would.
"""
from __future__ import annotations

import ipaddress

from datapath import names
from datapath.errors import DatapathError, NameConflict, NameTaken
from datapath.hostports import Claim, Key, PortInUse
from datapath.model import BRIDGE_PREFIX, VETH_HOST_PREFIX

HOST_INTERFACES = {"lo", "eth0", "docker0"}


class FakeLinks:
    def __init__(self, routes=()):
        self.bridges: dict[str, object] = {}  # name -> BridgeSpec
        self.veths: dict[str, object] = {}  # host name -> VethSpec
        self.user_bridges: set[str] = set()  # made "by the user" before the test
        self.user_links: set[str] = set()  # other links of the user's, never to be touched
        self.routes = [ipaddress.ip_network(r) for r in routes]
        self.fail: set[str] = set()

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise DatapathError(what, "injected failure")

    # the pure naming rules are the real ones
    veth_names = staticmethod(names.veth_names)
    derive_mac = staticmethod(names.derive_mac)

    def check_bridge_name(self, name: str) -> None:
        names.validate_ifname(name, "bridge name")
        if name in HOST_INTERFACES:
            raise NameConflict(f'bridge name "{name}" is held by a host interface')

    def link_exists(self, name: str) -> bool:
        return name in self.bridges or name in self.veths or name in self.user_bridges | self.user_links

    def survey_bridge(self, name: str) -> dict | None:
        return {"addresses": [], "sysctls": {}} if name in self.user_bridges else None

    def create_bridge(self, spec, owned: bool = True) -> bool:
        self._maybe_fail("create_bridge")
        self.bridges[spec.name] = spec
        return spec.name not in self.user_bridges

    def release_bridge(self, spec, created: bool, adopted, untagged: bool = False) -> None:
        self._maybe_fail("delete_bridge")
        if created and spec.name not in self.user_bridges:
            self.bridges.pop(spec.name, None)

    def create_veth(self, spec, new: bool = False) -> bool:
        self._maybe_fail("create_veth")
        if new and (spec.host_name in self.veths or spec.host_name in self.user_links):
            raise NameTaken(f"{spec.host_name} is held")
        if spec.bridge not in self.bridges:
            raise DatapathError(f"enslave {spec.host_name} to {spec.bridge}", "no such bridge")
        created = spec.host_name not in self.veths
        self.veths[spec.host_name] = spec
        return created

    def veth_intact(self, spec) -> bool:
        return self.veths.get(spec.host_name) == spec

    def delete_veth(self, host_name: str) -> None:
        self._maybe_fail("delete_veth")
        self.veths.pop(host_name, None)

    def host_routes(self):
        return list(self.routes)

    def reconcile(self, bridges, veths, joined) -> list[str]:
        changes = []
        for spec, _created in bridges:
            if spec.name not in self.bridges:
                self.bridges[spec.name] = spec
                changes.append(f"recreated bridge {spec.name}")
        for spec in veths:
            if spec.host_name not in self.veths and spec.host_name not in joined:
                self.veths[spec.host_name] = spec
                changes.append(f"recreated veth {spec.host_name}")
        owned = {s.name for s, _ in bridges} | {s.host_name for s in veths}
        for name in [n for n in list(self.bridges) + list(self.veths)
                     if n.startswith((BRIDGE_PREFIX, VETH_HOST_PREFIX)) and n not in owned]:
            self.bridges.pop(name, None)
            self.veths.pop(name, None)
            changes.append(f"deleted orphan {name}")
        return changes


class FakeFirewall:
    def __init__(self):
        self.networks: dict[str, object] = {}  # network id -> NetworkRules
        self.ports: dict[str, object] = {}  # endpoint id -> EndpointPorts
        self.fail: set[str] = set()

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise DatapathError(what, "injected failure")

    def add_network(self, rules) -> None:
        self._maybe_fail("add_network")
        self.networks[rules.network_id] = rules

    def remove_network(self, rules) -> None:
        self.networks.pop(rules.network_id, None)

    def add_ports(self, ports) -> None:
        self._maybe_fail("add_ports")
        self.ports[ports.endpoint_id] = ports

    def remove_ports(self, ports) -> None:
        self.ports.pop(ports.endpoint_id, None)

    def ephemeral_range(self) -> tuple[int, int]:
        return 49153, 65535

    def reconcile(self, networks, ports) -> list[str]:
        self.networks = {r.network_id: r for r in networks}
        self.ports = {p.endpoint_id: p for p in ports}
        return []


class FakeHostPorts:
    """Held host ports without sockets: ``busy`` are held by "host processes"."""

    def __init__(self):
        self.held: set[Key] = set()
        self.busy: set[Key] = set()

    def claim(self, claims: list[Claim]) -> list[int]:
        got = []
        for claim in claims:
            # From the first port, not a random start: replies stay predictable.
            port = next((p for p in range(claim.first, claim.last + 1)
                         if p not in claim.skip and Key(claim.proto, claim.host_ip, p) not in self.held | self.busy | set(got)), None)
            if port is None:
                raise PortInUse(claim)
            got.append(Key(claim.proto, claim.host_ip, port))
        self.held |= set(got)
        return [k.port for k in got]

    def release(self, keys) -> None:
        self.held -= {Key(*k) for k in keys}
