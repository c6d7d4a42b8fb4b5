"""What the cluster holds, for ``python -m plugin inspect`` (read-only: no lease)."""
from __future__ import annotations

from . import keys
from .etcd import Etcd
from .hostrecord import HostRecord
from .netrecord import NetRecord
from .records import BadRecord, EndpointRecord


def _tail(kv, prefix: str) -> list[str]:
    return kv.key[len(prefix):].split("/")


def _parsed(parse, kv):
    """The record, or None if it does not parse: inspect shows the rest
    of the cluster all the same (a host's or network's fields empty)."""
    try:
        return parse(kv.key, kv.value)
    except BadRecord:
        return None


def collect(etcd: Etcd) -> dict:
    def under(name: str):
        return etcd.read_prefix(keys.prefix(name))[0]

    live = {_tail(kv, keys.prefix("hosts"))[0]: _parsed(HostRecord.parse, kv) for kv in under("hosts")}
    seen = {_tail(kv, keys.prefix("seen"))[0]: float(kv.value) for kv in under("seen")}
    members: dict[str, list[str]] = {}
    for kv in under("members"):
        pool, host = _tail(kv, keys.prefix("members"))
        members.setdefault(pool, []).append(host)
    nets = {_tail(kv, keys.prefix("nets"))[0]: _parsed(NetRecord.parse, kv) for kv in under("nets")}
    networks = []
    for kv in under("pools"):
        name = _tail(kv, keys.prefix("pools"))[0]
        space, cidr = keys.cidr_of(name)
        net = nets.get(name)
        networks.append({"pool": cidr, "space": space, "vni": net.vni if net else None,
                         "options": net.options if net else {}, "hosts": sorted(members.get(name, []))})
    endpoints = []
    for kv in under("endpoints"):
        name, host, endpoint_id = _tail(kv, keys.prefix("endpoints"))
        try:
            record = EndpointRecord.parse(kv.key, kv.value).fields()
        except BadRecord as exc:
            record = {"host": host, "error": str(exc)}
        endpoints.append({"pool": keys.cidr_of(name)[1], "id": endpoint_id, **record})
    hosts = [{"id": h, "advertise": live[h].advertise if live.get(h) else "", "live": h in live,
              "last_seen": seen.get(h)} for h in sorted(set(live) | set(seen))]
    return {"hosts": hosts, "networks": networks, "endpoints": endpoints, "clashes": clashes(endpoints)}


def clashes(endpoints: list[dict]) -> list[dict]:
    """Container names held by more than one endpoint of a network (two
    ``web`` on two hosts): DNS answers all their addresses, as for an
    alias, which may not be what was meant. Aliases shared are not clashes."""
    held: dict[tuple[str, str], list[dict]] = {}
    for e in endpoints:
        if isinstance(e.get("name"), str):
            held.setdefault((e["pool"], e["name"].lower()), []).append(e)
    return [{"pool": pool, "name": name, "endpoints": [{"id": e["id"], "host": e.get("host")} for e in found]}
            for (pool, name), found in sorted(held.items()) if len(found) > 1]
