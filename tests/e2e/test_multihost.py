"""Two real dockerds on two hosts of one underlay, each with its own clustered
Pontoon, one etcd: `docker network create -d pontoon --ipam-driver pontoon
--subnet S` on both, `docker run` on each, and the containers reach each
other by address; a container removed on one host leaves the other's
datapath, and a network removed and made again on one host works again.

Pontoon runs the two ways users install it, each configured as docs/cluster.md's
walk-through says: a plain process (`pontoon serve --etcd-endpoints …`) and
the managed plugin (`docker plugin set pontoon PONTOON_ETCD_ENDPOINTS=…`).
Host 1 names its advertise address and host ID as well; host 2 sets only the
etcd endpoints, so the defaults are checked too.

The hosts are testbed/dockerd_hosts.py's.
"""
from __future__ import annotations

import os
import shutil

import pytest

from cluster import keys
from datapath.names import vxlan_name
from testbed import matrix
from testbed.dockerd import BUSYBOX, run, wait_for
from testbed.dockerd_hosts import AUX, SETTLE, two_hosts_up
from testbed.etcd import missing
from tests.e2e.helpers import matrix_params


def cases():
    """The plain process on Debian 12's dockerd only, the managed plugin on
    every dockerd of the matrix. What changes with dockerd's version is the
    protocol and the plugin machinery (how a managed plugin is started, with
    which settings, in which namespaces, where its socket is), which the
    managed case meets on each; the process case adds only how Pontoon is
    started, which no dockerd version changes. A case costs two dockerds
    and an etcd: 14 s for the process, 40 to 60 s for the managed plugin
    (most of it `docker plugin create`), so the full square would add about
    30 s for nothing the other cases do not already check.

    The managed plugin on the newest dockerd reaches etcd over TLS with
    client certificates, set up as docs/cluster.md says (the PEM files in the
    state mount): that depends on the plugin's mounts and settings, not on
    dockerd's version, so one case shows it without costing another."""
    out = []
    params = matrix_params()
    for param in params:
        build, = param.values
        modes = ("process", "managed") if build is matrix.SYSTEM else ("managed",)
        tls = param is params[-1]
        out += [pytest.param((build, mode, tls and mode == "managed"),
                             id=f"{param.id}-{mode}{'-tls' if tls and mode == 'managed' else ''}",
                             marks=param.marks) for mode in modes]
    return out


@pytest.fixture(params=cases())
def two_hosts(request, tmp_path):
    build, mode, tls = request.param
    skip_unless_ready(build)
    plugin_dir = request.getfixturevalue("plugin_dir") if mode == "managed" else None
    with two_hosts_up(build, mode, tls, tmp_path, plugin_dir) as made:
        yield made


def skip_unless_ready(build: matrix.Build) -> None:
    """Skips the test, naming what is missing, unless two hosts can run on ``build``."""
    reason = missing() or build.missing()
    if reason:
        pytest.skip(reason)
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip(f"{BUSYBOX} is missing: apt-get install busybox-static")
    for tool in ("unshare", "nsenter", "bridge"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install util-linux iproute2)")


def test_containers_on_two_real_dockerds_reach_each_other(two_hosts, uid):
    one, two = two_hosts.members
    name = f"mh{uid}"
    try:
        net_ids = [member.network(name) for member in (one, two)]
        a, b = one.run(name), two.run(name)
        assert a.address != b.address and AUX not in (a.address, b.address)
        refused = two.daemon.docker("run", "--rm", "--network", name, "--ip", AUX, two.image, "true", check=False)
        assert refused.returncode != 0 and AUX in refused.stderr, refused.stderr
        a.reaches(b)
        b.reaches(a)

        # Each Pontoon reached etcd from its host (nothing else can reach
        # the underlay) and announced the address it is known by there: the
        # given one, or by default the route's source to etcd in the host.
        ids = ["host1", two.host_id()]
        assert [two_hosts.advertised(i) for i in ids] == [one.host.address, two.host.address]
        # Its state is in the state dir it was given, and the network's
        # VXLAN device in the host's namespace, on the bridge, from the
        # host's underlay address, with the VNI of the cluster's network.
        stored = [member.stored_network(net_id) for member, net_id in zip((one, two), net_ids)]
        assert len({(s["cluster"]["pool"], s["cluster"]["vni"]) for s in stored}) == 1
        # Each host's own address on the network (cluster/hostaddr.py): two.
        own = [s["cluster"]["host_address"].split("/")[0] for s in stored]
        assert own[0] != own[1]
        devices = []
        for member, network in zip((one, two), stored):
            device = vxlan_name(network["tag"])
            link = member.links("vxlan").get(device)
            assert link, f"no vxlan {device} in {member.host.ns}"
            data = link["linkinfo"]["info_data"]
            assert (data["id"], data["local"], link["master"]) == \
                (network["cluster"]["vni"], member.host.address, network["bridge"])
            assert run(["ip", "link", "show", "dev", device], timeout=10, check=False).returncode != 0, \
                f"vxlan {device} is in the machine's own namespace"
            devices.append(device)
        pool = stored[0]["cluster"]["pool"]

        # `docker rm -f` on host 2: its record leaves etcd, host 1's peer
        # entries for it go, and its address no longer answers from host 1.
        b_record = keys.key("endpoints", pool, ids[1], b.endpoint)
        assert two_hosts.has(b_record)
        neighbours, fdb = one.peers(devices[0])
        bridge_mac = neighbours.pop(own[1])  # host 2's own address, at its bridge's MAC
        assert (neighbours, fdb) == ({b.address: b.mac}, {b.mac: two.host.address, bridge_mac: two.host.address})
        # Host 1 itself reaches host 2's container, from its own address.
        assert one.daemon.host("ping", "-c", "1", "-W", "3", b.address, check=False).returncode == 0
        two.daemon.docker("rm", "-f", b.id)
        wait_for(lambda: one.peers(devices[0]) == ({own[1]: bridge_mac}, {bridge_mac: two.host.address}),
                 timeout=SETTLE, interval=0.3,
                 what="host 1 to drop the removed container's peer entries")
        assert not two_hosts.has(b_record)
        assert not a.pings(b.address)

        # `docker network rm` on host 2 ends its membership alone: host 1
        # keeps the network, and host 2 making it again is one network again.
        two.daemon.docker("network", "rm", name)
        assert not two_hosts.has(keys.key("members", pool, ids[1]))
        assert two_hosts.has(keys.key("members", pool, ids[0]))
        assert devices[1] not in two.links("vxlan") and devices[0] in one.links("vxlan")
        two.network(name)
        c = two.run(name)
        a.reaches(c)
        c.reaches(a)
    finally:
        for member in (one, two):
            member.cleanup(name)
