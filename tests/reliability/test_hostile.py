"""Hostile input: for every method, requests generated from its schema in
spec/ and then broken (see ``hostile``) get a 4xx with a JSON ``Err`` that
names no file and carries no traceback, never a 500, and a refused request
changes neither the store nor the kernel. Accepted ones leave kernel and
store in agreement. In-process with the real netlink and iptables parts,
so each example costs milliseconds.
"""
from __future__ import annotations

import collections
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

import spec
from tests.harness.conftest import require_root

from . import figures, hostile
from .inprocess import InProcess, in_process
from .kernel import Seen, ours, problems, raw_snapshot

EXAMPLES = int(os.environ.get("PONTOON_FUZZ_EXAMPLES", "100"))


class Fuzz:
    def __init__(self, target: InProcess):
        self.target = target
        self.baseline = hostile.Baseline(target.client)
        self.baseline.restore()
        self.last = target.state()
        self.tried: collections.Counter = collections.Counter()
        self.accepted: collections.Counter = collections.Counter()

    def check(self, method: str, raw: bytes) -> None:
        # The state after one example is the state before the next: only
        # this test changes what the view filters for.
        before = self.last
        status, payload = self.target.client.transport.post(f"/{method}", raw)
        self.tried[method] += 1
        reply = json.loads(payload)
        if status == 200:
            self.accepted[method] += 1
            spec.validate(f"{method}.response", reply)
            state = self.target.state()
            assert problems(state["store"], self.target.instance, self.target.seen, ipam=False) == []
            if state != before:
                self.baseline.restore()
                self.last = self.target.state()
            return
        hostile.check_refusal(raw, status, reply)
        assert self.target.state() == before, (status, reply["Err"])


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    require_root()
    seen = Seen()
    before = raw_snapshot()
    target = in_process(tmp_path_factory.mktemp("hostile"), seen)
    fuzz = Fuzz(target)
    yield fuzz
    figures.record("hostile", {"tried": dict(fuzz.tried), "accepted": dict(fuzz.accepted)})
    target.delete_everything()
    assert ours(raw_snapshot(), seen) == ours(before, seen)


@pytest.mark.parametrize("method", spec.methods())
def test_hostile_requests_are_refused_cleanly(method, fuzz):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(raw=hostile.request(method, fuzz.baseline.ids))
    def check(raw: bytes) -> None:
        fuzz.check(method, raw)

    check()
