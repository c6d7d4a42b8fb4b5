"""``python -m plugin inspect``: the stored state as tables or JSON.

``inspect ports`` is the one place a user sees every published port: no
dockerd shows a remote driver's ports in `docker port` or `docker ps` (it
type-asserts EndpointOperInfo's port map to its own Go types; see
docs/firewall.md).
"""
from __future__ import annotations

import ipaddress
import json
import time

from .store import Store


def collect(store: Store) -> dict:
    """The state as ``inspect --json`` prints it: the store's records in
    their stored JSON form (spec.stored's ``to_json``), which the tables
    below render too."""
    with store.snapshot() as tx:
        pools = tx.list_pools()
        return {
            "networks": [n.to_json() for n in tx.list_networks()],
            "endpoints": [e.to_json() for e in tx.list_endpoints()],
            "pools": pools,
            "addresses": [
                {"pool": p["id"], "address": str(ipaddress.ip_address(a)), "kind": kind}
                for p in pools for a, kind in tx.list_addresses(p["id"])
            ],
        }


def published(state: dict) -> list[dict]:
    """Every published port with the endpoint that holds it, flat, in the
    order of endpoints and then host ports."""
    return [
        {"endpoint_id": e["id"], "network_id": e["network_id"], "proto": p["proto"],
         "host_ip": p["host_ip"], "host_port": p["host_port"],
         "container_ip": p["container_ip"], "container_port": p["container_port"]}
        for e in state["endpoints"]
        for p in sorted(e["ports"], key=lambda p: (p["proto"], p["host_port"], p["host_ip"]))
    ]


def render(state: dict) -> str:
    sections = [
        ("NETWORKS", ["ID", "BRIDGE", "SUBNETS", "GATEWAYS", "INTERNAL", "IPV6"], [
            [n["id"][:12], n["bridge"],
             " ".join(d["pool"] for d in n["ipv4"] + n["ipv6"]),
             " ".join(d["gateway"] or "-" for d in n["ipv4"] + n["ipv6"]),
             _yes(n["options"]["internal"]), _yes(n["options"]["ipv6"])]
            for n in state["networks"]]),
        ("ENDPOINTS", ["ID", "NETWORK", "VETH", "MAC", "ADDRESSES", "JOINED", "PORTS"], [
            [e["id"][:12], e["network_id"][:12], f'{e["host_veth"]}/{e["peer_veth"]}', e["mac"],
             " ".join(a for a in (e["address"], e["address_v6"]) if a) or "-",
             _yes(bool(e["sandbox"])),
             " ".join(f'{p["host_ip"] or "*"}:{p["host_port"]}->{p["container_port"]}/{p["proto"]}'
                      for p in e["ports"]) or "-"]
            for e in state["endpoints"]]),
        *_lost_section(state),
        *_host_address_section(state),
        _ports_section(state),
        ("POOLS", ["ID", "SPACE", "POOL", "RANGE"], [
            [p["id"], p["space"], p["cidr"], p["sub"] or "-"] for p in state["pools"]]),
        ("ADDRESSES", ["POOL", "ADDRESS", "KIND"], [
            [a["pool"], a["address"], a["kind"]] for a in state["addresses"]]),
    ]
    return "\n\n".join(_table(title, header, rows) for title, header, rows in sections) + "\n"


