"""Who may send VXLAN to this host: a cluster network's frames are taken
only from the hosts that are members of that network.

A VXLAN device accepts any UDP datagram to its port that carries its VNI,
whoever sent it, and VNIs are easy to guess. So every VNI of ours is
guarded: a datagram to the VXLAN port with one of our VNIs whose (VNI,
source address) pair is not a member's is dropped, and counted, in the
``input`` hook before the device sees it. VNIs that are not ours (a
hand-made VXLAN, another instance's) are left alone.

Why an nftables table of our own rather than an ipset matched from our
iptables chains: the machine's iptables is iptables-nft, where ``-m set``
is a compatibility match beside rules ``datapath.rules`` plans and rewrites
as a whole, which would then have to know about sets too; a table of our
own is untouched by that code, by dockerd and by a user's iptables, holds
sets of (VNI, address) pairs (an ipset of the sender alone would let a host
of one network inject into another), its named counter survives changes of
the sets, and one ``nft -f`` is one kernel transaction: a set rewritten in
it never shows a packet an empty set.

The table is named for the instance and carries its tag as the table's
comment, as our devices carry the owner alias: a table of the name without
our tag is never touched (``NotOurs``). It exists while a cluster network
does; ``remove`` deletes it with the last one.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shutil

from . import tool
from .errors import DatapathError
from .wireguard import device_name

TAG_PREFIX = "pontoon-owner="
# The VNI: bits 32-55 of the VXLAN header, which follows the 8-byte UDP header.
_VNI = "@th,96,24"
_FAMILIES = {4: ("members4", "ip"), 6: ("members6", "ip6")}


class NotOurs(DatapathError):
    """The table of our name exists without our tag: not Pontoon's to change."""


def table_name(owner: str) -> str:
    """One table per instance, so two Pontoons on a host guard their own VNIs."""
    return "pontoon_" + hashlib.sha256(owner.encode()).hexdigest()[:8]


def _nft(args: list[str], script: str | None = None) -> str:
    if shutil.which("nft") is None:
        raise DatapathError("guard VXLAN", "needs the nft tool (apt-get install nftables)")
    return tool.run("nft", *args, stdin=script, step=f"nft {' '.join(args)}")


class VxlanGuard:
    def __init__(self, owner: str = "pontoon", port: int = 4789):
        self.table = table_name(owner)
        self.tunnel = device_name(owner)  # this instance's WireGuard device (datapath.wireguard)
        self.tag = TAG_PREFIX + owner
        self.port = port
        self._checked = False  # whether this process saw the table is ours (or absent)

    def _comment(self) -> str | None:
        """The table's comment ("" for none); None if there is no table.
        Read from the text listing: nft 1.0.6's JSON leaves comments out."""
        try:
            listed = _nft(["-t", "list", "table", "inet", self.table])
        except DatapathError as exc:
            if "No such file or directory" in str(exc.cause):
                return None
            raise
        lines = listed.splitlines()  # "table inet NAME {", then its comment if it has one
        found = re.fullmatch(r'\s*comment "(.*)"', lines[1]) if len(lines) > 1 else None
        return found.group(1) if found else ""

    def _check_ours(self, comment: str | None) -> None:
        if comment is not None and comment != self.tag:
            raise NotOurs(f"guard VXLAN in table inet {self.table}",
                          f"the table exists without our tag {self.tag!r} (its comment: {comment!r}); "
                          f"not Pontoon's to change")

    def apply(self, members: dict[int, set[str]], prune: bool, sealed: frozenset[int] = frozenset()) -> None:
        """Guard every VNI of ``members``, each taking VXLAN only from its
        addresses; a ``sealed`` (encrypted) one only through the WireGuard
        device too: its members are tunnel addresses, which a sender on the
        underlay can put as the source of a datagram it sends straight to
        this host's tunnel address (the kernel takes a local address on any
        interface), and only WireGuard vouches for who sent what came out of
        the tunnel. ``prune``: make the sets exactly that; else only add
        (while not every network's members are known yet, at start-up,
        what the kernel holds from before stays). The table, its chain and
        rules are rewritten in the same transaction, which mends any drift."""
        if not self._checked:
            self._check_ours(self._comment())
            self._checked = True
        t = f"inet {self.table}"
        lines = [f'add table {t} {{ comment "{self.tag}"; }}', f"add set {t} vnis {{ typeof {_VNI}; }}",
                 f"add set {t} sealed {{ typeof {_VNI}; }}", f"add counter {t} dropped",
                 f"add chain {t} input {{ type filter hook input priority filter - 10; policy accept; }}",
                 f"flush chain {t} input",
                 f'add rule {t} input udp dport {self.port} {_VNI} @sealed iifname != "{self.tunnel}" '
                 f'counter name "dropped" drop']
        for name, proto in _FAMILIES.values():
            lines += [f"add set {t} {name} {{ typeof {_VNI} . {proto} saddr; }}",
                      f'add rule {t} input udp dport {self.port} {_VNI} @vnis {_VNI} . {proto} saddr != @{name} '
                      f'counter name "dropped" drop']
        if prune:
            lines += [f"flush set {t} {s}" for s in ("vnis", "sealed", *(name for name, _ in _FAMILIES.values()))]
        if members:
            lines.append(f"add element {t} vnis {{ {', '.join(str(int(v)) for v in sorted(members))} }}")
        if sealed:
            lines.append(f"add element {t} sealed {{ {', '.join(str(int(v)) for v in sorted(sealed))} }}")
        for version, (name, _) in _FAMILIES.items():
            pairs = [f"{int(vni)} . {a}" for vni, addresses in sorted(members.items()) for a in sorted(addresses)
                     if ipaddress.ip_address(a).version == version]
            if pairs:
                lines.append(f"add element {t} {name} {{ {', '.join(pairs)} }}")
        _nft(["-f", "-"], "\n".join(lines) + "\n")

    def remove(self) -> None:
        """Delete the table (no cluster network left); nothing if there is
        none (or no nft tool, without which none was made)."""
        if shutil.which("nft") is None:
            return
        comment = self._comment()
        self._checked = False
        if comment is not None:
            self._check_ours(comment)
            _nft(["delete", "table", "inet", self.table])

    def dropped(self) -> int | None:
        """VXLAN datagrams dropped so far as from no member; None without a table."""
        try:
            listed = json.loads(_nft(["-j", "list", "counter", "inet", self.table, "dropped"]))
        except DatapathError:
            return None
        return next((item["counter"]["packets"] for item in listed["nftables"] if "counter" in item), None)
