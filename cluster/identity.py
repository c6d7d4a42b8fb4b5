"""This host's defaults for --host-id and --advertise-addr, and what tells
its own processes from another host's when they claim the host ID (its
instance token, the boot ID)."""
from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit

HOST_ID_FILE = "host-id"
HOST_TOKEN_FILE = "host-token"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def host_id(state_dir: str) -> str:
    """A name made once and kept in the state dir, so it is stable across
    restarts and upgrades. Not /etc/machine-id itself: the managed plugin
    runs in a rootfs of its own, whose machine-id is the same on every host
    it is installed on; the state dir is the host's (a bind mount)."""
    def name() -> str:
        made = f"{socket.gethostname().split('.')[0][:40]}-{secrets.token_hex(4)}"
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in made)

    return _made_once(os.path.join(state_dir, HOST_ID_FILE), name, 0o644)


def host_token(state_dir: str) -> str:
    """A random token made once and kept in the state dir (0600): with the
    advertise address and the boot ID, it tells this host's previous
    process, whose claim of the host ID may outlive it for a lease TTL,
    from another host holding the same ID (see ClusterHost.claim)."""
    return _made_once(os.path.join(state_dir, HOST_TOKEN_FILE), lambda: secrets.token_hex(16), 0o600)


def _made_once(path: str, make, mode: int) -> str:
    """The value kept in ``path``, made by ``make()`` and written (durably,
    with ``mode``) the first time: the first writer wins, a concurrent one
    reads its value."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), mode)
        f.write(make() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def boot_id() -> str:
    """The kernel's ID of this boot (the host's, in the managed plugin too:
    /proc/sys is not namespaced), or "" where there is none."""
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def advertise_addr(endpoint: str) -> str:
    """The source address of the route to the endpoint's host: connect() on
    a UDP socket picks it, and sends nothing."""
    parts = urlsplit(endpoint)
    family = socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((parts.hostname, parts.port or 2379))
        return s.getsockname()[0]
