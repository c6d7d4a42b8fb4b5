"""``make reliability``: the reliability suite at full size, and its figures.

Runs tests/reliability with 10,000 soak cycles and more hostile examples
per method, and the cluster fault lab on five fresh seeds of 60 s each
(``make test`` replays fixed ones), collects what the tests record (see ``figures``) and writes
build/reliability.json and a Markdown summary, build/reliability.md, for
docs/reliability.md. Exits with pytest's status.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from testbed.server import REPO

from . import figures

BUILD = REPO / "build"
DEFAULTS = {"PONTOON_SOAK_CYCLES": "10000", "PONTOON_FUZZ_EXAMPLES": "300", "PONTOON_FUZZ_SECONDS": "300",
            "PONTOON_FUZZ_CORPUS": str(BUILD / "fuzz-corpus"),
            "PONTOON_FAULT_SEED": "random", "PONTOON_FAULT_RUNS": "5", "PONTOON_FAULT_SECONDS": "60"}
SUITES = ["tests/reliability", "tests/multihost/test_fault_lab.py::test_fault_lab"]


def summary(data: dict, status: int, seconds: float) -> str:
    lines = [f"# Reliability figures ({time.strftime('%Y-%m-%d %H:%M')}, pytest exit {status}, {seconds:.0f} s)", ""]
    points = data.get("kill_points", [])
    lines += [f"## Kill points survived: {len(points)}", ""] + [f"- `{p}`" for p in points] + [""]
    for run in data.get("concurrent_kills", []):
        lines.append(f"Concurrent: {run['threads']} threads, killed after {run['cycles_before_kill']} full "
                     f"lifecycles ({run['networks']} networks, {run['endpoints']} endpoints sent); recovered.")
    hostile = data.get("hostile", {})
    if hostile:
        lines += ["", "## Hostile inputs", "", "| method | tried | accepted |", "| --- | --- | --- |"]
        lines += [f"| {m} | {n} | {hostile['accepted'].get(m, 0)} |" for m, n in sorted(hostile["tried"].items())]
    fuzz = data.get("fuzz")
    if fuzz:
        lines += ["", "## Coverage-guided fuzzing (private network namespace)", "",
                  f"{fuzz['inputs']} requests in {fuzz['seconds']} s ({fuzz['libfuzzer_runs']} libFuzzer runs), "
                  f"{fuzz['coverage_edges']} edges of Pontoon's code covered; 5xx answers: {fuzz['5xx']}; "
                  f"links and rules left behind after deleting what was made: {fuzz['left_behind']}.", "",
                  "| method | tried | accepted |", "| --- | --- | --- |"]
        lines += [f"| {m} | {n} | {fuzz['accepted'].get(m, 0)} |" for m, n in sorted(fuzz["tried"].items())]
    runs = data.get("fault_lab", [])
    if runs:
        lines += ["", "## Cluster fault lab (fresh seeds)", "", "| seed | seconds | hosts | violations | failure |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {run['seed']} | {run['seconds']} | {run['hosts']} | {run['violations']} | "
                  f"{(run.get('failure') or '-').splitlines()[0]} |" for run in runs]
    soak = data.get("soak")
    if soak:
        lines += ["", "## Soak", "",
                  f"{soak['cycles']} endpoint cycles in {soak['seconds']} s; after {soak['warmup']} warm-up cycles "
                  f"RSS {soak['rss_kib'][0]} -> {soak['rss_kib'][1]} KiB, open fds {soak['fds'][0]} -> {soak['fds'][1]} "
                  "(master + worker).", "", "| cycle | RSS KiB | fds |", "| --- | --- | --- |"]
        lines += [f"| {n} | {rss} | {fds} |" for n, rss, fds in soak["samples"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    (BUILD / "fuzz-corpus").mkdir(parents=True, exist_ok=True)
    out = BUILD / "reliability.json"
    out.unlink(missing_ok=True)
    env = {**DEFAULTS, **os.environ, figures.ENV: str(out)}
    begin = time.monotonic()
    status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:logging", *SUITES],
                            cwd=REPO, env=env).returncode
    data = json.loads(out.read_text()) if out.exists() else {}
    text = summary(data, status, time.monotonic() - begin)
    (BUILD / "reliability.md").write_text(text)
    sys.stdout.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
