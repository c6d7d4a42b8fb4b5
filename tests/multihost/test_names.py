"""Issue 19 across hosts: names of containers resolve from every host.

Two namespace hosts with their own clustered Pontoon, real VXLAN and etcd.
A container on host1 is named as dockerd 29 names it (RequestAddress's
``com.docker.network.endpoint.name``); a container on host2 asks the
network's gateway, as its dockerd would with ``"dns": ["<gateway>"]``, from
its own namespace. "The internet" is a resolver of the test's own in the
underlay's namespace, which every host's Pontoon forwards to (its
``dns_resolv_conf`` names it; the real /etc/resolv.conf is not touched)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from testbed.cluster import LEASE_TTL, Cluster
from testbed.dockerd import wait_for
from testbed.sandbox import netns_exec
from testbed.underlay import SUBNET as UNDERLAY


from .conftest import require_tools

SUBNET, OTHER = "10.90.0.0/24", "10.91.0.0/24"
INTERNET = str(UNDERLAY.network_address + 1)  # the underlay's own address (etcd's too)
HOST_WIDE = "169.254.53.53"  # the dns_address setting's default
# A name removed stops resolving within this: the watch event, on a loaded
# machine (nothing caches it in between: the asker here has no cache, and
# a caching resolver would keep it at most wire.TTL more).
GONE_S = 5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ask(ns: str, server: str, name: str, rdtype: str = "A") -> dict:
    out = netns_exec(ns, sys.executable, "-m", "tests.multihost.dnsask", server, name, rdtype)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def addresses(reply: dict) -> set[str]:
    return {a for a, _ in reply.get("answers", [])}


@pytest.fixture
def named(tmp_path):
    """Two hosts forwarding to "the internet"."""
    require_tools()
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {INTERNET}\n")
    with Cluster(tmp_path, hosts=2, flags=("--lease-ttl", str(LEASE_TTL), "--dns-resolv-conf", str(conf))) as made:
        internet = subprocess.Popen(["ip", "netns", "exec", made.underlay.ns, sys.executable, "-m",
                                     "tests.multihost.internet", INTERNET], cwd=ROOT, stdout=subprocess.PIPE,
                                    text=True, env={**os.environ, "PYTHONPATH": ROOT})
        try:
            assert internet.stdout.readline().strip() == "ready"
            yield made
        finally:
            internet.kill()
            internet.wait()


def test_a_name_on_one_host_resolves_on_the_other(named):
    a, b = named.hosts
    net_a, net_b = (h.dockerd.create_network(subnet=SUBNET) for h in (a, b))
    gateway = net_a.pool(False)["Gateway"].split("/")[0]
    web = a.dockerd.run(net_a, name="web")
    client = b.dockerd.run(net_b, name="client")
    web_ip = web.address.split("/")[0]
    # From host2's container, the gateway answered on host2 itself.
    got = wait_for(lambda: (r := ask(client.sandbox.ns, gateway, "web")) and addresses(r) == {web_ip} and r,
                   timeout=10, what="web from host2")
    assert got["rcode"] == "NOERROR" and got["aa"]
    # And the other way round, and a host's own container on its own host.
    assert addresses(ask(web.sandbox.ns, gateway, "client")) == {client.address.split("/")[0]}
    assert addresses(ask(web.sandbox.ns, gateway, "WEB")) == {web_ip}
    if shutil.which("busybox"):  # what a container's libc-less resolver would print
        out = netns_exec(client.sandbox.ns, "busybox", "nslookup", "web", gateway)
        assert web_ip in out.stdout, out.stdout + out.stderr


def test_a_name_held_twice_has_both_addresses(named):
    a, b = named.hosts
    net_a, net_b = (h.dockerd.create_network(subnet=SUBNET) for h in (a, b))
    gateway = net_a.pool(False)["Gateway"].split("/")[0]
    one, two = a.dockerd.run(net_a, name="api"), b.dockerd.run(net_b, name="api")
    both = {one.address.split("/")[0], two.address.split("/")[0]}
    wait_for(lambda: addresses(ask(two.sandbox.ns, gateway, "api")) == both, timeout=10, what="both api")


def test_a_container_sees_only_its_networks_names(named):
    a, b = named.hosts
    net_a, net_b = (h.dockerd.create_network(subnet=SUBNET) for h in (a, b))
    other_b = b.dockerd.create_network(subnet=OTHER)
    gateway = net_a.pool(False)["Gateway"].split("/")[0]
    other_gateway = other_b.pool(False)["Gateway"].split("/")[0]
    a.dockerd.run(net_a, name="web")
    client = b.dockerd.run(net_b)
    outsider = b.dockerd.run(other_b)
    wait_for(lambda: addresses(ask(client.sandbox.ns, gateway, "web")), timeout=10, what="web from host2")
    # Not on the network: the name is not Pontoon's to give it, and the
    # internet knows no "web".
    reply = ask(outsider.sandbox.ns, other_gateway, "web")
    assert reply["rcode"] == "NXDOMAIN" and not reply["answers"]


def test_a_removed_name_stops_resolving(named):
    a, b = named.hosts
    net_a, net_b = (h.dockerd.create_network(subnet=SUBNET) for h in (a, b))
    gateway = net_a.pool(False)["Gateway"].split("/")[0]
    web = a.dockerd.run(net_a, name="web")
    client = b.dockerd.run(net_b)
    wait_for(lambda: addresses(ask(client.sandbox.ns, gateway, "web")), timeout=10, what="web from host2")
    a.dockerd.stop(web)
    wait_for(lambda: ask(client.sandbox.ns, gateway, "web")["rcode"] == "NXDOMAIN", timeout=GONE_S,
             what="web gone on host2")


def test_other_names_are_forwarded_with_their_ttl(named):
    a, b = named.hosts
    net_b = b.dockerd.create_network(subnet=SUBNET)
    a.dockerd.create_network(subnet=SUBNET)
    gateway = net_b.pool(False)["Gateway"].split("/")[0]
    client = b.dockerd.run(net_b)
    reply = ask(client.sandbox.ns, gateway, "example.test")
    assert reply["rcode"] == "NOERROR" and reply["answers"] == [["203.0.113.7", 1234]] and not reply["aa"]
    assert ask(client.sandbox.ns, gateway, "nowhere.test")["rcode"] == "NXDOMAIN"
    reply = ask(client.sandbox.ns, gateway, "example.test", "ANY")
    assert reply["rcode"] == "REFUSED"


def test_one_host_wide_address_answers_every_network(named):
    """daemon.json's one `"dns"` line for every network on every host: the
    host-wide address (on lo, labelled ours) answers a container of any
    network from its own host, with its own networks' names, and forwards
    the rest; a network's gateway still answers beside it."""
    a, b = named.hosts
    net_a, net_b = (h.dockerd.create_network(subnet=SUBNET) for h in (a, b))
    other_b = b.dockerd.create_network(subnet=OTHER)
    web = a.dockerd.run(net_a, name="web")
    client = b.dockerd.run(net_b)
    outsider = b.dockerd.run(other_b, name="outsider")
    web_ip = web.address.split("/")[0]
    wait_for(lambda: addresses(ask(client.sandbox.ns, HOST_WIDE, "web")) == {web_ip}, timeout=10,
             what="web from host2 on the host-wide address")
    shown = netns_exec(b.ns, "ip", "-4", "-o", "addr", "show", "dev", "lo").stdout
    assert f"{HOST_WIDE}/32" in shown and f"lo:{b.server.name}"[:15] in shown, shown
    # The outsider's network is not web's: its names only, and the rest forwarded.
    assert ask(outsider.sandbox.ns, HOST_WIDE, "web")["rcode"] == "NXDOMAIN"
    assert addresses(ask(outsider.sandbox.ns, HOST_WIDE, "outsider")) == {outsider.address.split("/")[0]}
    assert ask(outsider.sandbox.ns, HOST_WIDE, "example.test")["answers"] == [["203.0.113.7", 1234]]
    # The host's own namespace is no container: forwarded only.
    assert ask(b.ns, HOST_WIDE, "web")["rcode"] == "NXDOMAIN"
