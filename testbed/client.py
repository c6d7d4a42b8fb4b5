"""Talk the plugin protocol over the plugin's real Unix socket, or a Flask
test client, checking every reply against its schema in spec/."""
from __future__ import annotations

import json

import spec
from names.docker_api import UnixConnection

# What dockerd sends (moby pkg/plugins): this Accept header, no Content-Type.
HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}


class ProtocolError(Exception):
    def __init__(self, method: str, status: int, body: dict):
        self.method, self.status, self.body = method, status, body
        super().__init__(f"{method}: {status} {body.get('Err')}")


class SocketTransport:
    def __init__(self, path: str, timeout: float = 30.0):
        self.path, self.timeout = path, timeout

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        conn = UnixConnection(self.path, self.timeout)
        try:
            conn.request("POST", path, body=data, headers=HEADERS)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


class FlaskTransport:
    def __init__(self, app):
        self.client = app.test_client()

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        resp = self.client.post(path, data=data, headers=HEADERS)
        return resp.status_code, resp.get_data()


class Client:
    """``call`` returns (status, body) and fails the test if the body does not
    match the method's response schema (or the error schema)."""

    def __init__(self, transport):
        self.transport = transport

    def call(self, method: str, body: dict | None = None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        status, payload = self.transport.post(f"/{method}", data)
        reply = json.loads(payload)
        spec.validate(f"{method}.response" if status == 200 else "Error.response", reply)
        return status, reply

    def ok(self, method: str, body: dict | None = None) -> dict:
        """Call and insist on success."""
        status, reply = self.call(method, body)
        if status != 200:
            raise ProtocolError(method, status, reply)
        return reply
