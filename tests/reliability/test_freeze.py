"""Nothing a local user or a slow client does can freeze Pontoon: the real
server, real sockets, real locks held from the test, another user made real
with setpriv.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import secrets
import tempfile
import threading
import time
from pathlib import Path

import pytest

from plugin.worker import REQUEST_READ_S
from testbed.client import ProtocolError
from testbed.fake_dockerd import FakeDockerd
from testbed.server import Server
from tests.unit.test_service_unit import service_section

from . import hostile

# How long a well-behaved call may take while slow clients crowd the server:
# an answer is milliseconds; a thread held by a slow client would be seconds.
PROMPT_S = 1.0
# The server's lock_timeout in the lock tests, and how much later than it
# the refusal may come (process start-up of nothing, a reply over a socket).
LOCK_TIMEOUT_S = 1.0
LOCK_SLACK_S = 2.0
POOL = {"AddressSpace": "LocalDefault", "Pool": "10.199.77.0/24"}
# Capability numbers (linux/capability.h) of those the unit may keep.
CAPS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def _closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``s`` within ``timeout`` seconds."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_clients_hold_no_thread_and_are_closed(servers):
    """50 connections that each send half a request (or nothing), more than
    ten times the server's 4 threads: a well-behaved client's calls are still
    answered at once, and the server closes every slow connection within a
    few seconds."""
    srv = servers(threads=4)
    srv.start()
    slow = []
    for i in range(50):
        s = _connect(srv.socket_path)
        s.sendall(hostile.HALF_REQUESTS[i % len(hostile.HALF_REQUESTS)])
        slow.append(s)
    opened = time.monotonic()
    try:
        client = srv.client(timeout=30)
        latencies = []
        for _ in range(20):
            begin = time.monotonic()
            status, body = client.call("NetworkDriver.GetCapabilities")
            latencies.append(time.monotonic() - begin)
            assert status == 200, body
        assert max(latencies) < PROMPT_S, latencies
        # Closed by the server, not by our giving up: the reaper runs at
        # least once a second after the read deadline.
        for s in slow:
            left = opened + REQUEST_READ_S + 2.0 - time.monotonic()
            assert _closed_by_peer(s, max(left, 0.01)), "a slow connection outlived the read deadline"
        assert time.monotonic() - opened < REQUEST_READ_S + 2.0
    finally:
        for s in slow:
            s.close()
    # The server still answers, and its log has no traceback for them.
    assert srv.client().call("NetworkDriver.GetCapabilities")[0] == 200
    assert "Traceback" not in srv.log()


def test_a_request_sent_slowly_but_within_the_deadline_is_answered(servers):
    """The positive control of the read deadline: a request in pieces, the
    last a second after the first, is served like any other."""
    srv = servers()
    srv.start()
    request = b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    with contextlib.closing(_connect(srv.socket_path)) as s:
        s.sendall(request[:20])
        time.sleep(1.0)
        s.sendall(request[20:])
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")


# -- the state dir is the server's alone -----------------------------------------

@pytest.fixture
def open_workdir():
    """A work dir every user can traverse (pytest's own is root's alone), so
    that only the state dir's and its files' modes can keep another user out."""
    path = Path(tempfile.mkdtemp(prefix="pontoon-perm-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (apt-get install util-linux) to act as another user")
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=10)


def test_other_users_can_neither_read_the_store_nor_hold_a_lock(open_workdir, servers):
    srv = Server(open_workdir)
    # As the README's `mkdir -p` and an older Pontoon left them: a 0755 dir
    # and a lock file any user could open.
    srv.state_dir.mkdir(mode=0o755)
    srv.state_dir.chmod(0o755)
    lock = srv.state_dir / "firewall.lock"
    lock.touch()
    lock.chmod(0o666)
    # The positive control: today another user holds it.
    assert _as_nobody("flock", "-n", str(lock), "true").returncode == 0
    try:
        srv.start()
        # A write, so that SQLite has made its -wal and -shm files too.
        assert srv.client().call("IpamDriver.RequestPool", POOL)[0] == 200
        assert stat.S_IMODE(srv.state_dir.stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in srv.state_dir.iterdir()}
        assert {"pontoon.db", "pontoon.db-wal", "pontoon.db-shm", "pontoon.db.writer", "firewall.lock"} <= set(files)
        assert set(files.values()) == {0o600}, files
        for name in ("firewall.lock", "pontoon.db.writer"):
            held = _as_nobody("flock", "-n", str(srv.state_dir / name), "true")
            assert held.returncode != 0 and "Permission denied" in held.stderr, held
        read = _as_nobody("cat", str(srv.state_dir / "pontoon.db"))
        assert read.returncode != 0 and "Permission denied" in read.stderr, read
    finally:
        srv.kill()


# -- every lock wait is bounded ----------------------------------------------------

def _flock(path: Path) -> int:
    """An open file of ``path`` holding its flock, as another process's
    would; closing it lets go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextlib.contextmanager
def _flocked(path: Path):
    fd = _flock(path)
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _sqlite_write_locked(path: Path):
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
    finally:
        db.close()


