"""Multi-host benchmarks (issue 13), on testbed/cluster.py's hosts: namespace
hosts on one underlay, a real etcd on the switch, a clustered Pontoon and a
fake dockerd per host, real VXLAN between them.

- join: from the Join on host A (then what dockerd does: the interface into
  the sandbox, its addresses and routes) to the first echo reply from a
  container on host B, which answers only once B's watch has added A's new
  endpoint.
- watch: bytes host C receives from etcd (an iptables counter on its
  underlay interface, source port etcd's) while A and B create and delete
  endpoints on a network C does not have, against an idle period as long.
- pair: RequestAddress + CreateEndpoint + Join (+ ProgramExternalConnectivity,
  which FakeDockerd.run also sends) on a cluster network against a local one
  on a plain Pontoon in another namespace of the same underlay, alternating.
- scale: endpoints round-robin over 3 hosts on one network, the last ten
  against those around the 10th; etcd keys, bytes each host received from
  etcd and RSS at points on the way, for the cost formula.
- iperf: iperf3 between container namespaces on two hosts against two on
  one host.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.client import Client, SocketTransport
from testbed.cluster import Cluster, PontoonHost
from testbed.fake_dockerd import FakeDockerd
from testbed.underlay import UPLINK, netns_exec

from .latency import TimedTransport
from .netlink_sandboxes import NetlinkSandboxes
from .procs import rss_kib
from .scale import window_ratio
from .stats import alternating, pair_ratios, percentile
from .subnets import Subnets

INFO = ("--log-level", "info")  # what users run; the harness logs at debug
CALLS = ("IpamDriver.RequestAddress", "NetworkDriver.CreateEndpoint", "NetworkDriver.Join")
IPERF_SECONDS = 5


def _etcd_counter(host, cluster: Cluster):
    return host.host.counter("INPUT", ["-i", UPLINK, "-p", "tcp", "--sport", str(cluster.etcd.client_port)])


class SendTimes:
    """A transport that remembers when each method was last sent."""

    def __init__(self, inner: SocketTransport):
        self.inner, self.sent = inner, {}

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        self.sent[path.lstrip("/")] = time.perf_counter()
        return self.inner.post(path, data)


def _first_reply_s(ctr, target: str, begin: float, limit: float = 5.0) -> float:
    """Seconds from ``begin`` to the first echo reply: ping sends every 5 ms
    and stops at the first answer."""
    netns_exec(ctr.sandbox.ns, "ping", "-n", "-q", "-c1", "-i0.005", f"-w{limit:.0f}", target, check=True,
               timeout=limit + 5)
    return time.perf_counter() - begin


def join_latency(cluster: Cluster, subnet: str, count: int) -> dict:
    a, b = cluster.hosts[:2]
    clock = SendTimes(SocketTransport(a.server.socket_path))
    sandboxes = NetlinkSandboxes(a.ns)
    dockerd = FakeDockerd(Client(clock), sandboxes)
    net_a, net_b = dockerd.create_network(subnet=subnet), b.dockerd.create_network(subnet=subnet)
    target = b.dockerd.run(net_b)
    times, after = [], []
    try:
        for _ in range(count):
            sandboxes.prepare()  # dockerd makes the sandbox before Join
            # Join, then what dockerd does after it (the interface into the
            # sandbox, its addresses and routes, over netlink), then the pings.
            ctr = dockerd.run(net_a)
            ready = time.perf_counter()
            times.append(_first_reply_s(ctr, target.address.split("/")[0], clock.sent["NetworkDriver.Join"]))
            after.append(times[-1] - (ready - clock.sent["NetworkDriver.Join"]))
            dockerd.stop(ctr)
    finally:
        sandboxes.close()
    return {"count": count, "ms": [t * 1000 for t in times], "p50_ms": percentile(times, 50) * 1000,
            "p99_ms": percentile(times, 99) * 1000,
            "ready_to_reply_ms": [t * 1000 for t in after],
            "ready_p50_ms": percentile(after, 50) * 1000, "ready_p99_ms": percentile(after, 99) * 1000}


def watch_traffic(cluster: Cluster, subnets: Subnets, endpoints: int, pairs: int) -> dict:
    a, b, c = cluster.hosts[:3]
    # C is a live member (lease, its own network and watch), but not on the
    # busy network.
    c.dockerd.create_network(subnet=subnets.next())
    busy = subnets.next()
    nets = [h.dockerd.create_network(subnet=busy) for h in (a, b)]
    counter = _etcd_counter(c, cluster)

    def busy_period() -> None:
        for _ in range(endpoints // 2):
            for host, net in zip((a, b), nets):
                host.dockerd.stop(host.dockerd.run(net))

    # Pairs alternating which goes first; the first pair starts busy, so
    # the idle period knows how long to last. What a host receives at idle
    # comes in lumps (a lease keep-alive every TTL/3, a reclaim pass every
    # minute), so one short pair can hold one lump more on either side: the
    # ratio is of the totals over all pairs, the pairs' own ratios show the
    # spread.
    samples, totals, duration = [], {"busy": [0, 0.0], "idle": [0, 0.0]}, 0.0
    for order in alternating(pairs, "busy", "idle"):
        rate = {}
        for kind in order:
            before, begin = counter.bytes(), time.monotonic()
            if kind == "busy":
                busy_period()
            else:
                time.sleep(duration)
            took, got = time.monotonic() - begin, counter.bytes() - before
            if kind == "busy":
                duration = took
            rate[kind] = got / took
            totals[kind][0] += got
            totals[kind][1] += took
        samples.append((rate["busy"], rate["idle"]))
    busy, idle = (totals[k][0] / totals[k][1] for k in ("busy", "idle"))
    # A short idle period (--quick) may hold no lump at all: such a pair has
    # no ratio of its own, and nothing at all received is a ratio of 1.
    ratios = [b / i for b, i in samples if i] or [float("nan")]
    return {"endpoints": endpoints, "seconds": duration, "pairs": len(samples),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "pooled_busy": busy, "pooled_idle": idle,
            "pooled_ratio": busy / idle if idle else (float("inf") if busy else 1.0)}


def cluster_vs_local(cluster: Cluster, workdir: Path, subnets: Subnets, pairs: int) -> dict:
    plain = PontoonHost(cluster.underlay.add_host(), workdir / "plain", INFO, {})
    plain.start()
    try:
        record: dict[str, list] = {"cluster": [], "local": []}
        docks = {kind: FakeDockerd(Client(TimedTransport(SocketTransport(host.server.socket_path), record[kind])))
                 for kind, host in (("cluster", cluster.hosts[0]), ("local", plain))}
        nets = {kind: d.create_network(subnet=subnets.next()) for kind, d in docks.items()}
        samples = []
        for order in alternating(pairs, "cluster", "local"):
            got = {}
            for kind in order:
                del record[kind][:]
                ctr = docks[kind].run(nets[kind])
                got[kind] = sum(s for m, s in record[kind] if m in CALLS)
                docks[kind].stop(ctr)
            samples.append((got["cluster"], got["local"]))
        return pair_ratios(samples)  # the networks go with the hosts' namespaces
    finally:
        plain.close()


def _point(cluster: Cluster, counters, endpoints: int) -> dict:
    return {"endpoints": endpoints, "etcd_keys": len(cluster.etcd.keys("")),
            "rx_bytes": [c.bytes() for c in counters],
            "rss_kib": [rss_kib(h.server.pids()) for h in cluster.hosts]}


def scale(cluster: Cluster, subnet: str, endpoints: int) -> dict:
    counters = [_etcd_counter(h, cluster) for h in cluster.hosts]
    # Protocol only, no container namespaces: a thousand of them would
    # measure `ip netns add`. The namespaces of the hosts take the veths
    # with them at the end.
    docks = [FakeDockerd(h.server.client()) for h in cluster.hosts]
    nets = [d.create_network(subnet=subnet) for d in docks]
    points = [_point(cluster, counters, 0)]
    marks = {10, 100, endpoints // 2, endpoints}
    seconds = []
    for i in range(endpoints):
        begin = time.perf_counter()
        docks[i % 3].run(nets[i % 3])
        seconds.append(time.perf_counter() - begin)
        if i + 1 in marks:
            points.append(_point(cluster, counters, i + 1))
    return {"endpoints": endpoints, "ms": [s * 1000 for s in seconds], "ratio": window_ratio(seconds),
            "points": points}


def _iperf(client_ns: str, server_ns: str, server_ip: str) -> float:
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = netns_exec(client_ns, "iperf3", "-c", server_ip, "-t", str(IPERF_SECONDS), "-J", check=True,
                         timeout=IPERF_SECONDS + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        server.wait(timeout=30)


def throughput(cluster: Cluster, subnet: str, pairs: int) -> dict:
    a, b = cluster.hosts[:2]
    net_a, net_b = (h.dockerd.create_network(subnet=subnet) for h in (a, b))
    client, local, remote = a.dockerd.run(net_a), a.dockerd.run(net_a), b.dockerd.run(net_b)
    servers = {"remote": remote, "local": local}
    samples = []
    for order in alternating(pairs, "remote", "local"):
        got = {kind: _iperf(client.sandbox.ns, servers[kind].sandbox.ns, servers[kind].address.split("/")[0])
               for kind in order}
        samples.append((got["remote"], got["local"]))
    return pair_ratios(samples)


def _fresh(workdir: Path, name: str) -> Cluster:
    # etcd's data on tmpfs: this machine's disk takes about 5 ms per fsync,
    # and etcd syncs on every write; etcd's own guidance asks for a disk
    # that does better. Pontoon's SQLite stays on disk on both sides.
    return Cluster(workdir / name, hosts=3, flags=INFO,
                   etcd_data=Path(tempfile.mkdtemp(prefix="pontoon-bench-etcd-", dir="/dev/shm")))


def run(quick: bool = False) -> dict:
    counts = {"join": 20, "watch": 100, "watch_pairs": 6, "pairs": 20, "scale": 1000, "iperf": 3}
    if quick:
        counts = {"join": 5, "watch": 20, "watch_pairs": 2, "pairs": 5, "scale": 60, "iperf": 1}
    subnets = Subnets()
    out = {"counts": counts}
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-mh-") as tmp:
        workdir = Path(tmp)
        with _fresh(workdir, "join") as cluster:
            out["join"] = join_latency(cluster, subnets.next(), counts["join"])
            out["iperf"] = throughput(cluster, subnets.next(), counts["iperf"])
        with _fresh(workdir, "watch") as cluster:
            out["watch"] = watch_traffic(cluster, subnets, counts["watch"], counts["watch_pairs"])
        with _fresh(workdir, "pair") as cluster:
            out["pair"] = cluster_vs_local(cluster, workdir, subnets, counts["pairs"])
        with _fresh(workdir, "scale") as cluster:
            out["scale"] = scale(cluster, subnets.next(21), counts["scale"])
    return out
