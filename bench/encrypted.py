"""``python -m bench.encrypted``: iperf3 TCP between containers on two
namespace hosts (testbed/cluster.py) over an encrypted cluster network
(VXLAN in WireGuard), over a plain one (VXLAN), and between the two hosts
themselves on the underlay (the limit), in rotating order within each
round; with the machine's CPU (all cores, /proc/stat) busy per Gbit/s
during each run. Prints the markdown section of docs/benchmarks.md and
writes the raw figures as JSON beside it."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from datapath import wireguard
from testbed.dockerd import wait_for

from .multihost import IPERF_SECONDS, _fresh, _iperf

KINDS = ("encrypted", "plain", "underlay")


def _busy() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def _measured(client_ns: str, server_ns: str, server_ip: str) -> tuple[float, float]:
    """(Gbit/s, CPU cores busy per Gbit/s) of one iperf3 run."""
    busy0, total0 = _busy()
    bps = _iperf(client_ns, server_ns, server_ip)
    busy1, total1 = _busy()
    cores = (busy1 - busy0) / (total1 - total0) * _cores()
    return bps / 1e9, cores / (bps / 1e9)


def _cores() -> int:
    with open("/proc/stat") as f:
        return sum(1 for line in f if line.startswith("cpu") and line[3].isdigit())


def run(rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-enc-") as tmp:
        with _fresh(Path(tmp), "enc") as cluster:
            a, b = cluster.hosts[:2]
            ends = {}
            for kind, subnet, options in (("encrypted", "10.97.0.0/24", {"pontoon.encrypted": "true"}),
                                          ("plain", "10.98.0.0/24", {})):
                client, server = (h.dockerd.run(h.dockerd.create_network(subnet=subnet, options=options))
                                  for h in (a, b))
                ip = server.address.split("/")[0]
                wait_for(lambda c=client, i=ip: c.sandbox.ping(i), timeout=10, interval=0.1, what="ping")
                ends[kind] = (client.sandbox.ns, server.sandbox.ns, ip)
            ends["underlay"] = (a.ns, b.ns, b.address)
            got = {kind: [] for kind in KINDS}
            for i in range(rounds):
                for kind in KINDS[i % 3:] + KINDS[:i % 3]:
                    got[kind].append(_measured(*ends[kind]))
    return {"rounds": rounds, "seconds": IPERF_SECONDS, "wireguard": wireguard.implementation(),
            "cores": _cores(), "runs": got}


def markdown(res: dict) -> str:
    rows = []
    for kind in KINDS:
        gbps = [g for g, _ in res["runs"][kind]]
        cpu = [c for _, c in res["runs"][kind]]
        rows.append(f"| {kind} | {statistics.median(gbps):.2f} | {min(gbps):.2f}–{max(gbps):.2f} | "
                    f"{statistics.median(cpu):.2f} |")
    return "\n".join([
        "## 10. Encrypted cluster networks (WireGuard) vs plain VXLAN vs the underlay",
        "",
        f"iperf3 TCP, {res['seconds']} s a run, {res['rounds']} rounds in rotating order, between containers "
        f"on two namespace hosts of the multi-host harness (one machine, {res['cores']} cores, shared with other "
        f"work: the CPU column is the whole machine's). WireGuard implementation: {res['wireguard']} "
        f"(userspace; this kernel has no WireGuard). `python -m bench.encrypted`.",
        "",
        "| path | Gbit/s (median) | range | CPU cores busy per Gbit/s (median) |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.encrypted")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="", help="also write the raw figures here")
    args = parser.parse_args()
    res = run(args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(markdown(res))


if __name__ == "__main__":
    main()
