"""The cluster's typed records (cluster/records.py and the modules beside
it): the exact bytes each writer puts in etcd, which transactions compare
with what a running older host wrote (``value_is``), so they are pinned
here as the versions before the typed records wrote them; today's records
and older versions' parse, with the defaults the code applied before; a
malformed one is a BadRecord naming key, field and value."""
from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from cluster import addrrecord
from cluster.addrrecord import GATEWAY_HOLDER, AddrHolder
from cluster.host import ClusterHost
from cluster.hostrecord import HostRecord, Wireguard
from cluster.netrecord import NetRecord
from cluster.poolrecord import PoolRecord
from cluster.records import BadRecord, EndpointRecord
from cluster.segment import ClusterSegment
from spec.stored import StoredEndpoint

KEY32 = base64.b64encode(bytes(range(32))).decode()


# -- endpoints/<pool>/<host>/<id> ---------------------------------------------------
ENDPOINT_KEY = "/pontoon/endpoints/LocalDefault:10.90.0.0_24/h1/e1"
ENDPOINT_TODAY = ('{"addresses": ["10.90.0.5", "fd00::5"], "aliases": ["www", "abcdef012345"], "host": "h1", '
                  '"mac": "02:00:00:00:00:01", "name": "web", "vtep": "192.0.2.1"}')
ENDPOINT_OLDER = '{"addresses": ["10.90.0.5"], "host": "h1", "mac": "02:00:00:00:00:01", "vtep": "192.0.2.1"}'


def _segment_record(**endpoint) -> str:
    """What ClusterSegment._record, the one writer, makes for ``endpoint``."""
    segment = SimpleNamespace(host=SimpleNamespace(host_id="h1", advertise="192.0.2.1"))
    fields = {"mac": "02:00:00:00:00:01", "address_v6": "", **endpoint}
    fields["aliases"] = tuple(fields.get("aliases") or ())
    return ClusterSegment._record(segment, StoredEndpoint("e" * 64, "n" * 64, **fields))


def test_an_endpoint_record_is_written_as_before():
    assert _segment_record(address="10.90.0.5/24", address_v6="fd00::5/64", name="web",
                           aliases=["www", "abcdef012345"]) == ENDPOINT_TODAY
    assert _segment_record(address="10.90.0.5/24", name=None, aliases=[]) == ENDPOINT_OLDER
    assert _segment_record(address="10.90.0.5/24") == ENDPOINT_OLDER


def test_endpoint_records_of_today_and_before_parse():
    today = EndpointRecord.parse(ENDPOINT_KEY, ENDPOINT_TODAY)
    assert today == EndpointRecord("h1", "192.0.2.1", "02:00:00:00:00:01", ("10.90.0.5", "fd00::5"), "web",
                                   ("www", "abcdef012345"))
    assert today.value() == ENDPOINT_TODAY
    older = EndpointRecord.parse(ENDPOINT_KEY, ENDPOINT_OLDER)
    assert (older.name, older.aliases, older.value()) == (None, (), ENDPOINT_OLDER)


@pytest.mark.parametrize("field, bad", [("host", "h2"), ("vtep", "127.0.0.1"), ("mac", "nope"),
                                        ("addresses", ["10.90.0.5", "10.90.0.6", "10.90.0.7"]),
                                        ("addresses", ["ten"])])
def test_a_bad_endpoint_record_names_key_field_and_value(field, bad):
    with pytest.raises(BadRecord) as exc:
        EndpointRecord.parse(ENDPOINT_KEY, json.dumps({**json.loads(ENDPOINT_OLDER), field: bad}))
    assert ENDPOINT_KEY in str(exc.value) and field in str(exc.value)
    assert str(bad if isinstance(bad, str) else bad[-1]) in str(exc.value)


# -- nets/<pool> --------------------------------------------------------------------------
NET_KEY = "/pontoon/nets/LocalDefault:10.90.0.0_24"
OPTIONS = {"mtu": 1450, "icc": True, "masquerade": True, "internal": False, "ipv6": True, "inhibit_ipv4": False}
NET_TODAY = ('{"options": {"encrypted": true, "icc": true, "inhibit_ipv4": false, "internal": false, "ipv6": true, '
             '"masquerade": true, "mtu": 1450}, "pools": ["LocalDefault:10.90.0.0_24", "LocalDefault:fd00::_64"], "vni": 4097}')
