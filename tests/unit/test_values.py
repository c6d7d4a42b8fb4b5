"""The value parsers of spec/values.py, the schema patterns and the edge of
the app: strict, canonical, and a 4xx for anything a client can send."""
from __future__ import annotations

import json

import pytest

import spec
from datapath.errors import InvalidName
from datapath.names import validate_ifname
from plugin.app import MAX_DEPTH
from spec import values
from spec.errors import BadRequest

from .test_protocol import SAMPLES

ZONED = ["fd00::1%eth0/64", "fd00::%eth0/64", "fd00::1%eth0", "fd00::1%a\nb/64", "fe80::1%1"]


@pytest.mark.parametrize("value", ZONED)
@pytest.mark.parametrize("parse", [values.network, values.interface, values.address, values.host_address])
def test_an_ipv6_zone_is_refused_by_every_parser(parse, value):
    with pytest.raises(BadRequest, match="zone"):
        parse("Field", value)


@pytest.mark.parametrize("spelled, canonical", [
    ("0:0::1", "::1"), ("::1", "::1"), ("::ffff:127.0.0.1", "127.0.0.1"), ("0:0:0:0:0:ffff:7f00:1", "127.0.0.1"),
    ("FD00:0::0001", "fd00::1"), ("0.0.0.0", "0.0.0.0"), ("0::0", "::"),
])
def test_host_addresses_come_out_canonical(spelled, canonical):
    assert values.host_address("HostIP", spelled) == canonical


@pytest.mark.parametrize("value", ["127.0.0.1/32", "::1/128", "10.0.0.1/8"])
def test_a_host_address_with_a_prefix_is_refused(value):
    with pytest.raises(BadRequest, match="HostIP .*prefix length"):
        values.host_address("HostIP", value)


@pytest.mark.parametrize("value", ["02:42:0a:00:00:02\n", "02:42:0a:00:00:02 ", "\n02:42:0a:00:00:02",
                                   "02:42:0a:00:00:0g", "02:42:0a:00:00"])
def test_a_mac_must_match_whole(value):
    with pytest.raises(BadRequest, match="not a MAC address"):
        values.mac("MacAddress", value)


def test_a_mac_comes_out_lower_case():
    assert values.mac("MacAddress", "02:42:0A:FF:00:02") == "02:42:0a:ff:00:02"


@pytest.mark.parametrize("value, zero, ok", [
    (0, True, True), (0, False, False), (1, False, True), (65535, False, True), (65536, True, False),
    (-1, True, False), (True, True, False), ("80", False, False), (80.0, False, False)])
def test_ports(value, zero, ok):
    if ok:
        assert values.port("Port", value, allow_zero=zero) == value
    else:
        with pytest.raises(BadRequest, match=r"Port .* is not a port number"):
            values.port("Port", value, allow_zero=zero)


@pytest.mark.parametrize("name", ["-j", "-", "--help", "-i", "a b", "a\n", "a" * 16, "", ".", ".."])
def test_interface_names_iptables_could_misread_are_refused(name):
    with pytest.raises(InvalidName):
        validate_ifname(name)


@pytest.mark.parametrize("name", ["br-0", "a-", "x.y_z", "a" * 15])
def test_ordinary_interface_names_pass(name):
    validate_ifname(name)


# Every string field with a pattern, in every request schema: none takes a
# trailing newline (jsonschema's "pattern" is re.search, "$" matches before
# a final "\n"; spec/ makes it a full match).
PATTERNED = sorted({(m, f) for m in spec.methods()
                    for f, s in spec.schema(f"{m}.request").get("properties", {}).items() if "pattern" in s})


@pytest.mark.parametrize("method, field", PATTERNED)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "])
def test_patterned_fields_refuse_a_trailing_newline(method, field, suffix):
    body = {name: SAMPLES[name] for name in spec.schema(f"{method}.request").get("required", [])}
    spec.validate(f"{method}.request", {**body, field: "a" * 64})
    with pytest.raises(spec.SpecError, match=f'"{field}".* does not match'):
        spec.validate(f"{method}.request", {**body, field: "a" * 64 + suffix})


def test_patterns_exist_to_be_checked():
    assert ("NetworkDriver.CreateEndpoint", "EndpointID") in PATTERNED


def _nested(depth: int) -> bytes:
    """A CreateNetwork whose option "a" nests ``depth`` objects, 3 levels down."""
    inner = b'{"a": ' * depth + b"1" + b"}" * depth
    return (b'{"NetworkID": "' + b"a" * 64 + b'", "Options": {"com.docker.network.generic": ' + inner + b"}}")


@pytest.mark.parametrize("depth", [MAX_DEPTH, 5000, 100_000])
def test_deep_nesting_is_a_400(refused, depth):
    refused("NetworkDriver.CreateNetwork", raw=_nested(depth), says=f"deeper than {MAX_DEPTH} levels")


def test_deep_lists_are_a_400(refused):
    raw = b'{"PoolID": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    refused("IpamDriver.ReleasePool", raw=raw, says="deeper than")


def test_nesting_below_the_limit_is_judged_on_its_content(refused):
    # Deep but within the limit: refused for what it says, not for its depth.
    err = refused("NetworkDriver.CreateNetwork", raw=_nested(MAX_DEPTH - 3), says='unknown network option "a"')
    assert "deeper" not in err


def test_many_brackets_in_strings_cost_no_refusal(client):
    body = {"AddressSpace": "LocalDefault", "Pool": "10.3.0.0/24", "Options": {"x": "[{" * 1000}}
    assert client.ok("IpamDriver.RequestPool", body)["Pool"] == "10.3.0.0/24"


def test_refusals_are_logged_with_values_quoted(plugin, caplog):
    """A value with a newline cannot start a log line of its own."""
    caplog.set_level("INFO", logger="pontoon")
    body = {"AddressSpace": "LocalDefault", "Pool": "10.0.0.0/24\nERROR forged line"}
    plugin.client.call("IpamDriver.RequestPool", body)
    lines = [r.getMessage() for r in caplog.records if r.name == "pontoon"]
    assert lines and all("\n" not in line for line in lines), lines
    assert any("forged line" in line for line in lines)


def test_error_replies_are_json_with_the_value(client):
    status, reply = client.call("IpamDriver.RequestPool", {"AddressSpace": "LocalDefault", "Pool": "fd00::%eth0/64",
                                                           "V6": True})
    assert status == 400 and "fd00::%eth0/64" in reply["Err"] and "zone" in reply["Err"]
    json.dumps(reply)


@pytest.mark.parametrize("value", ["10.0.0.0/24\n", "10.0.0.1 ", " ::1", "::1\n", "::1/128\n", "１０.0.0.1/24",
                                   "10.0.0.0/２4", "10.0.0.1\x00/24"])
@pytest.mark.parametrize("parse", [values.network, values.interface, values.address, values.host_address])
def test_whitespace_and_non_ascii_digits_are_refused(parse, value):
    with pytest.raises(BadRequest):
        parse("Field", value)
