"""``python -m plugin rotate-key``'s side of a key rotation (the worker's,
and the traffic across it: tests/multihost/test_encrypted.py)."""
from __future__ import annotations

import shutil

import pytest

from datapath import wireguard
from plugin import cli


@pytest.fixture(autouse=True)
def needs_wg(monkeypatch):
    if shutil.which("wg") is None:
        pytest.skip("needs wg (apt-get install wireguard-tools)")
    monkeypatch.setattr(cli, "ROTATE_WAIT_S", 0.3)


def test_with_no_server_to_take_it_the_new_key_is_withdrawn(tmp_path, capsys):
    tunnel = wireguard.Tunnel("pontoon", str(tmp_path), "host1")
    before = tunnel.identity()
    assert cli.main(["rotate-key", "--state-dir", str(tmp_path)]) == 1
    assert "no server took the new key" in capsys.readouterr().err
    assert not (tmp_path / wireguard.NEXT_KEY_FILE).exists()
    assert tunnel.identity() == before


def test_a_key_offered_is_taken_over_the_old_one_and_a_second_offer_waits(tmp_path, capsys):
    tunnel = wireguard.Tunnel("pontoon", str(tmp_path), "host1")
    before = tunnel.identity()
    offered = wireguard.offer_key(str(tmp_path))
    assert (tmp_path / wireguard.NEXT_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert cli.main(["rotate-key", "--state-dir", str(tmp_path)]) == 1  # one waits already: left alone
    assert "waits already" in capsys.readouterr().err
    after = tunnel.take_next_key()  # as the worker does (no device here: the key file only)
    assert after is not None and after["key"] == offered != before["key"]
    assert tunnel.identity() == after and tunnel.take_next_key() is None
    assert (tmp_path / wireguard.KEY_FILE).stat().st_mode & 0o777 == 0o600
