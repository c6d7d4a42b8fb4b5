"""Pure naming rules: interface names and MAC addresses derived from IDs.

No kernel access here, so these are cheap to test and to call from anywhere.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Iterator

from .errors import InvalidName
from .model import VETH_HOST_PREFIX, VETH_PEER_PREFIX, VXLAN_PREFIX

IFNAMSIZ = 15  # usable characters; the kernel's buffer holds one more for NUL

# The kernel itself only refuses '/', ':', whitespace, "." and "..", but
# names travel through sysfs paths, iptables arguments and log lines, so we
# accept a conservative subset; a leading "-" would make iptables and ip
# read the name as an option ("-i -j" is not the interface "-j").
_IFNAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,%d}" % (IFNAMSIZ - 1))

# dockerd's IDs are 64 lowercase hex digits; 12 of them (what `docker ps`
# shows) make the name readable next to docker's own output.
_ID_CHARS = 12
_HEX_ID = re.compile(r"[0-9a-f]{%d,}" % _ID_CHARS)


def validate_ifname(name: str, what: str = "interface name") -> None:
    if not isinstance(name, str) or not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise InvalidName(f'{what} "{name}" is not a valid interface name '
                          f"(1 to {IFNAMSIZ} characters of A-Z a-z 0-9 _ . -, not starting with -)")


def _short_id(what: str, object_id: str) -> str:
    if not isinstance(object_id, str) or not _HEX_ID.fullmatch(object_id):
        raise InvalidName(f'{what} id "{object_id}" is not a hex id of at least '
                          f"{_ID_CHARS} digits")
    return object_id[:_ID_CHARS]


# How many tags an ID may try before its object is refused: each further
# one is only needed when every earlier one is held, which for dockerd's
# random IDs is never, and for IDs made to share a prefix is once each.
TAG_TRIES = 8


def tags(object_id: str) -> Iterator[str]:
    """The 12-character tags an object may be named by, first choice first.

    The first is the ID's own prefix (what `docker network ls` shows, so
    names read alongside Docker's output); two IDs that share it take the
    next, a hash of the whole ID, and so on. Which one an object got is
    stored with it, and chosen where the store says which are held, so two
    objects never share a name however their IDs begin, and a name is found
    again after a crash by reading the store, not by deriving it again.
    """
    # Lazily: nearly every object takes the first, and hashing the others
    # was most of what picking a name cost at each container start.
    yield _short_id("object", object_id)
    for n in range(1, TAG_TRIES):
        yield hashlib.sha256(f"{object_id}#{n}".encode()).hexdigest()[:_ID_CHARS]


def veth_names(tag: str) -> tuple[str, str]:
    """(host end, peer end) of the endpoint that holds ``tag``."""
    return VETH_HOST_PREFIX + tag, VETH_PEER_PREFIX + tag


def vxlan_name(tag: str) -> str:
    """The VXLAN device of a cluster network on this host, by the network's
    stored tag (``tags``; a network ID gives its first choice), so a restart
    finds the device it made and two IDs sharing a prefix get two."""
    return VXLAN_PREFIX + _short_id("network", tag)


def _fmt_mac(octets: bytes) -> str:
    return ":".join(f"{b:02x}" for b in octets)


def derive_mac(ipv4: str | None, endpoint_id: str) -> str:
    """A stable MAC for the container end.

    With an IPv4 address, 02:42 followed by its four bytes, as Docker's own
    bridge driver does: unique as long as the address is, and recognisable
    in neighbour tables. ``ipv4`` may carry a prefix ("10.0.0.2/24"), as
    dockerd sends it. Without one, six bytes of a hash of the endpoint ID,
    with the locally administered bit set and the multicast bit cleared.
    """
    if ipv4:
        addr = ipaddress.ip_interface(ipv4).ip
        if addr.version != 4:
            raise ValueError(f'address "{ipv4}" is not an IPv4 address')
        return _fmt_mac(b"\x02\x42" + addr.packed)
    digest = bytearray(hashlib.sha256(endpoint_id.encode()).digest()[:6])
    digest[0] = (digest[0] | 0x02) & ~0x01 & 0xFF
    return _fmt_mac(bytes(digest))


def host_end_mac(host_name: str, owner: str) -> str:
    """MAC for the host end of a veth: first byte 0xfe (locally administered,
    unicast), the highest a port can sensibly have. A Linux bridge whose own
    address was never pinned takes the lowest MAC among its ports, so a port
    starting with 0xfe never becomes the bridge's address and never changes it
    as endpoints come and go (matters for bridges we adopted).

    The rest is a hash of the name and the instance (``owner``): the MAC is
    set by the very request that creates the pair, so it marks the pair as
    this instance's in the moment before the alias (which the kernel only
    takes in a later request) is on it, and a crash there leaves nothing
    reconcile cannot tell from a user's link."""
    return _fmt_mac(b"\xfe" + hashlib.sha256(f"{owner}/{host_name}".encode()).digest()[:5])
