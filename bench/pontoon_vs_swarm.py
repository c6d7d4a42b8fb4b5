"""Pontoon side by side with Docker's own overlay (issue 22).

Three network-namespace hosts per system on one underlay bridge
(testbed/underlay.py), each with its own dockerd of the matrix's 28.5 build
(testbed/dockerd.py), the busybox image imported into each. The first three
are a swarm (`docker swarm init --advertise-addr` on the first, `join` on the
others, one `--attachable` overlay network, no encryption); the other three
are plain dockerds, each with a clustered Pontoon (`pontoon serve`, log level
info) on one etcd on the underlay. Each system's measures run between its
hosts A and B; its third host, C, holds a container on the network all along,
so every figure includes the watch, gossip and peer work of a third member,
and the killed host is watched from two survivors. Both networks
are a /24 with the MTU each driver defaults to (the underlay's 1500 less
VXLAN's 50; the run reads it from a container). Two systems on separate
hosts run at the same time, so every figure is taken as interleaved pairs
(which system goes first alternates), and neither system's control plane
runs on the other's hosts.

- first reply: from starting `docker run -d` on host A to the first echo
  reply a container there gets from a container on host B (its address).
  The container's own command pings in a loop (busybox `ping -c1 -W1`: an
  unanswered probe is retried after a second, as a TCP SYN would be) and
  then writes to a FIFO the benchmark holds open, so the time is read on
  the host, not in the container. Steady state: both hosts already have a
  container on the network. It includes the docker CLI, dockerd's start of
  the container (for the overlay also its second interface, on
  docker_gwbridge) and the peer learning B needs to answer.
- first reply by name: from starting `docker run -d --name x` on host A to
  the first echo reply B's container gets from x by its name (busybox
  ping in a loop in B's container, started before: each try resolves the
  name again). Pontoon's B container has `--dns` its network's gateway
  (docs/cluster.md "Names across hosts": dockerd's resolver forwards the
  names it does not know there); the overlay's embedded DNS knows the
  attachable network's containers of every node.
- gone: from starting `docker rm -f` of a container on B to the last echo
  reply A's container gets from its address (the host's iputils ping,
  every 10 ms, timestamps from the kernel clock).
- RTT: the host's iputils ping inside A's container's namespace (nsenter)
  to B's container, every 10 ms, and back to back (ping -A).
- iperf3: Debian's binary run from the host inside the containers'
  namespaces (nsenter; no image carries it), 1 and 4 streams, and host to
  host on the underlay addresses (the limit).
- RTT and iperf3 also measure Pontoon twice more in the same rotations, as
  diagnoses of what its packets' path costs (see DIAGNOSES): with bridged
  frames kept out of iptables, and with the network's frames kept out of
  conntrack. Since its frames between hosts skip the bridge
  (datapath.fastpath), both check that nothing of that cost is left.
- killed host (last, once per run: host B stays down): kill -9 of what
  runs the system on B (Pontoon's: Pontoon and dockerd; the overlay's:
  dockerd, its swarm agent and gossip included), its containers left
  running (their shims survive), then for a window, from A: until B's
  host leaves the cluster's record (Pontoon: `hosts/<B>` leaves etcd, its
  lease's TTL; overlay: the manager on A lists B as down), and until B's
  container stops answering A's (the entries for it leave A's tables).
  Pontoon keeps them by design until reclaim (docs/cluster.md "Liveness
  by lease"); the overlay's gossip drops a failed node's entries.
- idle: per host, CPU of dockerd, its containerd, the shims and containers,
  and Pontoon (plus a third of etcd's: the swarm keeps its store in the
  manager's dockerd), each part kept apart, and bytes both ways on the
  host's underlay interface, with 1, 10 and then 50 containers per host.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

from testbed import matrix
from testbed.dockerd import build_busybox_image, descendants, run as run_cmd
from testbed.dockerd_hosts import HostDockerd, HostPontoon, cluster_settings
from testbed.etcd import ETCD, Etcd
from testbed.underlay import UPLINK, Host, Underlay, link_stats

from .stats import pair_ratios, percentile

SWARM_RELEASE = "28.5"  # the matrix's newest: its swarm is the current one
SUBNETS = {"overlay": "10.93.0.0/24", "pontoon": "10.94.0.0/24"}
# Given, so the containers' --dns can name it (a remote IPAM's is not in dockerd's inspect).
PONTOON_GATEWAY = "10.94.0.1"
NETWORK = "bench"
SYSTEMS = ("pontoon", "overlay")
# Pontoon measured again with bridged frames kept out of iptables (see
# bridge_netfilter_off), and with its network's frames kept out of conntrack
# (see untracked).
UNFILTERED = "pontoon_unfiltered"
UNTRACKED = "pontoon_untracked"
BRIDGE_NETFILTER = "net.bridge.bridge-nf-call-iptables"
REPLY_LIMIT = 30.0  # seconds a first reply may take before the pair fails
# Pairs and windows: the RTT, throughput and idle CPU ratios sit near 1, where
# 8 RTT and 4 iperf3 rounds, and 60 s of idle in 10 s windows, let two runs
# disagree on a verdict; these narrow a median's spread by a fifth (RTT,
# iperf3) and nearly a third (idle: twice the windows), for 6 more minutes.
FULL = {"hosts": 3, "reply_pairs": 12, "rtt_pairs": 12, "rtt_pings": 200, "b2b_pings": 2000,
        "iperf_pairs": 6, "iperf_seconds": 5,
        "idle_seconds": 120, "idle_windows": 12, "idle_counts": (1, 10, 50),
        "name_pairs": 12, "gone_pairs": 12, "killed_window": 90}
QUICK = {"hosts": 3, "reply_pairs": 2, "rtt_pairs": 2, "rtt_pings": 20, "b2b_pings": 100,
         "iperf_pairs": 1, "iperf_seconds": 1,
         "idle_seconds": 6, "idle_windows": 2, "idle_counts": (1, 2),
         "name_pairs": 2, "gone_pairs": 2, "killed_window": 20}


def swarm_build() -> matrix.Build | None:
    return next((b for b in matrix.builds() if b.version.startswith(SWARM_RELEASE + ".")), None)


def missing() -> str | None:
    """Why this benchmark cannot run here, or None."""
    from testbed.etcd import missing as etcd_missing

    build = swarm_build()
    if build is None:
        return f"no dockerd {SWARM_RELEASE} under {matrix.FETCHED}: make dockerds"
    for tool, package in (("iperf3", "iperf3"), ("nsenter", "util-linux"), ("ping", "iputils-ping")):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install {package}"
    return etcd_missing() or build.missing()


@dataclass
class System:
    """One of the two: its hosts' dockerds and the network on them."""

    name: str
    hosts: list[Host]
    daemons: list[HostDockerd]
    image: str = "busybox:local"
    pontoons: list[HostPontoon] = field(default_factory=list)

    def docker(self, index: int, *args, timeout: float = 60):
        return self.daemons[index].docker(*args, timeout=timeout)

    def start(self, index: int, *command: str, options: tuple = ()) -> str:
        return self.docker(index, "run", "-d", "--network", NETWORK, *options, self.image,
                           *command).stdout.strip()

    def address(self, index: int, cid: str) -> str:
        return self.docker(index, "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}",
                           cid).stdout.strip()

    def pid(self, index: int, cid: str) -> int:
        return int(self.docker(index, "inspect", "-f", "{{.State.Pid}}", cid).stdout)

    def cpu_ticks(self, index: int) -> dict[str, int]:
        """utime + stime of everything that runs this host's containers and
        network, by part: dockerd and its children (containerd), the shims
        and theirs (the containers), Pontoon (the master and its workers)."""
        daemon = self.daemons[index]
        parts = {"dockerd": [daemon.proc.pid], "shims": daemon.shims()}
        if self.pontoons:
            parts["pontoon"] = [self.pontoons[index].proc.pid]
        return {part: sum(_ticks(pid) for root in roots for pid in (root, *descendants(root)))
                for part, roots in parts.items()}


