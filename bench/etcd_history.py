"""How fast Pontoon grows etcd's history, for the compaction advice in the
docs/cluster.md (the walk-through).

etcd keeps every revision of every key until it is compacted, and nothing
in Pontoon compacts (a member's history is the operator's: several
clusters may share one etcd). So the figure that matters is history per
container start: revisions, and bytes of etcd's database file, per
lifecycle (docker run + docker stop: RequestAddress, CreateEndpoint, Join,
... DeleteEndpoint, ReleaseAddress) on a network two hosts share, read
with ``etcdctl endpoint status -w json`` before and after. Then a
compaction at the last revision and a defrag show what they give back.

Here rather than a test: it is a figure for advice, not a property to
assert, and it takes a real etcd and clustered Pontoons, like the other
multi-host figures ``make bench`` records (section ``etcd``).
``python -m bench.etcd_history [N]`` prints it (as root).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from testbed.cluster import Cluster
from testbed.fake_dockerd import FakeDockerd

from .subnets import Subnets

INFO = ("--log-level", "info")


def status(cluster: Cluster) -> dict:
    raw = json.loads(cluster.etcd.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
    return {"revision": int(raw["header"]["revision"]), "db_size": int(raw["dbSize"]),
            "db_in_use": int(raw.get("dbSizeInUse", 0))}


def run(quick: bool = False, lifecycles: int = 0) -> dict:
    lifecycles = lifecycles or (100 if quick else 1000)
    with tempfile.TemporaryDirectory(prefix="pontoon-bench-etcd-") as tmp:
        with Cluster(Path(tmp), hosts=2, flags=INFO) as cluster:
            docks = [FakeDockerd(h.server.client()) for h in cluster.hosts]
            subnet = Subnets().next(22)
            nets = [d.create_network(subnet=subnet) for d in docks]
            docks[1].run(nets[1])  # a container on the other host: a peer the first host watches
            before = status(cluster)
            begin = time.monotonic()
            for _ in range(lifecycles):
                docks[0].stop(docks[0].run(nets[0]))
            seconds = time.monotonic() - begin
            after = status(cluster)
            cluster.etcd.ctl("compact", "--physical", str(after["revision"]), timeout=60)
            cluster.etcd.ctl("defrag", timeout=60)
            compacted = status(cluster)
    per = {k: (after[k] - before[k]) / lifecycles for k in ("revision", "db_size", "db_in_use")}
    return {"lifecycles": lifecycles, "seconds": seconds, "before": before, "after": after,
            "compacted": compacted, "per_lifecycle": per}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    json.dump(run(lifecycles=count), sys.stdout, indent=1)
    print()
