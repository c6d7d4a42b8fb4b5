"""Ownership is recorded, not guessed from names: objects whose IDs share
their first 12 characters get names of their own, and links a user made
under Pontoon's prefixes survive every call and the start-up reconcile.

The app runs in-process with the real netlink and iptables parts, inside a
network namespace of the test's own (``run_in_netns``): reconcile runs here
too, and never in the host namespace.
"""
from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from datapath.rules import Names
from plugin.wiring import chain_prefix
from spec.stored import StoredEndpoint, StoredNetwork
from testbed.netns import run_in_netns
from tests.datapath.conftest import suffix

from .inprocess import InProcess, in_process
from .kernel import Seen


def ids_sharing(prefix: str, count: int) -> list[str]:
    return [prefix + secrets.token_hex(26) for _ in range(count)]


def links() -> dict[str, dict]:
    """name -> what a user would see of it, in the current namespace."""
    found = json.loads(subprocess.run(["ip", "-j", "-d", "addr", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    return {link["ifname"]: {"kind": link.get("linkinfo", {}).get("info_kind", ""),
                             "alias": link.get("ifalias", ""), "address": link.get("address"),
                             "master": link.get("master", ""),
                             "addresses": sorted(f'{a["local"]}/{a["prefixlen"]}' for a in link["addr_info"]
                                                 if a.get("scope") == "global")}
            for link in found}


def chains(target: InProcess) -> set[str]:
    names = Names(chain_prefix(target.instance))
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    declared = (line[1:].split()[0] for line in out.splitlines() if line.startswith(":"))
    return {chain for chain in declared if names.owns(chain)}


class Calls:
    def __init__(self, target: InProcess):
        self.target, self.client = target, target.client

    def network(self, nid: str, subnet: str) -> StoredNetwork:
        self.client.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"Pool": f"{subnet}.0/24", "Gateway": f"{subnet}.1/24"}], "IPv6Data": []})
        with self.target.plugin.store.snapshot() as tx:
            return tx.get_network(nid)

    def endpoint(self, nid: str, eid: str, address: str, port: int) -> StoredEndpoint:
        ids = {"NetworkID": nid, "EndpointID": eid}
        self.client.ok("NetworkDriver.CreateEndpoint", {**ids, "Interface": {"Address": address}})
        self.client.ok("NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {
            "com.docker.network.portmap": [{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": port,
                                            "HostPortEnd": 0}]}})
        with self.target.plugin.store.snapshot() as tx:
            return tx.get_endpoint(eid)

    def endpoint_gone(self, nid: str, eid: str) -> None:
        for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
            self.client.ok(f"NetworkDriver.{method}", {"NetworkID": nid, "EndpointID": eid})

    def network_gone(self, nid: str) -> None:
        self.client.ok("NetworkDriver.DeleteNetwork", {"NetworkID": nid})


def names_stay_unique(workdir: str) -> None:
    target = in_process(Path(workdir), Seen())
    calls = Calls(target)
    names = Names(chain_prefix(target.instance))
    prefix = secrets.token_hex(6)
    first, second = (calls.network(nid, f"10.77.{i}") for i, nid in enumerate(ids_sharing(prefix, 2)))
    assert first.tag == prefix and first.bridge == "pt-" + prefix
    assert second.tag != prefix and second.bridge == "pt-" + second.tag
    a, b = (calls.endpoint(first.id, eid, f"10.77.0.{i + 2}/24", 30000 + i)
            for i, eid in enumerate(ids_sharing(prefix, 2)))
    c = calls.endpoint(second.id, ids_sharing(prefix, 1)[0], "10.77.1.2/24", 30002)
    veths = [e.host_veth for e in (a, b, c)]
    assert veths[0] == "ptv" + prefix and len(set(veths)) == 3
    present = links()
    assert present[first.bridge]["kind"] == present[second.bridge]["kind"] == "bridge"
    assert [present[v]["master"] for v in veths] == [first.bridge, first.bridge, second.bridge]
    wanted = {names.network(first.tag), names.network(second.tag)} | {names.endpoint(e.tag) for e in (a, b, c)}
    assert wanted <= chains(target) and len(wanted) == 5

    # Removing the second network and its endpoint leaves the first's alone.
    calls.endpoint_gone(second.id, c.id)
    calls.network_gone(second.id)
    assert target.plugin.network.reconcile() == []
    present = links()
    assert second.bridge not in present and c.host_veth not in present
    assert {first.bridge, a.host_veth, b.host_veth} <= set(present)
    assert chains(target) >= {names.network(first.tag), names.endpoint(a.tag), names.endpoint(b.tag)}
    for e in (a, b):
        calls.endpoint_gone(first.id, e.id)
    calls.network_gone(first.id)
    assert chains(target) == set()
    assert not [n for n, link in links().items() if link["alias"] == f"pontoon:{target.instance}"]


@pytest.fixture
def netns(root):
    name = "pt-test-" + suffix()
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def test_ids_sharing_their_first_12_characters_share_no_bridge_chain_or_veth(netns, tmp_path):
    run_in_netns(netns, names_stay_unique, str(tmp_path))


def users_links_survive(workdir: str) -> None:
    prefix = secrets.token_hex(6)
    subprocess.run(["ip", "link", "add", "pt-" + prefix, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "pt-" + prefix], check=True)
    subprocess.run(["ip", "link", "add", "ptv" + prefix, "type", "veth", "peer", "name", "ptc" + prefix], check=True)
    subprocess.run(["ip", "link", "add", "pt-x" + prefix[:8], "type", "bridge"], check=True)
    users = {name: link for name, link in links().items() if name.startswith("pt")}
    assert len(users) == 4

    def untouched(when: str) -> None:
        present = links()
        assert {name: present.get(name) for name in users} == users, when

    target = in_process(Path(workdir), Seen())
    calls = Calls(target)
    target.plugin.network.reconcile()
    untouched("after the start-up reconcile")
    nid, eid = ids_sharing(prefix, 2)
    network = calls.network(nid, "10.78.0")
    assert network.bridge != "pt-" + prefix and network.bridge_created, "a held default name is passed over"
    endpoint = calls.endpoint(nid, eid, "10.78.0.2/24", 30010)
    assert endpoint.host_veth != "ptv" + prefix, "a held veth name is passed over"
    untouched("after create")
    target.client.ok("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/x"})
    target.client.ok("NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
    untouched("after join and leave")

    # The stored endpoint's veth is deleted by hand and a user's link takes
    # its name: neither reconcile nor Join nor DeleteEndpoint touches it.
    subprocess.run(["ip", "link", "del", endpoint.host_veth], check=True)
    subprocess.run(["ip", "link", "add", endpoint.host_veth, "type", "veth", "peer", "name", "u" + prefix],
                   check=True)
    users.update((name, link) for name, link in links().items() if name in (endpoint.host_veth, "u" + prefix))
    target.plugin.network.reconcile()
    untouched("after reconcile")
    status, reply = target.client.call("NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/x"})
    assert status == 409 and "not ours" in reply["Err"], reply
    calls.endpoint_gone(nid, eid)
    calls.network_gone(nid)
    target.plugin.network.reconcile()
    untouched("after everything is deleted")
    assert chains(target) == set()


def test_a_users_links_under_pontoon_names_survive_every_call_and_reconcile(netns, tmp_path):
    run_in_netns(netns, users_links_survive, str(tmp_path))