def _ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0  # gone since it was listed
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


@dataclass
class Testbed:
    underlay: Underlay
    etcd: Etcd
    systems: dict[str, System]


@contextmanager
def testbed(workdir: Path, per_system: int):
    """``per_system`` hosts for each system: the swarm's first, then Pontoon's."""
    build = swarm_build()
    underlay = Underlay()
    # etcd's data on tmpfs, as bench/multihost.py has it (this disk's fsync).
    etcd = Etcd(workdir / "etcd", underlay.address, underlay.ns,
                data_dir=Path(tempfile.mkdtemp(prefix="pontoon-bench-etcd-", dir="/dev/shm")))
    # containerd's sockets go under the exec root: keep its path short.
    short = Path(tempfile.mkdtemp(prefix="ptvs-"))
    daemons: list[HostDockerd] = []
    pontoons: list[HostPontoon] = []
    try:
        hosts = [underlay.add_host() for _ in range(2 * per_system)]
        etcd.start()
        daemons += [HostDockerd(short / f"d{i + 1}", host, build) for i, host in enumerate(hosts)]
        with ThreadPoolExecutor(max_workers=len(daemons)) as pool:
            list(pool.map(lambda d: d.start(), daemons))
            list(pool.map(lambda i: build_busybox_image(daemons[i], workdir / f"image{i + 1}"),
                          range(len(daemons))))
        overlay = System("overlay", hosts[:per_system], daemons[:per_system])
        manager, *workers = overlay.daemons
        manager.docker("swarm", "init", "--advertise-addr", hosts[0].address)
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for worker in workers:
            worker.docker("swarm", "join", "--token", token, f"{hosts[0].address}:2377")
        manager.docker("network", "create", "-d", "overlay", "--attachable", "--subnet", SUBNETS["overlay"], NETWORK)

        for number, (daemon, host) in enumerate(zip(daemons[per_system:], hosts[per_system:]), start=1):
            # Names across hosts follow this host's dockerd (below 29 they come from
            # its API); names it does not hold are not forwarded off this machine.
            settings = cluster_settings(etcd.url, host, number) | {
                "PONTOON_LOG_LEVEL": "info", "PONTOON_DOCKER_SOCKET": str(daemon.sock),
                "PONTOON_DNS_RESOLV_CONF": "/dev/null"}
            pontoons.append(HostPontoon(daemon, workdir / f"pontoon{number}", settings))
            pontoons[-1].start()
            daemon.docker("network", "create", "-d", "pontoon", "--ipam-driver", "pontoon",
                          "--subnet", SUBNETS["pontoon"], "--gateway", PONTOON_GATEWAY, NETWORK)
        yield Testbed(underlay, etcd, {"overlay": overlay,
                                       "pontoon": System("pontoon", hosts[per_system:], daemons[per_system:],
                                                         pontoons=pontoons)})
    finally:
        # The dockerds first: stopping, they still call their Pontoon for
        # the containers they take down.
        with ThreadPoolExecutor(max_workers=max(1, len(daemons))) as pool:
            list(pool.map(lambda d: d.stop(), daemons))
        for pontoon in pontoons:
            pontoon.stop()
        etcd.remove()
        underlay.close()
        shutil.rmtree(short, ignore_errors=True)


