"""Scale through the harness: 1,000 endpoints on one network, then 200
networks; latency of the n-th operation against the 10th, plugin memory, and
the start-up reconcile with all of it stored."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from testbed.client import Client, SocketTransport
from testbed.fake_dockerd import FakeDockerd

from .latency import TimedTransport
from .plugin_server import BenchServer
from .procs import rss_kib
from .subnets import Subnets

# Deleting a network with 1,000 endpoints is one request deleting 1,000 veths.
TEARDOWN_TIMEOUT_S = 600


def window_ratio(latencies: list[float]) -> dict:
    """The last operations against those around the 10th, by medians of ten,
    so one scheduling hiccup of this shared machine does not decide it."""
    early = statistics.median(latencies[5:15])
    late = statistics.median(latencies[-10:])
    return {"early_ms": early * 1000, "late_ms": late * 1000, "ratio": late / early}


def _restart_s(server: BenchServer) -> float:
    server.stop()
    return server.start(timeout=300)


def run(quick: bool = False) -> dict:
    n_endpoints, n_networks = (100, 20) if quick else (1000, 200)
    subnets = Subnets()
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-") as tmp:
        server = BenchServer(Path(tmp))
        server.start()
        record: list = []
        client = Client(TimedTransport(SocketTransport(server.socket_path, TEARDOWN_TIMEOUT_S), record))
        dockerd = FakeDockerd(client)
        networks = []
        try:
            start_empty = _restart_s(server)
            # The baseline after a first container cycle: the worker imports
            # jsonschema and loads the schemas on its first request, which is
            # start-up cost, not growth with endpoints.
            warm = dockerd.create_network(subnet=subnets.next())
            dockerd.stop(dockerd.run(warm))
            dockerd.remove_network(warm)
            rss_before = rss_kib(server.pids())

            big = dockerd.create_network(subnet=subnets.next(21))
            networks.append(big)
            endpoint_ms = []
            for _ in range(n_endpoints):
                del record[:]
                dockerd.run(big)
                t = dict(record)
                endpoint_ms.append(t["NetworkDriver.CreateEndpoint"] + t["NetworkDriver.Join"])
            rss_endpoints = rss_kib(server.pids())

            network_ms = []
            for _ in range(n_networks):
                begin = time.perf_counter()
                networks.append(dockerd.create_network(subnet=subnets.next()))
                network_ms.append(time.perf_counter() - begin)
            rss_networks = rss_kib(server.pids())
            start_full = _restart_s(server)
            reconcile_lines = [line for line in server.log().splitlines() if "reconcile:" in line]
        finally:
            for net in networks:
                dockerd.remove_network(net)
            server.stop()
    return {
        "endpoints": n_endpoints, "networks": n_networks,
        "endpoint_ms": [s * 1000 for s in endpoint_ms],
        "network_ms": [s * 1000 for s in network_ms],
        "endpoint_ratio": window_ratio(endpoint_ms),
        "network_ratio": window_ratio(network_ms),
        "rss_before_kib": rss_before, "rss_endpoints_kib": rss_endpoints,
        "rss_networks_kib": rss_networks,
        "start_empty_s": start_empty, "start_full_s": start_full,
        "reconcile_changes": reconcile_lines,
    }
