"""A small real topology for the firewall tests.

Bridges with "container" network namespaces attached by veths, and an
"outside" namespace joined to the host by a veth pair with its own /30. Every
name carries a random tag, and every object is removed in ``Lab.close`` even
when the test failed. Traffic only goes to addresses configured here.
"""
from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from datapath import rules as R
from datapath.firewall import Firewall
from datapath.model import EndpointPorts, NetworkRules

TIMEOUT = 10
PORT = 8000  # every test server listens here, TCP and UDP
TOOLS = ("ip", "iptables", "ip6tables", "iptables-save", "iptables-restore",
         "ip6tables-save", "ip6tables-restore", "conntrack")

# Answers each TCP connection and UDP datagram with the peer's address, so a
# test sees what source address NAT left on the packet.
SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(100); u.sendto(peer[0].encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept(); c.sendall(peer[0].encode()); c.close()
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(1.5)
if proto == "tcp":
    s.connect((host, port))
else:
    s.sendto(b"x", (host, port))
print(s.recv(100).decode())
"""


def sh(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def missing() -> str | None:
    """Why the real tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"missing tools: {', '.join(absent)}"
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        return "br_netfilter is not loaded (modprobe br_netfilter)"
    return None


def saved_rules() -> str:
    return sh("iptables-save").stdout + sh("ip6tables-save").stdout


def trace(*words: str) -> list[str]:
    """Lines of the v4 and v6 rule sets that mention any of ``words``."""
    return [l for l in saved_rules().splitlines() if any(w in l for w in words)]


def _sysctl(path: str, value: str | None = None) -> str:
    p = Path("/proc/sys") / path
    old = p.read_text().strip()
    if value is not None:
        p.write_text(value)
    return old


def _policy(tool: str) -> str:
    return sh(tool, "-S", "FORWARD").stdout.splitlines()[0].split()[2]


class HostForwarding:
    """The host as dockerd leaves it: forwarding on, FORWARD policy DROP."""

    SYSCTLS = {
        "net/ipv4/ip_forward": "1",
        "net/ipv6/conf/all/forwarding": "1",
        "net/bridge/bridge-nf-call-iptables": "1",
        "net/bridge/bridge-nf-call-ip6tables": "1",
    }

    def __enter__(self):
        self.old = {k: _sysctl(k, v) for k, v in self.SYSCTLS.items()}
        self.policies = {t: _policy(t) for t in ("iptables", "ip6tables")}
        for tool in self.policies:
            sh(tool, "-w", "-P", "FORWARD", "DROP")
        return self

    def __exit__(self, *exc):
        for tool, policy in self.policies.items():
            sh(tool, "-w", "-P", "FORWARD", policy)
        for k, v in self.old.items():
            _sysctl(k, v)
        remove_base()


def remove_base() -> None:
    """Remove our jumps and base chains once no network or endpoint is left."""
    for family, (save, restore) in {"ipv4": ("iptables-save", "iptables-restore"),
                                    "ipv6": ("ip6tables-save", "ip6tables-restore")}.items():
        saved = R.parse_save(sh(save).stdout)
        if any(c not in R.base_chains()[t] for t in R.TABLES for c in saved.ours[t]):
            continue  # something of Pontoon's is still in use
        lines = []
        for table in R.TABLES:
            lines.append(f"*{table}")
            for chain, jump in R.HOOKS[table]:
                lines += [f"-D {chain} {jump}"] * saved.builtin[table][chain].count(jump)
            lines += [f":{c} - [0:0]" for c in saved.ours[table]]
            lines += [f"-X {c}" for c in saved.ours[table]]
            lines.append("COMMIT")
        sh(restore, "-w", "--noflush", input="\n".join(lines) + "\n")


@dataclass
class Bridge:
    name: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


@dataclass
class Netns:
    ns: str
    ip: str


@dataclass
class Outside(Netns):
    host_ip: str  # the host's address on the veth to the outside


def _used_addresses() -> str:
    return sh("ip", "-o", "addr").stdout


class Lab:
    def __init__(self, tmp_path: Path, faults=None):
        self.tag = uuid.uuid4().hex[:5]
        self.fw = Firewall(tmp_path / "firewall.lock", faults=faults)
        self._cleanup: list = []
        self._count = 0

    def _next(self) -> int:
        self._count += 1
        return self._count

    def close(self) -> None:
        errors = []
        while self._cleanup:
            try:
                self._cleanup.pop()()
            except Exception as exc:  # keep cleaning; report at the end
                errors.append(exc)
        if errors:
            raise RuntimeError(f"cleanup failed: {errors}")

    def bridge(self, name: str | None = None) -> Bridge:
        # Not "pt-": the link code's reconcile takes any "pt-" bridge that no
        # network owns for an orphan, and its tests run beside these.
        name = name or f"fwt{self.tag}{self._next()}"
        used = _used_addresses()
        octet = random.choice([o for o in range(256) if f" 10.250.{o}." not in used])
        br = Bridge(name, ipaddress.ip_network(f"10.250.{octet}.0/24"))
        sh("ip", "link", "add", name, "type", "bridge")
        self._cleanup.append(lambda: sh("ip", "link", "del", name))
        sh("ip", "addr", "add", f"{br.gateway}/24", "dev", name)
        sh("ip", "link", "set", name, "up")
        return br

    def _netns(self, kind: str) -> tuple[str, str]:
        n = self._next()
        ns, host_end = f"fwt-{self.tag}-{kind}{n}", f"fwt{self.tag}{kind}{n}"
        sh("ip", "netns", "add", ns)
        self._cleanup.append(lambda: sh("ip", "netns", "del", ns))
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._cleanup.append(lambda: sh("ip", "link", "del", host_end, check=False))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        return ns, host_end

    def _serve(self, ns: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(PORT)],
            stdout=subprocess.PIPE, text=True,
        )
        self._cleanup.append(lambda: (proc.kill(), proc.wait(TIMEOUT)))
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"test server in {ns} did not start")

    def container(self, br: Bridge) -> Netns:
        ns, host_end = self._netns("c")
        ip = str(br.subnet.network_address + 1 + self._count)
        sh("ip", "link", "set", host_end, "master", br.name, "up")
        # Pontoon's link code sets hairpin mode on the bridge port (as Docker
        # does without its userland proxy): a published port reached through
        # the host from the container itself is bridged back out of the port
        # it came in on, which a bridge refuses otherwise.
        sh("ip", "link", "set", host_end, "type", "bridge_slave", "hairpin", "on")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/{br.subnet.prefixlen}", "dev", "eth0")
        sh("ip", "-n", ns, "route", "add", "default", "via", br.gateway)
        self._serve(ns)
        return Netns(ns, ip)

    def outside(self) -> Outside:
        used = _used_addresses()
        base = random.choice([b for b in range(0, 256, 4) if f" 198.51.100.{b + 1}/" not in used])
        host_ip, ip = f"198.51.100.{base + 1}", f"198.51.100.{base + 2}"
        ns, host_end = self._netns("o")
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", "eth0")
        # Only our bridges' range goes through the host, so a test can also
        # check that an unNATed container address arrives, or that the
        # outside cannot reach a container directly.
        sh("ip", "-n", ns, "route", "add", "10.250.0.0/16", "via", host_ip)
        self._serve(ns)
        return Outside(ns, ip, host_ip)

    def reach(self, src: str | None, ip: str, port: int = PORT, proto: str = "tcp") -> str | None:
        """The address the server saw us come from, or None if unreachable.

        ``src`` is a namespace, or None for the host itself.
        """
        argv = [sys.executable, "-c", CLIENT, proto, ip, str(port)]
        if src is not None:
            argv = ["ip", "netns", "exec", src, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def add_network(self, rules: NetworkRules) -> None:
        self._cleanup.append(lambda: self.fw.remove_network(rules))
        self.fw.add_network(rules)

    def add_ports(self, ports: EndpointPorts) -> None:
        self._cleanup.append(lambda: self.fw.remove_ports(ports))
        self.fw.add_ports(ports)


def network(br: Bridge, **kw) -> NetworkRules:
    return NetworkRules(uuid.uuid4().hex * 2, br.name, (str(br.subnet),), **kw)
