"""Hosts of the underlay each with a real dockerd and its own clustered
Pontoon, one etcd: what tests/e2e/test_multihost.py and bench/names.py stand
on, set up as docs/cluster.md's walk-through says.

A "host" is a network namespace of the underlay (underlay.py) plus a mount
namespace in which /run/docker/plugins and /run/containerd are private
tmpfs, so each dockerd finds its own Pontoon there and no other, and starts
a containerd of its own. A holder process keeps that mount namespace;
dockerd and the process Pontoon enter it (and the network namespace) with
nsenter. All of them are stopped by PID.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cluster import keys

from . import matrix
from .dockerd import Dockerd, build_busybox_image, stop_pid, wait_for
from .etcd import Etcd
from .plugins import ManagedPontoon, inspect_state
from .server import REPO
from .underlay import Host, Underlay

PLUGINS = "/run/docker/plugins"
# dockerd uses a containerd already listening here: one of the machine's
# would start the managed plugin (network: host) in the machine's namespace,
# not in the host's. Hidden, dockerd starts its own inside the host.
CONTAINERD = "/run/containerd"
SUBNET = "10.92.0.0/24"
AUX = "10.92.0.5"  # an --aux-address: the network's on every host
# The managed plugin under the walk-through's alias, as networks name it:
# dockerd registers a managed plugin's drivers under its full name, tag
# included, and `-d pontoon` finds the plugin but no driver of that name
# ("could not resolve driver pontoon in registry").
MANAGED = "pontoon:latest"
# With TLS: the files as docs/cluster.md has users put them, in the state mount,
# which the managed plugin sees at config.json's state destination.
PEM = {"PONTOON_ETCD_CA": "ca.pem", "PONTOON_ETCD_CERT": "client.pem", "PONTOON_ETCD_KEY": "client.key"}
PLUGIN_STATE = "/var/lib/pontoon"
# A watch event and a netlink change on a loaded machine.
SETTLE = 15


class HostDockerd(Dockerd):
    """A dockerd of one build of the matrix, in a host of the underlay, with
    its own plugin directory."""

    def __init__(self, base: Path, host: Host, build: matrix.Build):
        super().__init__(base, build)
        self.netns = host.ns  # the underlay made it, and removes it
        self.holder: subprocess.Popen | None = None

    def start(self, timeout=60):
        self.base.mkdir(parents=True, exist_ok=True)
        # Mount points: on a fresh machine no containerd has made its
        # directory yet (CI's first run of the bench's hosts failed on it).
        for point in (PLUGINS, CONTAINERD):
            os.makedirs(point, exist_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             f"mount -t tmpfs pontoon-e2e {PLUGINS} && mount -t tmpfs pontoon-e2e {CONTAINERD}"
             " && exec sleep infinity"],
            start_new_session=True)
        wait_for(self._private, timeout=10, interval=0.05, what="the private plugin directory")
        self._spawn()
        self.wait_ready(timeout)

    def _private(self):
        if self.holder.poll() is not None:
            raise RuntimeError(f"mount namespace holder exited {self.holder.returncode}")
        mounts = Path(f"/proc/{self.holder.pid}/mounts").read_text()
        return f" {CONTAINERD} tmpfs " in mounts

    def in_netns(self, argv):
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount=/proc/{self.holder.pid}/ns/mnt",
                f"--wd={REPO}", "--", *map(str, argv)]

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=30)
            self.proc = None
        self.end_shims()
        if self.holder is not None:
            stop_pid(self.holder.pid, grace=5)
            self.holder = None
        shutil.rmtree(self.base, ignore_errors=True)


class HostPontoon:
    """`pontoon serve` as a plain process in the host, the settings as flags."""

    driver = "pontoon"

    def __init__(self, dockerd: HostDockerd, base: Path, settings: dict[str, str]):
        self.dockerd, self.base = dockerd, base
        self.state_dir = base / "state"
        # PONTOON_ETCD_ENDPOINTS -> --etcd-endpoints
        self.flags = [arg for name, value in settings.items()
                      for arg in ("--" + name.removeprefix("PONTOON_").lower().replace("_", "-"), value)]
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTOON_")}
        with open(self.base / "pontoon.log", "a") as log:
            self.proc = subprocess.Popen(
                self.dockerd.in_netns([sys.executable, "-m", "plugin", "serve", "--name", self.driver,
                                       "--socket-dir", PLUGINS, "--state-dir", self.state_dir,
                                       "--log-level", "debug", *self.flags]),
                env={**env, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pontoon exited {self.proc.returncode}:\n{self.log()}")
            return self.dockerd.host("test", "-S", f"{PLUGINS}/{self.driver}.sock", check=False).returncode == 0

        wait_for(listening, timeout=30, what="pontoon's socket")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def log(self) -> str:
        path = self.base / "pontoon.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def cluster_settings(etcd_url: str, host: Host, index: int) -> dict[str, str]:
    """config.json's env names: `docker plugin set` takes them as they are,
    `pontoon serve` as flags. Host 1 sets all three, host 2 the endpoints
    alone (its advertise address is then the route's source to etcd, and
    its ID is made once in its state dir)."""
    settings = {"PONTOON_ETCD_ENDPOINTS": etcd_url}
    if index == 1:
        settings |= {"PONTOON_ADVERTISE_ADDR": host.address, "PONTOON_HOST_ID": "host1"}
    return settings


@dataclass
class Container:
    daemon: HostDockerd
    id: str
    address: str
    mac: str
    endpoint: str

    def pings(self, address: str) -> bool:
        return self.daemon.docker("exec", self.id, "ping", "-c1", "-W1", address, check=False).returncode == 0

    def reaches(self, other: "Container") -> None:
        """The peer arrives through etcd's watch a moment after `docker run`."""
        wait_for(lambda: self.pings(other.address), timeout=SETTLE, interval=0.3,
                 what=f"{self.id[:12]} to reach {other.address}")


