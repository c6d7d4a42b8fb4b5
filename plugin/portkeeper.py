"""Where the held host ports live: a thread of the gunicorn master.

A held socket must live exactly as long as its port is stored, whichever
worker published it and whichever worker unpublishes it (``--workers N``),
and must not outlive the plugin. So one process holds them all, and the
gunicorn master is the only process that lives as long as the plugin:
workers come and go (a timed-out worker is replaced), and a socket held in
one would die with it, or could not be let go by another worker's Revoke.

- At start, before gunicorn binds the plugin socket, ``start`` binds every
  stored port (``datapath.hostports.Holder.sync``) and then serves the
  workers on a Unix socket in the state dir (``multiprocessing.connection``
  with a key made at start and inherited by the workers, so nothing else
  can talk to it): dockerd's first request finds the ports held again.
  A port that another process took while Pontoon was down cannot be held;
  it is logged, and stays published.
- A worker forked from the master inherits copies of the held sockets,
  which would keep a port bound after the master lets it go; gunicorn's
  ``post_fork`` hook (``close_inherited``) closes them in the worker at once.
- ``kill -9`` of the master closes every socket with it; the next start
  holds them again. The start-up reconcile child is forked before anything
  is held.
- Requests are served one at a time by the thread, so a claim is atomic
  across workers (and the callers run it under the store's write lock anyway).
  Only root can connect (the socket is 0600), and a worker waits at most
  ``ANSWER_S`` for an answer, so a stuck keeper fails requests rather than
  hanging them.

``Client`` is what a worker's network driver calls; it has the
``claim``/``release`` of ``Holder``, which tests in one process use directly.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from multiprocessing.connection import Client as _connect, Listener
from typing import Iterable

from datapath.hostports import Claim, Holder, Key, PortInUse

log = logging.getLogger("pontoon")

SOCKET_NAME = "ports.sock"
# After kill -9 the old master's sockets close as it exits; a start right
# after may find a port still bound for a moment.
REHOLD_S = 2.0
ANSWER_S = 30.0


class Keeper:
    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, SOCKET_NAME)
        self.authkey = secrets.token_bytes(32)
        self.holder = Holder()
        self._listener: Listener | None = None

    def start(self, stored: Iterable[Key]) -> None:
        """Hold ``stored`` and serve the workers from a daemon thread."""
        failed = self.holder.sync(stored)
        deadline = time.monotonic() + REHOLD_S
        while failed and time.monotonic() < deadline:
            time.sleep(0.05)
            failed = self.holder.sync(self.holder.held() | {key for key, _ in failed})
        for key, reason in failed:
            log.error("published host port %r/%s on %r cannot be held again: %s (another process took it "
                      "while Pontoon was down; its DNAT still sends the port's traffic to the container)",
                      key.port, key.proto, key.host_ip, reason)
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a killed run
        old = os.umask(0o177)
        try:
            self._listener = Listener(self.path, family="AF_UNIX", authkey=self.authkey)
        finally:
            os.umask(old)
        threading.Thread(target=self._serve, args=(self._listener,), name="pontoon-ports", daemon=True).start()

    def _serve(self, listener: Listener) -> None:
        while True:
            try:
                conn = listener.accept()
            except Exception:  # a client that failed authentication, or went away
                log.exception("port keeper: connection refused")
                continue
            with conn:
                try:
                    op, arg = conn.recv()
                    conn.send(("ok", self._do(op, arg)))
                except PortInUse as exc:
                    conn.send(("in use", (exc.claim, exc.reason)))
                except Exception as exc:  # answered, so the worker's request fails with it
                    log.exception("port keeper: request failed")
                    try:
                        conn.send(("error", f"{type(exc).__name__}: {exc}"))
                    except OSError:
                        pass

    def _do(self, op: str, arg):
        if op == "claim":
            return self.holder.claim(arg)
        if op == "release":
            return self.holder.release(arg)
        if op == "held":
            return sorted(self.holder.held())
        raise ValueError(f"unknown port keeper request {op!r}")

    def close_inherited(self) -> None:
        """In a freshly forked worker: drop the copies of the held sockets.
        (Its copy of the keeper's listening socket is harmless: a worker
        never accepts on it.)"""
        self.holder.drop_copies()

    def client(self) -> "Client":
        return Client(self.path, self.authkey)


class Client:
    """The keeper, as seen from a worker: one connection per call."""

    def __init__(self, path: str, authkey: bytes):
        self._path, self._authkey = path, authkey

    def _call(self, op: str, arg):
        with _connect(self._path, family="AF_UNIX", authkey=self._authkey) as conn:
            conn.send((op, arg))
            if not conn.poll(ANSWER_S):
                raise RuntimeError(f"port keeper: no answer to {op!r} within {ANSWER_S:.0f} s")
            status, value = conn.recv()
        if status == "in use":
            raise PortInUse(*value)
        if status != "ok":
            raise RuntimeError(f"port keeper: {value}")
        return value

    def claim(self, claims: list[Claim]) -> list[int]:
        return self._call("claim", list(claims))

    def release(self, keys: Iterable[Key]) -> None:
        self._call("release", [Key(*k) for k in keys])

    def held(self) -> list[Key]:
        return self._call("held", None)
