"""``nets/<pool>``: a cluster network, named by its first pool: its VNI,
the options every host of it must share (cluster.segment.AGREED) and all
its pools. Written once, by the host that creates the network
(ClusterSegment.prepare); read by every host that joins it, by the IPAM
driver (its IPv6 pool, its VNI when the last member leaves) and by
``inspect``. Older versions wrote no ``pools`` (None: not compared) and no
``encrypted`` option (clear).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import BadRecord, dump, load

VNI_LIMIT = 1 << 24  # VXLAN's 24 bits
# The agreed options besides the MTU (cluster.segment.AGREED), each true or
# false where given; others a newer version may add are kept as they are.
FLAGS = ("icc", "masquerade", "internal", "ipv6", "inhibit_ipv4", "encrypted")


@dataclass(frozen=True)
class NetRecord:
    vni: int
    options: dict  # the agreed options as the creating host chose them: mtu and flags
    pools: tuple[str, ...] | None = None  # every pool's name (keys.pool_names), sorted; None from older versions

    @property
    def encrypted(self) -> bool:
        return bool(self.options.get("encrypted", False))  # a network agreed before encryption came is clear

    def value(self) -> str:
        fields: dict = {"vni": self.vni, "options": self.options}
        if self.pools is not None:
            fields["pools"] = list(self.pools)
        return dump(fields)

    @classmethod
    def parse(cls, key: str, value: str) -> NetRecord:
        raw = load(key, value)
        vni: Any = raw.get("vni")
        options, pools = raw.get("options"), raw.get("pools")
        if not _integer(vni) or not 0 < vni < VNI_LIMIT:
            raise BadRecord(f"{key}: vni {vni!r} is not a VNI (1 to {VNI_LIMIT - 1})")
        if not isinstance(options, dict):
            raise BadRecord(f"{key}: options {options!r} is not a JSON object")
        if not _integer(options.get("mtu")) or options["mtu"] <= 0:
            raise BadRecord(f"{key}: options.mtu {options.get('mtu')!r} is not an MTU")
        for name in FLAGS:
            if name in options and not isinstance(options[name], bool):
                raise BadRecord(f"{key}: options.{name} {options[name]!r} is not true or false")
        if pools is not None and (not isinstance(pools, list) or not all(isinstance(p, str) and p for p in pools)):
            raise BadRecord(f"{key}: pools {pools!r} is not a list of pool names")
        return cls(vni, options, None if pools is None else tuple(pools))


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
