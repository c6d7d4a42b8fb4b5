"""Hosts on one underlay, all on this machine: a bridge in a network
namespace of its own (the "switch", which also carries an address for etcd)
and one network namespace per host, joined to it by a veth with an address
of the underlay subnet. Names carry a random tag; ``close`` removes all.

Uses the ``ip`` tool, independently of the plugin's netlink code.
"""
from __future__ import annotations

import ipaddress
import json
import re
import secrets
import subprocess
from dataclasses import dataclass

# TEST-NET-1: documentation addresses, never routed anywhere; they exist
# only inside the namespaces made here.
SUBNET = ipaddress.ip_network("192.0.2.0/24")
UPLINK = "ul0"  # each host's underlay interface


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_exec(ns: str, *cmd: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=check)


@dataclass
class Host:
    ns: str
    address: str  # on the underlay

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return netns_exec(self.ns, *cmd, timeout=timeout, check=check)

    def counter(self, chain: str, rule: list[str]) -> "Counter":
        return Counter(self, chain, rule)

    def vxlan_counter(self) -> "Counter":
        """VXLAN packets this host sends onto the underlay."""
        return self.counter("OUTPUT", ["-o", UPLINK, "-p", "udp", "--dport", "4789"])


class Counter:
    """An iptables rule with no target in this host's namespace: it only
    counts the packets and bytes that match. Namespaces have their own
    tables, so nothing outside the test sees it."""

    def __init__(self, host: Host, chain: str, rule: list[str]):
        self.host, self.chain = host, chain
        self.tag = "ptcount" + secrets.token_hex(3)  # iptables rewrites the match, so find it by comment
        host.run("iptables", "-w", "-A", chain, *rule, "-m", "comment", "--comment", self.tag)

    def read(self) -> tuple[int, int]:
        """(packets, bytes) so far."""
        out = self.host.run("iptables", "-w", "-S", self.chain, "-v").stdout
        for line in out.splitlines():
            if self.tag in line and " -c " in line:
                packets, octets = line.rsplit(" -c ", 1)[1].split()[:2]
                return int(packets), int(octets)
        raise LookupError(f"no counter {self.tag} in {self.host.ns} {self.chain}:\n{out}")

    def packets(self) -> int:
        return self.read()[0]

    def bytes(self) -> int:
        return self.read()[1]


class Underlay:
    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.ns = f"ptu{self.tag}"
        self.bridge = "ulbr"
        self.address = str(SUBNET.network_address + 1)  # the switch's own: etcd listens there
        self.hosts: list[Host] = []
        self._made: list[str] = []
        self._add_ns(self.ns)
        ip("-n", self.ns, "link", "add", self.bridge, "type", "bridge")
        ip("-n", self.ns, "addr", "add", f"{self.address}/{SUBNET.prefixlen}", "dev", self.bridge)
        ip("-n", self.ns, "link", "set", self.bridge, "up")

    def _add_ns(self, ns: str) -> None:
        ip("netns", "add", ns)
        self._made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def add_host(self) -> Host:
        index = len(self.hosts) + 1
        host = Host(f"pth{self.tag}{index}", str(SUBNET.network_address + 10 + index))
        self._add_ns(host.ns)
        port = f"h{index}"
        ip("-n", host.ns, "link", "add", UPLINK, "type", "veth", "peer", "name", port, "netns", self.ns)
        ip("-n", self.ns, "link", "set", port, "master", self.bridge, "up")
        ip("-n", host.ns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", UPLINK)
        ip("-n", host.ns, "link", "set", UPLINK, "up")
        self.hosts.append(host)
        return host

    def run(self, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        """A command in the switch's namespace."""
        return netns_exec(self.ns, *cmd, **kwargs)

    def close(self) -> None:
        for ns in reversed(self._made):
            ip("netns", "del", ns, check=False)
        self._made.clear()


def link_stats(ns: str, name: str) -> dict:
    return json.loads(ip("-n", ns, "-s", "-j", "link", "show", name).stdout)[0]["stats64"]


def filter_packets(shown: str) -> int:
    """Packets the actions of ``tc -s filter show`` output acted on, from
    their own counters (datapath.fastpath's redirects)."""
    return sum(int(n) for n in re.findall(r"Sent \d+ bytes (\d+) pkt", shown))
