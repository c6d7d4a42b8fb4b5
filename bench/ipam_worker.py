"""One IPAM pool filled in a process of its own, so its memory is its own:
``python -m bench.ipam_worker CIDR COUNT STATE_DIR`` prints JSON."""
from __future__ import annotations

import json
import os
import resource
import sys
import time

from ipam_driver.driver import IpamDriver, LOCAL_SPACE
from plugin.store import Store

from .procs import rss_kib

STEP = 10_000


def main(cidr: str, count: int, state_dir: str) -> dict:
    store = Store(state_dir)
    store.initialise()
    ipam = IpamDriver(store.transaction, lambda: [], [], [])
    pool = ipam.request_pool({"AddressSpace": LOCAL_SPACE, "Pool": cidr, "SubPool": "",
                              "Options": {}, "V6": ":" in cidr})["PoolID"]
    ask = {"PoolID": pool, "Address": "", "Options": None}
    ipam.request_address(ask)  # first transaction: opens and sizes the database
    rss_start = rss_kib([os.getpid()])
    per_step = []
    begin = time.perf_counter()
    for i in range(1, count + 1):
        ipam.request_address(ask)
        if i % STEP == 0:
            now = time.perf_counter()
            per_step.append(now - begin)
            begin = now
    last = ipam.request_address(ask)["Address"]
    return {"cidr": cidr, "count": count, "per_10k_s": per_step, "last": last,
            "rss_start_kib": rss_start, "rss_end_kib": rss_kib([os.getpid()]),
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
