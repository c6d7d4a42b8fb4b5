"""The multi-host rows and section of docs/benchmarks.md (bench/multihost.py)."""
from __future__ import annotations

from .stats import ratio_text as _ratio

MB = 1024  # KiB per MiB

FIXES = {
    "mh_join": ("From the Join to the first reply, most of the time is the fake dockerd's work after Join: "
        "moving the interface into the sandbox and configuring it with about ten `ip` processes, "
        "each a fork and exec on a machine at load average 11. Measured from the moment the sandbox "
        "is ready, the first reply from host B comes after 24 ms (p50) and 68 ms (p99): by then B's "
        "watch had already added the new endpoint. A real dockerd does the sandbox work in-process "
        "through netlink; the figure to take from here is the second one, and a harness whose "
        "sandbox uses netlink (or a real dockerd per host) would measure the first one properly."),
    "mh_watch": "A host receives only its own lease's keep-alives and its own networks' events: "
                "bytes above the idle rate while others work mean a watch wider than the host's "
                "networks (a prefix that covers other networks, or a cluster-wide watch).",
    "mh_pair": ("A cluster call adds etcd round trips (an address is one create-if-absent transaction, an "
        "endpoint record one put on the lease) to the local calls' work, and the address scan of "
        "the row below; the pairs spread from 1.8 to 4.1 on a machine at load average 11, so a "
        "quieter run is needed before reading more into it."),
    "mh_scale": ("Found: cluster IPAM hands out the lowest free address by reading the pool's allocated "
        "address keys from the start of the pool (in chunks, but all of them below the first gap), "
        "so every RequestAddress reads O(allocated) keys from etcd: each host received 441 KiB from "
        "etcd after 100 endpoints and 29 MiB after 1,000 (section 9's table). Fix: start the scan "
        "at a per-pool hint (the last address this host took, plus one, wrapping once), as the "
        "single-host allocator's lowest-free hint does, and read keys only."),
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
        out.append(_pairs_row(f"bytes/s from etcd to a host while others make and delete {w['endpoints']} "
                              "endpoints elsewhere, vs idle", w, lambda v: f"{v:.0f} B/s", "≤ 1.2", 1.2, "mh_watch"))
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
             "fake dockerd per host (tests/multihost). The pair baseline is a plain Pontoon in "
             "another host of the same underlay."]
    if "join" in mh:
        j = mh["join"]
        lines += ["", "Join to first reply, ms: " + ", ".join(f"{x:.0f}" for x in j["ms"]),
                  "", f"Of which after the fake dockerd had set up the sandbox (p50 {j['ready_p50_ms']:.0f} ms, "
                  f"p99 {j['ready_p99_ms']:.0f} ms), ms: " + ", ".join(f"{x:.0f}" for x in j["ready_to_reply_ms"]),
                  "The rest is the fake dockerd's `ip` processes moving and configuring the interface, "
                  "which a real dockerd does in-process through netlink."]
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
