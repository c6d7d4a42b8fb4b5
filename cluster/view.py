"""What the cluster holds, for ``python -m plugin inspect`` (read-only: no lease)."""
from __future__ import annotations

import json

from . import keys
from .etcd import Etcd


def _tail(kv, prefix: str) -> list[str]:
    return kv.key[len(prefix):].split("/")


def collect(etcd: Etcd) -> dict:
    def under(name: str):
        return etcd.read_prefix(keys.ROOT + name + "/")[0]

    live = {_tail(kv, keys.ROOT + "hosts/")[0]: json.loads(kv.value) for kv in under("hosts")}
    seen = {_tail(kv, keys.ROOT + "seen/")[0]: float(kv.value) for kv in under("seen")}
    members: dict[str, list[str]] = {}
    for kv in under("members"):
        pool, host = _tail(kv, keys.ROOT + "members/")
        members.setdefault(pool, []).append(host)
    nets = {_tail(kv, keys.ROOT + "nets/")[0]: json.loads(kv.value) for kv in under("nets")}
    networks = []
    for kv in under("pools"):
        name = _tail(kv, keys.ROOT + "pools/")[0]
        space, cidr = keys.cidr_of(name)
        net = nets.get(name, {})
        networks.append({"pool": cidr, "space": space, "vni": net.get("vni"),
                         "options": net.get("options", {}), "hosts": sorted(members.get(name, []))})
    endpoints = []
    for kv in under("endpoints"):
        name, host, endpoint_id = _tail(kv, keys.ROOT + "endpoints/")
        endpoints.append({"pool": keys.cidr_of(name)[1], "id": endpoint_id, **json.loads(kv.value)})
    hosts = [{"id": h, "advertise": live.get(h, {}).get("advertise", ""), "live": h in live,
              "last_seen": seen.get(h)} for h in sorted(set(live) | set(seen))]
    return {"hosts": hosts, "networks": networks, "endpoints": endpoints}
