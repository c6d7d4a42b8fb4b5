"""The host-wide DNS address: one IPv4 address on ``lo`` where Pontoon's
DNS answers every container of the host, so that one daemon.json line
(``"dns": ["169.254.53.53"]``) serves every network on every host.

Why on ``lo``, scope host: a container's packet to an address that is not
on its own networks leaves by its default route, through whichever bridge
of this host it is on (Pontoon's or docker0), and the kernel delivers it
locally to any address the host holds: it never crosses the underlay. Scope
host keeps the host from taking it as the source of its own traffic.

Ownership: the address carries the label ``lo:<owner>`` (the kernel keeps
it with the address, made in the same netlink call), the way our rules
carry their comments. An address already there without our label is the
user's: served on, never removed. Ours stays while Pontoon is stopped, like
its bridges (a query in a restart's gap is refused here rather than routed
off the host); a start with another address, or none, removes it.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

from . import netlink
from .errors import DatapathError

LOOPBACK = "lo"
RT_SCOPE_HOST = 254
LABEL_MAX = 15  # IFNAMSIZ - 1


def label(owner: str) -> str:
    return f"{LOOPBACK}:{owner}"[:LABEL_MAX]


def settle(address: str, owner: str) -> bool:
    """Make ``address`` (or none, if empty) the one address of ours on
    ``lo``: one an earlier setting made goes. Returns whether ``address``
    is ours (made now or by an earlier process); False when someone else
    put it there (served all the same, never removed)."""
    ip = str(ipaddress.IPv4Address(address)) if address else ""
    mine = label(owner)
    with netlink.connect() as ipr:
        index = ipr.link_lookup(ifname=LOOPBACK)[0]
        held = {entry.get_attr("IFA_ADDRESS"): entry.get_attr("IFA_LABEL")
                for entry in ipr.get_addr(index=index, family=socket.AF_INET)}
        for old in [a for a, tag in held.items() if tag == mine and a != ip]:
            try:
                ipr.addr("del", index=index, address=old, prefixlen=32)
            except netlink.NetlinkError as exc:
                if exc.code != errno.EADDRNOTAVAIL:
                    raise DatapathError(f"remove the former DNS address {old} from {LOOPBACK}", str(exc)) from None
        if not ip or ip in held:
            return bool(ip) and held[ip] == mine
        try:
            ipr.addr("add", index=index, address=ip, prefixlen=32, scope=RT_SCOPE_HOST, label=mine)
        except netlink.NetlinkError as exc:
            raise DatapathError(f"add the DNS address {ip} to {LOOPBACK}", str(exc)) from None
    return True
