"""Publishing and unpublishing many ports through the real server: one
endpoint's ProgramExternalConnectivity and RevokeExternalConnectivity of
1,000 and 4,000 TCP ports (``-p 30000-30999:1-1000``), each timed as dockerd
waits for it. Unpublishing should cost about what publishing does, and both
should grow linearly with the ports."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from testbed.client import Client, SocketTransport
from testbed.fake_dockerd import FakeDockerd, port_options

from .plugin_server import BenchServer
from .subnets import Subnets

FIRST_HOST_PORT = 30000
TIMEOUT_S = 600  # before the fix, revoking 4,000 ports took 46 s


def run(quick: bool = False) -> dict:
    sizes, repeats = ((100, 400), 1) if quick else ((1000, 4000), 3)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-") as tmp:
        server = BenchServer(Path(tmp))
        server.start()
        client = Client(SocketTransport(server.socket_path, TIMEOUT_S))
        dockerd = FakeDockerd(client)
        net = dockerd.create_network(subnet=Subnets().next())
        try:
            for n in sizes:
                times: dict[str, list[float]] = {"program_s": [], "revoke_s": []}
                for _ in range(repeats):
                    ctr = dockerd.run(net)
                    ids = {"NetworkID": net.id, "EndpointID": ctr.endpoint_id}
                    published = [("tcp", 1 + i, "", FIRST_HOST_PORT + i, 0) for i in range(n)]
                    for method, body, key in (
                            ("ProgramExternalConnectivity", {**ids, "Options": port_options(published, [])},
                             "program_s"),
                            ("RevokeExternalConnectivity", ids, "revoke_s")):
                        begin = time.perf_counter()
                        client.ok(f"NetworkDriver.{method}", body)
                        times[key].append(time.perf_counter() - begin)
                    dockerd.stop(ctr)
                medians = {k: statistics.median(v) for k, v in times.items()}
                out[str(n)] = {**medians, "runs": times, "ratio": medians["revoke_s"] / medians["program_s"]}
        finally:
            dockerd.remove_network(net)
            server.stop()
    small, large = (out[str(n)] for n in sizes)
    out["growth"] = {key: large[key] / small[key] for key in ("program_s", "revoke_s")}
    out["sizes"] = list(sizes)
    return out
