"""The cluster's invariants over what etcd holds and what each live host
stores, shared by the fault lab (test_fault_lab.py) and the cluster's
crash-anywhere suite (test_cluster_crash.py):

- no address is in two endpoint records, and every record's addresses are
  held in ``addrs/`` by the record's host; every record is a live host's,
  with that host's VTEP (``record_violations``);
- every live host's stored endpoint that is not marked lost has its
  record, and so has its host address of each network it is a member of
  (cluster.hostaddr); every record of a live host is one of these
  (``store_violations``);
- every address claimed in ``addrs/`` is the network's (gateway, aux) or
  held in a live host's store (``claim_violations``);
- at the end, etcd holds nothing of ours but each live host's presence
  (``leftovers``).
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Callable

from cluster import hostaddr, keys
from cluster.addrrecord import GATEWAY_HOLDER
from cluster.ipam import held_pairs
from spec.stored import StoredNetwork

PRESENCE = ("hosts", "seen", "grace")  # a live host's own keys, which stay while it runs


@dataclass(frozen=True)
class Record:
    """An endpoint record as read from etcd."""
    key: str
    pool: str
    host: str  # the key's
    value: dict


def records(contents: dict, hostile: set[str] = frozenset()) -> dict[str, Record]:
    """The endpoint records the hosts wrote (not ``hostile``, a test's own)."""
    prefix = keys.prefix("endpoints")
    out = {}
    for key, kv in contents.items():
        if key.startswith(prefix) and key not in hostile:
            pool, host, _ = key[len(prefix):].split("/")
            try:
                value = json.loads(kv.value)
            except ValueError:
                value = {"unparsed": kv.value}
            out[key] = Record(key, pool, host, value)
    return out


def holders(contents: dict) -> dict[tuple[str, str], str]:
    """(pool, address) -> the host addrs/ gives it to ("*": the network's own)."""
    prefix = keys.prefix("addrs")
    out = {}
    for key, kv in contents.items():
        if key.startswith(prefix):
            pool, hexa = key[len(prefix):].split("/")
            out[(pool, str(ipaddress.ip_address(int(hexa, 16))))] = json.loads(kv.value)["host"]
    return out


def record_violations(found_records: dict[str, Record], holding: dict, advertise: dict[str, str]) -> list[str]:
    """``advertise``: each live host's VTEP, by host ID."""
    found, claimed = [], {}
    for key, record in sorted(found_records.items()):
        value = record.value
        if record.host not in advertise:
            found.append(f"{key}: a record of {record.host}, which is not a live host")
        elif value.get("host") != record.host or value.get("vtep") != advertise[record.host]:
            found.append(f"{key}: host/vtep {value.get('host')}/{value.get('vtep')} is not its host's")
        for address in value.get("addresses", []):
            if (record.pool, address) in claimed:
                found.append(f"{address} on {record.pool} is in two records: {claimed[record.pool, address]}, "
                             f"{key}")
            claimed[record.pool, address] = key
            holder = holding.get((record.pool, address))
            if holder != record.host:
                found.append(f"{key}: {address} is held in addrs/ by {holder or 'no one'}, not {record.host}")
    return found


def unheld_lost(host_id: str, pool: str, endpoint: dict, holding: dict) -> list[str]:
    """An endpoint marked lost must not be one whose address this host
    holds (then it should have been published). Held by no one passes: the
    holder may have released it since, and the design keeps the mark until
    the container is removed (docs/cluster.md, "addrs/ decides")."""
    address = endpoint["lost"]["address"]
    if holding.get((pool, address)) == host_id:
        return [f"{host_id}: endpoint {endpoint['id'][:12]} is marked lost ({endpoint['lost']}) "
                f"but addrs/ gives {address} to this host"]
    return []


def store_violations(host_id: str, networks: dict, endpoints: list[dict], found_records: dict[str, Record],
                     holding: dict, contents: dict, lost: Callable[[str, dict], list[str]] | None = None) -> list[str]:
    """``networks``: the host's stored cluster networks by ID; ``contents``:
    etcd's keys; ``lost(pool, endpoint)`` checks an endpoint marked lost
    (``unheld_lost`` if None)."""
    lost = lost or (lambda pool, endpoint: unheld_lost(host_id, pool, endpoint, holding))
    found, published = [], set()
    for endpoint in endpoints:
        network = networks.get(endpoint["network_id"])
        if network is None:
            continue
        pool = network["cluster"]["pool"]
        if endpoint.get("lost"):
            found += lost(pool, endpoint)
            continue
        key = keys.prefix("endpoints", pool) + f"{host_id}/{endpoint['id']}"
        published.add(key)
        address = str(ipaddress.ip_interface(endpoint["address"]).ip)
        record = found_records.get(key)
        if record is None:
            found.append(f"{host_id}: endpoint {endpoint['id'][:12]} ({address}) is not lost and has no record")
        elif (record.value.get("addresses") != [address]
              or record.value.get("mac", "").lower() != endpoint["mac"].lower()):
            found.append(f"{key}: {record.value} is not the stored endpoint's ({address}, {endpoint['mac']})")
    for network in networks.values():  # the host's own address on it (cluster.hostaddr)
        own, pool = network["cluster"].get("host_address"), network["cluster"]["pool"]
        if own is None or network["cluster"].get("lost") or keys.prefix("members", pool) + host_id not in contents:
            continue  # an orphan claims nothing
        key = keys.prefix("endpoints", pool) + f"{host_id}/{hostaddr.RECORD_ID}"
        record = found_records.get(key)
        published.add(key)
        if record is None or record.value.get("addresses") != [str(ipaddress.ip_interface(own).ip)]:
            found.append(f"{host_id}: its host address {own} on {pool} has "
                         f"{'no record' if record is None else f'the record {record.value}'}")
    for key, record in found_records.items():
        if record.host == host_id and key not in published:
            found.append(f"{key}: a record of {host_id} that is none of its published stored endpoints")
    return found


def claim_violations(holding: dict, stored: dict[str, set[tuple[str, int]]], away: set[str] = frozenset()) -> list[str]:
    """Every address claimed in ``addrs/`` is the network's own (gateway,
    aux: ``*``) or held in its host's store. ``stored``: each live host's
    (pool name, address) pairs (``cluster.ipam.held_pairs``); ``away``:
    hosts not live whose claims a reclaim has yet to free."""
    found = []
    for (pool, address), holder in sorted(holding.items()):
        if holder == GATEWAY_HOLDER or holder in away:
            continue
        if holder not in stored:
            found.append(f"{address} on {pool} is claimed by {holder}, which is not a live host")
        elif (pool, int(ipaddress.ip_address(address))) not in stored[holder]:
            found.append(f"{address} on {pool} is claimed by {holder}, whose store does not hold it")
    return found


def stored_pairs(state: dict) -> set[tuple[str, int]]:
    """(pool name, address) of every non-gateway address a host stores, its
    host addresses too; ``state`` as ``python -m plugin inspect --json``
    shows it."""
    return held_pairs(state["pools"], lambda pool_id: [(int(ipaddress.ip_address(a["address"])), a["kind"])
                                                       for a in state["addresses"] if a["pool"] == pool_id]) \
        | hostaddr.held_pairs([StoredNetwork.from_json(n) for n in state["networks"] if "cluster" in n])


def leftovers(contents: dict, live: set[str]) -> list[str]:
    """Keys of ours other than the live hosts' presence."""
    expected = {keys.key(kind, h) for h in live for kind in PRESENCE}
    return sorted(set(contents) - expected)