@contextmanager
def _on_each(hosts: list[Host], apply: list[str], undo: list[str]):
    """``apply`` run on every host for the measure, ``undo`` after it."""
    for host in hosts:
        host.run(*apply)
    try:
        yield
    finally:
        for host in hosts:
            host.run(*undo)


def bridge_netfilter_off(hosts: list[Host]):
    """A diagnosis, not a setting for users: Pontoon's bridge is in the
    host's namespace, where dockerd has br_netfilter send bridged frames
    through iptables (Pontoon's isolation rules rely on it) and conntrack;
    the overlay's bridge is in a namespace of its own with no rules. With
    it off for one measurement, the difference is what that path still
    costs the frames measured (nothing, once they skip the bridge)."""
    sysctl = ["sysctl", "-q", "-w"]
    return _on_each(hosts, [*sysctl, f"{BRIDGE_NETFILTER}=0"], [*sysctl, f"{BRIDGE_NETFILTER}=1"])


def untracked(hosts: list[Host]):
    """A diagnosis, not a setting for users: the frames of Pontoon's network
    between its containers (to an address of the subnet that is not the
    host's own, so the gateway, its DNS and published ports reached through
    a host address stay tracked) skip conntrack, with a raw-table NOTRACK.
    Frames that still crossed the bridge would pass br_netfilter and the
    FORWARD chain all the same, so against bridge_netfilter_off it tells
    conntrack's share of that path's cost from the rest's."""
    rule = ["PREROUTING", "-d", SUBNETS["pontoon"], "-m", "addrtype", "!", "--dst-type", "LOCAL",
            "-j", "CT", "--notrack"]
    return _on_each(hosts, ["iptables", "-t", "raw", "-I", *rule], ["iptables", "-t", "raw", "-D", *rule])


