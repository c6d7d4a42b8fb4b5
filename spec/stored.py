"""The records this host's store (plugin/store.py) keeps of its networks
and endpoints, typed: parsed once where they leave SQLite (``from_json``)
and written back as the same JSON (``to_json``), so a state dir of an
earlier version keeps working. Everything else uses them by attribute, and
changes one by ``dataclasses.replace``.

Fields an earlier version did not write have their defaults here, and only
here: the store's migration (plugin.store.MIGRATIONS) fills them in the
records it finds, from ``missing_network_fields`` and
``missing_endpoint_fields``, so the readers can be strict and a record
missing a field is a damaged one (``BadStoredRecord``, naming the record,
the field and the value), never silently one with a default patched in at
read time. The values that go into the kernel and the firewall (pools,
gateways, addresses, the MAC) are checked with spec/values.py, as a
request's are.

Here in spec/ (which imports nothing of ours but itself) because both the
network driver (network_driver/) and the cluster (cluster/, names/) use them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from . import values
from .names import answered
from .errors import BadRequest


class BadStoredRecord(ValueError):
    """A stored record that does not parse: the message names the record, field and value."""


@dataclass(frozen=True)
class NetworkOptions:
    """Every option with its default; docs/options.md's option table mirrors this.
    Parsed from a request by network_driver.options.parse."""

    bridge_name: str | None = None  # None: "pt-" + the first 12 characters of the NetworkID
    mtu: int | None = None  # None: the kernel's default (1500)
    icc: bool = True
    masquerade: bool = True
    host_binding_ipv4: str = "0.0.0.0"
    inhibit_ipv4: bool = False
    iface_prefix: str = "eth"
    internal: bool = False
    ipv6: bool = False
    ipv4: bool = True
    gateway_mode_ipv4: str = "nat"
    gateway_mode_ipv6: str = "nat"
    trusted_interfaces: tuple[str, ...] = ()
    host_ipv4: str = ""  # "": masquerade with the outgoing interface's address
    host_ipv6: str = ""
    encrypted: bool | None = None  # None: not given, the cluster host's default (its ``encrypt`` setting)

    def isolated(self, family: str) -> bool:
        """The family gets no gateway address on the bridge (and dockerd
        need not allocate one: see GwAllocCheck)."""
        return self.gateway_mode(family) == "isolated"

    def gateway_mode(self, family: str) -> str:
        return self.gateway_mode_ipv4 if family == "ipv4" else self.gateway_mode_ipv6

    def to_json(self) -> dict:
        return {**asdict(self), "trusted_interfaces": list(self.trusted_interfaces)}

    @classmethod
    def from_json(cls, what: str, raw: Any) -> NetworkOptions:
        raw = _object(what, "options", raw)
        parsed: dict = {}
        for f in fields(cls):
            where, value = f"options.{f.name}", _field(what, raw, f"options.{f.name}", f.name)
            if f.name == "trusted_interfaces":
                parsed[f.name] = _texts(what, where, value)
            elif f.name == "mtu":
                parsed[f.name] = None if value is None else _integer(what, where, value)
            elif isinstance(f.default, bool) or f.name == "encrypted":
                parsed[f.name] = value if value is None and f.default is None else _flag(what, where, value)
            else:
                parsed[f.name] = value if value is None and f.default is None else _string(what, where, value)
        return cls(**parsed)


@dataclass(frozen=True)
class IpamData:
    """One subnet of a network as CreateNetwork gave it: ``gateway`` in
    interface form ("10.0.0.1/24"), None when dockerd gave none."""
    pool: str
    gateway: str | None = None
    aux: dict[str, str] = field(default_factory=dict)  # name -> bare address

    def to_json(self) -> dict:
        return {"pool": self.pool, "gateway": self.gateway, "aux": dict(self.aux)}

    @classmethod
    def from_json(cls, what: str, where: str, raw: Any) -> IpamData:
        raw = _object(what, where, raw)
        pool = str(_checked(what, f"{where}.pool", values.network, _field(what, raw, f"{where}.pool", "pool")))
        gateway = _field(what, raw, f"{where}.gateway", "gateway")
        if gateway is not None:
            gateway = str(_checked(what, f"{where}.gateway", values.interface, gateway))
        aux = _object(what, f"{where}.aux", _field(what, raw, f"{where}.aux", "aux"))
        return cls(pool, gateway, {name: _string(what, f"{where}.aux", a) for name, a in aux.items()})


@dataclass(frozen=True)
class ClusterPart:
    """What a cluster network holds of the cluster (cluster.segment): its
    name there (its first pool) and VNI; this host's own address on it
    (cluster.hostaddr), and why it is cut off from the cluster, if it is
    (cluster.mode.ClusterMode._cut_off)."""
    pool: str
    vni: int
    host_address: str | None = None
    lost: str | None = None

    def to_json(self) -> dict:
        out: dict = {"pool": self.pool, "vni": self.vni}
        if self.host_address is not None:
            out["host_address"] = self.host_address
        if self.lost is not None:
            out["lost"] = self.lost
        return out

    @classmethod
    def from_json(cls, what: str, raw: Any) -> ClusterPart:
        raw = _object(what, "cluster", raw)
        host_address = raw.get("host_address")
        if host_address is not None:
            host_address = str(_checked(what, "cluster.host_address", values.interface, host_address))
        lost = raw.get("lost")
        return cls(_string(what, "cluster.pool", raw.get("pool")), _integer(what, "cluster.vni", raw.get("vni")),
                   host_address, None if lost is None else _string(what, "cluster.lost", lost))


@dataclass(frozen=True)
class StoredNetwork:
    id: str
    options: NetworkOptions
    ipv4: tuple[IpamData, ...]
    ipv6: tuple[IpamData, ...]
    request: str  # the request's defining parts (network_driver.records._canonical), to tell a retry from a clash
    tag: str = ""  # names its bridge and chains (datapath.names.tags); set with the plan, before anything is made
    bridge: str = ""
    bridge_created: bool = True  # False: an existing bridge, adopted
    adopted: dict | None = None  # how an adopted bridge was (datapath.links.survey_bridge)
    pending: bool = False  # planned, not made yet: only reserves its names
    cluster: ClusterPart | None = None  # cluster mode's networks only

    @property
    def ipam(self) -> tuple[IpamData, ...]:
        """Every subnet, IPv4 first."""
        return self.ipv4 + self.ipv6

    @property
    def lost(self) -> bool:
        """A cluster network cut off from the cluster."""
        return self.cluster is not None and bool(self.cluster.lost)

    @property
    def host_address(self) -> str | None:
        """This host's own address on a cluster network (cluster.hostaddr), if the store records one."""
        return self.cluster.host_address if self.cluster is not None else None

    @property
    def clustered(self) -> ClusterPart:
        """``cluster``, for the code that serves cluster networks only."""
        if self.cluster is None:
            raise LookupError(f"network {self.id} is not a cluster network")
        return self.cluster

    def to_json(self) -> dict:
        out: dict = {"id": self.id, "options": self.options.to_json(),
                     "ipv4": [d.to_json() for d in self.ipv4], "ipv6": [d.to_json() for d in self.ipv6],
                     "request": self.request, "tag": self.tag, "bridge": self.bridge,
                     "bridge_created": self.bridge_created, "adopted": self.adopted}
        if self.pending:
            out["pending"] = True
        if self.cluster is not None:
            out["cluster"] = self.cluster.to_json()
        return out

    @classmethod
    def from_json(cls, raw: Any) -> StoredNetwork:
        what = f"network {raw.get('id')}" if isinstance(raw, dict) else f"network record {raw!r}"
        raw = _object(what, "record", raw)
        ipam = {version: tuple(IpamData.from_json(what, f"{version}[{i}]", d)
                               for i, d in enumerate(_list(what, version, _field(what, raw, version, version))))
                for version in ("ipv4", "ipv6")}
        adopted = _field(what, raw, "adopted", "adopted")
        cluster = raw.get("cluster")
        return cls(
            id=_string(what, "id", raw.get("id")),
            options=NetworkOptions.from_json(what, _field(what, raw, "options", "options")),
            ipv4=ipam["ipv4"], ipv6=ipam["ipv6"],
            request=_string(what, "request", _field(what, raw, "request", "request")),
            tag=_string(what, "tag", _field(what, raw, "tag", "tag")),
            bridge=_string(what, "bridge", _field(what, raw, "bridge", "bridge")),
            bridge_created=_flag(what, "bridge_created", _field(what, raw, "bridge_created", "bridge_created")),
            adopted=None if adopted is None else _object(what, "adopted", adopted),
            pending=_flag(what, "pending", raw.get("pending", False)),
            cluster=None if cluster is None else ClusterPart.from_json(what, cluster),
        )