NET_OLDER = ('{"options": {"icc": true, "inhibit_ipv4": false, "internal": false, "ipv6": true, "masquerade": true, '
             '"mtu": 1450}, "vni": 4097}')  # before encryption and before the pools were recorded


def test_a_net_record_is_written_as_before():
    pools = tuple(sorted(["LocalDefault:fd00::_64", "LocalDefault:10.90.0.0_24"]))
    assert NetRecord(4097, {**OPTIONS, "encrypted": True}, pools).value() == NET_TODAY


def test_net_records_of_today_and_before_parse():
    today = NetRecord.parse(NET_KEY, NET_TODAY)
    assert (today.vni, today.encrypted, today.pools) == (4097, True, ("LocalDefault:10.90.0.0_24", "LocalDefault:fd00::_64"))
    assert today.value() == NET_TODAY
    older = NetRecord.parse(NET_KEY, NET_OLDER)
    assert (older.encrypted, older.pools, older.options["mtu"], older.value()) == (False, None, 1450, NET_OLDER)


@pytest.mark.parametrize("field, change", [
    ("vni", {"vni": "4097"}), ("vni", {"vni": 1 << 24}), ("vni", {"vni": True}), ("options", {"options": []}),
    ("options.mtu", {"options": {**OPTIONS, "mtu": "1450"}}), ("options.mtu", {"options": {"icc": True}}),
    ("options.encrypted", {"options": {**OPTIONS, "encrypted": "yes"}}), ("pools", {"pools": "LocalDefault:10.90.0.0_24"}),
])
def test_a_bad_net_record_names_key_field_and_value(field, change):
    with pytest.raises(BadRecord) as exc:
        NetRecord.parse(NET_KEY, json.dumps({**json.loads(NET_OLDER), **change}))
    assert str(exc.value).startswith(f"{NET_KEY}: {field} ")


# -- pools/<pool> -------------------------------------------------------------------------
POOL_KEY = "/pontoon/pools/LocalDefault:10.90.0.0_24"
POOL = '{"cidr": "10.90.0.0/24", "options": {"com.docker.network.ipam.serial": "1"}, "space": "LocalDefault", "sub": ""}'


def test_a_pool_record_is_written_as_before_and_parses():
    record = PoolRecord("LocalDefault", "10.90.0.0/24", "", {"com.docker.network.ipam.serial": "1"})
    assert record.value() == POOL
    assert PoolRecord.parse(POOL_KEY, POOL) == record
    ranged = PoolRecord.parse(POOL_KEY, json.dumps({**json.loads(POOL), "sub": "10.90.0.128/25"}))
    assert ranged.sub == "10.90.0.128/25"


@pytest.mark.parametrize("field, change", [
    ("cidr", {"cidr": "10.90.0.1/24"}), ("cidr", {"cidr": 24}), ("sub", {"sub": None}), ("sub", {"sub": "10.90.0"}),
    ("options", {"options": "none"}), ("space", {"space": ""}),
])
def test_a_bad_pool_record_names_key_field_and_value(field, change):
    with pytest.raises(BadRecord) as exc:
        PoolRecord.parse(POOL_KEY, json.dumps({**json.loads(POOL), **change}))
    assert str(exc.value).startswith(f"{POOL_KEY}: {field} ")


# -- hosts/<id> -----------------------------------------------------------------------------
HOST_KEY = "/pontoon/hosts/h1"
HOST_TODAY = ('{"advertise": "192.0.2.1", "boot": "b00t", "token": "t0ken", '
              f'"wireguard": {{"key": "{KEY32}", "port": 51820, "tunnel": "fd70::1"}}}}')
HOST_OLDER = '{"advertise": "192.0.2.1"}'  # the first versions': no token, no boot ID


