"""A transport that remembers what a test sent, and what to do when
the server dies under a request."""
from __future__ import annotations

import http.client
import json
from typing import Callable

from testbed.client import Client, SocketTransport

from .kernel import Seen

# What a request sees when the server is killed under it or is not there.
BROKEN = (OSError, http.client.HTTPException)


class RecordingTransport:
    """Records the IDs of every request (and the PoolID of every RequestPool
    answer) in ``seen``. When the connection breaks, ``on_crash(method)`` is
    called and the request is sent again, as dockerd retries and as a user
    re-runs a command; without ``on_crash`` the error is raised."""

    def __init__(self, inner, seen: Seen, on_crash: Callable[[str], None] | None = None):
        self._inner = inner
        self.seen, self.on_crash = seen, on_crash
        self.pools_acked: set[str] = set()

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        try:
            body = json.loads(data) if data else None
        except (ValueError, RecursionError):  # hostile tests send bodies that are not JSON, or too deep
            body = None
        if isinstance(body, dict):
            self.seen.record(body)
        while True:
            try:
                status, payload = self._inner.post(path, data)
                break
            except BROKEN:
                if self.on_crash is None:
                    raise
                self.on_crash(path.lstrip("/"))
        if path == "/IpamDriver.RequestPool" and status == 200:
            self.pools_acked.add(json.loads(payload)["PoolID"])
        return status, payload


def recording_client(socket_path: str, seen: Seen, on_crash=None) -> Client:
    return Client(RecordingTransport(SocketTransport(socket_path), seen, on_crash))
