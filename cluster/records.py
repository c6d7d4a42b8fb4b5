"""The cluster's records in etcd, each kind typed here or beside it, with
its one writer (``value``: the exact bytes etcd holds, which transactions
compare: ``value_is``) and its one reader (``parse``: as strict as a
request's values).

A record comes from another machine: any process with write access to etcd
(or a bug in another version) can put anything under the cluster's keys.
So a record is checked field by field with spec/values.py, as dockerd's
requests are, and a bad one is a BadRecord naming key, field and value; an
endpoint record is also checked against what the network allows before a
host puts it in its kernel, and a bad one is skipped and logged, never
raised into the watch that serves the network's other records. Records an
older version wrote, without the fields that came later, parse with the
defaults the code applied to them before. The other kinds:
cluster/netrecord.py (``nets/``), cluster/hostrecord.py (``hosts/``),
cluster/addrrecord.py (``addrs/``).
"""
from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass

from spec import names, values
from spec.errors import BadRequest


log = logging.getLogger("pontoon.cluster")


class BadRecord(ValueError):
    """A record this host will not apply; the message names key, field and value."""


def load(key: str, value: str) -> dict:
    """A record's JSON object, or BadRecord."""
    try:
        raw = json.loads(value)
    except ValueError:
        raise BadRecord(f"{key}: the record {value!r} is not JSON") from None
    if not isinstance(raw, dict):
        raise BadRecord(f"{key}: the record {value!r} is not a JSON object")
    return raw


def dump(fields: dict) -> str:
    """A record's value: one spelling (sorted keys), so equal records compare equal."""
    return json.dumps(fields, sort_keys=True)


def text(key: str, raw: dict, field: str) -> str:
    """A field that must be a non-empty string."""
    value = raw.get(field)
    if not isinstance(value, str) or not value:
        raise BadRecord(f'{key}: {field} {value!r} is not a non-empty string')
    return value


@dataclass(frozen=True)
class EndpointRecord:
    """``endpoints/<pool>/<host>/<id>``: an endpoint's addresses and MAC,
    behind its host's VTEP (``id`` is ``host`` for the host's own address,
    cluster.hostaddr)."""
    host: str
    vtep: str
    mac: str
    addresses: tuple[str, ...]
    name: str | None = None  # the container's (dockerd 29, or the Engine API); older records and hosts have none
    aliases: tuple[str, ...] = ()  # its network aliases and short ID (the Engine API: names/engine.py)

    @property
    def names(self) -> tuple[str, ...]:
        return names.answered(self.name, self.aliases)

    def fields(self) -> dict:
        fields: dict = {"host": self.host, "vtep": self.vtep, "mac": self.mac, "addresses": list(self.addresses)}
        if self.name:  # what other hosts' DNS answers for (names/); none before dockerd 29
            fields["name"] = self.name
        if self.aliases:  # from the Engine API only (names/engine.py)
            fields["aliases"] = list(self.aliases)
        return fields

    def value(self) -> str:
        return dump(self.fields())

    @classmethod
    def parse(cls, key: str, value: str) -> EndpointRecord:
        """The record at ``key``, whatever network it is of (``endpoint``
        checks it against its network too)."""
        raw = load(key, value)
        try:
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
        except (BadRequest, ValueError) as exc:
            raise BadRecord(f"{key}: {exc}") from None
        name = None
        if raw.get("name") is not None:
            try:
                name = names.endpoint_name("name", raw["name"])
            except BadRequest as exc:  # the peers are right all the same: only DNS goes without
                log.error("endpoint record %s: its name is skipped: %s", key, exc)
        return cls(host, str(vtep), mac, parsed, name, names.usable(raw.get("aliases")))


def endpoint(key: str, value: str, pools: list, gateways: set[str]) -> EndpointRecord:
    """The record at ``key`` (``endpoints/<pool>/<host>/<id>``), whose
    addresses must lie in ``pools`` (the network's, ``ipaddress`` networks)
    and not be one of the network's ``gateways``."""
    record = EndpointRecord.parse(key, value)
    for address in record.addresses:
        ip = ipaddress.ip_address(address)
        if not any(ip in pool for pool in pools):
            raise BadRecord(f'{key}: addresses "{address}" is in none of the network\'s pools')
        if address in gateways:
            raise BadRecord(f'{key}: addresses "{address}" is the network\'s gateway')
    return record