def _refused_in_time(call, lock_name: str) -> None:
    begin = time.monotonic()
    status, body = call()
    waited = time.monotonic() - begin
    assert status == 503, body
    assert lock_name in body["Err"] and f"after {LOCK_TIMEOUT_S:.1f} s" in body["Err"], body
    assert LOCK_TIMEOUT_S * 0.9 <= waited < LOCK_TIMEOUT_S + LOCK_SLACK_S, waited


@pytest.fixture
def quick_locks(servers):
    srv = servers()
    srv.start(env={"PONTOON_LOCK_TIMEOUT": str(LOCK_TIMEOUT_S)})
    return srv


@pytest.mark.parametrize("holder, lock_name", [
    (lambda state: _flocked(state / "pontoon.db.writer"), "the store's write lock"),
    (lambda state: _sqlite_write_locked(state / "pontoon.db"), "SQLite's write lock"),
])
def test_a_held_store_lock_is_a_503_after_the_timeout(quick_locks, holder, lock_name):
    client = quick_locks.client()
    with holder(quick_locks.state_dir):
        _refused_in_time(lambda: client.call("IpamDriver.RequestPool", POOL), lock_name)
    # Nothing was stored by the refused call, and the lock once free serves.
    assert quick_locks.inspect()["pools"] == []
    assert client.call("IpamDriver.RequestPool", POOL)[0] == 200


def test_a_held_firewall_lock_is_a_503_and_leaves_nothing(quick_locks):
    """CreateNetwork waits for the lock twice, bounded each time: for its
    add, and for the undo that removes whatever a half-done add left."""
    dockerd = FakeDockerd(quick_locks.client())
    lock = quick_locks.state_dir / "firewall.lock"

    def create(subnet: str, bridge: str):
        return dockerd.create_network(subnet=subnet, options={"com.docker.network.bridge.name": bridge})

    try:
        # One network first, so that the timed call pays no first-use costs.
        dockerd.remove_network(create("10.199.78.0/24", "ptz" + secrets.token_hex(4)))
        bridge = "ptz" + secrets.token_hex(4)
        with _flocked(lock):
            begin = time.monotonic()
            with pytest.raises(ProtocolError) as refused:
                create("10.199.79.0/24", bridge)
            waited = time.monotonic() - begin
        assert refused.value.status == 503, refused.value
        assert "the firewall lock" in refused.value.body["Err"], refused.value.body
        assert LOCK_TIMEOUT_S * 0.9 <= waited < 2 * LOCK_TIMEOUT_S + LOCK_SLACK_S, waited
        assert quick_locks.inspect()["networks"] == []
        # The bridge, made before the firewall step, was undone.
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
        # The positive control: a lock let go within the timeout only delays
        # the call.
        held = _flock(lock)
        threading.Timer(LOCK_TIMEOUT_S / 3, os.close, args=(held,)).start()
        begin = time.monotonic()
        net = create("10.199.79.0/24", bridge)
        assert time.monotonic() - begin >= LOCK_TIMEOUT_S / 3 * 0.9
        dockerd.remove_network(net)
    finally:
        dockerd.cleanup()


# -- contrib/pontoon.service's capabilities are enough --------------------------------

def _with_only(caps: list[str]) -> tuple[str, ...]:
    """setpriv as the unit's CapabilityBoundingSet and NoNewPrivileges do it:
    root, holding only ``caps``."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (apt-get install util-linux)")
    keep = ",".join(["-all", *("+" + c.removeprefix("CAP_").lower() for c in caps)])
    return ("setpriv", "--no-new-privs", "--inh-caps=-all", f"--bounding-set={keep}")


def _effective_caps(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)


def test_the_units_capabilities_are_enough(servers, sandboxes):
    """A network with IPv6 (sysctls), a container with a published port below
    1024, traffic to the gateway and the teardown, served by a server that
    holds only the capabilities contrib/pontoon.service leaves it."""
    caps = service_section()["CapabilityBoundingSet"].split()
    srv = servers(wrapper=_with_only(caps))
    srv.start()
    assert _effective_caps(srv.proc.pid) == sum(1 << CAPS[c] for c in caps)
    dockerd = FakeDockerd(srv.client(), sandboxes)
    try:
        net = dockerd.create_network(subnet="10.199.80.0/24", ipv6=True, subnet6="fd00:199:80::/64")
        ctr = dockerd.run(net, ports=[("tcp", 80, "", 700 + secrets.randbelow(300), 0)])
        assert ctr.sandbox.ping(ctr.join["Gateway"]) and ctr.sandbox.ping(ctr.join["GatewayIPv6"])
        dockerd.stop(ctr)
        dockerd.remove_network(net)
    finally:
        dockerd.cleanup()
    assert " ERROR " not in srv.log()


def test_without_net_admin_it_cannot_serve(servers, sandboxes):
    """The positive control of the one above: setpriv does take capabilities
    away, and Pontoon needs CAP_NET_ADMIN."""
    srv = servers(wrapper=_with_only(["CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]))
    srv.start()
    with pytest.raises(ProtocolError) as refused:
        FakeDockerd(srv.client(), sandboxes).create_network(subnet="10.199.81.0/24")
    assert refused.value.status == 500
