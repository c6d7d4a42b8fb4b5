"""The plugin's share of a container start, one tree against another.

``python -m bench.plugin_share OLD NEW [MORE ...]`` runs each tree's server
(``python -m plugin serve`` with PYTHONPATH and cwd at that tree) side by
side, and drives every one with this tree's client, so that only the server
differs. A cycle is what dockerd asks of a network plugin when a container
starts (RequestAddress, CreateEndpoint, Join, one client); only those three
calls' round trips over the socket are timed, the teardown (Leave,
DeleteEndpoint, ReleaseAddress) is not. The trees take turns in blocks, the
order reversed every round, and each tree is compared with the first per
round, so the load of this shared machine cancels within a round. Writes
docs/bench-plugin-share.md (or ``--out``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from testbed.client import Client, SocketTransport
from testbed.fake_dockerd import FakeDockerd, Network
from testbed.server import REPO

from . import isolate
from .latency import TimedTransport
from .plugin_server import BenchServer
from .stats import pair_ratios, percentile, ratio_text
from .subnets import Subnets

TRIPLE = ("IpamDriver.RequestAddress", "NetworkDriver.CreateEndpoint", "NetworkDriver.Join")


class TreeServer(BenchServer):
    """A server run from another checkout: its own modules, and, as every
    BenchServer, its own state dir, socket and name (the name also tags its
    firewall chains)."""

    def __init__(self, tree: Path, workdir: Path):
        workdir.mkdir()
        super().__init__(workdir)
        self.tree = self.cwd = tree

    def start(self, timeout: float = 15.0, env: dict[str, str] | None = None) -> float:
        # The child's cwd and path decide which tree's plugin it imports.
        return super().start(timeout, {"PYTHONPATH": str(self.tree), **(env or {})})


class Side:
    """One tree's server, its network and the client that times it."""

    def __init__(self, server: TreeServer, subnet: str):
        self.server = server
        self.record: list = []
        self.client = Client(TimedTransport(SocketTransport(server.socket_path), self.record))
        self.dockerd = FakeDockerd(self.client)
        self.net: Network = self.dockerd.create_network(subnet=subnet)
        self.triples: list[float] = []  # seconds, every measured cycle
        self.rounds: list[list[float]] = []  # the same, per round

    def cycles(self, count: int, keep: bool = True) -> None:
        """``count`` container starts and stops as dockerd makes them; only
        the three calls of TRIPLE are timed."""
        block = []
        for _ in range(count):
            self.record.clear()
            ctr = self.dockerd.run(self.net)
            timed = [s for method, s in self.record if method in TRIPLE]
            assert len(timed) == 3, self.record
            block.append(sum(timed))
            self.dockerd.stop(ctr)
        if keep:
            self.triples += block
            self.rounds.append(block)

    def close(self) -> None:
        try:
            self.dockerd.remove_network(self.net)
        finally:
            self.server.stop()


def measure(trees: list[Path], rounds: int, block: int, warmup: int) -> dict:
    subnets = Subnets()
    with tempfile.TemporaryDirectory(prefix="pontoon-share-") as tmp:
        servers = [TreeServer(tree, Path(tmp) / str(i)) for i, tree in enumerate(trees)]
        sides: list[Side] = []
        try:
            for server in servers:
                server.start()
                sides.append(Side(server, subnets.next()))
            for side in sides:  # the first calls import jsonschema and warm caches
                side.cycles(warmup, keep=False)
            for r in range(rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    side.cycles(block)
        finally:
            for side in sides:
                side.close()
            for server in servers:  # one that started but made no network
                server.kill()
    return {"rounds": rounds, "block": block,
            "trees": [_tree_summary(t, s) for t, s in zip(trees, sides)],
            "ratios": [pair_ratios([(_p50(a), _p50(b)) for a, b in zip(s.rounds, sides[0].rounds)])
                       for s in sides[1:]]}


def _p50(seconds: list[float]) -> float:
    return percentile(seconds, 50) * 1000


def _tree_summary(tree: Path, side: Side) -> dict:
    commit = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    ms = [s * 1000 for s in side.triples]
    return {"tree": str(tree), "commit": commit, "n": len(ms),
            "p50": percentile(ms, 50), "p99": percentile(ms, 99)}


def markdown(res: dict) -> str:
    base = res["trees"][0]
    lines = ["# The plugin's share of a container start, tree against tree", "",
             "Written by `python -m bench.plugin_share` (see its docstring). One client; a cycle's",
             "time is RequestAddress + CreateEndpoint + Join over the Unix socket, on a local",
             f"network; {res['rounds']} rounds of {res['block']} cycles per tree, the order",
             "reversed every round. The ratio is per round (that round's p50 over the first",
             "tree's), given as median (p25–p75) and min–max over the rounds.", "",
             "| tree | commit | cycles | p50 ms | p99 ms | p50 ratio to the first | min–max |",
             "|---|---|---|---|---|---|---|"]
    for i, t in enumerate(res["trees"]):
        r = res["ratios"][i - 1] if i else None
        ratio, spread = (ratio_text(r), f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f}") if r else ("1", "")
        lines.append(f"| {t['tree']} | {t['commit']} | {t['n']} | {t['p50']:.2f} | {t['p99']:.2f} | {ratio} | {spread} |")
    lines += ["", f"Baseline: {base['commit']}. Again: `python -m bench.plugin_share OLD NEW` (as root).", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plugin_share")
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=20, help="cycles per tree per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench-plugin-share.md")
    args = parser.parse_args(argv)
    if len(args.trees) < 2:
        parser.error("give at least two trees: the baseline and one to compare")
    if not isolate.in_private_netns():
        return isolate.reexec_in_netns(argv, module="bench.plugin_share")
    res = measure([t.resolve() for t in args.trees], args.rounds, args.block, args.warmup)
    text = markdown(res)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