@dataclass
class Member:
    """One host: its underlay namespace, dockerd, Pontoon and image."""

    host: Host
    daemon: HostDockerd
    pontoon: HostPontoon | ManagedPontoon
    image: str
    containers: list[str] = field(default_factory=list)

    def network(self, name: str, *args: str) -> str:
        """``args``: more of `docker network create`'s, e.g. ``-o KEY=VALUE``."""
        # The same --aux-address on every host: dockerd reserves it before
        # CreateNetwork on each, and each must get it.
        driver = self.pontoon.driver
        return self.daemon.docker("network", "create", "-d", driver, "--ipam-driver", driver, "--subnet", SUBNET,
                                  "--aux-address", f"router={AUX}", *args, name).stdout.strip()

    def run(self, network: str) -> Container:
        cid = self.daemon.docker("run", "-d", "--network", network, self.image, "sleep", "600").stdout.strip()
        self.containers.append(cid)
        settings, = self.daemon.inspect("container", cid)["NetworkSettings"]["Networks"].values()
        return Container(self.daemon, cid, settings["IPAddress"], settings["MacAddress"], settings["EndpointID"])

    def container(self, network: str, *args: str) -> str:
        """`docker run -d` on network with args of its own (--name, --dns ...):
        the container's ID, for ``cleanup``."""
        cid = self.daemon.docker("run", "-d", "--network", network, *args, self.image, "sleep", "600").stdout.strip()
        self.containers.append(cid)
        return cid

    def gateway(self, network: str) -> str:
        """As Pontoon gave it (a remote IPAM's gateway is not in dockerd's inspect)."""
        network_id = self.daemon.inspect("network", network)["Id"]
        return self.stored_network(network_id)["ipv4"][0]["gateway"].split("/")[0]

    def stored_network(self, network_id: str) -> dict:
        """The network as this host's Pontoon stored it: in the state dir
        given to it (the managed plugin's is its settable mount)."""
        found = [n for n in inspect_state(self.pontoon.state_dir)["networks"] if n["id"] == network_id]
        assert found, f"network {network_id[:12]} is not in {self.pontoon.state_dir}"
        return found[0]

    def host_id(self) -> str:
        return (self.pontoon.state_dir / "host-id").read_text().strip()

    def links(self, kind: str) -> dict[str, dict]:
        out = self.daemon.host("ip", "-d", "-j", "link", "show", "type", kind).stdout
        return {link["ifname"]: link for link in json.loads(out or "[]")}

    def peers(self, device: str) -> tuple[dict[str, str], dict[str, str]]:
        """Static entries on the VXLAN device: address -> MAC, MAC -> VTEP."""
        neigh = json.loads(self.daemon.host("ip", "-j", "neigh", "show", "dev", device).stdout or "[]")
        fdb = json.loads(self.daemon.host("bridge", "-j", "fdb", "show", "dev", device).stdout or "[]")
        return ({n["dst"]: n["lladdr"] for n in neigh if "lladdr" in n},
                {f["mac"]: f["dst"] for f in fdb if "dst" in f})

    def cleanup(self, network: str) -> None:
        for cid in self.containers:
            self.daemon.docker("rm", "-f", cid, check=False)
        self.daemon.docker("network", "rm", network, check=False)


