"""Two real dockerds on two hosts of one underlay, each with its own clustered
Pontoon, one etcd: `docker network create -d pontoon --ipam-driver pontoon
--subnet S` on both, `docker run` on each, and the containers reach each
other by address; a container removed on one host leaves the other's
datapath, and a network removed and made again on one host works again.

Pontoon runs the two ways users install it, each configured as docs/cluster.md's
walk-through says: a plain process (`pontoon serve --etcd-endpoints …`) and
the managed plugin (`docker plugin set pontoon PONTOON_ETCD_ENDPOINTS=…`).
Host 1 names its advertise address and host ID as well; host 2 sets only the
etcd endpoints, so the defaults are checked too.

A "host" is a network namespace of the underlay (tests/multihost) plus a
mount namespace in which /run/docker/plugins and /run/containerd are private
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

import pytest

from cluster import keys
from datapath.names import vxlan_name
from tests.e2e import matrix
from tests.e2e.dockerd import BUSYBOX, Dockerd, build_busybox_image, run, stop_pid, wait_for
from tests.e2e.helpers import inspect_state
from tests.e2e.plugins import ManagedPontoon
from tests.harness.server import REPO
from tests.multihost.etcd import Etcd, missing
from tests.multihost.underlay import Host, Underlay

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
        os.makedirs(PLUGINS, exist_ok=True)
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

    def network(self, name: str) -> str:
        # The same --aux-address on every host: dockerd reserves it before
        # CreateNetwork on each, and each must get it.
        driver = self.pontoon.driver
        return self.daemon.docker("network", "create", "-d", driver, "--ipam-driver", driver,
                                  "--subnet", SUBNET, "--aux-address", f"router={AUX}", name).stdout.strip()

    def run(self, network: str) -> Container:
        cid = self.daemon.docker("run", "-d", "--network", network, self.image, "sleep", "600").stdout.strip()
        self.containers.append(cid)
        settings, = self.daemon.inspect("container", cid)["NetworkSettings"]["Networks"].values()
        return Container(self.daemon, cid, settings["IPAddress"], settings["MacAddress"], settings["EndpointID"])

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

    def advertised(self, host_id: str) -> str | None:
        """The address host_id announced in etcd, None when it has no live record."""
        value = self.etcd.ctl("get", keys.key("hosts", host_id), "--print-value-only").stdout.strip()
        return json.loads(value)["advertise"] if value else None

    def has(self, key: str) -> bool:
        return bool(self.etcd.keys(key))


def cases():
    """The plain process on Debian 12's dockerd only, the managed plugin on
    every dockerd of the matrix. What changes with dockerd's version is the
    protocol and the plugin machinery (how a managed plugin is started, with
    which settings, in which namespaces, where its socket is), which the
    managed case meets on each; the process case adds only how Pontoon is
    started, which no dockerd version changes. A case costs two dockerds
    and an etcd: 14 s for the process, 40 to 60 s for the managed plugin
    (most of it `docker plugin create`), so the full square would add about
    30 s for nothing the other cases do not already check.

    The managed plugin on the newest dockerd reaches etcd over TLS with
    client certificates, set up as docs/cluster.md says (the PEM files in the
    state mount): that depends on the plugin's mounts and settings, not on
    dockerd's version, so one case shows it without costing another."""
    out = []
    params = matrix.params()
    for param in params:
        build, = param.values
        modes = ("process", "managed") if build is matrix.SYSTEM else ("managed",)
        tls = param is params[-1]
        out += [pytest.param((build, mode, tls and mode == "managed"),
                             id=f"{param.id}-{mode}{'-tls' if tls and mode == 'managed' else ''}",
                             marks=param.marks) for mode in modes]
    return out


@pytest.fixture(params=cases())
def two_hosts(request, tmp_path):
    build, mode, tls = request.param
    reason = missing() or build.missing()
    if reason:
        pytest.skip(reason)
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip(f"{BUSYBOX} is missing: apt-get install busybox-static")
    for tool in ("unshare", "nsenter", "bridge"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install util-linux iproute2)")
    plugin_dir = request.getfixturevalue("plugin_dir") if mode == "managed" else None
    with two_hosts_up(build, mode, tls, tmp_path, plugin_dir) as made:
        yield made


