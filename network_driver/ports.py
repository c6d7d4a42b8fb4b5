"""Published ports: dockerd's portmap in, resolved host ports out.

dockerd sends ``com.docker.network.portmap`` entries
``{Proto, IP, Port, HostIP, HostPort, HostPortEnd}`` (Proto 6 tcp, 17 udp,
132 sctp). ``HostPort`` 0 means "pick one"; ``HostPort < HostPortEnd`` a
range to pick from. The resolved entries, with the host port actually used,
are what EndpointOperInfo returns so that ``docker port`` shows them.
"""
from __future__ import annotations

import functools
import ipaddress
from typing import Callable, NamedTuple

from datapath.hostports import Claim
from datapath.model import PortBinding
from spec import values
from spec.errors import BadRequest, Conflict
from spec.stored import StoredEndpoint

PORTMAP = "com.docker.network.portmap"
EXPOSED = "com.docker.network.endpoint.exposedports"
# dockerd 29 sets it when this endpoint is the sandbox's IPv4 gateway but
# another endpoint is its IPv6 gateway (moby drivers/remote/driver.go): the
# IPv6 host addresses are that endpoint's to publish.
NO_PROXY_6TO4 = "com.docker.network.driver.private.no_proxy_6to4"
PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
PROTO_NUMBERS = {name: number for number, name in PROTOS.items()}
WILDCARDS = ("", "0.0.0.0", "::")


def parse_exposed(options: dict) -> list[dict]:
    return [{"Proto": _proto(field, entry.get("Proto")), "Port": values.port(f"{field}.Port", entry.get("Port"))}
            for field, entry in values.objects(EXPOSED, options.get(EXPOSED))]


def families(options: dict) -> tuple[int, ...]:
    """The IP versions whose host addresses this endpoint publishes on."""
    return (4,) if options.get(NO_PROXY_6TO4) in (True, "true") else (4, 6)


def parse_portmap(options: dict) -> list[dict]:
    """Validated portmap entries, addresses in canonical form: they are
    stored, compared to find a port already published, and written into
    rules, so one address must have one spelling."""
    out = []
    for field, entry in values.objects(PORTMAP, options.get(PORTMAP)):
        host_ip = entry.get("HostIP") or ""
        if host_ip:
            host_ip = values.host_address(f"{field}.HostIP", host_ip)
        container_ip = entry.get("IP") or ""
        if container_ip:
            container_ip = values.host_address(f"{field}.IP", container_ip)
        host_port = values.port(f"{field}.HostPort", entry.get("HostPort", 0), allow_zero=True)
        host_end = values.port(f"{field}.HostPortEnd", entry.get("HostPortEnd", 0), allow_zero=True)
        if host_end and host_end < host_port:
            raise BadRequest(f"{field}.HostPortEnd {host_end} is below HostPort {host_port}")
        out.append({
            "Proto": _proto(field, entry.get("Proto")),
            "IP": container_ip,
            "Port": values.port(f"{field}.Port", entry.get("Port")),
            "HostIP": host_ip,
            "HostPort": host_port,
            "HostPortEnd": host_end,
        })
    return out


class Pending(NamedTuple):
    """A portmap entry resolved but for its host port: the ``claim`` that
    the port holder turns into one."""

    proto: str
    host_ip: str
    container_ip: str
    container_port: int
    claim: Claim