@dataclass(frozen=True)
class StoredPort:
    """A published port as the store keeps it (the datapath's is datapath.model.PortBinding)."""
    proto: str  # "tcp", "udp" or "sctp"
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    @classmethod
    def from_json(cls, what: str, where: str, raw: Any) -> StoredPort:
        raw = _object(what, where, raw)
        return cls(_string(what, f"{where}.proto", raw.get("proto")),
                   _string(what, f"{where}.host_ip", raw.get("host_ip")),
                   _integer(what, f"{where}.host_port", raw.get("host_port")),
                   _string(what, f"{where}.container_ip", raw.get("container_ip")),
                   _integer(what, f"{where}.container_port", raw.get("container_port")))


@dataclass(frozen=True)
class LostAddress:
    """An endpoint's address another host holds now (cluster.mode.ClusterMode._mark);
    ``holder`` "" when no one does (its pool is gone from the cluster)."""
    address: str
    holder: str


@dataclass(frozen=True)
class StoredEndpoint:
    id: str
    network_id: str
    address: str = ""  # interface form, "" for none
    address_v6: str = ""
    mac: str = ""
    mac_given: bool = False  # dockerd gave the MAC (and must not be told it)
    sandbox: str = ""  # "" while not joined
    exposed: tuple[dict, ...] = ()  # {"Proto", "Port"} as dockerd gave them
    ports: tuple[StoredPort, ...] = ()
    request: str = ""
    tag: str = ""  # names its veth pair (datapath.names.tags)
    host_veth: str = ""
    peer_veth: str = ""
    name: str | None = None  # the container's (dockerd 29, or the Engine API)
    aliases: tuple[str, ...] = ()  # its network aliases and short ID (names.engine)
    port_generation: int = 0  # how many times ProgramExternalConnectivity stored its ports
    portmap_request: dict | None = None  # the Program request its ports answer
    lost: LostAddress | None = None  # not published: an address of it is another host's

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a for a in (self.address, self.address_v6) if a)

    @property
    def ips(self) -> tuple[str, ...]:
        """``addresses`` without their prefix lengths, as DNS and the cluster's records give them."""
        return tuple(str(ipaddress.ip_interface(a).ip) for a in self.addresses)

    @property
    def names(self) -> tuple[str, ...]:
        return answered(self.name, self.aliases)

    def to_json(self) -> dict:
        # Field by field, not asdict: that deep-copies every dict the record
        # holds (exposed ports, the Program request) for a caller that only
        # serialises them, and was most of a store write's CPU.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(exposed=list(self.exposed), ports=[asdict(p) for p in self.ports],
                   lost=None if self.lost is None else asdict(self.lost))
        for key in ("name", "portmap_request", "lost"):
            if out[key] is None:
                del out[key]
        if self.aliases:
            out["aliases"] = list(self.aliases)
        else:
            del out["aliases"]
        return out

    @classmethod
    def from_json(cls, raw: Any) -> StoredEndpoint:
        what = f"endpoint {raw.get('id')}" if isinstance(raw, dict) else f"endpoint record {raw!r}"
        raw = _object(what, "record", raw)
        text = {key: _string(what, key, _field(what, raw, key, key))
                for key in ("id", "network_id", "address", "address_v6", "mac", "sandbox", "request", "tag",
                            "host_veth", "peer_veth")}
        for key, version in (("address", 4), ("address_v6", 6)):
            if text[key]:
                text[key] = str(_checked(what, key, values.interface, text[key], version))
        if text["mac"]:
            text["mac"] = _checked(what, "mac", values.mac, text["mac"])
        ports = _list(what, "ports", _field(what, raw, "ports", "ports"))
        exposed = _list(what, "exposed", _field(what, raw, "exposed", "exposed"))
        name, portmap_request, lost = raw.get("name"), raw.get("portmap_request"), raw.get("lost")
        if lost is not None:
            lost = _object(what, "lost", lost)
            lost = LostAddress(_string(what, "lost.address", lost.get("address")),
                               _string(what, "lost.holder", lost.get("holder")))
        return cls(
            **text,
            mac_given=_flag(what, "mac_given", _field(what, raw, "mac_given", "mac_given")),
            exposed=tuple(_object(what, f"exposed[{i}]", e) for i, e in enumerate(exposed)),
            ports=tuple(StoredPort.from_json(what, f"ports[{i}]", p) for i, p in enumerate(ports)),
            name=None if name is None else _string(what, "name", name),
            aliases=_texts(what, "aliases", raw.get("aliases") or []),
            port_generation=_integer(what, "port_generation", _field(what, raw, "port_generation", "port_generation")),
            portmap_request=None if portmap_request is None else _object(what, "portmap_request", portmap_request),
            lost=lost,
        )


