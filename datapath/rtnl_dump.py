"""Read-only rtnetlink dumps of links and addresses, with the standard library.

The start-up reconcile reads every link and address to find what differs
from the store, and usually nothing does. Reading them through pyroute2
cost its import (about 70 ms and 20 MiB, see ``datapath.netlink``) before
the server could listen; these two dumps take a millisecond, and pyroute2
is imported only once something must change.

Only the fields reconcile compares are decoded. A dump that a concurrent
change interrupts (NLM_F_DUMP_INTR) is used as it is, as pyroute2's was:
every repair re-reads the link it touches.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import NamedTuple

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # an attribute's type without the nested and byte-order flags
# linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
RTM_GETLINK = 18
RTM_GETADDR = 22
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_ERRNO = struct.Struct("=i")
_U32 = struct.Struct("=I")
# The kernel fills a dump datagram up to 32 KiB, or to one link message if
# that is longer: only the virtual-function lists could make it so, and the
# kernel leaves them out unless asked (IFLA_EXT_MASK), which we never do.
_RECV_SIZE = 1 << 16


class Link(NamedTuple):  # not a dataclass: that took a millisecond to define, at every start
    index: int
    name: str
    kind: str  # "bridge", "veth", ...; "" when the kernel reports none
    alias: str  # "" when unset
    mtu: int
    flags: int  # IFF_*


def links() -> dict[str, Link]:
    """Every link of this network namespace, by name."""
    found = {}
    for body in _dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
        attrs = _attributes(body, _IFINFOMSG.size, (IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_IFALIAS))
        info = _attributes(attrs.get(IFLA_LINKINFO, b""), 0, (IFLA_INFO_KIND,))
        link = Link(index=index, name=_text(attrs.get(IFLA_IFNAME)), kind=_text(info.get(IFLA_INFO_KIND)),
                    alias=_text(attrs.get(IFLA_IFALIAS)), mtu=_U32.unpack(attrs[IFLA_MTU])[0], flags=flags)
        found[link.name] = link
    return found


def addresses() -> dict[int, set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
    """Every address of this network namespace, both families, by link index."""
    found: dict[int, set] = {}
    for body in _dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(body)
        address = _attributes(body, _IFADDRMSG.size, (IFA_ADDRESS,)).get(IFA_ADDRESS)
        if address is None:
            continue
        interface = ipaddress.IPv4Interface if family == socket.AF_INET else ipaddress.IPv6Interface
        found.setdefault(index, set()).add(interface((bytes(address), prefixlen)))
    return found


def _dump(request: int, header: bytes) -> list[memoryview]:
    """The bodies of every message one dump request answers with."""
    bodies = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(_HEADER.pack(_HEADER.size + len(header), request, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + header)
        while True:
            data, _, flags, _ = sock.recvmsg(_RECV_SIZE)
            if flags & socket.MSG_TRUNC:
                raise OSError(f"rtnetlink dump message longer than {_RECV_SIZE} bytes")
            view = memoryview(data)
            offset = 0
            while offset + _HEADER.size <= len(view):
                length, kind, _, _, _ = _HEADER.unpack_from(view, offset)
                if length < _HEADER.size:
                    raise OSError(f"rtnetlink dump: malformed message of {length} bytes")
                if kind == NLMSG_DONE:
                    return bodies
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(view, offset + _HEADER.size)[0]
                    raise OSError(code, f"rtnetlink dump: {os.strerror(code)}")
                bodies.append(view[offset + _HEADER.size:offset + length])
                offset += _align(length)


def _attributes(buf, offset: int, wanted: tuple[int, ...]) -> dict[int, memoryview]:
    """The attributes of ``wanted`` types found in ``buf`` from ``offset``."""
    found = {}
    while offset + _ATTR.size <= len(buf):
        length, kind = _ATTR.unpack_from(buf, offset)
        if length < _ATTR.size:
            break  # malformed; nothing after it can be trusted
        if kind & NLA_TYPE_MASK in wanted:
            found[kind & NLA_TYPE_MASK] = buf[offset + _ATTR.size:offset + length]
        offset += _align(length)
    return found


def _align(length: int) -> int:
    return (length + 3) & ~3


def _text(value) -> str:
    """A NUL-terminated string attribute; "" when absent."""
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace") if value is not None else ""
