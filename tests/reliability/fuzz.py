"""Coverage-guided fuzzing of every method's request path (test_fuzz.py).

libFuzzer (through atheris) mutates the bytes that hypothesis draws the
requests of ``hostile`` from: schema-shaped bodies for every method, with
hostile values and breakages. The whole app is instrumented (Flask, the
schemas, the drivers, the datapath), so an input that reaches code no input
reached before is kept and mutated further, and the fuzzer finds its way
into the paths behind the first checks instead of sampling blindly.

It drives the real app with the real netlink and iptables parts, and is
meant to run inside a private network namespace (``ip netns exec``), where
nothing else lives: whatever is left there at the end was left by Pontoon.
Two commands, each a process of its own because libFuzzer ends its process
when its time is up:

    python -m tests.reliability.fuzz run WORKDIR SECONDS [CORPUS]
        fuzz for SECONDS, from a seed per method and whatever CORPUS (default
        WORKDIR/corpus) kept from earlier runs; every answer must be a 200 that matches its
        response schema or a clean refusal (``hostile.check_refusal``): a
        5xx stops the run with the input that caused it. Counts go to
        WORKDIR/counts.json as they grow.
    python -m tests.reliability.fuzz clean WORKDIR
        the same instance, started again on the same store, deletes through
        the protocol everything the store holds.
"""
from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

# Random seeds per method. With one, the fuzzer spent most of its time on
# mutants of whichever way that seed was refused (0 of 519 CreateNetworks
# accepted in 300 s); a few give each method paths past the first checks.
SEEDS = 4
PACKAGES = ("plugin", "network_driver", "datapath", "ipam_driver", "spec")
# Methods that change nothing: no need to restore the baseline after them.
READ_ONLY = {"Plugin.Activate", "NetworkDriver.GetCapabilities", "NetworkDriver.EndpointOperInfo",
             "NetworkDriver.DiscoverNew", "NetworkDriver.DiscoverDelete", "NetworkDriver.AllocateNetwork",
             "NetworkDriver.FreeNetwork", "IpamDriver.GetCapabilities", "IpamDriver.GetDefaultAddressSpaces"}


class Counts:
    """Inputs per method and answer, rewritten after each input with one
    ``pwrite``: libFuzzer leaves with ``exit()``, which runs no Python."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.tried: collections.Counter = collections.Counter()
        self.accepted: collections.Counter = collections.Counter()
        self.server_errors = 0

    def add(self, method: str, status: int) -> None:
        self.tried[method] += 1
        self.accepted[method] += status == 200
        self.server_errors += status >= 500
        data = json.dumps({"tried": self.tried, "accepted": self.accepted, "5xx": self.server_errors}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def run(workdir: Path, seconds: int, corpus: Path | None) -> None:
    import atheris
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    # Coverage is Pontoon's own code: instrumenting everything loaded
    # (hypothesis, Flask, pyroute2: 15,000 functions) took minutes to start
    # and made every input slower.
    with atheris.instrument_imports(include=list(PACKAGES)):
        import spec

        from . import hostile
        from .inprocess import in_process
        from .kernel import Seen

    target = in_process(workdir, Seen())
    (workdir / "instance").write_text(target.instance)
    baseline = hostile.Baseline(target.client)
    baseline.restore()
    counts = Counts(workdir / "counts.json")

    def target_of(method: str):
        @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(hostile.request(method, baseline.ids))
        def one(raw: bytes) -> None:
            status, payload = target.client.transport.post(f"/{method}", raw)
            counts.add(method, status)
            reply = json.loads(payload)
            if status != 200:
                hostile.check_refusal(raw, status, reply)
                return
            spec.validate(f"{method}.response", reply)
            if method not in READ_ONLY:
                baseline.restore()  # what the next input aims at is there again

        return one.hypothesis.fuzz_one_input

    methods = spec.methods()
    targets = [target_of(method) for method in methods]

    def one_input(data: bytes) -> None:
        # The first byte picks the method, hypothesis draws its request from
        # the rest: seeds for every method (below) have each tried at once.
        if data:
            targets[data[0] % len(targets)](data[1:])

    corpus = corpus or workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, method in enumerate(methods):
        # Zeros make hypothesis's simplest request: unmutated, the
        # baseline's IDs, its first values (mostly valid ones).
        (corpus / f"seed-{method}-simplest").write_bytes(bytes([i]) + bytes(512))
        for n in range(SEEDS):
            (corpus / f"seed-{method}-{n}").write_bytes(bytes([i]) + os.urandom(512))
    # Hypothesis reads a request out of a few hundred bytes: without
    # len_control=0 libFuzzer starts at 4 and grows its inputs slowly.
    argv = [sys.argv[0], f"-max_total_time={seconds}", "-timeout=120", "-rss_limit_mb=4096",
            "-max_len=4096", "-len_control=0",
            f"-artifact_prefix={workdir}/", "-print_final_stats=1"]
    atheris.Setup(argv + [str(corpus)], one_input)
    atheris.Fuzz()


def clean(workdir: Path) -> None:
    from .inprocess import in_process
    from .kernel import Seen

    in_process(workdir, Seen(), instance=(workdir / "instance").read_text()).delete_everything()


def main(argv: list[str]) -> None:
    command, workdir = argv[0], Path(argv[1])
    if command == "run":
        run(workdir, int(argv[2]), Path(argv[3]) if len(argv) > 3 else None)
    elif command == "clean":
        clean(workdir)
    else:
        raise SystemExit(f"unknown command {command!r}; see {__file__}")


if __name__ == "__main__":
    main(sys.argv[1:])
