"""Endpoint records read from etcd, parsed as strictly as a request's values.

A record comes from another machine: any process with write access to etcd
(or a bug in another version) can put anything under ``endpoints/``. So a
record is checked field by field with spec/values.py, as dockerd's requests
are, and against what the network allows, before a host puts it in its
kernel; a bad one is skipped and logged, never raised into the watch that
serves the network's other records.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
from dataclasses import dataclass

from spec import names, values
from spec.errors import BadRequest

from .host import GATEWAY_HOLDER


log = logging.getLogger("pontoon.cluster")


class BadRecord(ValueError):
    """A record this host will not apply; the message names key, field and value."""


@dataclass(frozen=True)
class EndpointRecord:
    host: str
    vtep: str
    mac: str
    addresses: tuple[str, ...]
    name: str | None = None  # the container's (dockerd 29, or the Engine API); older records and hosts have none
    aliases: tuple[str, ...] = ()  # its network aliases and short ID (the Engine API: names/engine.py)

    @property
    def names(self) -> tuple[str, ...]:
        return ((self.name,) if self.name else ()) + self.aliases


def endpoint(key: str, value: str, pools: list, gateways: set[str]) -> EndpointRecord:
    """The record at ``key`` (``endpoints/<pool>/<host>/<id>``), whose
    addresses must lie in ``pools`` (the network's, ``ipaddress`` networks)
    and not be one of the network's ``gateways``."""
    try:
        raw = json.loads(value)
        if not isinstance(raw, dict):
            raise BadRequest("the record is not a JSON object")
        host = key.rsplit("/", 2)[-2]
        if raw.get("host") != host:
            raise BadRequest(f'host "{raw.get("host")}" is not the host its key names ("{host}")')
        vtep = values.address("vtep", raw.get("vtep"))
        if vtep.is_unspecified or vtep.is_multicast or vtep.is_loopback:
            raise BadRequest(f'vtep "{vtep}" is not a host\'s unicast address')
        mac = values.mac("mac", raw.get("mac"))
        if int(mac.replace(":", ""), 16) == 0:
            raise BadRequest(f'mac "{mac}" is the zero MAC address')
        addresses = raw.get("addresses")
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= 2:
            raise BadRequest(f"addresses {addresses!r} is not a list of one or two addresses")
        parsed = tuple(str(values.address("addresses", a)) for a in addresses)
        for address in parsed:
            ip = ipaddress.ip_address(address)
            if not any(ip in pool for pool in pools):
                raise BadRequest(f'addresses "{address}" is in none of the network\'s pools')
            if address in gateways:
                raise BadRequest(f'addresses "{address}" is the network\'s gateway')
    except (BadRequest, ValueError) as exc:
        raise BadRecord(f"{key}: {exc}") from None
    name = None
    if raw.get("name") is not None:
        try:
            name = names.endpoint_name("name", raw["name"])
        except BadRequest as exc:  # the peers are right all the same: only DNS goes without
            log.error("endpoint record %s: its name is skipped: %s", key, exc)
    return EndpointRecord(host, str(vtep), mac, parsed, name, names.usable(raw.get("aliases")))


def holder(value: str) -> str:
    """The host an ``addrs/`` value gives its address to ("" for the
    network's own: gateway, aux addresses)."""
    try:
        held = json.loads(value)["host"]
    except (ValueError, KeyError, TypeError):
        return ""
    return "" if held == GATEWAY_HOLDER else str(held)


def advertise(value: str) -> str:
    """The advertise address a ``hosts/<host>`` value gives ("" if none)."""
    try:
        held = json.loads(value)
    except ValueError:
        return ""
    return str(held.get("advertise") or "") if isinstance(held, dict) else ""


def wireguard(value: str) -> dict | None:
    """What a ``hosts/<host>`` value gives for WireGuard (datapath.wireguard):
    {key, tunnel, endpoint} with the endpoint at its advertise address, or
    None if it has none or any part of it does not parse (the host is then
    no encrypted network's peer, and says why in its own log only)."""
    try:
        held = json.loads(value)
        wg = held["wireguard"]
        key = base64.b64decode(wg["key"], validate=True)
        tunnel = ipaddress.IPv6Address(wg["tunnel"])
        port = wg["port"]
        advertise = ipaddress.ip_address(held["advertise"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if len(key) != 32 or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    host = f"[{advertise}]" if advertise.version == 6 else str(advertise)
    return {"key": wg["key"], "tunnel": str(tunnel), "endpoint": f"{host}:{port}"}