@dataclass
class TwoHosts:
    etcd: Etcd
    members: list[Member]
    underlay: Underlay

    def advertised(self, host_id: str) -> str | None:
        """The address host_id announced in etcd, None when it has no live record."""
        value = self.etcd.ctl("get", keys.key("hosts", host_id), "--print-value-only").stdout.strip()
        return json.loads(value)["advertise"] if value else None

    def has(self, key: str) -> bool:
        return bool(self.etcd.keys(key))


@contextmanager
def two_hosts_up(build: matrix.Build, mode: str, tls: bool, tmp_path: Path, plugin_dir: Path | None = None
                 ) -> Iterator[TwoHosts]:
    """Two hosts on a fresh underlay and etcd, each with a dockerd of ``build``
    and Pontoon as ``mode`` says ("process" or "managed", the latter from the
    rootfs in ``plugin_dir``), etcd over TLS with ``tls``; all stopped and
    removed on exit."""
    underlay = Underlay()
    etcd = Etcd(tmp_path / "etcd", underlay.address, underlay.ns, tls=tls)
    # dockerd's containerd puts sockets under the exec root: pytest's tmp_path
    # makes their paths too long for a Unix socket, and containerd never answers.
    short = Path(tempfile.mkdtemp(prefix="ptmh-"))
    hosts: list[Host] = []
    started: list[list] = [[], []]  # per host, what to stop, in reverse

    def bring_up(index: int) -> Member:
        host, number = hosts[index], index + 1
        daemon = HostDockerd(short / f"d{number}", host, build)
        started[index].append(daemon)
        daemon.start()
        settings = cluster_settings(etcd.url, host, number)
        base = tmp_path / f"pontoon{number}"
        if tls:
            (base / "state/etcd").mkdir(parents=True)
            for name in PEM.values():
                shutil.copy(etcd.pki[name], base / "state/etcd")
            settings |= {setting: f"{PLUGIN_STATE}/etcd/{name}" for setting, name in PEM.items()}
        # Names (tests/e2e/test_multihost_names.py): dockerd's API socket given
        # as docs/cluster.md has users give it, and no resolver to forward other
        # names to, so the queries stay on this machine.
        settings["PONTOON_DNS_RESOLV_CONF"] = "/dev/null"
        settings["PONTOON_DOCKER_SOCKET" if mode == "process" else "docker-socket.source"] = str(daemon.sock)
        if mode == "process":
            plugin = HostPontoon(daemon, base, settings)
        else:
            # Named as `docker plugin install --alias pontoon` names it. The
            # state mount is the one thing set that users leave alone: two
            # hosts on one machine must not share /var/lib/pontoon (nor touch it).
            plugin = ManagedPontoon(daemon, base, plugin_dir, ref=MANAGED,
                                    settings=[f"{k}={v}" for k, v in settings.items()])
        started[index].append(plugin)
        plugin.start()
        return Member(host, daemon, plugin, build_busybox_image(daemon, tmp_path / f"image{number}"))

    def take_down(things: list) -> None:
        for thing in reversed(things):
            thing.stop()

    # The two hosts side by side: `docker plugin create` of the rootfs (a
    # gzip of 190 MB in dockerd) is most of a managed case's time.
    try:
        hosts += [underlay.add_host() for _ in range(2)]
        etcd.start()
        with ThreadPoolExecutor(max_workers=2) as pool:
            members = list(pool.map(bring_up, range(2)))
        yield TwoHosts(etcd, members, underlay)
    finally:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(take_down, started))
        etcd.remove()
        underlay.close()
        shutil.rmtree(short, ignore_errors=True)

