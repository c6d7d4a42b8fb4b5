"""The coverage-guided fuzz target (``fuzz``) in a private network
namespace: every method's request path for PONTOON_FUZZ_SECONDS (20 in
``make test``, 300 in ``make reliability``), no 5xx answer, and once the
fuzzed objects are deleted, nothing left in the namespace: no link but lo,
no chain, no rule."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys

import pytest

import spec
from testbed.server import REPO
from tests.harness.conftest import require_root

from . import figures
from .kernel import FIREWALL_TOOLS, run

SECONDS = int(os.environ.get("PONTOON_FUZZ_SECONDS", "20"))
# Where the inputs that found new code are kept between runs (make
# reliability keeps build/fuzz-corpus); by default the test's own directory.
CORPUS = os.environ.get("PONTOON_FUZZ_CORPUS")
# libFuzzer's closing lines: "#1234  DONE  cov: 5678 ft: ..." and its final stats.
DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")


@pytest.fixture
def netns():
    require_root()
    name = "ptf" + secrets.token_hex(4)
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")  # host ports are picked by binding on 127.0.0.1
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def leftovers(netns: str) -> list[str]:
    """Every link but lo, every chain not built in, every rule, in ``netns``."""
    inside = ("ip", "netns", "exec", netns)
    found = [f"link {line.split(':')[1].strip()}" for line in run(*inside, "ip", "-o", "link", "show").splitlines()
             if line.split(":")[1].strip() != "lo"]
    for tool in FIREWALL_TOOLS:
        found += [f"{tool}: {line}" for line in run(*inside, tool).splitlines()
                  if line.startswith("-") or (line.startswith(":") and " - [" in line)]
    return found


def fuzz(netns: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "tests.reliability.fuzz", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_fuzz_every_method_in_a_private_netns(netns, tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install -e '.[test]' installs it)")
    assert leftovers(netns) == []
    # Startup (instrumenting every loaded module) takes a few seconds on top.
    done = fuzz(netns, "run", str(tmp_path), str(SECONDS), *([CORPUS] if CORPUS else []), timeout=SECONDS + 600)
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert done.returncode == 0, done.stderr[-6000:]
    assert counts["5xx"] == 0
    stats = DONE.findall(done.stderr)
    assert stats, done.stderr[-3000:]
    runs, coverage, features = (int(x) for x in stats[-1])
    tried = sum(counts["tried"].values())
    assert set(counts["tried"]) == set(spec.methods()), counts["tried"]
    cleaned = fuzz(netns, "clean", str(tmp_path), timeout=300)
    assert cleaned.returncode == 0, cleaned.stderr[-6000:]
    left = leftovers(netns)
    figures.record("fuzz", {"seconds": SECONDS, "inputs": tried, "libfuzzer_runs": runs, "coverage_edges": coverage,
                            "features": features, "5xx": counts["5xx"], "left_behind": len(left),
                            "tried": counts["tried"], "accepted": counts["accepted"]})
    assert left == []
