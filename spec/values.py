"""Parsers for the value formats the protocols carry: CIDRs, addresses, MACs.

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

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def network(field: str, value, version: int | None = None) -> IPNetwork:
    """A subnet in CIDR form with no host bits set: "10.0.0.0/24"."""
    if not isinstance(value, str):
        raise BadRequest(f'{field} {value!r} is not a CIDR string')
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid subnet in CIDR form') from None
    _check_version(field, value, net.version, version)
    return net


def interface(field: str, value, version: int | None = None) -> IPInterface:
    """An address with its prefix length: "10.0.0.2/24"."""
    if not isinstance(value, str) or "/" not in value:
        raise BadRequest(f'{field} "{value}" is not an address in CIDR form (address/prefix)')
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid address in CIDR form') from None
    _check_version(field, value, iface.version, version)
    return iface


def address(field: str, value, version: int | None = None) -> IPAddress:
    """A bare address: "10.0.0.2". A CIDR form is accepted and its prefix ignored."""
    if not isinstance(value, str):
        raise BadRequest(f'{field} {value!r} is not an IP address string')
    try:
        addr = ipaddress.ip_interface(value).ip
    except ValueError:
        raise BadRequest(f'{field} "{value}" is not a valid IP address') from None
    _check_version(field, value, addr.version, version)
    return addr


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
    if not isinstance(value, str) or not _MAC.match(value):
        raise BadRequest(f'{field} "{value}" is not a MAC address like 02:42:0a:00:00:02')
    if int(value[:2], 16) & 1:
        raise BadRequest(f'{field} "{value}" is a multicast MAC address')
    return value.lower()


def _check_version(field: str, value: str, got: int, want: int | None) -> None:
    if want is not None and got != want:
        raise BadRequest(f'{field} "{value}" is not an IPv{want} value')
