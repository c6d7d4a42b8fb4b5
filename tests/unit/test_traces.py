"""Replay every request a real dockerd sent (tests/fixtures/traces, copied
from the team's shared/protocol/traces).

The traces were answered by a throwaway probe, so the replay maps the probe's
answers (pool IDs, chosen pools and addresses, its address space "l") to
ours as it goes, exactly as dockerd would have used ours. Every reply must be
a 200 valid against spec/, and say what was asked.
"""
import copy
import ipaddress
import json

import pytest

from testbed.server import REPO

TRACES = REPO / "tests" / "fixtures" / "traces"
FILES = sorted(TRACES.glob("*.jsonl"))


def substitute(value, mapping: dict, key: str = ""):
    """The probe's PoolIDs equal its pools' CIDRs, so PoolID fields have a map of their own."""
    if isinstance(value, str):
        return mapping.get((key == "PoolID", value), value)
    if isinstance(value, list):
        return [substitute(v, mapping, key) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping, k) for k, v in value.items()}
    return value


def learn(mapping: dict, probe: str, ours: str) -> None:
    """Map a probe's value to ours, in both CIDR and bare address forms."""
    mapping[False, probe] = ours
    if "/" in probe and "/" in ours:
        mapping[False, probe.split("/")[0]] = ours.split("/")[0]


@pytest.mark.parametrize("trace", FILES, ids=lambda p: p.stem)
def test_replay(plugin, client, trace):
    mapping = {(False, "l"): client.ok("IpamDriver.GetDefaultAddressSpaces")["LocalDefaultAddressSpace"]}
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        method = entry["path"].lstrip("/")
        request = substitute(entry["request"], mapping)
        generic = (request.get("Options") or {}).get("com.docker.network.generic") or {}
        if "foo" in generic:
            # -o foo=bar: Pontoon refuses unknown options, naming them …
            status, reply = client.call(method, request)
            assert status == 400 and '"foo"' in reply["Err"]
            # … and the user's corrected command goes through.
            request = copy.deepcopy(request)
            del request["Options"]["com.docker.network.generic"]["foo"]
        reply = client.ok(method, request)
        check_sensible(plugin, method, request, reply)
        probe = entry["accepted_response"]
        if method == "IpamDriver.RequestPool":
            mapping[True, probe["PoolID"]] = reply["PoolID"]
            learn(mapping, probe["Pool"], reply["Pool"])
        elif method == "IpamDriver.RequestAddress":
            learn(mapping, probe["Address"], reply["Address"])
    state = plugin.state()
    assert state["store"]["networks"] == [] and state["store"]["pools"] == []
    assert state["bridges"] == {} and state["veths"] == {} and state["rules"] == {}


def check_sensible(plugin, method, request, reply):
    if method == "IpamDriver.RequestPool" and request.get("Pool"):
        assert reply["Pool"] == request["Pool"]
    if method == "IpamDriver.RequestAddress":
        if request.get("Address"):
            assert ipaddress.ip_interface(reply["Address"]).ip == ipaddress.ip_address(request["Address"])
    if method == "NetworkDriver.CreateNetwork":
        bridge = plugin.state()["store"]["networks"][-1]["bridge"]
        assert bridge in plugin.links.bridges
    if method == "NetworkDriver.CreateEndpoint":
        mac = request["Interface"]["MacAddress"]
        assert (reply == {}) if mac else reply["Interface"]["MacAddress"].startswith("02:42:")
    if method == "NetworkDriver.Join":
        assert reply["InterfaceName"]["SrcName"] in {v.peer_name for v in plugin.links.veths.values()}
        internal = plugin.state()["store"]["networks"][-1]["options"]["internal"]
        assert ("Gateway" in reply) == (not internal)
