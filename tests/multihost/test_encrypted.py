"""Issue 20, encryption: ``-o pontoon.encrypted=true`` carries a cluster
network's traffic between hosts inside WireGuard (datapath.wireguard). A
capture on the underlay sees a marker sent between containers of an
unencrypted network in clear, and never the same marker sent on the
encrypted network beside it, whose packets are WireGuard's."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest

from datapath.wireguard import PORT

from .cluster import LEASE_TTL
from .test_crosshost import MARGIN, bare, reaches
from .test_vxlan_guard import inspect_here

MARKER = b"PONTOON-SECRET!!"  # 16 bytes: what ping -p repeats in each packet's payload
ENCRYPTED = {"pontoon.encrypted": "true"}


@pytest.fixture(autouse=True)
def needs_wireguard():
    for tool in ("wg", "wireguard-go", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt-get install wireguard-tools wireguard-go tcpdump)")


class Capture:
    """tcpdump on the underlay's switch: every packet between the hosts."""

    def __init__(self, cluster, path):
        self.path = path
        self.proc = subprocess.Popen(["ip", "netns", "exec", cluster.underlay.ns, "tcpdump", "-i",
                                      cluster.underlay.bridge, "--immediate-mode", "-U", "-w", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1)  # it is listening once it has said so, within a moment

    def stop(self) -> bytes:
        time.sleep(0.5)  # the last packets written
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        return self.path.read_bytes()

    def count(self, expression: str) -> int:
        out = subprocess.run(["tcpdump", "-r", str(self.path), "-n", expression], capture_output=True, text=True,
                             timeout=30).stdout
        return len(out.splitlines())


def ping_marker(ctr, other, count: int = 3) -> None:
    subprocess.run(["ip", "netns", "exec", ctr.sandbox.ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", "-p",
                    MARKER.hex(), bare(other.address)], capture_output=True, timeout=30, check=True)


def test_encrypted_network_shows_no_cleartext_on_the_underlay(cluster, tmp_path):
    sealed = [h.dockerd.create_network(subnet="10.92.0.0/24", options=ENCRYPTED) for h in cluster.hosts]
    clear = [h.dockerd.create_network(subnet="10.90.0.0/24") for h in cluster.hosts]
    sealed_ctrs = [h.dockerd.run(n) for h, n in zip(cluster.hosts, sealed)]
    clear_ctrs = [h.dockerd.run(n) for h, n in zip(cluster.hosts, clear)]
    for ctrs in (sealed_ctrs, clear_ctrs):
        for ctr in ctrs:
            for other in ctrs:
                if other is not ctr:
                    assert reaches(ctr, other), f"{ctr.address} cannot reach {other.address}"

    capture = Capture(cluster, tmp_path / "sealed.pcap")
    ping_marker(sealed_ctrs[0], sealed_ctrs[1])
    assert MARKER not in capture.stop()
    assert capture.count(f"udp port {PORT}") >= 6  # the pings went, in WireGuard
    assert capture.count("udp port 4789") == 0  # and no VXLAN crossed outside it

    capture = Capture(cluster, tmp_path / "clear.pcap")
    ping_marker(clear_ctrs[0], clear_ctrs[1])
    assert MARKER in capture.stop()  # the capture sees clear text where there is some

    # The encrypted network's MTU leaves room for WireGuard on top of VXLAN,
    # and inspect says so, and which WireGuard runs.
    state = cluster.hosts[0].server.inspect()
    mtus = {n["options"]["encrypted"]: n["options"]["mtu"] for n in state["networks"]}
    assert mtus == {True: 1500 - 60 - 70, False: 1500 - 50}
    shown = inspect_here(cluster.hosts[0], cluster.etcd.url)
    assert "1370 (VXLAN in WireGuard)" in shown and "1450 (VXLAN)" in shown and "wireguard-go" in shown


def test_the_tunnel_goes_with_the_last_encrypted_network(cluster):
    a, b, _ = cluster.hosts
    nets = [h.dockerd.create_network(subnet="10.92.0.0/24", options=ENCRYPTED) for h in (a, b)]
    ctrs = [h.dockerd.run(n) for h, n in zip((a, b), nets)]
    assert reaches(*ctrs)
    tunnels = [h.run("ip", "-j", "link", "show", "type", "tun").stdout for h in (a, b)]
    assert all(json.loads(t) for t in tunnels)
    key = a.server.state_dir / "wireguard.key"
    assert key.stat().st_mode & 0o777 == 0o600
    b.dockerd.cleanup()
    assert json.loads(b.run("ip", "-j", "link", "show", "type", "tun").stdout) == []
    # a drops b as a WireGuard peer once b's records are gone.
    wg = a.run("ip", "-j", "link", "show", "type", "tun").stdout
    name = json.loads(wg)[0]["ifname"]
    deadline = time.monotonic() + 10
    while a.run("wg", "show", name, "peers").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert a.run("wg", "show", name, "peers").stdout.strip() == ""



def test_a_killed_host_keeps_its_encrypted_traffic_and_comes_back(cluster):
    """kill -9 of a host's Pontoon: its tunnel (wireguard-go, a process of
    its own, like a kernel device) and the others' peers of it stay while
    its containers run on; the restarted Pontoon takes the tunnel as it is."""
    a, _, c = cluster.hosts
    nets = [h.dockerd.create_network(subnet="10.92.0.0/24", options=ENCRYPTED) for h in (a, c)]
    ctr_a, ctr_c = (h.dockerd.run(n) for h, n in zip((a, c), nets))
    assert reaches(ctr_a, ctr_c)
    c.kill()
    time.sleep(LEASE_TTL + MARGIN)  # its lease, records and hosts/ record gone
    assert reaches(ctr_a, ctr_c, timeout=5) and reaches(ctr_c, ctr_a, timeout=5)
    c.start()
    assert reaches(ctr_a, ctr_c) and reaches(ctr_c, ctr_a)
    assert len(json.loads(c.run("ip", "-j", "link", "show", "type", "tun").stdout)) == 1
