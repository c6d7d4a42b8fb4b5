"""The real server on its Unix socket: socket, signals, durability, concurrency."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

from plugin.server import HEARTBEAT_DIR
from testbed.server import Server


from .conftest import require_root


def test_socket_is_0660_root_owned(server):
    assert server.socket_is_private()


def test_nothing_listens_on_tcp_or_udp(server):
    server.client().ok("Plugin.Activate")  # workers are up
    assert server.socket_inodes(), "the server holds its Unix socket at least"
    assert server.inet_sockets() == []


def test_the_workers_heartbeat_file_is_in_memory(server):
    """gunicorn stamps it at every request: on the disk it waits behind
    the store's fsyncs (plugin.server.HEARTBEAT_DIR)."""
    server.client().ok("Plugin.Activate")  # workers are up
    files = [os.readlink(fd) for pid in server.pids() for fd in Path(f"/proc/{pid}/fd").iterdir()]
    heartbeats = [f for f in files if Path(f).name.startswith("wgunicorn-")]
    assert heartbeats and all(f.startswith(HEARTBEAT_DIR + "/") for f in heartbeats), files


def test_stale_socket_is_replaced(tmp_path):
    require_root()
    srv = Server(tmp_path)
    srv.socket_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(srv.socket_path)  # bound and never listening: what a crashed run leaves
    stale.close()
    srv.start()
    try:
        assert srv.client().ok("Plugin.Activate")["Implements"] == ["NetworkDriver", "IpamDriver"]
    finally:
        assert srv.stop() == 0


def test_sigterm_finishes_in_flight_requests_and_exits_0(tmp_path):
    require_root()
    srv = Server(tmp_path, threads=16)
    srv.start()
    client = srv.client()
    pool = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.123.0.0/16"})["PoolID"]
    acked: list[str] = []
    refused: list[str] = []

    def request():
        try:
            status, reply = client.call("IpamDriver.RequestAddress", {"PoolID": pool})
            assert status == 200, reply
            acked.append(reply["Address"].split("/")[0])
        except OSError as exc:
            # refused or reset before a worker read it: never started
            refused.append(type(exc).__name__)

    threads = [threading.Thread(target=request) for _ in range(40)]
    for t in threads:
        t.start()
    code = srv.stop()
    for t in threads:
        t.join(30)
    assert code == 0
    assert len(acked) + len(refused) == 40 and acked
    # every request a worker started was answered: what is stored is what was acknowledged
    assert sorted(a["address"] for a in srv.inspect()["addresses"]) == sorted(acked)


def test_bad_config_exits_2_with_message(tmp_path):
    run = subprocess.run([sys.executable, "-m", "plugin", "serve", "--log-level", "loud",
                          "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "log_level 'loud'" in run.stderr


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    require_root()
    srv = Server(tmp_path, workers=2, threads=8)
    srv.start()
    client = srv.client()
    pool = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.124.0.0/16"})["PoolID"]
    acked: list[str] = []
    in_flight = threading.Semaphore(16)
    stop = threading.Event()

    def allocate():
        while not stop.is_set():
            with in_flight:
                try:
                    status, reply = client.call("IpamDriver.RequestAddress", {"PoolID": pool})
                except (OSError, ValueError):
                    return  # the server died under this request
                if status == 200:
                    acked.append(reply["Address"].split("/")[0])

    threads = [threading.Thread(target=allocate) for _ in range(16)]
    for t in threads:
        t.start()
    while len(acked) < 200:
        threads[0].join(0.01)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    srv.start()
    try:
        stored = [a["address"] for a in srv.inspect()["addresses"]]
        assert len(stored) == len(set(stored)), "an address is stored twice"
        assert set(acked) <= set(stored), "an acknowledged address was lost"
        assert len(set(stored) - set(acked)) <= 16, "more unacknowledged commits than requests in flight"
        # and the allocator carries on after the crash without reusing anything
        fresh = srv.client().ok("IpamDriver.RequestAddress", {"PoolID": pool})["Address"].split("/")[0]
        assert fresh not in stored
    finally:
        srv.stop()


def test_32_concurrent_clients_never_share_an_address(tmp_path):
    require_root()
    srv = Server(tmp_path, workers=2, threads=16)
    srv.start()
    try:
        client = srv.client()
        pool = client.ok("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "10.125.0.0/26"})["PoolID"]
        held: set[str] = set()
        lock = threading.Lock()
        clashes: list[str] = []
        errors: list = []

        def churn(seed: int):
            rng = random.Random(seed)
            mine: list[str] = []
            for _ in range(30):
                if mine and rng.random() < 0.4:
                    addr = mine.pop(rng.randrange(len(mine)))
                    with lock:
                        held.discard(addr)
                    client.ok("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": addr})
                    continue
                status, reply = client.call("IpamDriver.RequestAddress", {"PoolID": pool})
                if status != 200:
                    errors.append(reply)  # a full /26 answers 409: fine, just not a duplicate
                    continue
                addr = reply["Address"].split("/")[0]
                with lock:
                    if addr in held:
                        clashes.append(addr)
                    held.add(addr)
                mine.append(addr)

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not clashes
        assert all("no free address" in e["Err"] for e in errors)
        stored = {a["address"] for a in srv.inspect()["addresses"]}
        assert stored == held
    finally:
        srv.stop()
