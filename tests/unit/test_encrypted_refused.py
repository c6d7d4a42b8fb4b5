"""``-o pontoon.encrypted=true`` is refused with a 400 naming the option by
a Pontoon that cannot encrypt (no wireguard-go, no kernel WireGuard) and by
a single-host one, before anything is made: never a network that looks
encrypted and sends clear text."""
import pytest

from cluster.segment import ClusterSegment
from datapath import wireguard
from network_driver import network
from network_driver.segment import LocalSegment
from spec.errors import BadRequest

from .conftest import Plugin

NET = {"NetworkID": "a" * 64, "Options": {"com.docker.network.generic": {"pontoon.encrypted": "true"}},
       "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.92.0.0/24", "Gateway": "10.92.0.1/24"}]}


class NoHost:
    """A cluster host that must not be asked: the refusal comes first."""

    def __getattr__(self, name):
        raise AssertionError(f"the cluster was asked ({name}) before the refusal")


def create(tmp_path, segment) -> Plugin:
    plugin = Plugin(tmp_path)
    drv = network.NetworkDriver(plugin.store.transaction, plugin.store.snapshot, plugin.links, plugin.firewall,
                                plugin.host_ports, segment=segment)
    with pytest.raises(BadRequest) as refused:
        drv.create_network(NET)
    assert 'pontoon.encrypted="true"' in str(refused.value)
    with plugin.store.snapshot() as tx:
        assert tx.list_networks() == []
    return refused.value


def test_a_cluster_host_without_wireguard_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(wireguard.shutil, "which", lambda tool: None)  # neither wg nor wireguard-go
    tunnel = wireguard.Tunnel("pontoon", str(tmp_path), "host1")
    refused = create(tmp_path, ClusterSegment(NoHost(), None, None, tunnel=tunnel))
    assert "cannot encrypt" in str(refused) and "wireguard-go" in str(refused)
    assert not (tmp_path / wireguard.KEY_FILE).exists()


def test_a_single_host_refuses(tmp_path):
    assert "cluster network" in str(create(tmp_path, LocalSegment()))
