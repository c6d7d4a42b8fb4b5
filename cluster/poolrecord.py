"""``pools/<pool>``: a cluster pool, made by the first host that asks for
it (cluster.ipam ``_join``, ``_create_default``) and rewritten unchanged by
every host that joins it, so that its revision moves and a last member
leaving at that moment (which compares it) cannot delete it. Read for its
``--ip-range``, which every host of the pool must share. Its fields have
not changed since the first version.
"""
from __future__ import annotations

from dataclasses import dataclass

from spec import values
from spec.errors import BadRequest

from .records import BadRecord, dump, load, text


@dataclass(frozen=True)
class PoolRecord:
    space: str  # the IPAM address space, "LocalDefault" or "GlobalDefault"
    cidr: str
    sub: str  # the --ip-range, "" for the whole pool
    options: dict  # RequestPool's options as the creating host was given them

    def value(self) -> str:
        return dump({"space": self.space, "cidr": self.cidr, "sub": self.sub, "options": self.options})

    @classmethod
    def parse(cls, key: str, value: str) -> PoolRecord:
        raw = load(key, value)
        cidr, sub, options = text(key, raw, "cidr"), raw.get("sub"), raw.get("options")
        if not isinstance(sub, str):
            raise BadRecord(f"{key}: sub {sub!r} is not a string")
        if not isinstance(options, dict):
            raise BadRecord(f"{key}: options {options!r} is not a JSON object")
        try:
            for field, given in (("cidr", cidr), ("sub", sub)):
                if given:
                    values.network(field, given, None)
        except BadRequest as exc:
            raise BadRecord(f"{key}: {exc}") from None
        return cls(text(key, raw, "space"), cidr, sub, options)
