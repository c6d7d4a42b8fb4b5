"""What ``Overlay.remove_peer`` costs as a network's peers grow: a VXLAN
device in a namespace of its own with 10 and with 1000 peers, one Overlay
(as the plugin keeps one), and the time of each of a run of removals.

The first removal on a device reads the device's neighbour table once (the
process's copy of it, see datapath.overlay._Neighbours) and is reported
apart; the others are what every watch event pays.

``python -m bench.overlay_peers`` prints the figures (as root); ``python -m
bench --only overlay`` records them with the rest.
"""
from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
import time

from datapath.overlay import Overlay, Peer, VxlanSpec
from testbed.netns import run_in_netns

SIZES = (10, 1000)
REMOVALS = 30
LOCAL = "192.0.2.1"


def _peer(i: int) -> Peer:
    return Peer(f"02:42:0a:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"192.0.2.{10 + i % 50}")


def _measure(spec: VxlanSpec, n: int, removals: int) -> dict:
    overlay = Overlay("bench")
    overlay.create(spec)
    peers = [_peer(i + 1) for i in range(n)]
    for peer in peers:
        overlay.add_peer(spec, peer)
    times = []
    for peer in peers[:: max(1, n // removals)][:removals]:
        begin = time.perf_counter()
        overlay.remove_peer(spec, peer)
        times.append((time.perf_counter() - begin) * 1000)
    overlay.delete(spec)
    return {"peers": n, "first_ms": times[0], "median_ms": statistics.median(times[1:]),
            "max_ms": max(times[1:]), "removals": len(times)}


def run(quick: bool = False) -> dict:
    out = {}
    for n in SIZES:
        ns = "ptbench" + secrets.token_hex(3)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            for cmd in (["link", "add", "u0", "type", "veth", "peer", "name", "u1"], ["addr", "add", f"{LOCAL}/24", "dev", "u0"],
                        ["link", "set", "u0", "up"], ["link", "add", "ptbrb", "type", "bridge"],
                        ["link", "set", "ptbrb", "up"]):
                subprocess.run(["ip", "-n", ns, *cmd], check=True)
            spec = VxlanSpec("ptxbench0", 4300, LOCAL, "ptbrb")
            out[str(n)] = run_in_netns(ns, _measure, spec, n, 10 if quick else REMOVALS)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return out


if __name__ == "__main__":
    json.dump(run("--quick" in sys.argv), sys.stdout, indent=1)
    print()
