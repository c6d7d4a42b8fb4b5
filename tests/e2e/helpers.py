"""What the cases share: a per-test scene of networks and containers that is
always torn down, and the checks that a removed network left nothing behind."""

import json
import random
import sys
from pathlib import Path

import pytest

from testbed import matrix
from testbed.dockerd import wait_for
from testbed.plugins import inspect_state


# Every container serves /var/www on port 80 as its main process: it keeps
# the container running and gives published ports something to answer.
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/var/www")


def random_subnet_v4():
    """A /24 in 10.200-249.x: outside the default pools the suite configures,
    and unlikely to meet another test's network on the same daemon."""
    return f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24"


def random_subnet_v6():
    return f"fd{random.randint(0, 255):02x}:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::/64"


def matrix_params():
    """pytest params of the dockerd matrix (testbed/matrix.py), for the
    session's dockerd fixture and test_multihost's cases. Without the fetched
    builds, a skipped param says how to get them, rather than the matrix
    silently shrinking to 20.10."""
    found = matrix.builds()
    out = [pytest.param(build, id=build.id) for build in found]
    if len(found) == 1:
        out.append(pytest.param(None, id="dockerd-newer", marks=pytest.mark.skip(
            reason=f"no newer dockerd under {matrix.FETCHED}: run `make dockerds`")))
    return out


class Scene:
    """One test's networks and containers on the shared daemon, named with
    the test's uid and removed at the end whatever happened."""

    def __init__(self, dockerd, image, pontoon, uid):
        self.dockerd = dockerd
        self.image = image
        self.pontoon = pontoon
        self.uid = uid
        self.containers = []
        self.networks = []
        self._n = 0

    def docker(self, *args, **kw):
        return self.dockerd.docker(*args, **kw)

    def name(self, kind):
        self._n += 1
        return f"pe2e-{self.uid}-{kind}{self._n}"

    def network(self, *args, driver=None, ipam=None):
        """`docker network create`, Pontoon for both drivers unless told."""
        name = self.name("net")
        driver = driver or self.pontoon.driver
        ipam = ipam or self.pontoon.driver
        self.docker("network", "create", "-d", driver, "--ipam-driver", ipam, *args, name,
                    timeout=60)
        self.networks.append(name)
        return name

    def container(self, network, *args, cmd=HTTPD):
        name = self.name("c")
        self.containers.append(name)
        # httpd as PID 1 ignores SIGTERM; a short stop timeout keeps daemon
        # restarts from waiting the default 10 s per container.
        self.docker("run", "-d", "--name", name, "--network", network, "--stop-timeout", "1",
                    *args, self.image, *cmd, timeout=60)
        return name

    def sh(self, container, script, *, check=True, timeout=30):
        return self.docker("exec", container, "sh", "-c", script, check=check,
                           timeout=timeout)

    def pings(self, container, target, *, count=1):
        """True when `container` gets an echo reply from `target`."""
        proc = self.sh(container, f"ping -c {count} -W 2 {target}", check=False)
        return proc.returncode == 0

    def net_inspect(self, network):
        return self.dockerd.inspect("network", network)

    def address(self, container, network, v6=False):
        info = self.dockerd.inspect("container", container)
        ep = info["NetworkSettings"]["Networks"][network]
        return ep["GlobalIPv6Address"] if v6 else ep["IPAddress"]

    def rm_container(self, name):
        self.docker("rm", "-f", name, timeout=60, check=False)
        if name in self.containers:
            self.containers.remove(name)

    def rm_network(self, network):
        self.docker("network", "rm", network, timeout=60)
        self.networks.remove(network)

    def teardown(self):
        for name in reversed(self.containers):
            self.docker("rm", "-f", name, timeout=60, check=False)
        for name in reversed(self.networks):
            self.docker("network", "rm", name, timeout=60, check=False)


def published_port(scene, container, container_port=80):
    """(host IP, host port) of a published port, from `inspect ports`, the
    view that stands in for `docker port`: no dockerd shows a remote
    driver's mappings (see test_docker_port_shows_remote_driver_mapping).
    The row must name the container's own endpoint, network and address."""
    settings, = scene.dockerd.inspect("container", container)[
        "NetworkSettings"]["Networks"].values()
    rows = [p for p in inspect_state(scene.pontoon.state_dir, "ports")
            if p["endpoint_id"] == settings["EndpointID"]
            and p["container_port"] == container_port]
    assert rows, f"{container} has no published port {container_port} in `inspect ports`"
    row = rows[0]
    assert row["network_id"] == settings["NetworkID"], row
    assert row["container_ip"] == settings["IPAddress"], row
    return row["host_ip"], int(row["host_port"])


