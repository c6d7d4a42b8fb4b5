"""Parsers for the value formats the protocols carry: CIDRs, addresses, MACs.

Every address, network or MAC taken from a request goes through here, and
what comes out is the value in its canonical form (``str()`` of the
``ipaddress`` object, lower-case MAC): that is what the drivers store, compare
and hand to the kernel and the firewall, so two spellings of one address
("::1", "0:0::1") are one value everywhere.

Each raises ``BadRequest`` naming the field and the value, so every method
rejects a bad value with the same precise message.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterator

from .errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def _text(field: str, value, what: str) -> str:
    """``value`` if it is a string an address parser may see.

    ``ipaddress`` takes an IPv6 zone ("fd00::1%eth0/64"), and a zone may hold
    any character but "%" and "/", newlines included; nothing Pontoon does
    needs one (no link-local pools or gateways), so "%" is refused before
    parsing rather than carried into a rule or a log line.
    """
    if not isinstance(value, str):
        raise BadRequest(f"{field} {value!r} is not {what} string")
    if "%" in value:
        raise BadRequest(f'{field} "{value}" has an IPv6 zone (%...), which is not accepted here')
    return value


def network(field: str, value, version: int | None = None) -> IPNetwork:
    """A subnet in CIDR form with no host bits set: "10.0.0.0/24"."""
    _text(field, value, "a CIDR")
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid subnet in CIDR form') from None
    _check_version(field, value, net.version, version)
    return net


def interface(field: str, value, version: int | None = None) -> IPInterface:
    """An address with its prefix length: "10.0.0.2/24"."""
    _text(field, value, "an address in CIDR form")
    if "/" not in value:
        raise BadRequest(f'{field} "{value}" is not an address in CIDR form (address/prefix)')
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid address in CIDR form') from None
    _check_version(field, value, iface.version, version)
    return iface


def address(field: str, value, version: int | None = None) -> IPAddress:
    """A bare address: "10.0.0.2". A CIDR form is accepted and its prefix
    ignored (dockerd's IPAM calls may carry one)."""
    _text(field, value, "an IP address")
    try:
        addr = ipaddress.ip_interface(value).ip
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid IP address') from None
    _check_version(field, value, addr.version, version)
    return addr


def host_address(field: str, value, version: int | None = None) -> str:
    """A host address to bind or publish on, canonical: no prefix length,
    and an IPv4-mapped IPv6 address ("::ffff:127.0.0.1") as the IPv4 address
    it stands for, as dockerd itself reads one. Otherwise one address
    spelled two ways would be two keys to the same port."""
    if "/" in _text(field, value, "an IP address"):
        raise BadRequest(f'{field} "{value}" has a prefix length; a bare address is expected')
    addr = address(field, value)
    addr = getattr(addr, "ipv4_mapped", None) or addr
    _check_version(field, value, addr.version, version)
    return str(addr)


def objects(field: str, value) -> Iterator[tuple[str, dict]]:
    """(field path, entry) for each entry of a list of objects; None is empty."""
    if value is None:
        return
    if not isinstance(value, list):
        raise BadRequest(f"{field} {value!r} is not a list")
    for i, entry in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(entry, dict):
            raise BadRequest(f"{where} {entry!r} is not an object")
        yield where, entry


def mac(field: str, value) -> str:
    """A unicast MAC address, returned in lower case."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise BadRequest(f'{field} "{value}" is not a MAC address like 02:42:0a:00:00:02')
    if int(value[:2], 16) & 1:
        raise BadRequest(f'{field} "{value}" is a multicast MAC address')
    return value.lower()


def port(field: str, value, allow_zero: bool = False) -> int:
    """A port number, 1-65535; 0 too where it means "pick one"."""
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 65535:
        raise BadRequest(f"{field} {value!r} is not a port number ({low}-65535)")
    return value


def _check_version(field: str, value: str, got: int, want: int | None) -> None:
    if want is not None and got != want:
        raise BadRequest(f'{field} "{value}" is not an IPv{want} value')
