"""The multi-host harness itself, with plain single-host Pontoons: each host's
server makes its bridges in its own namespace, its fake dockerd's containers
get their veths from there, and every host reaches etcd on the underlay."""
from __future__ import annotations

from testbed.cluster import Cluster
from testbed.sandbox import ip

from .conftest import require_tools


def test_hosts_are_separate_and_reach_etcd(tmp_path):
    require_tools()
    with Cluster(tmp_path, hosts=2, clustered=False) as cluster:
        a, b = cluster.hosts
        # One subnet on both: separate hosts, so no conflict without a cluster.
        nets = [h.dockerd.create_network(subnet="10.91.0.0/24") for h in (a, b)]
        ctrs = [h.dockerd.run(net) for h, net in zip((a, b), nets)]
        for host, net, ctr in zip((a, b), nets, ctrs):
            bridge = "pt-" + net.id[:12]
            assert ip("-n", host.ns, "link", "show", bridge, check=False).returncode == 0
            assert ip("link", "show", bridge, check=False).returncode != 0  # not in the machine's namespace
            assert ctr.sandbox.ping(net.pool(False)["Gateway"])
            assert host.run("ping", "-c1", "-W2", cluster.underlay.address, check=False).returncode == 0
        # Without a cluster each host hands out the same first address.
        assert ctrs[0].address == ctrs[1].address
        cluster.etcd.ctl("put", "/probe", "1")
        assert cluster.etcd.keys("/probe") == ["/probe"]
