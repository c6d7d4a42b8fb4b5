"""The multi-host rows and section of docs/benchmarks.md (bench/multihost.py)."""
from __future__ import annotations

from .stats import ratio_text as _ratio

MB = 1024  # KiB per MiB

FIXES = {
    "mh_join": ("Split the figure at the moment the sandbox is ready (section 9 gives both): before it is "
        "the netlink work after Join (mostly the kernel moving the interface between namespaces); "
        "after it, host B must already have A's endpoint, which it learns from its watch when A's "
        "CreateEndpoint publishes the record, before the Join. A long tail after the sandbox means "
        "B's watch lagged: look at the watch's reads again (resyncs in `python -m plugin inspect`)."),
    "mh_watch": "A host receives only its own lease's keep-alives and its own networks' events: "
                "bytes above the idle rate while others work mean a watch wider than the host's "
                "networks (a prefix that covers other networks, or a cluster-wide watch).",
    "mh_pair": ("A cluster endpoint adds two etcd round trips to the local calls' work: the address (one "
        "transaction that claims the candidate, checks the pool and, when the candidate is taken, "
        "reads the next keys) and the endpoint record (one put on the lease). More than that means "
        "a call reads etcd it does not need to: count the /v3/kv requests per endpoint."),
    "mh_scale": ("Cluster IPAM starts each search at a per-pool hint (this host's last address plus one) "
        "and reads keys only, in chunks, so an allocation's reads do not grow with the pool's "
        "allocations; a later endpoint costing more means something reads O(allocated) again: "
        "section 9's bytes per host should grow linearly with the endpoints, not faster."),
}


def _pairs_row(what: str, r: dict, show, target: str, limit: float | None, key: str) -> tuple:
    """A row of A/B pairs whose ratio must stay at or below ``limit`` (None: reported only)."""
    ok = None if limit is None else r["ratio"] <= limit
    return ("9", f"{what} ({r['pairs']} pairs)", show(r["median_a"]), show(r["median_b"]), _ratio(r), target, ok, key)


def rows(res: dict) -> list[tuple]:
    """(number, benchmark, pontoon, baseline, ratio, target, met, key), as report.summary_rows."""
    mh = res.get("multihost")
    if not mh:
        return []
    out = []
    if "join" in mh:
        j = mh["join"]
        out.append(("9", f"Join on host A to first reply from host B ({j['count']} endpoints), p50 / p99",
                    f"{j['p50_ms']:.0f} / {j['p99_ms']:.0f} ms", "—", "—", "p50 ≤ 100 ms, p99 ≤ 500 ms",
                    j["p50_ms"] <= 100 and j["p99_ms"] <= 500, "mh_join"))
    if "watch" in mh:
        w = mh["watch"]
        out.append(("9", f"bytes/s from etcd to a host while others make and delete {w['endpoints']} "
                    f"endpoints elsewhere, vs idle ({w['pairs']} pairs, totals; pairs {w['ratio_min']:.2f}–"
                    f"{w['ratio_max']:.2f})", f"{w['pooled_busy']:.0f} B/s", f"{w['pooled_idle']:.0f} B/s",
                    f"{w['pooled_ratio']:.3f}", "≤ 1.2", w["pooled_ratio"] <= 1.2, "mh_watch"))
    if "pair" in mh:
        out.append(_pairs_row("RequestAddress + CreateEndpoint + Join, cluster vs local network", mh["pair"],
                              lambda v: f"{v * 1000:.1f} ms", "≤ 2", 2, "mh_pair"))
    if "scale" in mh:
        s = mh["scale"]
        r = s["ratio"]
        out.append(("9", f"endpoint {s['endpoints']} across 3 hosts vs 10th (RequestAddress … Join)",
                    f"{r['late_ms']:.1f} ms", f"{r['early_ms']:.1f} ms", f"{r['ratio']:.2f}", "≤ 1.2",
                    r["ratio"] <= 1.2, "mh_scale"))
    if "iperf" in mh:
        out.append(_pairs_row("iperf3 TCP across hosts (VXLAN) vs on one host", mh["iperf"],
                              lambda v: f"{v / 1e9:.2f} Gbit/s", "reported", None, ""))
    return out


def details(res: dict) -> list[str]:
    mh = res.get("multihost")
    if not mh:
        return []
    lines = ["## 9. Multi-host (etcd + VXLAN)", "",
             "Namespace hosts on one underlay bridge, a real etcd on it, one clustered Pontoon and "
             "fake dockerd per host (testbed/cluster.py). The pair baseline is a plain Pontoon in "
             "another host of the same underlay."]
    if "join" in mh:
        j = mh["join"]
        lines += ["", "Join to first reply, ms: " + ", ".join(f"{x:.0f}" for x in j["ms"]),
                  "", f"Of which after the sandbox was set up (p50 {j['ready_p50_ms']:.0f} ms, "
                  f"p99 {j['ready_p99_ms']:.0f} ms), ms: " + ", ".join(f"{x:.0f}" for x in j["ready_to_reply_ms"]),
                  "The sandbox is set up as dockerd does it: its namespace made before Join, the "
                  "interface moved in and configured over netlink after (bench/netlink_sandboxes.py). "
                  "The rest is that work."]
    if "scale" in mh:
        lines += ["", "Cost as endpoints grow (3 hosts, one network on all three): etcd keys, bytes each "
                  "host received from etcd since the network was made, RSS of each host's server.", "",
                  "| endpoints | etcd keys | received from etcd (per host) | RSS (per host) |",
                  "| --- | --- | --- | --- |"]
        for p in mh["scale"]["points"]:
            lines.append(f"| {p['endpoints']} | {p['etcd_keys']} | "
                         + " / ".join(f"{b / 1024:.0f} KiB" for b in p["rx_bytes"]) + " | "
                         + " / ".join(f"{k / MB:.1f} MiB" for k in p["rss_kib"]) + " |")
    lines.append("")
    return lines