def render_cluster(cluster: dict) -> str:
    """The cluster as etcd holds it: hosts, networks with their hosts, endpoints with theirs."""
    sections = [
        ("CLUSTER HOSTS", ["HOST", "ADVERTISE", "LIVE", "LAST SEEN"], [
            [h["id"], h["advertise"] or "-", _yes(h["live"]),
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h["last_seen"])) if h["last_seen"] else "-"]
            for h in cluster["hosts"]]),
        ("CLUSTER NETWORKS", ["POOL", "SPACE", "VNI", "MTU", "HOSTS"], [
            [n["pool"], n["space"], n["vni"] or "-", _mtu(n["options"]), " ".join(n["hosts"]) or "-"]
            for n in cluster["networks"]]),
        ("CLUSTER ENDPOINTS", ["POOL", "ENDPOINT", "HOST", "VTEP", "MAC", "ADDRESSES", "NAMES"], [
            [e["pool"], e["id"][:12], e["host"], e["vtep"], e["mac"], " ".join(e["addresses"]) or "-",
             _names(e) or "-"]
            for e in cluster["endpoints"]]),
    ]
    if cluster.get("clashes"):  # names.engine, cluster.view.clashes
        sections.append(("NAME CLASHES: ONE NAME, SEVERAL CONTAINERS (DNS ANSWERS ALL)", ["POOL", "NAME", "HELD BY"], [
            [c["pool"], c["name"], " ".join(f'{e["id"][:12]}@{e["host"]}' for e in c["endpoints"])]
            for c in cluster["clashes"]]))
    return "\n\n".join(_table(title, header, rows) for title, header, rows in sections) + "\n"


def _names(record: dict) -> str:
    """An etcd record's names as written (inspect shows even a bad record)."""
    aliases = record.get("aliases")
    return " ".join(map(str, [record.get("name") or "", *(aliases if isinstance(aliases, list) else [])])).strip()


def render_between_hosts(state: dict) -> str:
    """The VXLAN guard (datapath.vxlanguard): datagrams to a cluster
    network's VNI from a host that is no member of it, dropped; and the
    WireGuard implementation encrypted networks use, as the tunnel's device
    shows it (datapath.wireguard.in_force)."""
    dropped = state["dropped"]
    return _table("BETWEEN HOSTS", ["VXLAN DROPPED FROM NON-MEMBERS", "WIREGUARD"],
                  [[dropped if dropped is not None else "- (no cluster network here)",
                    state["wireguard"] or "none: no encrypted network here"]]) + "\n"


def _lost_section(state: dict) -> list:
    """Cluster networks cut off from the cluster (cluster.mode.ClusterMode._cut_off)
    and endpoints this host did not publish again, an address of theirs
    being another host's now (ClusterMode._mark); shown only when there are any."""
    cut = [n for n in state["networks"] if n.get("cluster", {}).get("lost")]
    lost = [e for e in state["endpoints"] if e.get("lost")]
    return ([("CUT OFF FROM THE CLUSTER: REMOVE AND CREATE AGAIN", ["NETWORK", "WHY"], [
        [n["id"][:12], n["cluster"]["lost"]] for n in cut])] if cut else []) + (
        [("LOST TO THE CLUSTER: UNREACHABLE FROM OTHER HOSTS", ["ENDPOINT", "ADDRESS", "NOW HELD BY"], [
            [e["id"][:12], e["lost"]["address"] or "-", e["lost"]["holder"] or "no one (pool gone)"] for e in lost])]
        if lost else [])


def _host_address_section(state: dict) -> list:
    """This host's own address on each cluster network (cluster.hostaddr),
    the source its own traffic to the network leaves with; shown only in
    cluster mode."""
    own = [n for n in state["networks"] if n.get("cluster", {}).get("host_address")]
    return [("HOST ADDRESSES", ["NETWORK", "BRIDGE", "CLUSTER POOL", "ADDRESS"], [
        [n["id"][:12], n["bridge"], n["cluster"]["pool"], n["cluster"]["host_address"]] for n in own])] if own else []


def render_ports(state: dict) -> str:
    return _table(*_ports_section(state)) + "\n"


def _ports_section(state: dict):
    return ("PUBLISHED PORTS", ["ENDPOINT", "NETWORK", "CONTAINER", "HOST", "PROTO"], [
        [p["endpoint_id"][:12], p["network_id"][:12], f'{p["container_ip"]}:{p["container_port"]}',
         f'{_host(p["host_ip"])}:{p["host_port"]}', p["proto"]]
        for p in published(state)])


def _mtu(options: dict) -> str:
    """The MTU in force and the overhead it leaves room for."""
    if not options.get("mtu"):
        return "-"
    return f'{options["mtu"]} ({"VXLAN in WireGuard" if options.get("encrypted") else "VXLAN"})'


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def to_json(state: dict | list) -> str:
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [f"{title} ({len(rows)})"]
    for row in [header] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)