def plan(
    portmap: list[dict],
    endpoint: StoredEndpoint,
    default_host_ip: str,
    in_use: Callable[[str], list[tuple[int, str, str]]],
    ephemeral: Callable[[], tuple[int, int]],
    versions: tuple[int, ...] = (4, 6),
) -> list[Pending]:
    """The claim for each entry, refusing a port another endpoint publishes.

    ``in_use(proto)`` lists (host_port, host_ip, endpoint_id) already
    published (read once per protocol: the work grows linearly with the
    entries); ``ephemeral()`` reads the kernel's range for ``HostPort`` 0,
    once, and only when an entry asks for any port.
    Whether a host process holds a port is for the holder to find out.
    Entries whose host address is of a version not in ``versions`` are
    another endpoint's (see ``families``), as are entries of a version the
    endpoint has no address in: from dockerd 29 a container's IPv4 and IPv6
    gateways may be endpoints of different networks (an IPv4-only and an
    IPv6-only one), each Programmed with the whole portmap and no word of
    the other while it is the only gateway, so ``-p 127.0.0.1:80:80 -p
    [::1]:80:80`` reaches both and each publishes its own family (refusing
    the other's failed the container's start or connect).
    """
    if not endpoint.address:  # an IPv6-only endpoint: "-p 80" means "::"
        default_host_ip = "::"
    taken = _Taken(in_use, endpoint.id)
    bare = {key: ipaddress.ip_interface(address).ip.compressed
            for key, address in (("address", endpoint.address), ("address_v6", endpoint.address_v6)) if address}
    out: list[Pending] = []
    any_port: tuple[int, int] | None = None
    for entry in portmap:
        proto = PROTOS[entry["Proto"]]
        host_ip = entry["HostIP"] or default_host_ip
        v6 = _version(host_ip) == 6
        container_ip = bare.get("address_v6" if v6 else "address")
        if (6 if v6 else 4) not in versions or not container_ip:
            continue
        first, last = entry["HostPort"], entry["HostPortEnd"] or entry["HostPort"]
        others = taken.near(proto, host_ip)
        if first == 0:
            any_port = any_port or ephemeral()
            claim = Claim.spread(proto, host_ip, *any_port, skip=others)
        else:
            if all(p in others for p in range(first, last + 1)):
                span = f"{first}" if first == last else f"{first}-{last}"
                raise Conflict(f"host port {span}/{proto} on {host_ip} is already published by another endpoint")
            claim = Claim(proto, host_ip, first, last, first, frozenset(others & set(range(first, last + 1))))
        out.append(Pending(proto, host_ip, container_ip, entry["Port"], claim))
    return out


def bindings(pending: list[Pending], host_ports: list[int]) -> list[PortBinding]:
    return [PortBinding(p.proto, p.host_ip, port, p.container_ip, p.container_port)
            for p, port in zip(pending, host_ports, strict=True)]


class _Taken:
    """Host ports other endpoints publish, by protocol and address; an
    address overlaps itself and the wildcards."""

    def __init__(self, in_use: Callable[[str], list[tuple[int, str, str]]], endpoint_id: str):
        self._in_use, self._endpoint_id = in_use, endpoint_id
        self._by_ip: dict[str, dict[str, set[int]]] = {}
        self._near: dict[tuple[str, str], set[int]] = {}

    def near(self, proto: str, host_ip: str) -> set[int]:
        if (proto, host_ip) not in self._near:
            if proto not in self._by_ip:
                by_ip: dict[str, set[int]] = {}
                for port, ip, owner in self._in_use(proto):
                    if owner != self._endpoint_id:
                        by_ip.setdefault(ip, set()).add(port)
                self._by_ip[proto] = by_ip
            by_ip = self._by_ip[proto]
            ips = [ip for ip in by_ip if _same_ip(ip, host_ip)]
            self._near[(proto, host_ip)] = set().union(*(by_ip[ip] for ip in ips))
        return self._near[(proto, host_ip)]


def as_portmap(bindings: list[PortBinding]) -> list[dict]:
    """Bindings as dockerd's PortBinding objects, for EndpointOperInfo."""
    return [
        {"Proto": PROTO_NUMBERS[b.proto], "IP": b.container_ip, "Port": b.container_port,
         "HostIP": b.host_ip, "HostPort": b.host_port, "HostPortEnd": b.host_port}
        for b in bindings
    ]


def _same_ip(a: str, b: str) -> bool:
    """Whether two host addresses overlap. The rules are per family, so
    "0.0.0.0" and "::" do not: ``-p 0.0.0.0:80:80 -p [::]:80:80`` is fine."""
    if a == b:
        return True
    if _version(a) != _version(b):
        return False
    return a in WILDCARDS or b in WILDCARDS


@functools.lru_cache(maxsize=256)  # thousands of entries share a few addresses: each parsed once
def _version(host_ip: str) -> int:
    return ipaddress.ip_address(host_ip or "0.0.0.0").version


def _proto(field: str, value) -> int:
    if value not in PROTOS or isinstance(value, bool):
        raise BadRequest(f"{field}.Proto {value!r} is not 6 (tcp), 17 (udp) or 132 (sctp)")
    return value

