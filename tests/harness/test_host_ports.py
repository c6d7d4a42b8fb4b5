"""Published host ports are held the way Docker holds them, by the real
server (``python -m plugin serve``) in a network namespace of its own, so
the ports it binds are that namespace's and no other test's:

- a port a host process holds is refused with a 409 naming address, port
  and protocol, and nothing is left of the refused request;
- every published port (TCP and UDP) is bound while it is published, by the
  gunicorn master alone (workers close their inherited copies), and let go
  by Revoke, DeleteEndpoint and DeleteNetwork;
- after kill -9 the restarted server holds them again before its socket
  answers.
"""
from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from testbed.client import ProtocolError
from testbed.fake_dockerd import FakeDockerd
from testbed.server import Server

# Binds PROTO PORT on 0.0.0.0 in the namespace it runs in; exit 0 if it could.
PROBE = """
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[2])))
    if kind == socket.SOCK_STREAM:
        s.listen(1)
except OSError:
    sys.exit(1)
"""
# A host daemon: listens on 0.0.0.0:PORT until killed.
DAEMON = """
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def served(tmp_path, netns):
    made: list[Server] = []

    def make(**kw) -> Server:
        made.append(Server(tmp_path, netns=netns, **kw))
        made[-1].start()
        return made[-1]

    yield make
    for srv in made:
        srv.kill()


def bindable(netns: str, proto: str, port: int) -> bool:
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, proto, str(port)],
                          timeout=30).returncode == 0


def stored_ports(server: Server) -> set[tuple[str, int]]:
    return {(p["proto"], p["host_port"]) for e in server.inspect()["endpoints"] for p in e["ports"]}


def test_a_port_a_host_process_listens_on_is_refused(served, netns):
    server = served()
    dockerd = FakeDockerd(server.client())
    net = dockerd.create_network(subnet="10.231.0.0/24")
    port = 20000 + secrets.randbelow(10000)
    daemon = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", DAEMON, str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout.readline().strip() == "ready"
        with pytest.raises(ProtocolError) as refused:
            dockerd.run(net, ports=[("udp", 53, "", port, 0), ("tcp", 22, "", port, 0)])
        assert refused.value.status == 409
        assert f"host port {port}/tcp on 0.0.0.0 is in use on the host" in refused.value.body["Err"]
        # The UDP port claimed before the refusal is let go, nothing is stored.
        assert bindable(netns, "udp", port)
        ctr = dockerd.containers[-1]
        assert server.inspect()["endpoints"][0]["ports"] == []
        dockerd.stop(ctr)
    finally:
        daemon.kill()
        daemon.wait()
    dockerd.remove_network(net)


def test_published_ports_are_held_by_the_master_until_unpublished(served, netns):
    server = served(workers=2)
    dockerd = FakeDockerd(server.client())
    net = dockerd.create_network(subnet="10.232.0.0/24")
    base = 20000 + secrets.randbelow(10000)
    a = dockerd.run(net, ports=[("tcp", 80, "", base, 0), ("udp", 53, "", base + 1, 0)])
    b = dockerd.run(net, ports=[("tcp", 80, "", 0, 0)])  # HostPort 0: picked, and held too
    picked = next(p["host_port"] for e in server.inspect()["endpoints"] if e["id"] == b.endpoint_id
                  for p in e["ports"])
    assert stored_ports(server) == {("tcp", base), ("udp", base + 1), ("tcp", picked)}
    assert server.held_ports() == stored_ports(server)
    master, workers = server.pids()[0], server.pids()[1:]
    assert len(workers) == 2 and server.held_ports(workers) == set()
    assert server.held_ports([master]) == stored_ports(server)
    for proto, port in stored_ports(server):
        assert not bindable(netns, proto, port)

    # Another worker may serve the Revoke: the master lets the port go.
    dockerd.client.ok("NetworkDriver.RevokeExternalConnectivity", {"NetworkID": net.id, "EndpointID": a.endpoint_id})
    assert bindable(netns, "tcp", base) and bindable(netns, "udp", base + 1)
    assert server.held_ports() == {("tcp", picked)}
    dockerd.stop(a)
    # DeleteNetwork lets go of what its endpoints still publish.
    dockerd.client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": net.id})
    assert server.held_ports() == set() and bindable(netns, "tcp", picked)


def test_after_kill_9_ports_are_held_again_before_the_socket_answers(served, netns):
    server = served()
    dockerd = FakeDockerd(server.client())
    net = dockerd.create_network(subnet="10.233.0.0/24")
    port = 20000 + secrets.randbelow(10000)
    ctr = dockerd.run(net, ports=[("tcp", 80, "", port, 0), ("udp", 80, "", port, 0)])
    server.kill()
    assert bindable(netns, "tcp", port)  # nothing holds it while Pontoon is down
    server.start()  # returns as soon as the socket accepts
    assert server.held_ports() == {("tcp", port), ("udp", port)}
    assert not bindable(netns, "tcp", port) and not bindable(netns, "udp", port)
    dockerd.stop(ctr)
    assert bindable(netns, "tcp", port)
    dockerd.remove_network(net)
