"""An etcd that speaks only TLS and asks for client certificates, as
production etcd clusters do: the cluster works with the three PEM files
(--etcd-ca, --etcd-cert, --etcd-key), and without the right ones every
cluster call fails at once with a 503 that says why. Each test runs with
Pontoon's client pinned to TLS 1.2 and to TLS 1.3: etcd turns away a
missing client certificate during the handshake under the one and after it
under the other (Debian's etcd 3.4 has no --tls-max-version, so the pin is
on the client's side)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import pytest
from requests.adapters import HTTPAdapter

from cluster import etcd as etcd_client
from plugin import cli
from testbed.client import ProtocolError
from testbed.etcd import Etcd

from .conftest import require_tools
from .control import Host

SUBNET = "10.93.0.0/24"
PINS = {"TLSv1.2": {"ssl_maximum_version": ssl.TLSVersion.TLSv1_2},
        "TLSv1.3": {"ssl_minimum_version": ssl.TLSVersion.TLSv1_3}}


@dataclass
class Pin:
    version: str  # as ssl's SSLSocket.version() names it
    spoken: set[str] = field(default_factory=set)  # by the connections etcd answered


class _Pinned(HTTPAdapter):
    """Connections that speak only the TLS versions of ``versions``; records
    the version each answered connection spoke."""

    def __init__(self, versions: dict, spoken: set):
        self.versions, self.spoken = versions, spoken
        super().__init__()  # which calls init_poolmanager

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs, **self.versions)

    def build_response(self, req, resp):
        self.spoken.add(resp.connection.sock.version())
        return super().build_response(req, resp)


@pytest.fixture(params=list(PINS))
def tls_version(request, monkeypatch) -> Pin:
    """Pins the TLS version of every etcd client made in the test."""
    made, pin = etcd_client.session, Pin(request.param)

    def session(tls):
        pinned = made(tls)
        pinned.mount("https://", _Pinned(PINS[pin.version], pin.spoken))
        return pinned

    monkeypatch.setattr(etcd_client, "session", session)
    return pin


@pytest.fixture
def tls_etcd(tmp_path):
    require_tools()
    server = Etcd(tmp_path / "etcd", tls=True)
    server.start()
    yield server
    server.remove()


def _files(etcd: Etcd, **override) -> dict:
    files = {"etcd_ca": str(etcd.pki["ca.pem"]), "etcd_cert": str(etcd.pki["client.pem"]),
             "etcd_key": str(etcd.pki["client.key"])}
    return {**files, **override}


def test_two_hosts_share_a_network_through_an_etcd_that_wants_client_certificates(tmp_path, tls_etcd, tls_version,
                                                                                    capsys):
    hosts = [Host(tmp_path / f"h{i}", tls_etcd.url, f"host{i}", f"192.0.2.{i + 1}", **_files(tls_etcd))
             for i in range(2)]
    try:
        nets = [h.dockerd.create_network(subnet=SUBNET) for h in hosts]
        addresses = {h.dockerd.run(n).address for h, n in zip(hosts, nets)}
        assert addresses == {"10.93.0.2/24", "10.93.0.3/24"}
        assert any("/pontoon/endpoints/" in k for k in tls_etcd.keys("/pontoon/"))
        assert cli.main(["inspect", "--state-dir", str(tmp_path / "h0"), "--etcd-endpoints", tls_etcd.url,
                         "--etcd-ca", _files(tls_etcd)["etcd_ca"], "--etcd-cert", _files(tls_etcd)["etcd_cert"],
                         "--etcd-key", _files(tls_etcd)["etcd_key"]]) == 0
        assert "CLUSTER ENDPOINTS (2)" in capsys.readouterr().out
        assert tls_version.spoken == {tls_version.version}  # the pin held
    finally:
        for host in hosts:
            host.stop()


@pytest.mark.parametrize("case", ["no client certificate", "another CA"])
def test_without_the_right_files_cluster_calls_fail_at_once_and_say_why(tmp_path, tls_etcd, tls_version, case):
    hint = "(does etcd want a client certificate?)"
    if case == "no client certificate":
        files, why = _files(tls_etcd, etcd_cert="", etcd_key=""), "TLS handshake failed: "
    else:
        other = Etcd(tmp_path / "other", tls=True)  # its CA did not sign this etcd's certificate
        files, why = _files(tls_etcd, etcd_ca=str(other.pki["ca.pem"])), "certificate verify failed"
    host = Host(tmp_path / "h", tls_etcd.url, "lonely", "192.0.2.9", **files)
    try:
        with pytest.raises(ProtocolError) as refused:
            host.dockerd.create_network(subnet=SUBNET)
        assert refused.value.status == 503
        assert f"etcd is unreachable ({tls_etcd.url}: " in str(refused.value) and why in str(refused.value)
        assert (hint in str(refused.value)) == (case == "no client certificate"), str(refused.value)
        assert tls_etcd.keys("/pontoon/") == []
        with host.store.snapshot() as tx:
            assert tx.list_pools() == [] and tx.list_networks() == []
    finally:
        host.stop()
