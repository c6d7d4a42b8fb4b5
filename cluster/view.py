"""What the cluster holds, for ``python -m plugin inspect`` (read-only: no lease)."""
from __future__ import annotations

import json

from . import keys
from .etcd import Etcd


def _tail(kv, prefix: str) -> list[str]:
    return kv.key[len(prefix):].split("/")


def collect(etcd: Etcd) -> dict:
    def under(name: str):
        return etcd.read_prefix(keys.prefix(name))[0]

    live = {_tail(kv, keys.prefix("hosts"))[0]: json.loads(kv.value) for kv in under("hosts")}
    seen = {_tail(kv, keys.prefix("seen"))[0]: float(kv.value) for kv in under("seen")}
    members: dict[str, list[str]] = {}
    for kv in under("members"):
        pool, host = _tail(kv, keys.prefix("members"))
        members.setdefault(pool, []).append(host)
    nets = {_tail(kv, keys.prefix("nets"))[0]: json.loads(kv.value) for kv in under("nets")}
    networks = []
    for kv in under("pools"):
        name = _tail(kv, keys.prefix("pools"))[0]
        space, cidr = keys.cidr_of(name)
        net = nets.get(name, {})
        networks.append({"pool": cidr, "space": space, "vni": net.get("vni"),
                         "options": net.get("options", {}), "hosts": sorted(members.get(name, []))})
    endpoints = []
    for kv in under("endpoints"):
        name, host, endpoint_id = _tail(kv, keys.prefix("endpoints"))
        endpoints.append({"pool": keys.cidr_of(name)[1], "id": endpoint_id, **json.loads(kv.value)})
    hosts = [{"id": h, "advertise": live.get(h, {}).get("advertise", ""), "live": h in live,
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
