"""The store hands out records parsed once per stored text
(plugin.store._parsed_network/_parsed_endpoint): a changed record is read
as changed, and a damaged one is refused at every read, never served from
the cache."""
import json

import pytest

from plugin.store import Store
from spec.stored import BadStoredRecord, StoredEndpoint

EID, NID = "e" * 64, "n" * 64


def test_a_changed_endpoint_reads_changed_and_an_unchanged_one_reads_the_same(tmp_path):
    store = Store(str(tmp_path))
    store.initialise()
    with store.transaction() as tx:
        tx.put_endpoint(StoredEndpoint(EID, NID, address="10.0.0.2/24"))
    with store.snapshot() as tx:
        first, again = tx.get_endpoint(EID), tx.get_endpoint(EID)
    assert first is again and first.sandbox == ""
    with store.transaction() as tx:
        tx.put_endpoint(StoredEndpoint(EID, NID, address="10.0.0.2/24", sandbox="/var/run/docker/netns/x"))
    with store.snapshot() as tx:
        assert tx.get_endpoint(EID).sandbox == "/var/run/docker/netns/x"


def test_a_damaged_record_is_refused_at_every_read(tmp_path):
    store = Store(str(tmp_path))
    store.initialise()
    with store.transaction() as tx:
        record = StoredEndpoint(EID, NID, address="10.0.0.2/24").to_json()
        tx._db.execute("INSERT INTO endpoints (id, network_id, data) VALUES (?, ?, ?)",
                       (EID, NID, json.dumps({**record, "address": "10.0.0.2"})))
    for _ in range(2):
        with store.snapshot() as tx, pytest.raises(BadStoredRecord, match="not an address in CIDR"):
            tx.get_endpoint(EID)
