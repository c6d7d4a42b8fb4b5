"""Two real dockerds on two hosts of one underlay, each with its own clustered
Pontoon, one etcd: `docker network create -d pontoon --ipam-driver pontoon
--subnet S` on both, `docker run` on each, and the containers reach each
other by address.

A "host" is a network namespace of the underlay (tests/multihost) plus a
mount namespace in which /run/docker/plugins is a private tmpfs, so each
dockerd finds its own Pontoon there and no other. A holder process keeps
that mount namespace; dockerd and Pontoon enter it (and the network
namespace) with nsenter. All three are stopped by PID.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.dockerd import Dockerd, build_busybox_image, stop_pid, wait_for
from tests.harness.server import REPO
from tests.multihost.cluster import cluster_flags
from tests.multihost.etcd import Etcd, missing
from tests.multihost.underlay import Host, Underlay

PLUGINS = "/run/docker/plugins"
SUBNET = "10.92.0.0/24"
AUX = "10.92.0.5"  # an --aux-address: the network's on every host


class HostDockerd(Dockerd):
    """A dockerd in a host of the underlay, with its own plugin directory."""

    def __init__(self, base: Path, host: Host):
        super().__init__(base)
        self.netns = host.ns  # the underlay made it, and removes it
        self.holder: subprocess.Popen | None = None

    def start(self, timeout=60):
        self.base.mkdir(parents=True, exist_ok=True)
        os.makedirs(PLUGINS, exist_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             f"mount -t tmpfs pontoon-e2e {PLUGINS} && exec sleep infinity"],
            start_new_session=True)
        wait_for(self._private, timeout=10, interval=0.05, what="the private plugin directory")
        self._spawn()
        self.wait_ready(timeout)

    def _private(self):
        if self.holder.poll() is not None:
            raise RuntimeError(f"mount namespace holder exited {self.holder.returncode}")
        mounts = Path(f"/proc/{self.holder.pid}/mounts").read_text()
        return f" {PLUGINS} tmpfs " in mounts

    def in_netns(self, argv):
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount=/proc/{self.holder.pid}/ns/mnt",
                f"--wd={REPO}", "--", *map(str, argv)]

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=30)
            self.proc = None
        if self.holder is not None:
            stop_pid(self.holder.pid, grace=5)
            self.holder = None
        shutil.rmtree(self.base, ignore_errors=True)


class HostPontoon:
    def __init__(self, dockerd: HostDockerd, base: Path, flags: tuple[str, ...]):
        self.dockerd, self.base, self.flags = dockerd, base, flags
        self.proc: subprocess.Popen | None = None

    def start(self):
        (self.base / "state").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTOON_")}
        with open(self.base / "pontoon.log", "a") as log:
            self.proc = subprocess.Popen(
                self.dockerd.in_netns([sys.executable, "-m", "plugin", "serve", "--name", "pontoon",
                                       "--socket-dir", PLUGINS, "--state-dir", self.base / "state",
                                       "--log-level", "debug", *self.flags]),
                env={**env, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pontoon exited {self.proc.returncode}:\n{self.log()}")
            return self.dockerd.host("test", "-S", f"{PLUGINS}/pontoon.sock", check=False).returncode == 0

        wait_for(listening, timeout=30, what="pontoon's socket")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def log(self) -> str:
        path = self.base / "pontoon.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture
def two_hosts(tmp_path):
    reason = missing()
    if reason:
        pytest.skip(reason)
    for tool in ("unshare", "nsenter", "/usr/sbin/dockerd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install util-linux docker.io)")
    underlay = Underlay()
    etcd = Etcd(tmp_path / "etcd", underlay.address, underlay.ns)
    # dockerd's containerd puts sockets under the exec root: pytest's tmp_path
    # makes their paths too long for a Unix socket, and containerd never answers.
    short = Path(tempfile.mkdtemp(prefix="ptmh-"))
    started = []
    try:
        etcd.start()
        pairs = []
        for index in (1, 2):
            host = underlay.add_host()
            daemon = HostDockerd(short / f"d{index}", host)
            daemon.start()
            started.append(daemon)
            plugin = HostPontoon(daemon, tmp_path / f"pontoon{index}", cluster_flags(etcd.url, host, f"host{index}"))
            plugin.start()
            started.append(plugin)
            pairs.append((daemon, build_busybox_image(daemon, tmp_path / f"image{index}")))
        yield pairs
    finally:
        for thing in reversed(started):
            thing.stop()
        etcd.remove()
        underlay.close()
        shutil.rmtree(short, ignore_errors=True)


def test_containers_on_two_real_dockerds_reach_each_other(two_hosts, uid):
    name = f"mh{uid}"
    addresses, containers = [], []
    try:
        for daemon, image in two_hosts:
            # The same --aux-address on both: dockerd reserves it before
            # CreateNetwork on each host, and both must get it.
            daemon.docker("network", "create", "-d", "pontoon", "--ipam-driver", "pontoon",
                          "--subnet", SUBNET, "--aux-address", f"router={AUX}", name)
            cid = daemon.docker("run", "-d", "--network", name, image, "sleep", "600").stdout.strip()
            containers.append((daemon, cid))
            addresses.append(daemon.docker("inspect", "-f",
                                           "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid).stdout.strip())
        assert len(set(addresses)) == 2 and AUX not in addresses, addresses
        daemon, image = two_hosts[1]
        refused = daemon.docker("run", "--rm", "--network", name, "--ip", AUX, image, "true", check=False)
        assert refused.returncode != 0 and AUX in refused.stderr, refused.stderr
        for (daemon, cid), other in ((containers[0], addresses[1]), (containers[1], addresses[0])):
            wait_for(lambda: daemon.docker("exec", cid, "ping", "-c1", "-W1", other, check=False).returncode == 0,
                     timeout=15, interval=0.3, what=f"{cid[:12]} to reach {other}")
    finally:
        for daemon, cid in containers:
            daemon.docker("rm", "-f", cid, check=False)
        for daemon, _ in two_hosts:
            daemon.docker("network", "rm", name, check=False)

