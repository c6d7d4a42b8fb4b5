"""``python -m bench``: run every benchmark, write docs/benchmarks.md and the plots.

Runs itself inside a private network namespace (see isolate.py). Raw results
go to build/bench/results.json, so ``--report-only`` can redraw the report
without measuring again. A section that fails is reported as failed and
makes the exit status 1; the others still run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from testbed.server import REPO

from . import isolate, machine, report

RESULTS = REPO / "build/bench/results.json"
# Counts per benchmark; --quick is for trying the machinery, not for figures.
# Bursts vary most from run to run on this shared machine: more pairs than
# the five steady the median.
FULL = {"start_pairs": 20, "burst_pairs": 9, "burst_size": 30, "iperf_pairs": 3}
QUICK = {"start_pairs": 3, "burst_pairs": 1, "burst_size": 10, "iperf_pairs": 1}


def _docker_sections(quick: bool) -> dict:
    from . import docker_runs, throughput
    from .docker_env import DockerEnv

    counts = QUICK if quick else FULL
    out = {}
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-docker-") as tmp:
        env = DockerEnv(Path(tmp))
        try:
            env.start()
            out["start"] = docker_runs.single(env, counts["start_pairs"])
            out["burst"] = docker_runs.burst(env, counts["burst_pairs"], counts["burst_size"])
            out["burst"]["size"] = counts["burst_size"]
            out["throughput"] = throughput.run(env, Path(tmp), counts["iperf_pairs"])
        finally:
            env.stop()
    return out


def _sections(quick: bool, swarm_hosts: int | None) -> dict:
    from . import etcd_history, footprint, ipam_scale, latency, multihost, overlay_peers, ports, profile, scale
    from . import pontoon_vs_swarm

    return {
        "latency": lambda: latency.run(quick),
        "profile": lambda: {"endpoint": profile.endpoint_profile(),
                            "imports": profile.import_profile()},
        "scale": lambda: scale.run(quick),
        "ipam": lambda: ipam_scale.run(quick),
        "footprint": lambda: footprint.run(quick),
        "ports": lambda: ports.run(quick),
        "docker": lambda: _docker_sections(quick),
        "multihost": lambda: multihost.run(quick),
        "overlay": lambda: overlay_peers.run(quick),
        "etcd": lambda: etcd_history.run(quick),
        "vs_swarm": lambda: pontoon_vs_swarm.run(quick, swarm_hosts),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md and the plots go")
    parser.add_argument("--quick", action="store_true", help="small counts, to try the machinery")
    parser.add_argument("--only", action="append", help="run only this section (repeatable)")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last results")
    parser.add_argument("--swarm-hosts", type=int, choices=(2, 3),
                        help="hosts per system for vs_swarm (default: 3, as make bench runs it)")
    args = parser.parse_args(argv)
    if not args.report_only and not isolate.in_private_netns():
        return isolate.reexec_in_netns(argv)

    if args.report_only:
        results = json.loads(RESULTS.read_text())
    else:
        previous = json.loads(RESULTS.read_text()) if args.only and RESULTS.exists() else {}
        results = {**previous, "machine": machine.describe(), "quick": args.quick}
        results.setdefault("seconds", {})
        results.setdefault("failed", {})
        for name, section in _sections(args.quick, args.swarm_hosts).items():
            if args.only and name not in args.only:
                continue
            print(f"bench: {name} ...", flush=True)
            begin = time.monotonic()
            try:
                results[name] = section()
                results["failed"].pop(name, None)
            except Exception:
                results["failed"][name] = traceback.format_exc()
                print(results["failed"][name], file=sys.stderr)
            results["seconds"][name] = time.monotonic() - begin
            print(f"bench: {name} took {results['seconds'][name]:.0f}s", flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
    report.write(results, Path(args.out))
    print(f"bench: wrote {Path(args.out) / 'benchmarks.md'}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