def test_a_host_record_is_written_as_before():
    host = ClusterHost(["http://192.0.2.1:2379"], "h1", advertise="192.0.2.1", token="t0ken")
    host._boot = "b00t"
    host.wireguard = Wireguard(KEY32, "fd70::1", 51820)
    assert host._record().value() == HOST_TODAY
    host.wireguard = None  # a host that cannot encrypt
    assert host._record().value() == '{"advertise": "192.0.2.1", "boot": "b00t", "token": "t0ken"}'


def test_host_records_of_today_and_before_parse():
    today = HostRecord.parse(HOST_KEY, HOST_TODAY)
    assert today.value() == HOST_TODAY
    assert today.peer() == {"key": KEY32, "tunnel": "fd70::1", "endpoint": "192.0.2.1:51820"}
    older = HostRecord.parse(HOST_KEY, HOST_OLDER)
    assert (older.advertise, older.token, older.boot, older.peer()) == ("192.0.2.1", None, None, None)
    v6 = HostRecord.parse(HOST_KEY, HOST_TODAY.replace("192.0.2.1", "2001:db8::1"))
    assert v6.peer()["endpoint"] == "[2001:db8::1]:51820"


def test_a_host_claims_only_its_own_record():
    host = ClusterHost(["http://192.0.2.1:2379"], "h1", advertise="192.0.2.1", token="t0ken")
    host._boot = "b00t"
    assert host._ours(HOST_TODAY) and not host._ours(HOST_OLDER) and not host._ours("[]")
    assert "192.0.2.1" in str(host._taken_by(HOST_OLDER)) and "an unknown address" in str(host._taken_by("{"))


@pytest.mark.parametrize("field, change", [("advertise", {"advertise": "here"}), ("advertise", {}),
                                           ("token", {"token": 7}), ("boot", {"boot": ["b"]})])
def test_a_bad_host_record_names_key_field_and_value(field, change):
    raw = {**json.loads(HOST_OLDER), **change} if change else {}
    with pytest.raises(BadRecord) as exc:
        HostRecord.parse(HOST_KEY, json.dumps(raw))
    assert str(exc.value).startswith(f"{HOST_KEY}: {field} ")


@pytest.mark.parametrize("wireguard", [{"key": "short", "tunnel": "fd70::1", "port": 51820},
                                       {"key": KEY32, "tunnel": "10.0.0.1", "port": 51820},
                                       {"key": KEY32, "tunnel": "fd70::1", "port": 0}, "x"])
def test_a_bad_wireguard_identity_costs_only_itself(wireguard, caplog):
    record = HostRecord.parse(HOST_KEY, json.dumps({**json.loads(HOST_OLDER), "wireguard": wireguard}))
    assert (record.advertise, record.wireguard) == ("192.0.2.1", None)
    assert HOST_KEY in caplog.text and "wireguard" in caplog.text


# -- addrs/<pool>/<addr> --------------------------------------------------------------------
ADDR_KEY = "/pontoon/addrs/LocalDefault:10.90.0.0_24/0a5a0005"


def test_an_address_record_is_written_as_before():
    assert AddrHolder("h1", "address").value() == '{"host": "h1", "kind": "address"}'
    assert AddrHolder(GATEWAY_HOLDER, "gateway").value() == '{"host": "*", "kind": "gateway"}'


def test_address_records_parse():
    assert AddrHolder.parse(ADDR_KEY, '{"host": "h1", "kind": "host"}') == AddrHolder("h1", "host")
    assert AddrHolder.parse(ADDR_KEY, '{"host": "*", "kind": "aux"}').holder == ""
    assert addrrecord.holder(ADDR_KEY, '{"host": "h1", "kind": "address"}') == "h1"


@pytest.mark.parametrize("value, field", [('{"kind": "address"}', "host"), ('{"host": "h1", "kind": 3}', "kind"),
                                          ('{"host": "h1"', "the record"), ('["h1"]', "the record")])
def test_a_bad_address_record_names_key_field_and_value(value, field, caplog):
    with pytest.raises(BadRecord) as exc:
        AddrHolder.parse(ADDR_KEY, value)
    assert str(exc.value).startswith(f"{ADDR_KEY}: {field} ")
    assert addrrecord.holder(ADDR_KEY, value) == "" and ADDR_KEY in caplog.text  # as before: the network's
