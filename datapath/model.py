"""Plain descriptions of the kernel objects Pontoon manages.

The network driver builds these from stored networks and endpoints; the datapath
turns them into kernel state. Frozen, so they can be compared and stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Names Pontoon derives itself. Reconcile treats a link with these prefixes
# that no stored object owns as an orphan of a crashed run only if it also
# carries this instance's tag (see datapath.links): a prefix alone is no
# proof, a user may name a link the same way.
BRIDGE_PREFIX = "pt-"
VETH_HOST_PREFIX = "ptv"
VETH_PEER_PREFIX = "ptc"
# The VXLAN device of a cluster network (datapath.overlay). Not among the
# prefixes the single-host reconcile sweeps: only the cluster path makes them.
VXLAN_PREFIX = "ptx"


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    mtu: int | None = None  # None: leave the kernel's default
    # Gateway addresses in interface form: "10.0.0.1/24", "fd00::1/64".
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class VethSpec:
    host_name: str  # stays on the host, enslaved to the bridge
    peer_name: str  # the SrcName that dockerd moves into the sandbox
    bridge: str
    mac: str  # set on the peer end
    mtu: int | None = None


@dataclass(frozen=True)
class NetworkRules:
    """Firewall description of one network (filter and nat, v4 and v6)."""

    network_id: str
    bridge: str
    subnets_v4: tuple[str, ...] = ()
    subnets_v6: tuple[str, ...] = ()
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    # Docker 28's per-family gateway modes: "nat", "nat-unprotected",
    # "routed" or "isolated" (see datapath.rules for what each allows).
    gateway_mode_v4: str = "nat"
    gateway_mode_v6: str = "nat"
    # Host interfaces whose packets may reach published container ports at
    # the containers' own addresses, as if they came from the bridge.
    trusted_interfaces: tuple[str, ...] = ()
    # Source address for masqueraded traffic ("": the outgoing interface's).
    host_ipv4: str = ""
    host_ipv6: str = ""
    # False for an IPv6-only network: no IPv4 traffic leaves or enters it.
    ipv4: bool = True
    # The network's stored tag (datapath.names.tags), which names its chain;
    # "" names it by the ID's first 12 characters, the tag's first choice.
    tag: str = ""

    def gateway_mode(self, family: str) -> str:
        return self.gateway_mode_v4 if family == "ipv4" else self.gateway_mode_v6


@dataclass(frozen=True)
class PortBinding:
    """One published port, resolved: the host port is a real number."""

    proto: str  # "tcp", "udp" or "sctp"
    host_ip: str  # "" or "0.0.0.0" / "::" for all addresses
    host_port: int
    container_ip: str
    container_port: int


@dataclass(frozen=True)
class EndpointPorts:
    endpoint_id: str
    network_id: str
    bridge: str
    bindings: tuple[PortBinding, ...] = field(default_factory=tuple)
    # Families whose gateway mode is "routed": their ports are reached at the
    # container's address only, so no host port is mapped (no DNAT).
    routed: tuple[str, ...] = ()
    tag: str = ""  # the endpoint's stored tag, as NetworkRules.tag
