"""names.engine and names.docker_api against a fake dockerd on a Unix socket:
the version negotiated, the catch-up and the events asked only about
Pontoon's networks, a rename, dockerd gone and back. (The real dockerds are
in tests/e2e/test_multihost_names.py.)"""
from __future__ import annotations

import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from names.docker_api import ApiError, DockerApi
from names.engine import EngineNames, container_names

OURS, THEIRS = "n" * 64, "t" * 64
WEB, DB, LATE = "a" * 64, "b" * 64, "c" * 64


class FakeDockerd(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, api: str = "1.41", oldest: str = "1.12"):
        self.api, self.oldest = api, oldest
        self.asked: list[str] = []
        self.containers = {WEB: _container(WEB, "web", {OURS: ("e-web", ["www"])}),
                           DB: _container(DB, "db", {THEIRS: ("e-db", [])})}
        self.events: list[dict | None] = []  # None ends the open streams
        self.more = threading.Condition()
        self.streams = 0
        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def send(self, event: dict) -> None:
        with self.more:
            self.events.append(event)
            self.more.notify_all()

    def stop(self) -> None:
        with self.more:
            self.events.append(None)  # ends the open streams
            self.more.notify_all()
        self.shutdown()
        self.server_close()


def _container(cid: str, name: str, networks: dict) -> dict:
    return {"Id": cid, "Name": "/" + name, "NetworkSettings": {"Networks": {
        f"net-{nid[:4]}": {"NetworkID": nid, "EndpointID": ep, "Aliases": aliases}
        for nid, (ep, aliases) in networks.items()}}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        fake: FakeDockerd = self.server
        url = urlsplit(self.path)
        fake.asked.append(url.path)
        if url.path == "/version":
            return self._json({"ApiVersion": fake.api, "MinAPIVersion": fake.oldest})
        version, _, rest = url.path[2:].partition("/")
        if version != fake.api and url.path.startswith("/v"):
            return self._json({"message": f"client version {version} is not {fake.api}"}, 400)
        if rest == "events":
            assert json.loads(parse_qs(url.query)["filters"][0]) == {"type": ["network", "container"],
                                                                       "event": ["connect", "rename"]}
            return self._stream(fake)
        kind, _, ident = rest.partition("/")
        if kind == "networks":
            found = {c["Id"]: {} for c in fake.containers.values()
                     if any(n["NetworkID"] == ident for n in c["NetworkSettings"]["Networks"].values())}
            return self._json({"Id": ident, "Containers": found})
        if kind == "containers" and ident.removesuffix("/json") in fake.containers:
            return self._json(fake.containers[ident.removesuffix("/json")])
        return self._json({"message": "no such thing"}, 404)

    def _json(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, fake: FakeDockerd) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        with fake.more:
            fake.streams += 1
            sent = len(fake.events)
        while True:
            with fake.more:
                fake.more.wait_for(lambda: len(fake.events) > sent)
                new, sent = fake.events[sent:], len(fake.events)
            for event in new:
                if event is None:
                    self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                    return
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "docker.sock")


def wait(check, timeout=5.0):
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "not in time"
        time.sleep(0.02)


@pytest.fixture
def followed(sock):
    """A fake dockerd, and names followed from it: endpoint ID -> what was given, in order."""
    fakes = [FakeDockerd(sock)]  # a test may replace it (dockerd restarted)
    given: dict = {}
    engine = EngineNames(sock, lambda: {OURS}, lambda e, n, a: given.setdefault(e, []).append((n, a)))
    engine.start()
    wait(engine.followed.is_set)
    try:
        yield fakes, given
    finally:
        engine.stop()
        fakes[-1].stop()


@pytest.mark.parametrize("api,oldest,used", [("1.41", "1.12", (1, 41)), ("1.52", "1.44", (1, 52)),
                                             ("1.60", "1.44", (1, 52))])
def test_the_api_version_is_the_newest_both_know(sock, api, oldest, used):
    fake = FakeDockerd(sock, api, oldest)
    try:
        assert DockerApi(sock).version == used
    finally:
        fake.stop()


def test_a_dockerd_that_wants_a_newer_api_is_refused_by_name(sock):
    fake = FakeDockerd(sock, "1.70", "1.60")
    try:
        with pytest.raises(ApiError, match="1.60 or later"):
            DockerApi(sock)
    finally:
        fake.stop()


def test_catch_up_and_events_ask_only_about_pontoons_networks(followed):
    (fake,), given = followed
    # The catch-up: only our network was listed, only its container asked about.
    assert given == {"e-web": [("web", ["www", WEB[:12]])]}
    assert f"/v1.41/networks/{THEIRS}" not in fake.asked and f"/v1.41/containers/{DB}/json" not in fake.asked
    # Another network's connect: not even an inspect.
    fake.send({"Type": "network", "Action": "connect", "Actor": {"ID": THEIRS, "Attributes": {"container": DB}}})
    # A container connected later, with an alias.
    fake.containers[LATE] = _container(LATE, "late", {OURS: ("e-late", ["later"])})
    fake.send({"Type": "network", "Action": "connect", "Actor": {"ID": OURS, "Attributes": {"container": LATE}}})
    wait(lambda: "e-late" in given)
    assert given["e-late"] == [("late", ["later", LATE[:12]])]
    assert f"/v1.41/containers/{DB}/json" not in fake.asked
    # A rename.
    fake.containers[WEB]["Name"] = "/site"
    fake.send({"Type": "container", "Action": "rename", "Actor": {"ID": WEB, "Attributes": {"name": "site"}}})
    wait(lambda: len(given["e-web"]) == 2)
    assert given["e-web"][-1] == ("site", ["www", WEB[:12]])


def test_dockerd_restarted_is_followed_again_and_caught_up(followed, sock):
    fakes, given = followed
    fakes[0].stop()
    os.unlink(sock)
    fakes.append(FakeDockerd(sock))
    fakes[-1].containers[LATE] = _container(LATE, "late", {OURS: ("e-late", [])})  # joined while away
    wait(lambda: "e-late" in given, timeout=10)
    assert fakes[-1].streams == 1


def test_a_path_that_is_no_socket_turns_it_off(tmp_path):
    (tmp_path / "null").write_text("")
    engine = EngineNames(str(tmp_path / "null"), set, lambda *a: None)
    engine.start()
    engine._thread.join(5)
    assert not engine._thread.is_alive()


def test_names_are_those_on_pontoons_networks_with_the_short_id():
    info = _container(WEB, "web", {OURS: ("e1", ["www", WEB[:12]]), THEIRS: ("e2", ["x"])})
    assert container_names(info, {OURS}) == {"e1": ("web", ["www", WEB[:12], WEB[:12]])}