@contextmanager
def two_hosts_up(build: matrix.Build, mode: str, tls: bool, tmp_path: Path, plugin_dir: Path | None = None
                 ) -> Iterator[TwoHosts]:
    """The two hosts, etcd and Pontoons of ``two_hosts`` (bench/names.py runs them too)."""
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
        # Names (test_multihost_names.py): dockerd's API socket given as the
        # docs/cluster.md has users give it, and no resolver to forward other names
        # to, so the tests' queries stay on this machine.
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
        yield TwoHosts(etcd, members)
    finally:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(take_down, started))
        etcd.remove()
        underlay.close()
        shutil.rmtree(short, ignore_errors=True)


def test_containers_on_two_real_dockerds_reach_each_other(two_hosts, uid):
    one, two = two_hosts.members
    name = f"mh{uid}"
    try:
        net_ids = [member.network(name) for member in (one, two)]
        a, b = one.run(name), two.run(name)
        assert a.address != b.address and AUX not in (a.address, b.address)
        refused = two.daemon.docker("run", "--rm", "--network", name, "--ip", AUX, two.image, "true", check=False)
        assert refused.returncode != 0 and AUX in refused.stderr, refused.stderr
        a.reaches(b)
        b.reaches(a)

        # Each Pontoon reached etcd from its host (nothing else can reach
        # the underlay) and announced the address it is known by there: the
        # given one, or by default the route's source to etcd in the host.
        ids = ["host1", two.host_id()]
        assert [two_hosts.advertised(i) for i in ids] == [one.host.address, two.host.address]
        # Its state is in the state dir it was given, and the network's
        # VXLAN device in the host's namespace, on the bridge, from the
        # host's underlay address, with the VNI of the cluster's network.
        stored = [member.stored_network(net_id) for member, net_id in zip((one, two), net_ids)]
        assert len({(s["cluster"]["pool"], s["cluster"]["vni"]) for s in stored}) == 1
        # Each host's own address on the network (cluster/hostaddr.py): two.
        own = [s["cluster"]["host_address"].split("/")[0] for s in stored]
        assert own[0] != own[1]
        devices = []
        for member, network in zip((one, two), stored):
            device = vxlan_name(network["tag"])
            link = member.links("vxlan").get(device)
            assert link, f"no vxlan {device} in {member.host.ns}"
            data = link["linkinfo"]["info_data"]
            assert (data["id"], data["local"], link["master"]) == \
                (network["cluster"]["vni"], member.host.address, network["bridge"])
            assert run(["ip", "link", "show", "dev", device], timeout=10, check=False).returncode != 0, \
                f"vxlan {device} is in the machine's own namespace"
            devices.append(device)
        pool = stored[0]["cluster"]["pool"]

        # `docker rm -f` on host 2: its record leaves etcd, host 1's peer
        # entries for it go, and its address no longer answers from host 1.
        b_record = keys.key("endpoints", pool, ids[1], b.endpoint)
        assert two_hosts.has(b_record)
        neighbours, fdb = one.peers(devices[0])
        bridge_mac = neighbours.pop(own[1])  # host 2's own address, at its bridge's MAC
        assert (neighbours, fdb) == ({b.address: b.mac}, {b.mac: two.host.address, bridge_mac: two.host.address})
        # Host 1 itself reaches host 2's container, from its own address.
        assert one.daemon.host("ping", "-c", "1", "-W", "3", b.address, check=False).returncode == 0
        two.daemon.docker("rm", "-f", b.id)
        wait_for(lambda: one.peers(devices[0]) == ({own[1]: bridge_mac}, {bridge_mac: two.host.address}),
                 timeout=SETTLE, interval=0.3,
                 what="host 1 to drop the removed container's peer entries")
        assert not two_hosts.has(b_record)
        assert not a.pings(b.address)

        # `docker network rm` on host 2 ends its membership alone: host 1
        # keeps the network, and host 2 making it again is one network again.
        two.daemon.docker("network", "rm", name)
        assert not two_hosts.has(keys.key("members", pool, ids[1]))
        assert two_hosts.has(keys.key("members", pool, ids[0]))
        assert devices[1] not in two.links("vxlan") and devices[0] in one.links("vxlan")
        two.network(name)
        c = two.run(name)
        a.reaches(c)
        c.reaches(a)
    finally:
        for member in (one, two):
            member.cleanup(name)
