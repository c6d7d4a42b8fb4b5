"""``hosts/<id>``: a live host, on its lease. Who holds the host ID (its
advertise address, instance token and boot ID: the rule in
cluster.host.ClusterHost) and what the others need of it: the address its
VXLAN packets come from, and its WireGuard identity if it can encrypt
(datapath.wireguard). Written by ClusterHost.claim only; read there, by
every network's watch (cluster.peerwatch) and by ``inspect``. The first
versions wrote the advertise address only (no token, no boot ID: such a
record is never this host's); hosts that cannot encrypt write no WireGuard.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from .records import BadRecord, dump, load

log = logging.getLogger("pontoon.cluster")


@dataclass(frozen=True)
class Wireguard:
    key: str  # the public key, base64 (32 bytes)
    tunnel: str  # the host's tunnel address (IPv6)
    port: int  # its WireGuard UDP port

    def peer(self, advertise: str) -> dict:
        """{key, tunnel, endpoint}: the peer the host is, at ``advertise``."""
        address = ipaddress.ip_address(advertise)
        host = f"[{address}]" if address.version == 6 else str(address)
        return {"key": self.key, "tunnel": self.tunnel, "endpoint": f"{host}:{self.port}"}

    @classmethod
    def parse(cls, key: str, raw) -> Wireguard:
        try:
            if not isinstance(raw, dict):
                raise ValueError(f"wireguard {raw!r} is not a JSON object")
            public: Any = raw.get("key")
            tunnel: Any = raw.get("tunnel")
            port = raw.get("port")
            try:
                if len(base64.b64decode(public, validate=True)) != 32:
                    raise ValueError
            except (ValueError, TypeError, binascii.Error):
                raise ValueError(f"wireguard.key {public!r} is not a WireGuard public key") from None
            try:
                ipaddress.IPv6Address(tunnel)
            except ValueError:
                raise ValueError(f"wireguard.tunnel {tunnel!r} is not an IPv6 address") from None
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ValueError(f"wireguard.port {port!r} is not a UDP port")
        except ValueError as exc:
            raise BadRecord(f"{key}: {exc}") from None
        return cls(public, tunnel, port)


@dataclass(frozen=True)
class HostRecord:
    advertise: str
    token: str | None = None  # None in the first versions' records
    boot: str | None = None
    wireguard: Wireguard | None = None

    def value(self) -> str:
        fields: dict = {"advertise": self.advertise, "token": self.token, "boot": self.boot}
        if self.wireguard is not None:
            fields["wireguard"] = {"key": self.wireguard.key, "tunnel": self.wireguard.tunnel,
                                   "port": self.wireguard.port}
        return dump(fields)

    def peer(self) -> dict | None:
        """The host's WireGuard peer (Wireguard.peer), None if it has none."""
        return None if self.wireguard is None else self.wireguard.peer(self.advertise)

    @classmethod
    def parse(cls, key: str, value: str) -> HostRecord:
        """The record; a WireGuard identity that does not parse is logged
        and left out (the host is then no encrypted network's peer, but
        still its clear networks'), as a bad endpoint name is."""
        raw = load(key, value)
        advertise: Any = raw.get("advertise")  # kept as written: the host compares it with its own (ClusterHost._ours)
        try:
            ipaddress.ip_address(advertise if isinstance(advertise, str) else "")
        except ValueError:
            raise BadRecord(f"{key}: advertise {advertise!r} is not an IP address") from None
        for field in ("token", "boot"):
            if raw.get(field) is not None and not isinstance(raw[field], str):
                raise BadRecord(f"{key}: {field} {raw[field]!r} is not a string")
        wireguard = None
        if raw.get("wireguard") is not None:
            try:
                wireguard = Wireguard.parse(key, raw["wireguard"])
            except BadRecord as exc:
                log.error("host record: its WireGuard identity is skipped: %s", exc)
        return cls(advertise, raw.get("token"), raw.get("boot"), wireguard)
