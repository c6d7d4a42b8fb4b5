"""A cluster network's host address: the source this host's own traffic to
the network leaves with.

Every host's bridge of a cluster network carries the same gateway address
(the distributed gateway), and the kernel's connected route of the subnet
takes it as source. A packet from the host to another host's container
then carries a source that the far host's bridge owns too, and the reply
never leaves it. So the bridge gets a second address, this host's own
(``noprefixroute``: the gateway's route stays the one route of the subnet),
and that route gets it as preferred source. The route is the kernel's
("proto kernel"), replaced in place: the kernel deletes a route whose
preferred source goes away, so before the address is removed the route
gets the gateway back as its source.

IPv4 only (see cluster.hostaddr).
"""
from __future__ import annotations

import errno
import ipaddress

from . import netlink
from .errors import DatapathError

IFA_F_NOPREFIXROUTE = 0x200  # linux/if_addr.h; above 8 bits, so it goes in IFA_FLAGS
RT_SCOPE_LINK = 253
RTPROT_KERNEL = 2


def _index(ipr, bridge: str) -> int | None:
    found = ipr.link_lookup(ifname=bridge)
    return found[0] if found else None


def _source_route(ipr, index: int, net: ipaddress.IPv4Network, source: ipaddress.IPv4Address) -> None:
    ipr.route("replace", dst=str(net), oif=index, prefsrc=str(source), scope=RT_SCOPE_LINK, proto=RTPROT_KERNEL)


def add(bridge: str, address: str, gateway: str) -> str:
    """Put ``address`` (an interface, "10.90.0.254/24") on ``bridge``, whose
    ``gateway`` (its address in the same subnet) made the subnet's route,
    and make it that route's source. Idempotent. Returns the bridge's MAC,
    which the other hosts point the address at."""
    iface = ipaddress.IPv4Interface(address)
    what = f"add host address {iface} to {bridge}"
    with netlink.connect() as ipr:
        index = _index(ipr, bridge)
        if index is None:
            raise DatapathError(what, f'bridge "{bridge}" does not exist')
        try:
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                     IFA_FLAGS=IFA_F_NOPREFIXROUTE)
        except netlink.NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise DatapathError(what, str(exc)) from None
        try:
            _source_route(ipr, index, iface.network, iface.ip)
        except netlink.NetlinkError as exc:
            raise DatapathError(f"make {iface.ip} the source of {iface.network} on {bridge}",
                                f"{exc} (does {bridge} carry the gateway {gateway}?)") from None
        return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")


def remove(bridge: str, address: str, gateway: str) -> None:
    """Undo ``add``: the gateway is the route's source again, then the
    address goes. A bridge or address already gone counts as removed."""
    iface = ipaddress.IPv4Interface(address)
    with netlink.connect() as ipr:
        index = _index(ipr, bridge)
        if index is None:
            return
        try:
            _source_route(ipr, index, iface.network, ipaddress.IPv4Interface(gateway).ip)
        except netlink.NetlinkError as exc:
            # No gateway on the bridge (any more): no route of the subnet to
            # keep, and the address's removal takes the one it was source of.
            if exc.code not in (errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENODEV):
                raise DatapathError(f"give {iface.network} on {bridge} its gateway's source again", str(exc)) from None
        try:
            ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except netlink.NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise DatapathError(f"remove host address {iface} from {bridge}", str(exc)) from None
