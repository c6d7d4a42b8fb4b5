"""What the cluster needs of the datapath, typed: the composition root
hands in the real one (datapath.overlay and datapath.names, loaded only in
cluster mode), and the tests one over a fake kernel (tests/multihost)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Dataplane:
    VxlanSpec: Callable[..., Any]  # a network's VXLAN device (datapath.overlay.VxlanSpec), with ``port``
    Peer: Callable[..., Any]  # one forwarding entry: mac, address, vtep (datapath.overlay.Peer)
    default_mtu: Callable[[str], int]  # by local address: its interface's MTU less VXLAN's overhead
    underlay_mtu: Callable[[str], int]  # by local address: its interface's MTU
    vxlan_name: Callable[[str], str]  # a network's tag -> its VXLAN device's name
