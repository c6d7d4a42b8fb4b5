"""Per-interface network sysctls, under a configurable root.

A managed plugin sees /proc/sys read-only, as any unprivileged container
does; its config.json binds the host's /proc/sys/net to another path and
points Pontoon there, so no capability beyond CAP_NET_ADMIN is needed.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_ROOT = "/proc/sys/net"


class Sysctl:
    def __init__(self, root: str = DEFAULT_ROOT):
        self.root = Path(root)

    def path(self, family: str, ifname: str, key: str) -> Path:
        """``family`` is "ipv4" or "ipv6": net/<family>/conf/<ifname>/<key>."""
        return self.root / family / "conf" / ifname / key

    def read(self, family: str, ifname: str, key: str) -> str:
        return self.path(family, ifname, key).read_text().strip()

    def write(self, family: str, ifname: str, key: str, value: str) -> None:
        self.path(family, ifname, key).write_text(value)