# Pontoon again, with one cost of its packets' path taken off for the measure.
DIAGNOSES = {UNFILTERED: bridge_netfilter_off, UNTRACKED: untracked}


def diagnosed(kind: str, hosts: list[Host]):
    """The diagnosis ``kind`` stands for on Pontoon's hosts, or nothing."""
    return DIAGNOSES[kind](hosts) if kind in DIAGNOSES else nullcontext()


def rotations(pairs: int, *kinds: str):
    """Each pair runs every kind once; which goes first rotates."""
    for i in range(pairs):
        shift = i % len(kinds)
        yield kinds[shift:] + kinds[:shift]


def _nsenter(pid: int, *argv: str) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n", "--", *argv]


class Pinger:
    """ping in A's container's namespace for as long as a measure lasts,
    each reply with its kernel time (-D: the clock time.time() reads).
    Its output goes to a file: read only at the end, a pipe fills (64 KiB,
    about 45 s of replies at 20 a second) and ping then blocks writing,
    which looks exactly like the peer falling silent. It ends with SIGINT,
    on which ping flushes what it has printed."""

    def __init__(self, a_pid: int, address: str, interval: str):
        self._out = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(_nsenter(a_pid, "ping", "-n", "-D", "-i", interval, "-W", "1", address),
                                      stdout=self._out, stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> str:
        """Everything ping printed."""
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=30)
        finally:
            self._out.seek(0)
            out = self._out.read()
            self._out.close()
        return out

    @staticmethod
    def replies(out: str) -> list[float]:
        """The kernel times of the replies in ``out``."""
        return [float(t) for t in re.findall(r"^\[([\d.]+)\] \d+ bytes from", out, re.M)]


@dataclass
class Peers:
    """A long-running container on each of a system's hosts; A's and B's
    are measured."""

    system: System
    a_pid: int
    b_pid: int
    b_address: str
    mtu: int
    b_id: str


def place(system: System) -> Peers:
    """B's container asks names of Pontoon's DNS on the gateway, as users set it."""
    dns = ("--dns", PONTOON_GATEWAY) if system.name == "pontoon" else ()
    a, b = system.start(0, "sleep", "infinity"), system.start(1, "sleep", "infinity", options=dns)
    for index in range(2, len(system.hosts)):
        system.start(index, "sleep", "infinity")
    mtu = int(system.docker(1, "exec", b, "cat", "/sys/class/net/eth0/mtu").stdout)
    return Peers(system, system.pid(0, a), system.pid(1, b), system.address(1, b), mtu, b)


