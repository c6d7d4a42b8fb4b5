"""The store's records of networks and endpoints (spec.stored): their JSON
round-trips, a damaged one is refused naming what is wrong, and a record an
older version stored, without the fields that came later, reads back with
their defaults once the store's migration has run."""
import contextlib
import dataclasses
import json
import re
import sqlite3

import pytest

from datapath.model import PortBinding
from network_driver.records import port_binding, stored_port
from plugin.store import Store
from spec.stored import (BadStoredRecord, ClusterPart, IpamData, LostAddress, NetworkOptions, StoredEndpoint,
                         StoredNetwork, StoredPort)

from .test_network import EID, NID

FULL_OPTIONS = NetworkOptions().to_json()


def old_network(network_id: str = NID, bridge: str = "pt-old", **fields) -> dict:
    """A network's JSON as an older version stored it (no tag: the first
    migrations give one)."""
    return {"id": network_id, "bridge": bridge, "bridge_created": True, "options": dict(FULL_OPTIONS),
            "ipv4": [{"pool": "10.1.0.0/24", "gateway": "10.1.0.1/24", "aux": {}}], "ipv6": [],
            "request": "{}", **fields}


def old_endpoint(endpoint_id: str = EID, network_id: str = NID, **fields) -> dict:
    """An endpoint's JSON as an older version stored it (no tag)."""
    return {"id": endpoint_id, "network_id": network_id, "address": "10.1.0.5/24", "address_v6": "",
            "mac": "02:42:0a:01:00:05", "mac_given": False, "sandbox": "", "exposed": [], "ports": [],
            "request": "{}", "host_veth": "ptv" + endpoint_id[:12], "peer_veth": "ptc" + endpoint_id[:12],
            "port_generation": 0, **fields}


def put_raw(store: Store, table: str, record: dict) -> None:
    """Write ``record`` into ``table`` as it is, bypassing the typed records."""
    columns = ("id, bridge, data", (record["id"], record["bridge"])) if table == "networks" else \
        ("id, network_id, data", (record["id"], record["network_id"]))
    with contextlib.closing(sqlite3.connect(store.path)) as db, db:
        db.execute(f"INSERT OR REPLACE INTO {table} ({columns[0]}) VALUES (?, ?, ?)",
                   (*columns[1], json.dumps(record)))


