"""A minimal client of dockerd's Engine API on its Unix socket.

Only what names/engine.py needs: a JSON GET, and the event stream. HTTP
is http.client's over a Unix socket rather than a client library: three
requests do not justify a dependency, and the socket is local.

The API version is negotiated once per connection: ``GET /version``
(unversioned, answered by every dockerd) gives the daemon's newest and
oldest versions, and the newest both sides know is used. It matters both
ways: dockerd 29 refuses anything below 1.44, dockerd 20.10 knows nothing
above 1.41. What is read (events' Type, Action and Actor; a container's
Name, Id and NetworkSettings.Networks; a network's Containers) has the
same shape in every version from 1.41 to ``NEWEST``; 1.52 dropped only
events' old top-level fields (status, id, from), which are not read.
"""
from __future__ import annotations

import http.client
import json
import socket
from typing import Iterator
from urllib.parse import quote, urlencode

NEWEST = (1, 52)
TIMEOUT_S = 10.0


class ApiError(Exception):
    """dockerd answered with an error status (``status``) or not as JSON."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (testbed/client.py speaks to Pontoon with it too)."""

    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def version_text(version: tuple[int, int]) -> str:
    return "%d.%d" % version


def _parse_version(field: str, text) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise ApiError(0, f"/version's {field} {text!r} is not an API version") from None


class DockerApi:
    def __init__(self, path: str):
        self.path = path
        self.stream: socket.socket | None = None  # the event stream's, while one is open (shut down to end it)
        info = self._get_json("/version")
        newest = _parse_version("ApiVersion", info.get("ApiVersion"))
        oldest = _parse_version("MinAPIVersion", info.get("MinAPIVersion", "1.12"))
        self.version = min(newest, NEWEST)
        if self.version < oldest:
            raise ApiError(0, f"dockerd wants API {version_text(oldest)} or later; Pontoon speaks up to "
                              f"{version_text(NEWEST)}")

    def get(self, path: str) -> dict:
        """GET ``path`` (``/containers/<id>/json``, say) at the negotiated version."""
        return self._get_json(f"/v{version_text(self.version)}{path}")

    def events(self, filters: dict[str, list[str]]) -> Iterator[dict]:
        """The event stream from now on: open when this returns (nothing
        after it is missed), then each event as dockerd sends it; it ends
        when dockerd closes it or another thread shuts ``stream`` down."""
        conn = UnixConnection(self.path, TIMEOUT_S)
        try:
            conn.request("GET", f"/v{version_text(self.version)}/events?" + urlencode({"filters": json.dumps(filters)}))
            response = conn.getresponse()
            if response.status != 200:
                raise ApiError(response.status, response.read(512).decode(errors="replace").strip())
        except BaseException:
            conn.close()
            raise
        conn.sock.settimeout(None)  # an idle stream is silent for as long as nothing happens
        self.stream = conn.sock
        return self._lines(conn, response)

    def _lines(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> Iterator[dict]:
        try:
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            self.stream = None
            conn.close()

    def _get_json(self, path: str) -> dict:
        conn = UnixConnection(self.path, TIMEOUT_S)
        try:
            conn.request("GET", quote(path, safe="/?=&"))
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise ApiError(response.status, body[:512].decode(errors="replace").strip())
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(response.status, f"{path} did not answer JSON") from None