def first_reply_s(peers: Peers, workdir: Path) -> tuple[float, float]:
    """Seconds from starting `docker run -d` on A to the first reply to A's
    new container from B's, and to the CLI's printing the container's ID
    (its return)."""
    system = peers.system
    mailbox = Path(tempfile.mkdtemp(prefix=f"reply-{system.name}-", dir=workdir))
    os.mkfifo(mailbox / "reply")
    # Read and write ends both ours: no EOF, and the container's write never blocks.
    fifo = os.open(mailbox / "reply", os.O_RDWR | os.O_NONBLOCK)
    script = (f"until ping -c1 -W1 {peers.b_address} >/dev/null 2>&1; do :; done; "
              "echo up > /reply/reply; exec sleep infinity")
    daemon = system.daemons[0]
    try:
        begin = time.perf_counter()
        cli = subprocess.Popen([daemon.build.docker, "-H", f"unix://{daemon.sock}", "run", "-d", "--network",
                                NETWORK, "-v", f"{mailbox}:/reply", system.image, "sh", "-c", script],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        replied = returned = None
        while replied is None and time.perf_counter() - begin < REPLY_LIMIT:
            ready, _, _ = select.select([fifo] + ([cli.stdout] if returned is None else []), [], [], 1.0)
            now = time.perf_counter() - begin
            if cli.stdout in ready:
                returned = now
            if fifo in ready:
                replied = now
        out, err = cli.communicate(timeout=60)
        if cli.returncode != 0:
            raise RuntimeError(f"docker run on {system.name} host A exited {cli.returncode}: {err}")
        if replied is None:
            raise TimeoutError(f"{system.name}: no reply from {peers.b_address} within {REPLY_LIMIT:.0f} s")
        system.docker(0, "rm", "-f", out.strip())
        return replied, returned if returned is not None else replied
    finally:
        os.close(fifo)
        shutil.rmtree(mailbox, ignore_errors=True)


def first_reply_by_name_s(peers: Peers, name: str) -> float:
    """Seconds from starting `docker run -d --name <name>` on A to the first
    reply B's container gets from it by that name."""
    system = peers.system
    daemon = system.daemons[1]
    script = (f"echo asking; until ping -c1 -W1 {name} >/dev/null 2>&1; do usleep 10000; done; echo up")
    asker = subprocess.Popen([daemon.build.docker, "-H", f"unix://{daemon.sock}", "exec", peers.b_id,
                              "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if asker.stdout.readline().strip() != "asking":
            raise RuntimeError(f"{system.name}: docker exec on B: {asker.stderr.read()}")
        begin = time.perf_counter()
        system.docker(0, "run", "-d", "--network", NETWORK, "--name", name, system.image, "sleep", "infinity")
        ready, _, _ = select.select([asker.stdout], [], [], REPLY_LIMIT)
        if not ready or asker.stdout.readline().strip() != "up":
            raise TimeoutError(f"{system.name}: {name} not answering by name within {REPLY_LIMIT:.0f} s")
        return time.perf_counter() - begin
    finally:
        asker.kill()  # the CLI; its loop in the container ends with the container or at "up"
        asker.communicate(timeout=30)
        system.docker(0, "rm", "-f", name, timeout=60)


def gone_s(peers: Peers) -> tuple[float, float]:
    """Seconds from starting `docker rm -f` of a container on B to the last
    reply A's container got from its address, and to the CLI's return."""
    system = peers.system
    cid = system.start(1, "sleep", "infinity")
    address = system.address(1, cid)
    deadline = time.monotonic() + REPLY_LIMIT
    while run_cmd(_nsenter(peers.a_pid, "ping", "-n", "-c1", "-W1", address), timeout=30, check=False).returncode:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{system.name}: {address} never answered A")
    pinger = Pinger(peers.a_pid, address, "0.01")
    try:
        time.sleep(0.3)
        begin = time.time()
        system.docker(1, "rm", "-f", cid)
        returned = time.time() - begin
        time.sleep(1.0)  # a reply still on its way, and a second of silence
    finally:
        out = pinger.stop()
    replies = Pinger.replies(out)
    if not replies or replies[-1] < begin - 0.1:
        raise RuntimeError(f"{system.name}: no reply from {address} while it was removed:\n{out[-500:]}")
    return max(0.0, replies[-1] - begin), returned


def rtt_ms(peers: Peers, count: int, paced: bool = True) -> list[float]:
    """Paced: 10 ms apart, as an idle link's traffic comes, so each ping
    also wakes the path's CPUs. Back to back (ping -A, the next as soon as
    a reply is in, one in flight): the datapath's own cost, on a warm path."""
    pacing = ["-i", "0.01"] if paced else ["-A"]
    out = run_cmd(_nsenter(peers.a_pid, "ping", "-n", "-c", str(count), *pacing, peers.b_address),
                  timeout=count * 0.05 + 30).stdout
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    if len(times) < count:
        raise RuntimeError(f"{peers.system.name}: {count - len(times)} of {count} pings unanswered:\n{out[-500:]}")
    return times


def iperf_bps(client: list[str], server: list[str], address: str, streams: int, seconds: int) -> float:
    """TCP throughput; argv prefixes run iperf3 in the client's and server's namespaces."""
    daemon = subprocess.Popen([*server, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)  # the server's socket
        out = run_cmd([*client, "iperf3", "-c", address, "-t", str(seconds), "-P", str(streams), "-J"],
                      timeout=seconds + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        daemon.wait(timeout=30)


def idle(bed: Testbed, count: int, seconds: float, windows: int) -> dict:
    """CPU seconds and underlay bytes per minute per host, both systems at
    once (they share no host), with ``count`` containers on each host: over
    ``seconds`` in all, and per window of ``seconds / windows`` for the
    spread of the ratios."""
    def fill(system: System, index: int) -> None:
        have = len(system.docker(index, "ps", "-q").stdout.split())
        for _ in range(count - have):
            system.start(index, "sleep", "infinity")

    jobs = [(s, i) for s in bed.systems.values() for i in range(len(s.hosts))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: fill(*job), jobs))
    time.sleep(min(seconds, 10))  # the starts' own work is not idle

    def sample() -> tuple[float, dict]:
        return time.monotonic(), {name: [(s.cpu_ticks(i), _underlay_bytes(s.hosts[i])) for i in range(len(s.hosts))]
                                  for name, s in bed.systems.items()} | {"etcd": _ticks(bed.etcd.proc.pid)}

    samples = [sample()]
    for _ in range(windows):
        time.sleep(seconds / windows)
        samples.append(sample())
    out = rates(samples[0], samples[-1]) | {"containers": count}
    spans = [rates(before, after) for before, after in zip(samples, samples[1:])]
    for key, unit in (("cpu", "cpu_s_per_min"), ("bytes", "bytes_per_min")):
        # A window in which the overlay's hosts showed nothing has no ratio.
        pairs = [(sum(w["pontoon"][unit]), sum(w["overlay"][unit])) for w in spans if sum(w["overlay"][unit])]
        out[f"{key}_windows"] = pair_ratios(pairs) if pairs else None
    return out


def rates(before: tuple[float, dict], after: tuple[float, dict]) -> dict:
    """Per minute between two samples, per host; Pontoon's hosts share
    etcd's CPU evenly, shown as their part "etcd"."""
    per_min, hz = 60 / (after[0] - before[0]), os.sysconf("SC_CLK_TCK")
    etcd = (after[1]["etcd"] - before[1]["etcd"]) / hz * per_min
    out = {"seconds": after[0] - before[0], "etcd_cpu_s_per_min": etcd}
    for name in SYSTEMS:
        was, now = before[1][name], after[1][name]
        parts = [{part: (ticks - b[0][part]) / hz * per_min for part, ticks in a[0].items()} for a, b in zip(now, was)]
        if name == "pontoon":
            for host in parts:
                host["etcd"] = etcd / len(parts)
        out[name] = {"cpu_s_per_min": [sum(host.values()) for host in parts], "cpu_parts_s_per_min": parts,
                     "bytes_per_min": [(a[1] - b[1]) * per_min for a, b in zip(now, was)]}
    return out


def _host_recorded(bed: Testbed, name: str, b_node: str) -> bool:
    """Whether host B is still in its system's record of the cluster (the
    swarm's node ID ``b_node``: the hosts share one hostname)."""
    system = bed.systems[name]
    if name == "pontoon":
        return len([k for k in bed.etcd.keys() if "hosts/" in k]) == len(system.hosts)
    state = system.docker(0, "node", "inspect", "-f", "{{.Status.State}}", b_node).stdout.strip()
    return state != "down"


def killed_host(bed: Testbed, peers: dict[str, Peers], window: float) -> dict:
    """kill -9 of each system's own processes on host B, both at once; then,
    for ``window`` seconds, seconds until B leaves the cluster's record and
    until A's container has its last reply from B's (None: still at the end)."""
    b_node = bed.systems["overlay"].docker(1, "info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
    pingers = {name: Pinger(p.a_pid, p.b_address, "0.05") for name, p in peers.items()}
    unrecorded: dict[str, float | None] = {name: None for name in peers}
    try:
        time.sleep(1.0)
        begin = time.time()
        for system in bed.systems.values():
            for proc in ([system.pontoons[1].proc] if system.pontoons else []) + [system.daemons[1].proc]:
                # The tree: gunicorn's workers, dockerd's containerd (the shims are not in it).
                for pid in (proc.pid, *descendants(proc.pid)):
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=30)
        while time.time() - begin < window:
            for name in peers:
                if unrecorded[name] is None and not _host_recorded(bed, name, b_node):
                    unrecorded[name] = time.time() - begin
            time.sleep(0.2)
    finally:
        printed = {name: pinger.stop() for name, pinger in pingers.items()}
    out = {"window_s": window}
    for name, text in printed.items():
        replies = Pinger.replies(text)
        last = replies[-1] - begin if replies else 0.0
        out[name] = {"unrecorded_s": unrecorded[name], "last_reply_s": None if last > window - 1 else max(0.0, last)}
    return out


def _underlay_bytes(host: Host) -> int:
    stats = link_stats(host.ns, UPLINK)
    return stats["rx"]["bytes"] + stats["tx"]["bytes"]


def _etcd_version() -> str:
    out = run_cmd([ETCD, "--version"], timeout=30).stdout  # "etcd Version: 3.4.23\n…"
    return out.split()[2] if out.startswith("etcd Version:") else out.strip()


def _summary(values: list[float]) -> dict:
    return {"values": values, "p50": percentile(values, 50), "p99": percentile(values, 99)}


def _overall(by_kind: dict[str, list[float]]) -> dict:
    """Each kind's p50 and p99 over all of its rounds' values."""
    return {kind: {k: v for k, v in _summary(values).items() if k != "values"} for kind, values in by_kind.items()}


def run(quick: bool = False, hosts: int | None = None) -> dict:
    """``hosts`` per system: 2 or 3 (A and B measured, a third with its
    container on the network all along); None: the counts' 3."""
    counts = {**(QUICK if quick else FULL), **({"hosts": hosts} if hosts else {})}
    build = swarm_build()
    out: dict = {"counts": {k: list(v) if isinstance(v, tuple) else v for k, v in counts.items()},
                 "dockerd": build.version if build else None, "etcd": _etcd_version()}
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-swarm-") as tmp, \
            testbed(Path(tmp), counts["hosts"]) as bed:
        peers = {name: place(bed.systems[name]) for name in SYSTEMS}
        out["mtu"] = {name: p.mtu for name, p in peers.items()}
        out["underlay_mtu"] = int(bed.systems["pontoon"].hosts[0].run("cat", f"/sys/class/net/{UPLINK}/mtu").stdout)

        got = []
        for order in rotations(counts["reply_pairs"], *SYSTEMS):
            got.append({name: first_reply_s(peers[name], Path(tmp)) for name in order})
        out["first_reply"] = pair_ratios([(g["pontoon"][0], g["overlay"][0]) for g in got]) | {
            f"{name}_{what}_s": [g[name][i] for g in got]
            for name in SYSTEMS for i, what in enumerate(("reply", "returned"))}

        got = []
        for i, order in enumerate(rotations(counts["name_pairs"], *SYSTEMS)):
            got.append({name: first_reply_by_name_s(peers[name], f"named{i}") for name in order})
        out["by_name"] = pair_ratios([(g["pontoon"], g["overlay"]) for g in got]) | {
            f"{name}_reply_s": [g[name] for g in got] for name in SYSTEMS}

        got = []
        for order in rotations(counts["gone_pairs"], *SYSTEMS):
            got.append({name: gone_s(peers[name]) for name in order})
        out["gone"] = {f"{name}_{what}_s": [g[name][i] for g in got]
                       for name in SYSTEMS for i, what in enumerate(("last_reply", "returned"))}

        hosts = bed.systems["pontoon"].hosts
        kinds = {**peers, UNFILTERED: peers["pontoon"], UNTRACKED: peers["pontoon"]}
        per_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
        rows = []
        for order in rotations(counts["rtt_pairs"], *kinds):
            got = {}
            for kind in order:
                with diagnosed(kind, hosts):
                    got[kind] = _summary(rtt_ms(kinds[kind], counts["rtt_pings"]))
                per_kind[kind] += got[kind]["values"]
            rows.append(got)
        out["rtt"] = {p: pair_ratios([(r["pontoon"][p], r["overlay"][p]) for r in rows]) for p in ("p50", "p99")}
        out["rtt"] |= {f"{kind}_vs_pontoon": {p: pair_ratios([(r[kind][p], r["pontoon"][p]) for r in rows])
                                             for p in ("p50", "p99")} for kind in DIAGNOSES}
        out["rtt"] |= _overall(per_kind)
        rows = [{kind: _summary(rtt_ms(peers[kind], counts["b2b_pings"], paced=False)) for kind in order}
                for order in rotations(counts["rtt_pairs"], *SYSTEMS)]
        out["rtt_back_to_back"] = {p: pair_ratios([(r["pontoon"][p], r["overlay"][p]) for r in rows])
                                   for p in ("p50", "p99")}
        out["rtt_back_to_back"] |= _overall({kind: [x for r in rows for x in r[kind]["values"]] for kind in SYSTEMS})

        ends = {kind: ((_nsenter(p.a_pid), _nsenter(p.b_pid)), p.b_address) for kind, p in kinds.items()}
        ends["limit"] = ((["ip", "netns", "exec", hosts[0].ns], ["ip", "netns", "exec", hosts[1].ns]),
                         hosts[1].address)
        out["iperf"] = {}
        for streams in (1, 4):
            rows = []
            for order in rotations(counts["iperf_pairs"], *ends):
                got = {}
                for kind in order:
                    with diagnosed(kind, hosts):
                        got[kind] = iperf_bps(*ends[kind][0], ends[kind][1], streams, counts["iperf_seconds"])
                rows.append(got)
            out["iperf"][str(streams)] = {
                "bps": rows,
                "vs_overlay": pair_ratios([(r["pontoon"], r["overlay"]) for r in rows]),
                "vs_limit": pair_ratios([(r["pontoon"], r["limit"]) for r in rows]),
                "overlay_vs_limit": pair_ratios([(r["overlay"], r["limit"]) for r in rows]),
                **{f"{kind}_vs_pontoon": pair_ratios([(r[kind], r["pontoon"]) for r in rows]) for kind in DIAGNOSES}}

        out["idle"] = [idle(bed, count, counts["idle_seconds"], counts["idle_windows"])
                       for count in counts["idle_counts"]]
        out["killed"] = killed_host(bed, peers, counts["killed_window"])
    return out