def get_raw(store: Store, table: str, record_id: str) -> dict:
    """The JSON ``table`` holds for ``record_id``, as it is."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        (data,) = db.execute(f"SELECT data FROM {table} WHERE id = ?", (record_id,)).fetchone()
    return json.loads(data)


def set_version(store: Store, version: int) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        db.execute(f"PRAGMA user_version = {version}")


def test_a_network_round_trips():
    network = StoredNetwork(
        NID, NetworkOptions(mtu=1400, trusted_interfaces=("eth1",), encrypted=True),
        (IpamData("10.1.0.0/24", "10.1.0.1/24", {"a": "10.1.0.9"}),), (IpamData("fd00::/64"),), "{}",
        tag=NID[:12], bridge="pt-x", cluster=ClusterPart("LocalDefault/10.1.0.0/24", 4242, "10.1.0.254/24"))
    assert StoredNetwork.from_json(json.loads(json.dumps(network.to_json()))) == network
    pending = StoredNetwork(NID, NetworkOptions(), (), (), "{}", pending=True)
    assert StoredNetwork.from_json(pending.to_json()) == pending


def test_an_endpoint_round_trips():
    endpoint = StoredEndpoint(
        EID, NID, "10.1.0.5/24", "fd00::5/64", "02:42:0a:01:00:05", sandbox="/var/run/docker/netns/x",
        exposed=({"Proto": 6, "Port": 80},), ports=(StoredPort("tcp", "", 8080, "10.1.0.5", 80),), request="{}",
        tag=EID[:12], host_veth="ptv" + EID[:12], peer_veth="ptc" + EID[:12], name="web", aliases=("w",),
        port_generation=2, portmap_request={"portmap": [], "versions": [4, 6]}, lost=LostAddress("10.1.0.5", "h2"))
    assert StoredEndpoint.from_json(json.loads(json.dumps(endpoint.to_json()))) == endpoint


def test_a_network_gives_the_host_address_its_cluster_part_records():
    network = StoredNetwork(NID, NetworkOptions(), (), (), "{}")
    assert network.host_address is None
    clustered = dataclasses.replace(network, cluster=ClusterPart("LocalDefault/10.1.0.0/24", 4242))
    assert clustered.host_address is None
    assert dataclasses.replace(clustered, cluster=ClusterPart("LocalDefault/10.1.0.0/24", 4242, "10.1.0.254/24")
                               ).host_address == "10.1.0.254/24"


def test_an_endpoint_gives_its_bare_addresses_and_its_names_in_order():
    endpoint = StoredEndpoint(EID, NID, "10.1.0.5/24", "fd00::5/64", name="web", aliases=("w", "abc123"))
    assert endpoint.ips == ("10.1.0.5", "fd00::5")
    assert endpoint.names == ("web", "w", "abc123")
    v6_only = StoredEndpoint(EID, NID, address_v6="fd00::5/64", aliases=("w",))
    assert (v6_only.ips, v6_only.names) == (("fd00::5",), ("w",))
    assert (StoredEndpoint(EID, NID).ips, StoredEndpoint(EID, NID).names) == ((), ())


def test_a_stored_port_and_the_datapaths_binding_convert_field_for_field():
    # A field added to one type and not the other would be dropped on the way.
    assert [f.name for f in dataclasses.fields(StoredPort)] == [f.name for f in dataclasses.fields(PortBinding)]
    port = StoredPort("udp", "192.0.2.7", 5353, "10.1.0.5", 53)
    assert port_binding(port) == PortBinding("udp", "192.0.2.7", 5353, "10.1.0.5", 53)
    assert stored_port(port_binding(port)) == port


@pytest.mark.parametrize("damage, message", [
    (lambda n: n.pop("request"), "request is missing"),
    (lambda n: n["options"].update(mtu="1500"), "options.mtu '1500' is not an integer"),
    (lambda n: n["ipv4"][0].update(pool="10.1.0.1/24"), 'ipv4[0].pool "10.1.0.1/24" is not a valid subnet'),
    (lambda n: n.update(bridge_created="yes"), "bridge_created 'yes' is not true or false"),
])
def test_a_damaged_network_is_refused_naming_it(damage, message):
    raw = {**old_network(), "tag": NID[:12], "adopted": None}
    damage(raw)
    with pytest.raises(BadStoredRecord, match=f"network {NID}: .*{re.escape(message)}"):
        StoredNetwork.from_json(raw)


def test_a_damaged_endpoint_is_refused_naming_it():
    with pytest.raises(BadStoredRecord, match=f'endpoint {EID}: address "10.1.0.5" is not an address in CIDR'):
        StoredEndpoint.from_json({**old_endpoint(address="10.1.0.5"), "tag": EID[:12]})


def test_records_of_an_older_version_read_back_with_the_defaults(tmp_path):
    """A network stored before gateway modes, trusted interfaces, masquerade
    addresses, IPv6-only networks and encryption, and an endpoint stored
    before Program counted its generations: the migration fills what they
    lack, and they read back with the defaults."""
    store = Store(str(tmp_path))
    store.initialise()
    options = {k: v for k, v in FULL_OPTIONS.items()
               if k not in ("gateway_mode_ipv4", "gateway_mode_ipv6", "trusted_interfaces", "host_ipv4", "host_ipv6",
                            "ipv4", "encrypted")}
    put_raw(store, "networks", {**old_network(options=options), "tag": NID[:12]})
    put_raw(store, "endpoints", {k: v for k, v in old_endpoint().items() if k != "port_generation"} | {"tag": EID[:12]})
    set_version(store, 2)  # as the last version left it: tags and the address index made
    Store(str(tmp_path)).initialise()
    with store.snapshot() as tx:
        network, endpoint = tx.get_network(NID), tx.get_endpoint(EID)
    assert network is not None and endpoint is not None
    assert network.options == NetworkOptions()
    assert network.adopted is None
    assert endpoint.port_generation == 0 and endpoint.portmap_request is None and endpoint.name is None


def test_the_stored_json_keeps_its_format(tmp_path):
    """What an older version reads: the same keys, a list where it had one."""
    store = Store(str(tmp_path))
    store.initialise()
    network = StoredNetwork.from_json({**old_network(), "tag": NID[:12], "adopted": None})
    endpoint = StoredEndpoint.from_json({**old_endpoint(), "tag": EID[:12]})
    with store.transaction() as tx:
        tx.put_network(network)
        tx.add_endpoint(endpoint)
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        ((raw_network,),) = db.execute("SELECT data FROM networks").fetchall()
        ((raw_endpoint,),) = db.execute("SELECT data FROM endpoints").fetchall()
    assert json.loads(raw_network) == {**old_network(), "tag": NID[:12], "adopted": None}
    assert json.loads(raw_endpoint) == {**old_endpoint(), "tag": EID[:12]}
