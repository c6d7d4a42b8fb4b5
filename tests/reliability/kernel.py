"""What a test's Pontoon objects look like in the kernel and the store, and the
invariants tying them together.

The kernel is read with iproute2 and iptables-save, independently of the
plugin's pyroute2 code. Other engineers' tests run on the same host, so
everything is filtered to the names a test could have made: its instance's
alias, and the bridges, veths and chains derived from the IDs it sent.
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass, field

from datapath.links import ALIAS_PREFIX
from datapath.model import BRIDGE_PREFIX, VETH_HOST_PREFIX, VETH_PEER_PREFIX
from datapath.rules import Names
from plugin.wiring import chain_prefix

# Everything a test could change, as text; compared before and after.
SNAPSHOT_COMMANDS = (
    ("ip", "-o", "-d", "link", "show"),
    ("ip", "-o", "addr", "show"),
    ("ip", "route", "show", "table", "all"),
    ("ip", "-6", "route", "show", "table", "all"),
    ("iptables-save",),
    ("ip6tables-save",),
)
FIREWALL_TOOLS = ("iptables-save", "ip6tables-save")


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def raw_snapshot(netns: str | None = None) -> dict[str, str]:
    inside = ("ip", "netns", "exec", netns) if netns else ()
    return {" ".join(cmd): run(*inside, *cmd) for cmd in SNAPSHOT_COMMANDS}


@dataclass
class Seen:
    """IDs and values a test sent to the plugin (see ``RecordingTransport``)."""

    networks: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)
    bridges: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)  # pools and gateways, as sent
    chain_prefixes: set[str] = field(default_factory=set)
    # Links the test made itself, as a user would: not Pontoon's to own.
    users: set[str] = field(default_factory=set)

    def watch(self, instance: str) -> None:
        """Every chain of this Pontoon instance is the test's too."""
        self.chain_prefixes.add(Names(chain_prefix(instance)).prefix + "-")

    def record(self, body: dict) -> None:
        """Takes what could name a kernel object: hex IDs as dockerd sends
        them, bridge names starting "pt" (every test here names its bridges
        so; any other bridge Pontoon made carries its instance's alias),
        pools and gateways narrower than /8. Anything else a hostile test
        sends is ignored, so the words filtering the host's state stay
        specific."""
        if _hex_id(body.get("NetworkID")):
            self.networks.add(body["NetworkID"])
            self.bridges.add(BRIDGE_PREFIX + body["NetworkID"][:12])
        if _hex_id(body.get("EndpointID")):
            self.endpoints.add(body["EndpointID"])
        generic = _dict(_dict(body.get("Options")).get("com.docker.network.generic"))
        name = generic.get("com.docker.network.bridge.name")
        if isinstance(name, str) and name.startswith("pt"):
            self.bridges.add(name)
        for key in ("IPv4Data", "IPv6Data"):
            data = body.get(key)
            for entry in data if isinstance(data, list) else ():
                entry = _dict(entry)
                self.addresses.update(v for v in (entry.get("Pool"), entry.get("Gateway")) if _specific(v))

    def link_names(self) -> set[str]:
        veths = {p + e[:12] for e in self.endpoints for p in (VETH_HOST_PREFIX, VETH_PEER_PREFIX)}
        return self.bridges | veths

    def tokens(self) -> set[str]:
        """Words that mark a line of ``raw_snapshot`` as possibly ours."""
        chains = ({f"-N-{n[:12]}" for n in self.networks} | {f"-E-{e[:12]}" for e in self.endpoints}
                  | self.chain_prefixes)
        subnets = {a.split("/")[0] for a in self.addresses}
        return self.link_names() | chains | subnets


