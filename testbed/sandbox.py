"""The kernel side of dockerd for the fake dockerd: one network namespace per
container, configured from the plugin's replies the way dockerd does it.

Uses the `ip` tool: an independent implementation from the plugin's netlink
code, so the tests do not check pyroute2 with pyroute2.
"""
from __future__ import annotations

import ipaddress
import itertools
import secrets
import subprocess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_exec(ns: str, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)


class Sandbox:
    def __init__(self, ns: str, ifname: str):
        self.ns, self.ifname = ns, ifname

    def ping(self, address: str, count: int = 1) -> bool:
        addr = str(ipaddress.ip_interface(address).ip)
        return netns_exec(self.ns, "ping", "-c", str(count), "-W", "2", addr).returncode == 0

    def link(self) -> str:
        return ip("-n", self.ns, "-d", "link", "show", self.ifname).stdout


class Sandboxes:
    """``home`` is the network namespace the plugin runs in (the host's own
    when None): where SrcName is found, and where it goes back to."""

    def __init__(self, home: str | None = None):
        self.prefix = "ptns" + secrets.token_hex(3)
        self.home = home
        self.made: list[str] = []
        # Names by serial, not by how many are up: with ns-0 and ns-1 up and
        # ns-0 gone, a count would name the next one ns-1 again.
        self._serial = itertools.count()

    def new_namespace(self) -> str:
        ns = f"{self.prefix}-{next(self._serial)}"
        ip("netns", "add", ns)
        self.made.append(ns)
        return ns

    def attach(self, ctr) -> Sandbox:
        """What dockerd does after Join: move SrcName into the sandbox, rename
        it DstPrefix + index, and set addresses, MAC and routes."""
        ns = self.new_namespace()
        src, dst = ctr.join["InterfaceName"]["SrcName"], ctr.join["InterfaceName"]["DstPrefix"] + "0"
        ip(*self._at_home(), "link", "set", src, "netns", ns)
        ip("-n", ns, "link", "set", src, "name", dst)
        ip("-n", ns, "link", "set", dst, "address", ctr.mac)
        ip("-n", ns, "addr", "add", ctr.address, "dev", dst)
        if ctr.address_v6:
            ip("-n", ns, "addr", "add", ctr.address_v6, "dev", dst, "nodad")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", dst, "up")
        if "Gateway" in ctr.join:
            ip("-n", ns, "route", "add", "default", "via", ctr.join["Gateway"])
        if "GatewayIPv6" in ctr.join:
            ip("-n", ns, "-6", "route", "add", "default", "via", ctr.join["GatewayIPv6"])
        return Sandbox(ns, dst)

    def detach(self, ctr) -> None:
        """What dockerd does after Leave: the interface goes back to the host
        under its old name, and the sandbox goes."""
        box = ctr.sandbox
        src = ctr.join["InterfaceName"]["SrcName"]
        ip("-n", box.ns, "link", "set", box.ifname, "down")
        ip("-n", box.ns, "link", "set", box.ifname, "name", src)
        ip("-n", box.ns, "link", "set", src, "netns", self.home or "1")
        self._delete(box.ns)

    def _at_home(self) -> tuple[str, ...]:
        return ("-n", self.home) if self.home else ()

    def _delete(self, ns: str) -> None:
        ip("netns", "del", ns, check=False)
        if ns in self.made:
            self.made.remove(ns)

    def cleanup(self) -> None:
        for ns in list(self.made):
            self._delete(ns)
