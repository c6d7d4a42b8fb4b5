"""An encrypted network (issue 20) through the managed plugin on two real
dockerds: what the plugin's rootfs and config.json must give wireguard-go
(the binary, `wg`, the TUN device, CAP_NET_ADMIN, a writable /run for its
control socket, the state mount for its key, PID and log) is met only there.

The hosts are test_multihost's (each dockerd with Pontoon as the managed
plugin, one etcd, VXLAN on a namespace underlay). `-o pontoon.encrypted=true`
on both, a container on each reaches the other, and a marker sent from one
to the other over TCP arrives; tcpdump on the underlay's switch
(tests/multihost/test_encrypted.py's Capture) never sees the marker, only
WireGuard (UDP 51820) and no bare VXLAN. The same marker on a clear network
beside it is seen, so the capture is shown to read clear text when there
is some. Inside the plugin, `inspect` says wireguard-go runs and `wg` shows
the other host as a peer with a handshake made; the plugin disabled and
enabled again makes its device anew and the containers reach each other.

One dockerd only, the newest the matrix has: two managed plugins cost
40 to 60 s (most of it `docker plugin create`), and what is checked here
depends on the plugin's rootfs and config.json, not on dockerd's version,
whose plugin machinery test_multihost.py meets on every dockerd."""
from __future__ import annotations

import json
import shutil

import pytest

from datapath.wireguard import PORT, device_name
from testbed import matrix
from testbed.dockerd import run, wait_for
from testbed.dockerd_hosts import SETTLE, Container, Member, two_hosts_up
from tests.e2e.test_multihost import skip_unless_ready
from tests.e2e.test_multihost_names import OTHER, pontoon_network
from tests.multihost.test_encrypted import MARKER, Capture

LISTEN = 7777  # where the receiving container's nc takes the marker
ENCRYPTED = "pontoon.encrypted=true"
DEVICE = device_name("pontoon")  # the plugin's instance name


@pytest.fixture
def managed_hosts(tmp_path, plugin_dir):
    build = matrix.builds()[-1]
    skip_unless_ready(build)
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is missing: apt-get install tcpdump")
    with two_hosts_up(build, "managed", False, tmp_path, plugin_dir) as made:
        yield made


def carry_marker(sender: Container, receiver: Container) -> None:
    """MARKER over TCP from ``sender`` to ``receiver``, until the receiver
    has it (busybox's nc has no UDP; ping -p repeats one byte only). The
    receiver listens again after each connection: a try that meets no
    listener yet, or that a loaded machine cuts short, is made again."""
    got = f"/tmp/marker{LISTEN}"
    receiver.daemon.docker("exec", "-d", receiver.id, "sh", "-c",
                           f"while :; do nc -l -p {LISTEN} >> {got}; done")
    send = f"printf %s '{MARKER.decode()}' | nc -w 3 {receiver.address} {LISTEN}"

    def received() -> bool:
        sender.daemon.docker("exec", sender.id, "sh", "-c", send, check=False)
        return MARKER.decode() in receiver.daemon.docker("exec", receiver.id, "cat", got, check=False).stdout

    wait_for(received, timeout=SETTLE, interval=0.3, what=f"the marker from {sender.address} at {receiver.address}")


def tunnel(member: Member) -> dict:
    """The plugin's WireGuard device, as `ip` shows it in the host."""
    return json.loads(member.daemon.host("ip", "-j", "-d", "link", "show", "dev", DEVICE).stdout)[0]


def in_plugin(member: Member, *argv: str) -> str:
    """``argv`` in the managed plugin's mount and network namespaces, as its
    own processes see them, with none of this test's environment."""
    return run(["nsenter", "-t", str(member.pontoon.master()), "-m", "-n", "env", "-i",
                "PATH=/opt/pontoon/bin:/usr/sbin:/usr/bin:/sbin:/bin", *argv], timeout=30).stdout


def test_an_encrypted_network_of_the_managed_plugin_crosses_the_underlay_in_wireguard(managed_hosts, uid, tmp_path):
    one, two = managed_hosts.members
    sealed, clear = f"enc{uid}", f"clr{uid}"
    try:
        net_ids = [member.network(sealed, "-o", ENCRYPTED) for member in (one, two)]
        a, b = one.run(sealed), two.run(sealed)
        a.reaches(b)
        b.reaches(a)
        for member in (one, two):
            pontoon_network(member, clear, OTHER)
        c, d = one.run(clear), two.run(clear)
        c.reaches(d)

        capture = Capture(managed_hosts, tmp_path / "sealed.pcap")
        assert a.pings(b.address)
        carry_marker(a, b)
        assert MARKER not in capture.stop()
        assert capture.count(f"udp port {PORT}") >= 6  # the ping and the TCP exchange went, in WireGuard
        assert capture.count("udp port 4789") == 0  # and no VXLAN crossed outside it

        capture = Capture(managed_hosts, tmp_path / "clear.pcap")
        carry_marker(c, d)
        assert MARKER in capture.stop()  # the capture sees clear text where there is some

        # The network as each plugin stored it: encrypted, its MTU leaving
        # room for WireGuard on top of VXLAN (a 1500 underlay).
        for member, net_id in zip((one, two), net_ids):
            options = member.stored_network(net_id)["options"]
            assert (options["encrypted"], options["mtu"]) == (True, 1500 - 60 - 70)
        # Inside the plugin: inspect names the implementation in force, and
        # wireguard-go's device (a TUN in the host's namespace, answering
        # `wg` on its control socket in the plugin's /run) has the other
        # host as its peer, with a handshake made.
        shown = json.loads(in_plugin(one, "python", "-m", "plugin", "inspect", "--json",
                                     "--state-dir", "/var/lib/pontoon", "--etcd-endpoints", managed_hosts.etcd.url))
        assert shown["between_hosts"]["wireguard"] == "wireguard-go"
        device = tunnel(one)
        assert device["linkinfo"]["info_kind"] == "tun"
        handshakes = in_plugin(one, "wg", "show", DEVICE, "latest-handshakes").split()
        assert len(handshakes) == 2 and int(handshakes[1]) > 0, handshakes
        assert (one.pontoon.state_dir / "wireguard.key").stat().st_mode & 0o777 == 0o600

        # Unlike a process's, the plugin's wireguard-go ends with it (its
        # PID namespace): disabled and enabled again, the plugin makes the
        # device anew, from the key and state left in its mount.
        one.pontoon.restart()
        a.reaches(b)
        b.reaches(a)
        assert tunnel(one)["ifindex"] != device["ifindex"]
    finally:
        for member in (one, two):
            member.cleanup(sealed)
            member.daemon.docker("network", "rm", clear, check=False)
