"""Subnets for benchmark networks, out of the way of anything else.

100.64.0.0/10 (carrier-grade NAT space) is used by nobody else here, and one
random /16 of it per benchmark section keeps two runs apart even in the host
namespace.
"""
from __future__ import annotations

import ipaddress
import random


class Subnets:
    def __init__(self):
        self.base = ipaddress.ip_network(f"100.{random.randint(64, 127)}.0.0/16")
        self.offset = 0  # addresses of the /16 handed out so far

    def next(self, prefixlen: int = 24) -> str:
        """The next aligned block of this /16 of the given size."""
        size = 1 << (32 - prefixlen)
        self.offset = -(-self.offset // size) * size  # align up
        if self.offset + size > self.base.num_addresses:
            raise RuntimeError(f"{self.base} has no /{prefixlen} left")
        block = ipaddress.ip_network(f"{self.base.network_address + self.offset}/{prefixlen}")
        self.offset += size
        return str(block)
