"""The link requests of the veth pair path and the dumps of the start-up
reconcile, as rtnetlink messages packed with ``struct``, without pyroute2.

CreateEndpoint, Join and DeleteEndpoint run on every container start and
stop, and pyroute2 spent about 0.25 ms of Python per request (its generic
message classes build and decode every attribute of a reply; opening an
IPRoute adds 0.4 ms), while the kernel answers a link lookup in about 0.01 ms.
Here a request is a few ``struct.pack`` calls and a reply is decoded only for
the attributes ``datapath.links`` reads. Opening and closing a socket costs
about 0.006 ms, so one is still opened per operation and nothing outlives it
(no socket to keep per thread, nor to guard across fork or setns).

The start-up reconcile reads every link and address to find what differs
from the store, and usually nothing does: through pyroute2 that cost its
import (about 70 ms and 20 MiB, see ``datapath.netlink``) before the server
could listen, and 600 ms for a dump of 2,000 veths against 36 ms here.

Errors are ``NetlinkError`` (an ``OSError``: ``errno`` and the kernel's
extended message when it gives one).
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from typing import Any, NamedTuple

NETLINK_ROUTE = 0
SOL_NETLINK = 270  # not in Python's socket module
NETLINK_CAP_ACK = 10  # an error reply does not echo the whole request back
NETLINK_EXT_ACK = 11  # an error reply carries the kernel's message

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_GETADDR = 16, 17, 18, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLM_F_ACK_TLVS = 0x200  # on an error reply: extended ack attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 18, 20, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS = 1
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request."""


class Link(NamedTuple):
    """What Pontoon reads of a link. A NamedTuple: the start-up reconcile
    imports this module before the server listens, and defining a dataclass
    cost a millisecond there."""

    index: int  # type: ignore[assignment]  # shadows tuple.index(), which nothing here calls
    name: str
    kind: str  # "" when the kernel reports none
    flags: int
    master: int | None
    link: int | None  # a veth's peer index
    link_netnsid: int | None  # set when ``link`` is in another namespace
    alias: str  # "" when unset
    mtu: int
    address: str = ""  # the MAC, "aa:bb:..."; "" for a link without one

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _attr(kind: int, data: bytes) -> bytes:
    size = _NLATTR.size + len(data)
    return _NLATTR.pack(size, kind) + data + b"\0" * (-size % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _str(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _mac(value: str) -> bytes:
    return _attr(IFLA_ADDRESS, bytes.fromhex(value.replace(":", "")))


def _attrs(data: bytes, offset: int = 0, wanted: frozenset[int] | None = None):
    """(type, payload) of each attribute in ``data`` from ``offset``, or of
    those whose type is ``wanted``: a link's reply carries some forty, of
    which a Link reads eight, and copying and yielding the rest was half of
    decoding it."""
    end = len(data)
    while offset + _NLATTR.size <= end:
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < _NLATTR.size:
            break
        kind &= NLA_TYPE_MASK
        if wanted is None or kind in wanted:
            yield kind, data[offset + _NLATTR.size:offset + size]
        offset += (size + 3) & ~3


def _link_attrs(name: str, *, address: str | None = None, mtu: int | None = None,
                master: int | None = None, alias: str | None = None) -> bytes:
    parts = [_str(IFLA_IFNAME, name)]
    if address is not None:
        parts.append(_mac(address))
    if mtu:
        parts.append(_u32(IFLA_MTU, mtu))
    if master is not None:
        parts.append(_u32(IFLA_MASTER, master))
    if alias is not None:
        parts.append(_str(IFLA_IFALIAS, alias))
    return b"".join(parts)


def _ifinfo(up: bool | None = None, index: int = 0) -> bytes:
    """ifinfomsg; ``up`` None leaves the link's state as it is."""
    if up is None:
        return _IFINFOMSG.pack(0, 0, index, 0, 0)
    return _IFINFOMSG.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)


_LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_IFALIAS, IFLA_MTU, IFLA_ADDRESS, IFLA_MASTER, IFLA_LINK,
                         IFLA_LINK_NETNSID, IFLA_LINKINFO})


