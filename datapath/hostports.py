"""Published host ports, held by a bound socket while they are published.

A DNAT rule alone would silently shadow a host service on the same port
(``-p 22:80`` and sshd) and leave the port free for any process to take
while it is published. Docker binds every published port itself (the
userland proxy, and since 28.0 dockerd when the proxy is off; moby
``portallocator``/``portmapper``, ``bindTCPOrUDP``): a port another
process holds is refused with "address already in use", and nothing else
can take one while it is published. This does the same:

- TCP: ``SO_REUSEADDR``, bind, then listen with a backlog of 0. Nothing
  accepts: the DNAT sends every connection to the container before it could
  reach the socket. Listening is what makes the kernel refuse the port to
  anyone else: with ``SO_REUSEADDR`` two sockets may bind one port as long
  as neither listens, and moby listens for the same reason.
- UDP: bind (no ``SO_REUSEADDR``, so a bind by anyone else fails).
- SCTP: bind a one-to-many socket, where the kernel has SCTP. Without the
  sctp module the port cannot be held (and no host process can have it
  either): ``sctp_supported`` is probed once, and SCTP ports are then
  published without a socket, as before.
- IPv6 sockets are ``IPV6_V6ONLY``: "::" holds the IPv6 port only, as the
  DNAT for it is in ip6tables only.

``Holder`` keeps the sockets of one process. Which process that is, and how
the others reach it, is plugin.portkeeper's business.
"""
from __future__ import annotations

import errno
import functools
import ipaddress
import random
import socket
import threading
from dataclasses import dataclass
from typing import Iterable, NamedTuple

_KINDS = {
    "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "sctp": (socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP),
}


class Key(NamedTuple):
    """One held port: protocol, host address (never empty) and port."""

    proto: str
    host_ip: str
    port: int


@dataclass(frozen=True)
class Claim:
    """Hold one port of ``first``..``last`` (tried from ``start``, wrapping
    round), skipping ``skip``: ports Pontoon already published elsewhere."""

    proto: str
    host_ip: str
    first: int
    last: int
    start: int
    skip: frozenset[int] = frozenset()

    def candidates(self) -> Iterable[int]:
        yield from (p for p in range(self.start, self.last + 1) if p not in self.skip)
        yield from (p for p in range(self.first, self.start) if p not in self.skip)

    @classmethod
    def exactly(cls, proto: str, host_ip: str, port: int) -> "Claim":
        return cls(proto, host_ip, port, port, port)

    @classmethod
    def spread(cls, proto: str, host_ip: str, first: int, last: int, skip: Iterable[int] = ()) -> "Claim":
        """Any port of the range, from a random start: concurrent picks of
        several workers or hosts then rarely try the same port first."""
        return cls(proto, host_ip, first, last, random.randint(first, last), frozenset(skip))


class PortInUse(Exception):
    """No port of a claim could be bound: another process holds it."""

    def __init__(self, claim: Claim, reason: str = "address already in use"):
        span = f"{claim.first}" if claim.first == claim.last else f"{claim.first}-{claim.last}"
        super().__init__(f"host port {span}/{claim.proto} on {claim.host_ip} is in use on the host: {reason}")
        self.claim, self.reason = claim, reason


@functools.cache
def sctp_supported() -> bool:
    """Whether this kernel can make SCTP sockets (the sctp module may be
    missing or blacklisted). Probed once per process."""
    try:
        socket.socket(socket.AF_INET, *_KINDS["sctp"]).close()
    except OSError:
        return False
    return True


def bind(key: Key) -> socket.socket | None:
    """A socket holding ``key``'s port, or None for SCTP on a kernel without
    it. Raises OSError (EADDRINUSE when another process holds the port)."""
    kind, number = _KINDS[key.proto]
    if key.proto == "sctp" and not sctp_supported():
        return None
    v6 = ipaddress.ip_address(key.host_ip).version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind, number)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if key.proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((key.host_ip, key.port))
        if key.proto == "tcp":
            sock.listen(0)
    except BaseException:
        sock.close()
        raise
    return sock


class Holder:
    """The held sockets of this process, by key. Thread-safe; a claim is
    all or nothing."""

    def __init__(self):
        self._held: dict[Key, socket.socket | None] = {}
        self._lock = threading.Lock()

    def claim(self, claims: list[Claim]) -> list[int]:
        """Bind one port per claim, in order; returns the ports. If one
        claim finds no free port, the ports this call bound are let go and
        ``PortInUse`` names that claim."""
        got: list[Key] = []
        with self._lock:
            try:
                for claim in claims:
                    got.append(self._claim_one(claim))
            except BaseException:
                for key in got:
                    self._close(key)
                raise
        return [key.port for key in got]

    def _claim_one(self, claim: Claim) -> Key:
        for port in claim.candidates():
            key = Key(claim.proto, claim.host_ip, port)
            if key in self._held:
                continue  # ours already, for another endpoint
            try:
                self._held[key] = bind(key)
                return key
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    # Not this port's doing (an address not on the host, no
                    # CAP_NET_BIND_SERVICE below 1024): no other port would do.
                    raise PortInUse(claim, exc.strerror or str(exc)) from exc
        raise PortInUse(claim)

    def release(self, keys: Iterable[Key]) -> None:
        """Let the ports go; ports not held are ignored."""
        with self._lock:
            for key in keys:
                self._close(Key(*key))

    def _close(self, key: Key) -> None:
        sock = self._held.pop(key, None)
        if sock is not None:
            sock.close()

    def sync(self, keys: Iterable[Key]) -> list[tuple[Key, str]]:
        """Hold exactly ``keys``; returns those that could not be bound, with why."""
        wanted = {Key(*k) for k in keys}
        failed = []
        with self._lock:
            for key in set(self._held) - wanted:
                self._close(key)
            for key in wanted - set(self._held):
                try:
                    self._held[key] = bind(key)
                except OSError as exc:
                    failed.append((key, exc.strerror or str(exc)))
        return failed

    def drop_copies(self) -> None:
        """In a child forked from the holder: close this process's copies of
        the sockets (the parent still holds the ports). Without taking the
        lock, which another thread of the parent may have held at the fork."""
        held, self._held, self._lock = self._held, {}, threading.Lock()
        for sock in held.values():
            if sock is not None:
                sock.close()

    def held(self) -> set[Key]:
        with self._lock:
            return set(self._held)
