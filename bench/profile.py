"""Where the time goes: CreateEndpoint + Join profiled in-process (the real
Flask app, store, Links and Firewall; only the socket is left out), and the
imports that make up start-up time."""
from __future__ import annotations

import cProfile
import pstats
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

from plugin.config import Settings
from plugin.wiring import build
from testbed.client import Client, FlaskTransport
from testbed.fake_dockerd import FakeDockerd, new_id
from testbed.server import REPO

from .subnets import Subnets

# First matching fragment of a function's file names its area.
AREAS = [
    ("pyroute2", "netlink (pyroute2)"),
    ("asyncio", "netlink (pyroute2's asyncio loop)"),
    ("selectors", "netlink (pyroute2's asyncio loop)"),
    ("sqlite3", "SQLite"),
    # send/recv builtins: only netlink sockets here, and a netlink request is
    # carried out by the kernel inside send, so this is mostly kernel time.
    ("_socket.socket", "netlink (kernel, in send/recv)"),
    ("jsonschema", "JSON Schema validation"),
    ("referencing", "JSON Schema validation"),
    ("werkzeug", "Flask / Werkzeug"),
    ("flask", "Flask / Werkzeug"),
    (str(REPO / "testbed"), "harness client (not in the server)"),
    (str(REPO / "datapath" / "rtnl.py"), "netlink (datapath.rtnl)"),
    (str(REPO), "Pontoon's own code"),
]


def _area(filename: str, function: str) -> str:
    if filename == "~":  # a builtin: named by the function
        filename = function
    for fragment, area in AREAS:
        if fragment in filename:
            return area
    return "other (stdlib, builtins)"


def endpoint_profile(cycles: int = 40) -> dict:
    """Share of CreateEndpoint + Join time per area, and the top functions."""
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-") as tmp:
        settings = Settings()
        settings.state_dir, settings.name = tmp, "ptbprof"
        plugin = build(settings)
        plugin.store.initialise()
        client = Client(FlaskTransport(plugin.app))
        dockerd = FakeDockerd(client)
        net = dockerd.create_network(subnet=Subnets().next())
        profiler = cProfile.Profile()
        try:
            for _ in range(cycles):
                endpoint_id = new_id()
                address = client.ok("IpamDriver.RequestAddress", {
                    "PoolID": net.pools[0]["PoolID"], "Address": "", "Options": None})["Address"]
                ids = {"NetworkID": net.id, "EndpointID": endpoint_id}
                profiler.enable()
                client.ok("NetworkDriver.CreateEndpoint", {
                    **ids, "Options": {}, "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""}})
                client.ok("NetworkDriver.Join", {**ids, "Options": {}, "SandboxKey": "/x"})
                profiler.disable()
                client.ok("NetworkDriver.DeleteEndpoint", ids)
        finally:
            dockerd.remove_network(net)
    stats = pstats.Stats(profiler)
    areas: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        areas[_area(filename, function)] += tottime
        total += tottime
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:10]
    return {
        "cycles": cycles,
        "ms_per_pair": total / cycles * 1000,
        "areas": {a: t / total for a, t in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top": [{"function": f"{_short(f)}:{line}({fn})", "ms_per_pair": v[2] / cycles * 1000,
                 "calls_per_pair": v[1] / cycles} for (f, line, fn), v in top],
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/", str(REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def import_profile(top: int = 8) -> list[dict]:
    """The heaviest packages ``python -m plugin serve`` imports (cumulative,
    each counted where it is first imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import plugin.server"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and "." not in m.group(4) and not m.group(4).startswith("_"):
            rows.append({"module": m.group(4), "ms": int(m.group(2)) / 1000})
    return sorted(rows, key=lambda r: -r["ms"])[:top]