def _decode_link(payload: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
    found: dict[int, Any] = {IFLA_IFNAME: "", IFLA_IFALIAS: "", IFLA_MTU: 0, IFLA_MASTER: None, IFLA_LINK: None,
             IFLA_LINK_NETNSID: None, IFLA_ADDRESS: ""}
    kind = ""
    for attr, value in _attrs(payload, _IFINFOMSG.size, _LINK_ATTRS):
        if attr in (IFLA_IFNAME, IFLA_IFALIAS):
            found[attr] = _text(value)
        elif attr == IFLA_MTU:
            found[attr] = _U32.unpack_from(value)[0]
        elif attr == IFLA_ADDRESS:
            found[attr] = value.hex(":")
        elif attr in (IFLA_MASTER, IFLA_LINK, IFLA_LINK_NETNSID):
            found[attr] = _S32.unpack_from(value)[0]
        elif attr == IFLA_LINKINFO:
            for info, data in _attrs(value):
                if info == IFLA_INFO_KIND:
                    kind = _text(data)
    return Link(index, found[IFLA_IFNAME], kind, flags, found[IFLA_MASTER], found[IFLA_LINK],
                found[IFLA_LINK_NETNSID], found[IFLA_IFALIAS], found[IFLA_MTU], found[IFLA_ADDRESS])


def _text(value: bytes) -> str:
    """A NUL-terminated string attribute."""
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


class Rtnl:
    """One rtnetlink socket, for ``with Rtnl() as nl``; requests are answered
    in order, one at a time."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        # Both only shape error replies (Linux 4.3 and 4.12); an older kernel
        # gives the bare errno instead.
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(SOL_NETLINK, option, 1)
        self._seq = 0

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request and return the payloads of its replies, up to
        the kernel's acknowledgement (or the end of a dump)."""
        self._seq += 1
        seq = self._seq
        if flags & NLM_F_DUMP != NLM_F_DUMP:
            flags |= NLM_F_ACK
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            # Ample: a dump datagram holds up to 32 KiB, or one message if
            # longer, which only virtual-function lists (never asked for,
            # IFLA_EXT_MASK) make a link's; a lookup's reply is under 2 KiB.
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                size, msg_type, msg_flags, msg_seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if size < _NLMSGHDR.size:
                    raise NetlinkError(errno.EBADMSG, f"malformed rtnetlink message of {size} bytes")
                payload = data[offset + _NLMSGHDR.size:offset + size]
                offset += (size + 3) & ~3
                if msg_seq != seq:
                    continue  # nothing else is in flight on this socket; never ours
                if msg_type == NLMSG_DONE:
                    return replies
                if msg_type != NLMSG_ERROR:
                    replies.append(payload)
                    continue
                code = -_S32.unpack_from(payload)[0]
                if code == 0:
                    return replies
                raise NetlinkError(code, _error_text(code, payload, msg_flags))

    def links(self) -> dict[str, Link]:
        """Every link of this network namespace, by name, from one dump. One
        that a concurrent change interrupts (NLM_F_DUMP_INTR) is used as it
        is: every repair re-reads the link it touches."""
        replies = self._request(RTM_GETLINK, NLM_F_DUMP, _ifinfo() + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        return {link.name: link for link in map(_decode_link, replies)}

    def addresses(self) -> dict[int, set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
        """Every address of this network namespace, both families, by link index."""
        found: dict[int, set] = {}
        for payload in self._request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(0, 0, 0, 0, 0)):
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(payload)
            address = dict(_attrs(payload, _IFADDRMSG.size)).get(IFA_ADDRESS)
            if address is not None:
                interface = ipaddress.IPv4Interface if family == socket.AF_INET else ipaddress.IPv6Interface
                found.setdefault(index, set()).add(interface((address, prefixlen)))
        return found

    def get(self, name: str) -> Link | None:
        """The link named ``name``, or None when there is none."""
        try:
            (reply,) = self._request(RTM_GETLINK, 0, _ifinfo() + _str(IFLA_IFNAME, name)
                                     + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _decode_link(reply)

    def add_veth(self, name: str, peer: str, *, address: str, peer_address: str, mtu: int | None,
                 master: int, up: bool) -> bool:
        """Create a veth pair in one request; False when a link named
        ``name`` or ``peer`` exists already (nothing is then changed)."""
        peer_info = _ifinfo() + _link_attrs(peer, address=peer_address, mtu=mtu)
        linkinfo = _nest(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "veth"),
                         _nest(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)))
        try:
            self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                          _ifinfo(up) + _link_attrs(name, address=address, mtu=mtu, master=master) + linkinfo)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def set(self, name: str, *, up: bool | None = None, hairpin: bool | None = None, **attrs) -> None:
        """Change attributes of the existing link ``name`` in one request:
        ``address``, ``mtu``, ``master``, ``alias``, ``up``, and ``hairpin``
        of a bridge port (which the kernel applies before ``master``, so only
        on a link already enslaved)."""
        body = _ifinfo(up) + _link_attrs(name, **attrs)
        if hairpin is not None:
            body += _nest(IFLA_LINKINFO, _str(IFLA_INFO_SLAVE_KIND, "bridge"),
                          _nest(IFLA_INFO_SLAVE_DATA, _attr(IFLA_BRPORT_MODE, bytes([hairpin]))))
        self._request(RTM_NEWLINK, 0, body)

    def delete(self, index: int) -> None:
        """Delete a link; one already gone counts as deleted."""
        try:
            self._request(RTM_DELLINK, 0, _ifinfo(index=index))
        except NetlinkError as exc:
            if exc.errno != errno.ENODEV:
                raise


def _error_text(code: int, payload: bytes, flags: int) -> str:
    text = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # With NETLINK_CAP_ACK the error code is followed by the request's
        # header alone, then the extended ack attributes.
        for attr, value in _attrs(payload, _S32.size + _NLMSGHDR.size):
            if attr == NLMSGERR_ATTR_MSG:
                return text + ": " + value.rstrip(b"\0").decode(errors="replace")
    return text
