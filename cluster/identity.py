"""This host's defaults for --host-id and --advertise-addr."""
from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit

HOST_ID_FILE = "host-id"


def host_id(state_dir: str) -> str:
    """A name made once and kept in the state dir, so it is stable across
    restarts and upgrades. Not /etc/machine-id itself: the managed plugin
    runs in a rootfs of its own, whose machine-id is the same on every host
    it is installed on; the state dir is the host's (a bind mount)."""
    path = os.path.join(state_dir, HOST_ID_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    name = f"{socket.gethostname().split('.')[0][:40]}-{secrets.token_hex(4)}"
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # the first writer wins; a concurrent one reads its name
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def advertise_addr(endpoint: str) -> str:
    """The source address of the route to the endpoint's host: connect() on
    a UDP socket picks it, and sends nothing."""
    parts = urlsplit(endpoint)
    family = socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((parts.hostname, parts.port or 2379))
        return s.getsockname()[0]