@dataclass(frozen=True)
class AskerNetwork:
    """A network of the container that asked a DNS query, as far as the
    answer needs it (plugin.store's ``asker_networks``): read from the
    record's JSON on every query, not parsed as a StoredNetwork."""
    id: str
    pool: str | None  # StoredNetwork.cluster.pool; None: not a cluster network
    lost: bool  # StoredNetwork.lost


# -- what the store's migration fills in records of earlier versions ----------------
def _defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


# Written by every version but not with the first: "adopted" came with
# adopted bridges (None: how the bridge was went unrecorded), every option
# but the first ones with its option, "port_generation" with concurrent
# Program and Revoke (0: never programmed since).
NETWORK_DEFAULTS = {"adopted": None}
OPTION_DEFAULTS = {**_defaults(NetworkOptions), "trusted_interfaces": []}
ENDPOINT_DEFAULTS = {"port_generation": _defaults(StoredEndpoint)["port_generation"]}


def missing_network_fields(raw: dict) -> dict:
    """``raw`` (a stored network's JSON) with the fields earlier versions left out."""
    return {**NETWORK_DEFAULTS, **raw, "options": {**OPTION_DEFAULTS, **raw.get("options", {})}}


def missing_endpoint_fields(raw: dict) -> dict:
    """``raw`` (a stored endpoint's JSON) with the fields earlier versions left out."""
    return {**ENDPOINT_DEFAULTS, **raw}


