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
# Our own chain prefix: a Pontoon running on this host (other engineers' end
# to end tests) reconciles the PONTOON-* chains and would take ours for
# orphans, and ours would take its.
NAMES = R.Names(f"PONTOONT{uuid.uuid4().hex[:4]}")
PORT = 8000  # every test server listens here, TCP and UDP
TOOLS = ("ip", "iptables", "ip6tables", "iptables-save", "iptables-restore",
         "ip6tables-save", "ip6tables-restore", "conntrack")

# Answers each TCP connection and UDP datagram with the peer's address, so a
# test sees what source address NAT left on the packet.
SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
def name(peer):  # dual-stack sockets show IPv4 peers as ::ffff:a.b.c.d
    return peer[0].removeprefix("::ffff:").encode()
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.bind(("::", port)); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", port))
def udp():
    while True:
        data, peer = u.recvfrom(100); u.sendto(name(peer), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept(); c.sendall(name(peer)); c.close()
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(2.5)  # a first IPv6 contact waits for neighbour discovery; loaded CI machines are slow
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
        saved = R.parse_save(sh(save).stdout, NAMES)
        if any(c not in NAMES.base_chains()[t] for t in R.TABLES for c in saved.ours[t]):
            continue  # something of Pontoon's is still in use
        lines = []
        for table in R.TABLES:
            lines.append(f"*{table}")
            for chain, jump in NAMES.hooks()[table]:
                lines += [f"-D {chain} {jump}"] * saved.builtin[table][chain].count(jump)
            lines += [f":{c} - [0:0]" for c in saved.ours[table]]
            lines += [f"-X {c}" for c in saved.ours[table]]
            lines.append("COMMIT")
        sh(restore, "-w", "--noflush", input="\n".join(lines) + "\n")


@dataclass
class Bridge:
    name: str
    subnet: ipaddress.IPv4Network
    subnet_v6: ipaddress.IPv6Network | None = None

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def gateway_v6(self) -> str:
        return str(self.subnet_v6.network_address + 1)


@dataclass
class Netns:
    ns: str
    ip: str
    ip6: str | None = None


@dataclass
class Outside(Netns):
    host_ip: str = ""  # the host's addresses on the veth to the outside
    host_ip6: str = ""
    host_end: str = ""  # the host's interface to it


def _used_addresses() -> str:
    return sh("ip", "-o", "addr").stdout


class Lab:
    def __init__(self, tmp_path: Path):
        self.tag = uuid.uuid4().hex[:5]
        self.fw = Firewall(tmp_path / "firewall.lock", chain_prefix=NAMES.prefix)
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

    def bridge(self, name: str | None = None, v6: bool = False, address: bool = True) -> Bridge:
        """``address=False``: no gateway address on the bridge (an isolated
        network's); the subnet is chosen as if it had one."""
        # Not "pt-": the link code's reconcile takes any "pt-" bridge that no
        # network owns for an orphan, and its tests run beside these.
        name = name or f"fwt{self.tag}{self._next()}"
        used = _used_addresses()
        octet = random.choice([o for o in range(256) if f" 10.250.{o}." not in used])
        br = Bridge(name, ipaddress.ip_network(f"10.250.{octet}.0/24"))
        sh("ip", "link", "add", name, "type", "bridge")
        self._cleanup.append(lambda: sh("ip", "link", "del", name))
        if address:
            sh("ip", "addr", "add", f"{br.gateway}/24", "dev", name)
        if v6:
            br.subnet_v6 = ipaddress.ip_network(f"fd00:250:{self.tag[:4]}:{octet:x}::/64")
            if address:
                sh("ip", "addr", "add", f"{br.gateway_v6}/64", "dev", name, "nodad")
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
        ip6 = None
        if br.subnet_v6 is not None:
            ip6 = str(br.subnet_v6.network_address + 1 + self._count)
            sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", ns, "-6", "route", "add", "default", "via", br.gateway_v6)
        self._serve(ns)
        return Netns(ns, ip, ip6)

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
        # compressed as the kernel prints them (no leading zeros), to compare as text
        host_ip6, ip6 = (str(ipaddress.ip_address(f"fd00:251:{self.tag[:4]}::{n}")) for n in (1, 2))
        sh("ip", "addr", "add", f"{host_ip6}/64", "dev", host_end, "nodad")
        sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", ns, "-6", "route", "add", "fd00:250::/32", "via", host_ip6)
        self._serve(ns)
        return Outside(ns, ip, ip6, host_ip, host_ip6, host_end)

    def second_host_address(self, out: Outside) -> tuple[str, str]:
        """Another IPv4 and IPv6 address of the host, on its interface to
        ``out``, which ``out`` routes back to the host: a source for SNAT."""
        used = _used_addresses()
        n = random.choice([n for n in range(1, 255) if f" 192.0.2.{n}/" not in used])
        ip, ip6 = f"192.0.2.{n}", str(ipaddress.ip_address(f"fd00:252:{self.tag[:4]}::{n:x}"))
        for addr, via in ((f"{ip}/32", out.host_ip), (f"{ip6}/128", out.host_ip6)):
            sh("ip", "addr", "add", addr, "dev", out.host_end, *(["nodad"] if ":" in addr else []))
            self._cleanup.append(lambda addr=addr: sh("ip", "addr", "del", addr, "dev", out.host_end, check=False))
            sh("ip", "-n", out.ns, "route", "add", addr, "via", via)
        return ip, ip6

    def route_loopback_to_host(self, out: Outside) -> None:
        """Make ``out`` send packets for 127.0.0.1 to the host, as a
        neighbour that wants at the host's loopback-only services would."""
        for route in ("local 127.0.0.1", "local 127.0.0.0/8"):
            sh("ip", "-n", out.ns, "route", "del", *route.split(), "dev", "lo", "table", "local", check=False)
        sh("ip", "netns", "exec", out.ns, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
        sh("ip", "-n", out.ns, "route", "add", "127.0.0.1/32", "via", out.host_ip, "dev", "eth0", "src", out.ip)

    @staticmethod
    def ping(src: str, ip: str) -> bool:
        argv = ["ip", "netns", "exec", src, "ping", "-c1", "-W1", "-q", ip]
        return subprocess.run(argv, capture_output=True, timeout=TIMEOUT).returncode == 0

    def reach(self, src: str | None, ip: str, port: int = PORT, proto: str = "tcp") -> str | None:
        """The address the server saw us come from, or None if unreachable.

        ``src`` is a namespace, or None for the host itself.
        """
        argv = [sys.executable, "-c", CLIENT, proto, ip, str(port)]
        if src is not None:
            argv = ["ip", "netns", "exec", src, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        return proc.stdout.strip() if proc.returncode == 0 else None

    @staticmethod
    def forwarded(src_ip: str, dst_ip: str) -> bool:
        """Whether any packet from ``src_ip`` to ``dst_ip`` got through.

        Conntrack only keeps an entry for a packet that left the host, so
        this also sees a one-way leak that a request/answer check misses.
        """
        listed = sh("conntrack", "-L", "--orig-src", src_ip, "--orig-dst", dst_ip, check=False)
        return bool(listed.stdout.strip())

    def add_network(self, rules: NetworkRules) -> None:
        self._cleanup.append(lambda: self.fw.remove_network(rules))
        self.fw.add_network(rules)

    def add_ports(self, ports: EndpointPorts) -> None:
        self._cleanup.append(lambda: self.fw.remove_ports(ports))
        self.fw.add_ports(ports)


def network(br: Bridge, **kw) -> NetworkRules:
    v6 = (str(br.subnet_v6),) if br.subnet_v6 else ()
    return NetworkRules(uuid.uuid4().hex * 2, br.name, (str(br.subnet),), v6, **kw)