def http_get(dockerd, host, port, timeout=5):
    """GET / from the daemon's host (its network namespace); the body, or
    None when nothing answered."""
    fetch = ("import sys, urllib.request; "
             "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))"
             ".read().decode())")
    proc = dockerd.host(sys.executable, "-c", fetch, f"http://{host}:{port}/", timeout,
                        timeout=timeout + 10, check=False)
    return proc.stdout if proc.returncode == 0 else None


def links(dockerd):
    out = dockerd.host("ip", "-j", "link", "show", timeout=10).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def firewall_dump(dockerd):
    return "\n".join(dockerd.host(tool, timeout=20).stdout
                     for tool in ("iptables-save", "ip6tables-save"))


class Footprint:
    """What one Pontoon network owns in the kernel and the store, recorded
    while it exists so that its removal can be checked against it."""

    def __init__(self, scene, network):
        info = scene.net_inspect(network)
        self.scene = scene
        self.network_id = info["Id"]
        self.subnets = [c["Subnet"] for c in info["IPAM"]["Config"]]
        self.gateways = [c["Gateway"].split("/")[0] for c in info["IPAM"]["Config"]
                         if c.get("Gateway")]
        state = inspect_state(scene.pontoon.state_dir)
        stored = [n for n in state["networks"] if n["id"] == self.network_id]
        assert stored, f"network {self.network_id[:12]} is not in Pontoon's store"
        self.bridge = stored[0]["bridge"]
        self.veths = {v for e in state["endpoints"] if e["network_id"] == self.network_id
                      for v in (e["host_veth"], e["peer_veth"])}
        self.pool_ids = {p["id"] for p in state["pools"]
                         if p["cidr"] in self.subnets}

    def assert_gone(self):
        dockerd = self.scene.dockerd
        present = links(dockerd)
        assert self.bridge not in present, f"bridge {self.bridge} survived network rm"
        leftover = self.veths & set(present)
        assert not leftover, f"veths {leftover} survived network rm"
        addrs = dockerd.host("ip", "-o", "addr", "show", timeout=10).stdout
        for gateway in self.gateways:
            assert f" {gateway}/" not in addrs, f"gateway address {gateway} survived network rm"
        rules = firewall_dump(dockerd)
        assert self.bridge not in rules, f"firewall rules for {self.bridge} survived"
        assert self.network_id[:12] not in rules, \
            f"firewall chain of network {self.network_id[:12]} survived"
        state = inspect_state(self.scene.pontoon.state_dir)
        assert not [n for n in state["networks"] if n["id"] == self.network_id]
        assert not [e for e in state["endpoints"] if e["network_id"] == self.network_id]
        assert not [p for p in state["pools"] if p["id"] in self.pool_ids]


def eventually(predicate, *, timeout=10, what):
    """Some state (ARP, conntrack, DNS) settles a moment after a change."""
    return wait_for(predicate, timeout=timeout, interval=0.5, what=what)


# Linux capability numbers (linux/capability.h) of what dockerd gives every
# plugin (moby oci.DefaultCapabilities), and the one config.json adds.
DOCKER_DEFAULT_CAPS = {0: "CHOWN", 1: "DAC_OVERRIDE", 3: "FOWNER", 4: "FSETID", 5: "KILL",
                       6: "SETGID", 7: "SETUID", 8: "SETPCAP", 10: "NET_BIND_SERVICE",
                       13: "NET_RAW", 18: "SYS_CHROOT", 27: "MKNOD", 29: "AUDIT_WRITE",
                       31: "SETFCAP"}
CAP_NET_ADMIN = 12


def managed_plugin_capabilities() -> list[set[int]]:
    """Effective capabilities of each running managed-plugin process (master
    and workers), found by the entrypoint config.json gives them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if argv[:4] == [b"/opt/pontoon/bin/python", b"-m", b"plugin", b"serve"]:
            eff = int(next(l for l in status.splitlines() if l.startswith("CapEff:")).split()[1], 16)
            found.append({bit for bit in range(64) if eff >> bit & 1})
    return found
