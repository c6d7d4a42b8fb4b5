"""Names across hosts on two real dockerds (issue 19), the ones before 29:
their names reach Pontoon only through the Engine API (names/engine.py).

The hosts are test_multihost's (testbed/dockerd_hosts.py: each dockerd with
its own Pontoon, one etcd, VXLAN on a namespace underlay), set up as
docs/cluster.md's walk-through says: Pontoon given the dockerd's API socket
(a flag, or the managed plugin's docker-socket mount), the containers `--dns
<the network's gateway>` (or the host-wide address, as daemon.json's "dns"
would give every container). A container asks with busybox's nslookup
through its dockerd's own resolver (127.0.0.11), which forwards what it does
not know to that gateway from the container's namespace, where the host's
Pontoon answers.

Pontoon forwards other names to no one here (its resolv.conf is /dev/null),
so a name it does not give fails at once rather than reaching the machine's
resolver."""
from __future__ import annotations

import time

from testbed.dockerd import wait_for
from testbed.dockerd_hosts import SETTLE, Member
from tests.e2e.test_multihost import two_hosts  # noqa: F401 (the fixture)

OTHER, SIDE = "10.93.0.0/24", "10.94.0.0/24"
HOST_WIDE = "169.254.53.53"  # the dns_address setting's default
# A removed container's name stops resolving within this: the record's
# delete event reaching the other host (nothing caches on the way: dockerd's
# resolver does not, nor does busybox).
GONE_S = 5


def resolves(member: Member, container: str, name: str) -> str:
    """What nslookup prints for ``name`` in ``container``, "" if it fails."""
    out = member.daemon.docker("exec", container, "nslookup", name, check=False, timeout=30)
    return out.stdout if out.returncode == 0 else ""


def address(member: Member, container: str, network: str) -> str:
    return member.daemon.inspect("container", container)["NetworkSettings"]["Networks"][network]["IPAddress"]


def pontoon_network(member: Member, name: str, subnet: str) -> str:
    driver = member.pontoon.driver
    return member.daemon.docker("network", "create", "-d", driver, "--ipam-driver", driver, "--subnet", subnet,
                                name).stdout.strip()


def test_names_aliases_and_short_ids_resolve_across_two_real_dockerds(two_hosts, uid):
    one, two = two_hosts.members
    net, other, side = f"nm{uid}", f"no{uid}", f"ns{uid}"
    web, www, late, later, renamed = f"web{uid}", f"www{uid}", f"late{uid}", f"later{uid}", f"moved{uid}"
    try:
        for member in (one, two):
            member.network(net)
        dns = two.gateway(net)
        client = two.container(net, "--dns", dns)

        # `docker run --name --network-alias` on host 1: name, alias and short ID from host 2.
        started = time.monotonic()
        web_id = one.container(net, "--name", web, "--network-alias", www)
        web_ip = address(one, web_id, net)
        wait_for(lambda: web_ip in resolves(two, client, web), timeout=SETTLE, interval=0.1,
                 what=f"{web} from host 2")
        took = time.monotonic() - started
        assert web_ip in resolves(two, client, www)
        assert web_ip in resolves(two, client, web_id[:12])
        # The one address daemon.json can name for every network (dns_address).
        anywhere = two.container(net, "--dns", HOST_WIDE)
        assert web_ip in resolves(two, anywhere, web)
        assert two.daemon.docker("exec", client, "ping", "-c1", "-W3", web, check=False).returncode == 0
        print(f"{web} resolved on host 2 within {took:.2f} s of docker run on host 1 returning "
              "(docker exec's own time included: bench/names.py measures it)")

        # Connected after it started, with an alias there: from another Pontoon network.
        pontoon_network(one, side, SIDE)
        late_id = one.container(side, "--name", late)
        one.daemon.docker("network", "connect", "--alias", later, net, late_id)
        late_ip = address(one, late_id, net)
        wait_for(lambda: late_ip in resolves(two, client, later), timeout=SETTLE, interval=0.2,
                 what=f"{later} from host 2")
        assert late_ip in resolves(two, client, late)
        # Renamed: the new name resolves, the old one no longer.
        one.daemon.docker("rename", late_id, renamed)
        wait_for(lambda: late_ip in resolves(two, client, renamed), timeout=SETTLE, interval=0.2,
                 what=f"{renamed} from host 2")
        assert resolves(two, client, late) == ""

        # A container on another network (of host 2) is told nothing of these.
        pontoon_network(two, other, OTHER)
        outsider = two.container(other, "--dns", two.gateway(other))
        assert resolves(two, outsider, web) == "" and resolves(two, outsider, renamed) == ""
        assert web_ip in resolves(two, client, web)  # while the network's own still gets it

        # Removed on host 1: gone from host 2 within GONE_S, name and alias; the others stay.
        one.daemon.docker("rm", "-f", web_id)
        wait_for(lambda: resolves(two, client, web) == "", timeout=GONE_S, interval=0.1,
                 what=f"{web} to stop resolving on host 2")
        assert resolves(two, client, www) == ""
        assert late_ip in resolves(two, client, later)
    finally:
        for member in (one, two):
            member.cleanup(net)
            for name in (other, side):
                member.daemon.docker("network", "rm", name, check=False)
