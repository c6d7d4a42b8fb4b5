"""The responder's sockets: UDP and TCP on given addresses, a bounded pool.

One thread per group of addresses (a network's gateways) waits on their
sockets and a wake-up pipe; a datagram is answered in that thread when the
answer is local (a parse and a table lookup), and handed to the pool when
it must be forwarded (seconds, if a resolver is away). The pool has
``WORKERS`` threads and takes at most ``IN_FLIGHT`` jobs at once: beyond
that a datagram is dropped (the client asks again) and a TCP connection
closed, so a flood costs a bounded number of threads and never delays the
names answered locally. A TCP connection gets at most ``TCP_QUERIES``
queries of at most ``TCP_QUERY_MAX`` bytes each, within ``TCP_IDLE_S``
each.

Sockets are bound with IP_FREEBIND: the gateway may not be on the bridge
yet (the network is being made) or for a moment (a bridge adopted again).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

from . import wire

log = logging.getLogger("pontoon.names")

WORKERS = 8
IN_FLIGHT = 64
TCP_QUERIES = 16
TCP_QUERY_MAX = 4096  # a query is a name and a few options: more is not a query
TCP_IDLE_S = 3.0
UDP_RECV = 4096
IP_FREEBIND = 15
IPV6_FREEBIND = 78

# (address the query came from) -> the lookup of the names it may see
Askers = Callable[[str], wire.Lookup]


class Pool:
    def __init__(self, workers: int = WORKERS, in_flight: int = IN_FLIGHT):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pontoon-dns")
        self._slots = threading.BoundedSemaphore(in_flight)
        self.dropped = 0

    def submit(self, job: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return False

        def run() -> None:
            try:
                job()
            except Exception:  # noqa: BLE001 - a job's failure must not leak its slot
                log.exception("a DNS job failed")
            finally:
                self._slots.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shut down meanwhile
            self._slots.release()
            return False
        return True

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def bind(address: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """UDP and TCP on each of ``addresses`` (port ``port``), served by one thread."""

    def __init__(self, name: str, addresses: list[str], port: int, askers: Askers, upstreams: wire.Upstreams,
                 pool: Pool):
        self.name = name
        self.addresses = addresses
        self._askers, self._upstreams, self._pool = askers, upstreams, pool
        self._sockets: list[tuple[socket.socket, int]] = []
        try:
            for address in addresses:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    self._sockets.append((bind(address, port, kind), kind))
        except OSError:
            self._close_sockets()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name=f"pontoon-dns-{name[:20]}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(5)
        os.close(self._wake_w)

    def _close_sockets(self) -> None:
        for sock, _ in self._sockets:
            sock.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for sock, kind in self._sockets:
                selector.register(sock, selectors.EVENT_READ, (kind, sock))
            try:
                while True:
                    for key, _ in selector.select():
                        if key.data is None:  # the wake pipe
                            return
                        kind, sock = key.data
                        if kind == socket.SOCK_DGRAM:
                            self._datagram(sock)
                        else:
                            self._accept(sock)
            finally:
                self._close_sockets()
                os.close(self._wake_r)

    def _datagram(self, sock: socket.socket) -> None:
        for _ in range(64):  # what has queued, then back to the other sockets
            try:
                data, peer = sock.recvfrom(UDP_RECV)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error of an earlier reply, say
                log.debug("dns recv on %s: %s", self.name, exc)
                return
            try:
                reply = wire.answer(data, lambda: self._askers(peer[0]), tcp=False)
            except Exception:  # noqa: BLE001 - a query must never end the listener
                log.exception("dns query from %s not answered", peer[0])
                continue
            if isinstance(reply, wire.Forward):
                self._pool.submit(partial(self._forward, sock, reply, peer))
            elif reply is not None:
                self._send(sock, reply, peer)

    def _forward(self, sock: socket.socket, job: wire.Forward, peer) -> None:
        self._send(sock, wire.forward(job, self._upstreams), peer)

    @staticmethod
    def _send(sock: socket.socket, reply: bytes, peer) -> None:
        try:
            sock.sendto(reply, peer)
        except OSError as exc:
            log.debug("dns reply to %s not sent: %s", peer[0], exc)

    def _accept(self, sock: socket.socket) -> None:
        try:
            conn, peer = sock.accept()
        except OSError:
            return
        if not self._pool.submit(partial(self._connection, conn, peer)):
            conn.close()

    def _connection(self, conn: socket.socket, peer) -> None:
        with conn:
            conn.settimeout(TCP_IDLE_S)
            try:
                for _ in range(TCP_QUERIES):
                    head = _read(conn, 2)
                    if head is None:
                        return
                    length = int.from_bytes(head, "big")
                    if not 12 <= length <= TCP_QUERY_MAX:
                        log.debug("dns over tcp from %s: a message of %d bytes, closed", peer[0], length)
                        return
                    data = _read(conn, length)
                    if data is None:
                        return
                    reply = wire.answer(data, lambda: self._askers(peer[0]), tcp=True)
                    if isinstance(reply, wire.Forward):
                        reply = wire.forward(reply, self._upstreams)
                    if reply is None:
                        return
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return


def _read(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
