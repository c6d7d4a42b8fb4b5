"""Protocol latency of every method through the Unix socket, with 1 and 16
concurrent clients, each playing dockerd's call order (the harness
FakeDockerd): network create, container run / inspect / stop cycles, network
remove."""
from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from testbed.client import Client, SocketTransport
from testbed.fake_dockerd import FakeDockerd

from .plugin_server import BenchServer
from .stats import percentile
from .subnets import Subnets

# Calls without state: asked once per container cycle, as dockerd asks them
# on registration and discovery.
PROBES = ["Plugin.Activate", "NetworkDriver.GetCapabilities", "IpamDriver.GetCapabilities",
          "IpamDriver.GetDefaultAddressSpaces"]
PAIR = ("NetworkDriver.CreateEndpoint", "NetworkDriver.Join")


class TimedTransport:
    """Records (method, seconds) for every call; one per client thread."""

    def __init__(self, inner: SocketTransport, record: list):
        self.inner, self.record = inner, record

    def post(self, path: str, data: bytes) -> tuple[int, bytes]:
        begin = time.perf_counter()
        try:
            return self.inner.post(path, data)
        finally:
            self.record.append((path.lstrip("/"), time.perf_counter() - begin))


def _client_loop(socket_path: str, subnet: str, cycles: int, networks: int) -> list:
    record: list = []
    client = Client(TimedTransport(SocketTransport(socket_path), record))
    dockerd = FakeDockerd(client)
    for _ in range(networks - 1):
        dockerd.remove_network(dockerd.create_network(subnet=subnet))
    net = dockerd.create_network(subnet=subnet)
    try:
        for _ in range(cycles):
            for probe in PROBES:
                client.ok(probe)
            ctr = dockerd.run(net)
            dockerd.oper_info(ctr)
            dockerd.stop(ctr)
    finally:
        dockerd.remove_network(net)
    return record


def measure(clients: int, cycles: int, networks: int) -> dict:
    """Per-method p50/p99 in ms, plus CreateEndpoint+Join per container.

    Each client is a process of its own, as dockerd's calls come from
    goroutines that do not share an interpreter: client threads would queue
    on this process's GIL (and the harness client's schema checks) and
    count that as plugin latency.
    """
    subnets = Subnets()
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-") as tmp:
        server = BenchServer(Path(tmp))
        server.start()
        try:
            # Warm-up: the first request imports jsonschema; not a steady state.
            _client_loop(server.socket_path, subnets.next(), 2, 1)
            jobs = [(server.socket_path, subnets.next(), cycles, networks) for _ in range(clients)]
            with multiprocessing.get_context("fork").Pool(clients) as pool:
                begin = time.perf_counter()
                records = pool.starmap(_client_loop, jobs)
                wall = time.perf_counter() - begin
        finally:
            server.stop()
    by_method: dict[str, list[float]] = defaultdict(list)
    pairs: list[float] = []
    for record in records:
        pending = None
        for method, seconds in record:
            by_method[method].append(seconds)
            if method == PAIR[0]:
                pending = seconds
            elif method == PAIR[1] and pending is not None:
                pairs.append(pending + seconds)
                pending = None
    table = {m: _summary(v) for m, v in sorted(by_method.items())}
    table["CreateEndpoint+Join"] = _summary(pairs)
    return {"clients": clients, "wall_s": wall, "methods": table}


def _summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": percentile(ms, 50), "p99": percentile(ms, 99), "max": max(ms)}


def run(quick: bool = False) -> dict:
    cycles1, cycles16 = (20, 3) if quick else (100, 12)
    return {
        "1": measure(1, cycles1, networks=10 if not quick else 3),
        "16": measure(16, cycles16, networks=2),
    }