# -- strict field readers -----------------------------------------------------------
def _field(what: str, raw: dict, where: str, key: str) -> Any:
    if key not in raw:
        raise BadStoredRecord(f"{what}: {where} is missing")
    return raw[key]


def _object(what: str, where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise BadStoredRecord(f"{what}: {where} {value!r} is not a JSON object")
    return value


def _list(what: str, where: str, value: Any) -> list:
    if not isinstance(value, list):
        raise BadStoredRecord(f"{what}: {where} {value!r} is not a list")
    return value


def _string(what: str, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadStoredRecord(f"{what}: {where} {value!r} is not a string")
    return value


def _texts(what: str, where: str, value: Any) -> tuple[str, ...]:
    return tuple(_string(what, where, v) for v in _list(what, where, value))


def _flag(what: str, where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadStoredRecord(f"{what}: {where} {value!r} is not true or false")
    return value


def _integer(what: str, where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadStoredRecord(f"{what}: {where} {value!r} is not an integer")
    return value


def _checked(what: str, where: str, parse, value: Any, *args):
    """``parse(where, value, *args)`` (a spec.values parser), its BadRequest a BadStoredRecord."""
    try:
        return parse(where, value, *args)
    except BadRequest as exc:
        raise BadStoredRecord(f"{what}: {exc}") from None
