"""Unicast between this host's containers and other hosts', off the bridge.

Why: dockerd sets ``net.bridge.bridge-nf-call-iptables=1`` in the host's
namespace, so the kernel runs every IPv4 and IPv6 frame that a bridge there
forwards through the host's iptables tables (br_netfilter), whatever the
frame. Docker's overlay escapes that by keeping its bridge in a namespace
of its own. Measured side by side (docs/benchmarks.md, section 10), that
pass cost a cluster network a fifth of its RTT and up to a third of its
throughput; a bridge option can only add the pass, never remove it.

What: tc on two kinds of device Pontoon makes, each a u32 hash table keyed
on the last byte of the destination MAC (u32 is what every kernel has;
flower is a module this one lacks):

- on the VXLAN device's ingress, a frame for a container of this host goes
  straight out of that container's veth;
- in a tc block shared by the ingress of the network's veths, a frame for a
  container of another host goes straight out of the VXLAN device, whose
  forwarding entries (datapath.overlay) pick the host.

Everything else takes the bridge as before: broadcast and multicast (ARP
requests, which the VXLAN device answers), the gateway (routed, NATed,
firewalled), containers of this host to each other, and a MAC not known
yet. A network with ICC off has none of this: its rules must see every frame.

The state is derived, never recorded: rebuilt whole from what the caller
says is local and from the VXLAN device's forwarding entries, so a start
rebuilds it like any change. While it is rebuilt, or where tc is missing,
frames take the bridge: slower, never wrong. The filters live on devices
Pontoon made and go with them.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from . import rtnl, tool
from .errors import DatapathError
from .links import ALIAS_PREFIX
from .overlay import remote_macs

log = logging.getLogger(__name__)

# A tc block index is a number per namespace that any user of tc may take;
# ours are this base plus the network's VNI (below 2**24), far from the
# small numbers people choose by hand.
BLOCK_BASE = 0x50000000
PRIO = 1
TABLE = "1:"  # the hash table's handle, under u32's root table 800:
# The 32-bit word 12 bytes before the IP header holds the destination MAC's
# last four bytes; its last byte picks the bucket.
HASHKEY = "hashkey mask 0x000000ff at -12"


@dataclass(frozen=True)
class FastPath:
    vxlan: str  # the network's VXLAN device
    vni: int
    local: tuple[tuple[str, str], ...]  # (container MAC, host-side veth) of this host's endpoints

    @property
    def block(self) -> int:
        return BLOCK_BASE + self.vni


def _table(target: str, entries: dict[str, str]) -> list[str]:
    """tc batch lines of one hash table at ``target`` ("dev X ingress" or
    "block N"): a frame for a MAC of ``entries`` goes out of its device."""
    if not entries:
        return []
    lines = [f"filter add {target} prio {PRIO} handle {TABLE} protocol all u32 divisor 256",
             f"filter add {target} prio {PRIO} protocol all u32 ht 800:: match u32 0 0 {HASHKEY} link {TABLE}"]
    for mac, device in sorted(entries.items()):
        lines.append(f"filter add {target} prio {PRIO} protocol all u32 ht {TABLE}{mac[-2:]}: "
                     f"match ether dst {mac} action mirred egress redirect dev {device}")
    return lines


def render(path: FastPath, remote: set[str], blocks: dict[str, int | None]) -> str:
    """The tc batch that makes ``path`` what it should be. ``remote``: the
    MACs the VXLAN device forwards to other hosts; ``blocks``: each local
    veth's ingress block now (None: a clsact without one; absent: none)."""
    local = dict(path.local)
    lines = [f"qdisc replace dev {path.vxlan} clsact", f"filter del dev {path.vxlan} ingress"]
    lines += _table(f"dev {path.vxlan} ingress", local)
    # A veth of ours that is no longer one of the network's here (its
    # endpoint going, or its address another host's now) leaves the block.
    lines += [f"qdisc del dev {dev} clsact" for dev, block in sorted(blocks.items())
              if block == path.block and dev not in local.values()]
    for veth in sorted(local.values()):
        if veth in blocks and blocks[veth] != path.block:
            lines.append(f"qdisc del dev {veth} clsact")  # a block is set when the qdisc is made, not after
        if blocks.get(veth) != path.block:
            lines.append(f"qdisc add dev {veth} ingress_block {path.block} clsact")
    if local:  # a block exists while a qdisc takes it
        lines.append(f"filter del block {path.block}")
        # A MAC of this host's is never sent away, even while another
        # host's stale record still claims it.
        lines += _table(f"block {path.block}", {mac: path.vxlan for mac in remote if mac not in local})
    return "".join(line + "\n" for line in lines)


def _blocks() -> dict[str, int | None]:
    """Each device's clsact ingress block (None for a clsact without one)."""
    shown = json.loads(tool.run("tc", "-j", "qdisc", "show", step="tc qdisc show") or "[]")
    return {q["dev"]: q.get("ingress_block") for q in shown if q.get("kind") == "clsact"}


def apply(vxlan: str, vni: int, local: tuple[tuple[str, str], ...]) -> None:
    """Make the fast path of the network whose VXLAN device is ``vxlan``
    what ``local`` (its endpoints here: container MAC, host-side veth) and
    the device's forwarding entries say. A veth that no longer exists is
    left out, and a device that does not exist is nothing to do."""
    with rtnl.Rtnl() as nl:
        links = nl.links()
    if vxlan not in links:
        return
    path = FastPath(vxlan, vni, tuple((mac.lower(), veth) for mac, veth in local if veth in links))
    remote = remote_macs(links[vxlan].index)
    blocks = _blocks()
    # The block is flushed whole: never one that a device not ours shares
    # (ours carry the alias, as datapath.links tags them).
    strangers = sorted(dev for dev, block in blocks.items() if block == path.block
                       and (dev not in links or not links[dev].alias.startswith(ALIAS_PREFIX)))
    if strangers:
        raise DatapathError(f"tc fast path of {vxlan}", f"tc block {path.block} is also on "
                                                         f"{', '.join(strangers)}, which is not ours")
    tool.run("tc", "-batch", "-", stdin=render(path, remote, blocks), step=f"tc fast path of {vxlan}")


def available() -> bool:
    """Whether this host has tc: without it the bridge carries everything.
    (A kernel without clsact, u32, mirred or shared blocks fails each
    rebuild instead, which cluster.fastpaths logs and tries less and less
    often.)"""
    try:
        tool.run("tc", "-V")
    except (DatapathError, OSError) as exc:
        log.warning("no fast path between hosts (frames take the bridge): %s", exc)
        return False
    return True
