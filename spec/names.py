"""A container's name as Pontoon keeps it: the one value of ours that DNS answers for.

dockerd 29 hands the container's name to the IPAM driver in RequestAddress
(option ``com.docker.network.endpoint.name``); the cluster carries it in the
endpoint's etcd record, and the responder (names/) answers queries for it.
It is checked here once, strictly, wherever it comes from (a request, a
record another host wrote): dockerd's own rule for container names
(``[a-zA-Z0-9][a-zA-Z0-9_.-]*``) cut to what is one DNS name of labels that
are neither empty nor longer than a label may be (63 bytes), at most
``MAX_LENGTH`` characters in all. Matching is case-insensitive, as in DNS.
"""
from __future__ import annotations

import re

from .errors import BadRequest

OPTION = "com.docker.network.endpoint.name"
MAX_LENGTH = 128  # dockerd allows longer names; a longer one is simply not answered for
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*")


def endpoint_name(field: str, value) -> str:
    """``value`` if it is a name DNS can answer for, else BadRequest naming
    the field and the value."""
    if not isinstance(value, str):
        raise BadRequest(f"{field} {value!r} is not a string")
    if len(value) > MAX_LENGTH or not _NAME.fullmatch(value):
        shown = value if len(value) <= MAX_LENGTH else value[:MAX_LENGTH] + "..."
        raise BadRequest(f'{field} "{shown}" is not a name DNS can answer for (letters, digits, "_" and "-" '
                         f'in dot-separated labels of at most 63, at most {MAX_LENGTH} characters)')
    return value


def usable(values) -> tuple[str, ...]:
    """The names of ``values`` DNS can answer for, in order, each once
    (case-insensitively): aliases are the user's, and a bad one costs only
    itself."""
    kept: dict[str, str] = {}
    for value in values if isinstance(values, (list, tuple)) else ():
        try:
            kept.setdefault(endpoint_name("aliases", value).lower(), value)
        except BadRequest:
            continue
    return tuple(kept.values())


def answered(name: str | None, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """Every name an endpoint answers to: its container's name, then its
    aliases (a stored endpoint's and a cluster record's alike)."""
    return ((name,) if name else ()) + aliases


def optional_name(options: dict | None) -> str | None:
    """The endpoint name RequestAddress ``options`` carry, if any and valid:
    a name is an extra (a container without one is served all the same),
    so a bad one is dropped rather than refusing the container."""
    value = (options or {}).get(OPTION) if isinstance(options, dict) else None
    if value is None:
        return None
    try:
        return endpoint_name(OPTION, value)
    except BadRequest:
        return None