def _hex_id(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{12,128}", value) is not None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _specific(value) -> bool:
    try:
        return ipaddress.ip_interface(value).network.prefixlen >= 8
    except (TypeError, ValueError):
        return False


def ours(snapshot: dict[str, str], seen: Seen) -> dict[str, list[str]]:
    tokens = seen.tokens()
    return {cmd: [line for line in text.splitlines() if any(t in line for t in tokens)]
            for cmd, text in snapshot.items()}


def links(instance: str, seen: Seen) -> dict[str, dict]:
    """Links in the host namespace that are this instance's or carry a name
    derived from an ID the test sent: name -> {"kind", "master", "alias",
    "addresses"}. One ``ip`` call: the fuzz reads this twice per example."""
    found = {}
    names = seen.link_names()
    for link in json.loads(run("ip", "-j", "-d", "addr", "show") or "[]"):
        name, alias = link["ifname"], link.get("ifalias", "")
        if name in names or alias == ALIAS_PREFIX + instance:
            found[name] = {"kind": link.get("linkinfo", {}).get("info_kind", ""),
                           "master": link.get("master", ""), "alias": alias,
                           "addresses": sorted(f'{a["local"]}/{a["prefixlen"]}' for a in link.get("addr_info", ())
                                               if a.get("scope") != "link")}
    return found


def firewall_lines() -> dict[str, list[str]]:
    return {tool: run(tool).splitlines() for tool in FIREWALL_TOOLS}


def problems(state: dict, instance: str, seen: Seen, ipam: bool = True) -> list[str]:
    """Every way the kernel and the store disagree, for what this test made.

    ``state`` is ``plugin.inspect.collect`` (or ``inspect --json``). Joined
    endpoints' container ends may be in a sandbox, so they may be missing
    from the host; everything else named must exist exactly when it is
    stored. ``ipam=False`` skips checking that endpoint addresses are
    allocated in IPAM, for tests that send CreateEndpoint without dockerd's
    IPAM calls first.
    """
    found: list[str] = []
    networks = {n["id"]: n for n in state["networks"]}
    endpoints = {e["id"]: e for e in state["endpoints"]}
    kernel = links(instance, seen)
    required = {n["bridge"]: "bridge" for n in networks.values()}
    allowed = set(required)
    for e in endpoints.values():
        required[e["host_veth"]] = "veth"
        allowed |= {e["host_veth"], e["peer_veth"]}
        if not e["sandbox"]:
            required[e["peer_veth"]] = "veth"
        host = kernel.get(e["host_veth"])
        bridge = networks.get(e["network_id"], {}).get("bridge")
        if host is not None and host["master"] != bridge:
            found.append(f'{e["host_veth"]} is attached to "{host["master"]}", not to {bridge}')
    found += [f"stored {kind} {name} is not in the kernel" for name, kind in required.items()
              if kernel.get(name, {}).get("kind") != kind]
    found += [f"link {name} ({info}) has no stored owner" for name, info in kernel.items()
              if name not in allowed | seen.users]
    for n in networks.values():
        if n["options"]["inhibit_ipv4"]:
            continue
        want = {d["gateway"] for d in n["ipv4"] + n["ipv6"] if d["gateway"]}
        lacking = want - set(kernel.get(n["bridge"], {}).get("addresses", ()))
        found += [f'gateway {a} is missing on {n["bridge"]}' for a in sorted(lacking)]

    names = Names(chain_prefix(instance))
    for tool, lines in firewall_lines().items():
        chains = {line[1:].split()[0] for line in lines if line.startswith(":")}
        # Chains are named by stored tags; an ID not stored would have had
        # its first choice, unless a stored object holds that (IDs that
        # share their first 12 characters).
        network_tags = {n["tag"] for n in networks.values()}
        for nid in seen.networks:
            tag = networks[nid]["tag"] if nid in networks else nid[:12]
            if nid not in networks and tag in network_tags:
                continue
            if (names.network(tag) in chains) != (nid in networks):
                state_word = "stored" if nid in networks else "not stored"
                found.append(f"{tool}: chain {names.network(tag)} of a network {state_word}")
        stored_bridges = {n["bridge"] for n in networks.values()}
        for bridge in seen.bridges - stored_bridges:
            found += [f"{tool}: rule for a bridge nobody stores: {line}" for line in lines
                      if f"-i {bridge} " in line + " " or f"-o {bridge} " in line + " "]
        endpoint_tags = {e["tag"] for e in endpoints.values()}
        for eid in seen.endpoints:
            tag = endpoints[eid]["tag"] if eid in endpoints else eid[:12]
            if eid not in endpoints and tag in endpoint_tags:
                continue
            published = bool(endpoints.get(eid, {}).get("ports"))
            if tool == "iptables-save" and (names.endpoint(tag) in chains) != published:
                found.append(f"{tool}: chain {names.endpoint(tag)} but endpoint published={published}")

    held = [(a["pool"], a["address"]) for a in state["addresses"]]
    found += [f"address held twice: {a}" for a in sorted({a for a in held if held.count(a) > 1})]
    in_use = [e[k].split("/")[0] for e in endpoints.values() for k in ("address", "address_v6") if e[k]]
    found += [f"address of two endpoints: {a}" for a in sorted({a for a in in_use if in_use.count(a) > 1})]
    allocated = {a for _, a in held}
    if ipam:
        found += [f"endpoint address {a} is not allocated in IPAM" for a in in_use if a not in allocated]
    return found


def view(instance: str, seen: Seen) -> dict:
    """This test's kernel objects, without what changes on its own (link
    indexes, carrier flags, counters, IPv6 link-local addresses): links with
    their addresses, and the firewall lines that mention them."""
    tokens = seen.tokens()
    return {
        "links": links(instance, seen),
        "firewall": {tool: [line for line in lines if any(t in line for t in tokens)]
                     for tool, lines in firewall_lines().items()},
    }


def bridge_state(name: str) -> dict:
    """What Pontoon may change on a bridge, as the user sees it."""
    link = subprocess.run(["ip", "-d", "-j", "addr", "show", "dev", name], capture_output=True, text=True)
    if link.returncode != 0:
        return {}
    (info,) = json.loads(link.stdout)
    sysctls = {}
    for family, key in (("ipv4", "route_localnet"), ("ipv6", "disable_ipv6")):
        with open(f"/proc/sys/net/{family}/conf/{name}/{key}") as f:
            sysctls[f"{family}/{key}"] = f.read().strip()
    return {"mtu": info["mtu"], "mac": info["address"], "up": "UP" in info["flags"],
            "alias": info.get("ifalias", ""), "sysctls": sysctls,
            "addresses": sorted(f'{a["local"]}/{a["prefixlen"]}' for a in info["addr_info"])}
