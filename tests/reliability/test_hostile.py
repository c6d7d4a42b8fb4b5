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
import re
import secrets

import pytest
from hypothesis import HealthCheck, given, settings

import spec
from tests.harness.conftest import require_root

from . import figures, hostile
from .inprocess import InProcess, in_process
from .kernel import Seen, ours, problems, raw_snapshot

EXAMPLES = int(os.environ.get("PONTOON_FUZZ_EXAMPLES", "100"))
# Absolute paths of two or more parts, as a traceback or an OSError shows them.
PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@-]+/)+[\w.@-]+")
LEAKS = ("Traceback", 'File "', ".py", "site-packages")

SUBNET, SUBNET6, OTHER = "10.199.1.0/24", "fd00:199:1::/64", "10.199.2.0/24"


class Baseline:
    """One network with a joined, published endpoint, and a second network,
    as dockerd would have set them up; ``restore`` brings back whatever an
    accepted request removed (every call here is idempotent)."""

    def __init__(self, target: InProcess):
        self.client = target.client
        self.net, self.other, self.ep = (secrets.token_hex(32) for _ in range(3))
        self.bridge = "ptz" + secrets.token_hex(4)
        self.pools = {SUBNET: "", SUBNET6: "", OTHER: ""}
        # IDs that share their first 12 characters with the baseline's own:
        # names derived from them must not reach its bridge, veths or chains.
        self.ids = {
            "NetworkID": [self.net, self.other, secrets.token_hex(32), self.net[:12] + secrets.token_hex(26)],
            "EndpointID": [self.ep, secrets.token_hex(32), self.net, self.ep[:12] + secrets.token_hex(26)],
            "PoolID": ["LocalDefault/10.199.1.0/24", "LocalDefault/fd00:199:1::/64",
                       "LocalDefault/10.199.2.0/24", "LocalDefault/10.199.9.0/24", "GlobalDefault/10.199.1.0/24"],
            "bridge": [self.bridge, "ptz" + secrets.token_hex(4)],
        }

    def _ipam(self, pool: str, *addresses: str) -> None:
        v6 = ":" in pool
        self.client.call("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": pool, "V6": v6})
        for address in addresses:  # 409 when still held: fine
            self.client.call("IpamDriver.RequestAddress", {"PoolID": f"LocalDefault/{pool}", "Address": address})

    def restore(self) -> None:
        self._ipam(SUBNET, "10.199.1.1", "10.199.1.2")
        self._ipam(SUBNET6, "fd00:199:1::1", "fd00:199:1::2")
        self._ipam(OTHER, "10.199.2.1")
        ok = self.client.ok
        ok("NetworkDriver.CreateNetwork", {
            "NetworkID": self.net,
            "Options": {"com.docker.network.enable_ipv6": True,
                        "com.docker.network.generic": {"com.docker.network.bridge.name": self.bridge}},
            "IPv4Data": [{"Pool": SUBNET, "Gateway": "10.199.1.1/24"}],
            "IPv6Data": [{"Pool": SUBNET6, "Gateway": "fd00:199:1::1/64"}]})
        ok("NetworkDriver.CreateNetwork", {"NetworkID": self.other, "Options": {},
                                           "IPv4Data": [{"Pool": OTHER, "Gateway": "10.199.2.1/24"}]})
        ids = {"NetworkID": self.net, "EndpointID": self.ep}
        ok("NetworkDriver.CreateEndpoint", {**ids, "Interface": {
            "Address": "10.199.1.2/24", "AddressIPv6": "fd00:199:1::2/64", "MacAddress": ""}})
        ok("NetworkDriver.Join", {**ids, "SandboxKey": "/var/run/docker/netns/hostile"})
        ok("NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {"com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}]}})


class Fuzz:
    def __init__(self, target: InProcess):
        self.target = target
        self.baseline = Baseline(target)
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
        assert 400 <= status < 500, (status, reply, raw[:300])
        spec.validate("Error.response", reply)
        err = reply["Err"]
        assert not any(leak in err for leak in LEAKS), err
        text = raw.decode(errors="replace")
        assert [p for p in PATH.findall(err) if p not in text] == [], err
        assert self.target.state() == before, (status, err)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    require_root()
    seen = Seen()
    before = raw_snapshot()
    target = in_process(tmp_path_factory.mktemp("hostile"), seen)
    fuzz = Fuzz(target)
    yield fuzz
    figures.record("hostile", {"tried": dict(fuzz.tried), "accepted": dict(fuzz.accepted)})
    client = target.client
    # What the store holds too: an accepted request may have used an ID of
    # ODD ("-1", "null") that ``seen`` does not track, and its bridge and
    # chains must not outlive the test.
    stored = target.state()["store"]
    for eid in sorted(seen.endpoints | {e["id"] for e in stored["endpoints"]}):
        client.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": "0", "EndpointID": eid})
    for nid in sorted(seen.networks | {n["id"] for n in stored["networks"]}):
        client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    for pool in target.state()["store"]["pools"]:
        client.ok("IpamDriver.ReleasePool", {"PoolID": pool["id"]})
    assert all(rows == [] for rows in target.state()["store"].values()), target.state()["store"]
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
