"""The Pontoon-vs-swarm-overlay section of docs/benchmarks.md and its plot
(bench/pontoon_vs_swarm.py)."""
from __future__ import annotations

import statistics
from pathlib import Path

from .pontoon_vs_swarm import DIAGNOSES, SYSTEMS, UNFILTERED, UNTRACKED
from .stats import pair_ratios

PLOT_PREFIX = "bench-vs-swarm-"


def _spread(r: dict) -> str:
    """A pair_ratios summary: median (p25–p75; min–max)."""
    return (f"{r['ratio']:.2f} ({r['ratio_p25']:.2f}–{r['ratio_p75']:.2f}; "
            f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f})")


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _hosts(v: dict) -> int:
    """Hosts per system; runs before the three-host topology had two."""
    return v["counts"].get("hosts", 2)


def _streams(streams: str) -> str:
    return f"{streams} stream{'s' if streams != '1' else ''}"


def _words(n: int) -> str:
    return {2: "two", 3: "three"}.get(n, str(n))


def rows(v: dict) -> list[tuple]:
    """(measure, Pontoon, overlay, limit, Pontoon/overlay, Pontoon/limit, target, verdict)."""
    out = []
    f = v["first_reply"]
    out.append((f"`docker run` on A to first reply from B, median ({f['pairs']} pairs)",
                f"{f['median_a']:.2f} s", f"{f['median_b']:.2f} s", "—", _spread(f), "—", "≤ 1.0",
                _verdict(f["ratio"] <= 1.0)))
    n = v["by_name"]
    out.append((f"`docker run --name x` on A to first reply from x by name on B, median ({n['pairs']} pairs)",
                f"{n['median_a']:.2f} s", f"{n['median_b']:.2f} s", "—", _spread(n), "—", "≤ 1.0",
                _verdict(n["ratio"] <= 1.0)))
    # The issue sets no target for these: they are reported. A reply within a
    # millisecond of the start counts as one millisecond, so every pair has a ratio.
    g = pair_ratios([(max(a, 1e-3), max(b, 1e-3)) for a, b in zip(v["gone"]["pontoon_last_reply_s"],
                                                                  v["gone"]["overlay_last_reply_s"])])
    out.append((f"`docker rm -f` on B to the last reply from its address on A, median ({g['pairs']} pairs)",
                f"{g['median_a']:.2f} s", f"{g['median_b']:.2f} s", "—", _spread(g), "—", "reported", "n/a"))
    k = v["killed"]

    def seconds(x):
        return f"{x:.1f} s" if x is not None else f"> {k['window_s']:.0f} s"
    mine, theirs = k["pontoon"]["unrecorded_s"], k["overlay"]["unrecorded_s"]
    out.append(("host B killed (kill -9): B leaves the cluster's record on A (once)", seconds(mine), seconds(theirs),
                "—", "—", "—", "reported", "n/a"))
    out.append(("host B killed: B's container stops answering A's (its entries leave A's tables; once)",
                seconds(k["pontoon"]["last_reply_s"]), seconds(k["overlay"]["last_reply_s"]),
                "—", "—", "—", "reported", "n/a"))
    for key, how in (("rtt", "10 ms apart"), ("rtt_back_to_back", "back to back")):
        for p in ("p50", "p99") if key in v else ():  # back to back: runs since the fast path
            r = v[key][p]
            out.append((f"ping RTT container to container, {how}, {p} (median of {r['pairs']} pairs' {p})",
                        f"{r['median_a']:.3f} ms", f"{r['median_b']:.3f} ms", "—", _spread(r), "—", "≤ 1.0",
                        _verdict(r["ratio"] <= 1.0)))
    for streams, t in v["iperf"].items():
        o, lim = t["vs_overlay"], t["vs_limit"]
        out.append((f"iperf3 TCP, {_streams(streams)}, median ({o['pairs']} rounds)",
                    f"{o['median_a'] / 1e9:.2f} Gbit/s", f"{o['median_b'] / 1e9:.2f} Gbit/s",
                    f"{lim['median_b'] / 1e9:.2f} Gbit/s", _spread(o), _spread(lim),
                    "≥ 1.0, worst pair ≥ 0.9", _verdict(o["ratio"] >= 1.0 and o["ratio_min"] >= 0.9)))
    for i in v["idle"]:
        n = i["containers"]
        for key, unit, what, show in (("cpu", "cpu_s_per_min", "CPU s per minute", lambda x: f"{x:.2f}"),
                                      ("bytes", "bytes_per_min", "underlay KiB per minute, in + out",
                                       lambda x: f"{x / 1024:.1f}")):
            mine, theirs = _mean(i["pontoon"][unit]), _mean(i["overlay"][unit])
            windows = i[f"{key}_windows"]
            spread = (f" (windows {windows['ratio_p25']:.2f}–{windows['ratio_p75']:.2f}; "
                      f"{windows['ratio_min']:.2f}–{windows['ratio_max']:.2f})") if windows else ""
            out.append((f"idle host, {n} container{'s' if n != 1 else ''}: {what} (mean of {_hosts(v)} hosts, "
                        f"{i['seconds']:.0f} s)", show(mine), show(theirs), "—",
                        (f"{mine / theirs:.2f}" if theirs else "—") + spread, "—", "≤ 1.0",
                        _verdict(mine <= theirs)))
    return out


def details(res: dict) -> list[str]:
    v = res.get("vs_swarm")
    if not v:
        return []
    c, m, k, n = v["counts"], res["machine"], v["killed"], _hosts(v)
    lines = ["## 10. Side by side with Docker's overlay (swarm mode)", "",
             f"`python -m bench --only vs_swarm` (bench/pontoon_vs_swarm.py) on {m['date']}, commit "
             f"{m['commit']}: {m['nproc']} × {m['cpu']}, Linux {m['kernel']}, {m['os']}, etcd "
             f"{v['etcd']}, iperf3 {m['debian']['iperf3']}, busybox {m['debian']['busybox-static']}. "
             f"{2 * n} network-namespace hosts on one underlay bridge (MTU {v['underlay_mtu']}), each with its "
             f"own dockerd {v['dockerd']} (the matrix's, `make dockerds`) and the busybox image imported "
             f"from Debian's busybox-static. The first {_words(n)} are a swarm (`docker swarm init "
             "--advertise-addr`, `join`, one `--attachable` overlay network, not encrypted); the other "
             f"{_words(n)} run a clustered Pontoon each (`pontoon serve`, log level info) on one etcd on the "
             "underlay (data on tmpfs). Each system's figures are taken between its hosts A and B"
             + (f"; its other host{'s' if n > 3 else ''} keep{'' if n > 3 else 's'} a container on the network "
                "all along, a member's watch, gossip and peer work included" if n > 2 else "")
             + ". Both networks are a /24 with each driver's default MTU: "
             f"Pontoon {v['mtu']['pontoon']}, overlay {v['mtu']['overlay']} (read from a container's eth0). "
             "The two systems run at once on their own hosts and are measured in interleaved pairs "
             "(Pontoon and overlay, plus the underlay limit for iperf3; which goes first rotates). "
             "Ratios are Pontoon / overlay and Pontoon / limit per pair: median (p25–p75; min–max).", "",
             "| measure | Pontoon | overlay | limit | Pontoon / overlay | Pontoon / limit | target | |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows(v)]
    first = v["first_reply"]
    lines += ["", *_diagnosis(v),
              "", "What each number includes:", "",
              "- **first reply**: from starting `docker run -d` on host A (the CLI included) to the moment "
              "the new container's first echo reply from B's container arrives, read on the host through "
              "a FIFO the container writes to. Both hosts already have a container on the network (steady "
              "state). The overlay's includes dockerd attaching the container to docker_gwbridge too, as "
              "every overlay container is. The container pings with busybox `ping -c1 -W1`, so a probe "
              "that goes unanswered (B does not know A's container yet) costs a second, as a TCP SYN "
              "retry would. Per pair, s (Pontoon / overlay): "
              + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(first["pontoon_reply_s"], first["overlay_reply_s"]))
              + "; `docker run -d` itself returned after (median) Pontoon "
              f"{statistics.median(first['pontoon_returned_s']):.2f} s, overlay "
              f"{statistics.median(first['overlay_returned_s']):.2f} s.",
              "- **by name**: from starting `docker run -d --name x` on A to the first echo reply B's "
              "container gets from x by that name, read from `docker exec` on B running busybox `ping -c1 -W1 x` "
              "in a loop (10 ms apart) started before. Pontoon's B container has `--dns` the network's gateway "
              "(docs/cluster.md, Names across hosts; Pontoon follows its dockerd's API for names below 29); "
              "the overlay's embedded DNS knows the attachable network's containers on every node. Per pair, s: "
              + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(v["by_name"]["pontoon_reply_s"],
                                                             v["by_name"]["overlay_reply_s"])) + ".",
              "- **removed**: from starting `docker rm -f` of a container on B to the last reply A's container "
              "got from its address (the host's iputils ping from A's container's namespace, every 10 ms, "
              "kernel timestamps). Its address goes with its namespace, before the CLI returns (median "
              f"Pontoon {statistics.median(v['gone']['pontoon_returned_s']):.2f} s, overlay "
              f"{statistics.median(v['gone']['overlay_returned_s']):.2f} s). Per pair, s: "
              + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(v["gone"]["pontoon_last_reply_s"],
                                                             v["gone"]["overlay_last_reply_s"])) + ".",
              f"- **killed host**: last, once per run (B stays down). kill -9 of the process trees that run "
              "each system on host B (Pontoon and dockerd with its containerd; the overlay's dockerd, its swarm "
              "agent and gossip inside), B's containers left running under their shims, then "
              f"{k['window_s']:.0f} s watched from A: B leaves the record when `hosts/<B>` leaves etcd (Pontoon: "
              "the lease's TTL, `--lease-ttl` 15 s) or the manager on A lists B as Down (overlay). B's "
              "container is pinged from A's every 50 ms, its last reply timed: the overlay drops a failed "
              "node's entries once its gossip gives B up, so the replies stop though B's container runs; "
              "Pontoon keeps the entries of a record its host's lease took, by design (docs/cluster.md, "
              "Liveness by lease: a host cut from etcd alone must keep its datapath), so B's container "
              "answers on after B leaves the record. Cutting B off the underlay instead would stop both "
              "datapaths at once and is not measured.",
              f"- **RTT**: {c['rtt_pings']} pings per system per round, 10 ms apart, by the host's iputils "
              "ping inside A's container's network namespace (nsenter) to B's container. Over all pairs: "
              f"Pontoon p50 {v['rtt']['pontoon']['p50']:.3f} ms, p99 {v['rtt']['pontoon']['p99']:.3f} ms; "
              f"overlay p50 {v['rtt']['overlay']['p50']:.3f} ms, p99 {v['rtt']['overlay']['p99']:.3f} ms. "
              "Most of a paced ping's time is waking the CPUs of its path (an idle link's traffic pays "
              "it too), so its ratio says little of the datapath; back to back, "
              f"{c.get('b2b_pings', 0)} pings per system per round (ping -A: the next as soon as a reply "
              "is in, one in flight) time the datapath itself on a warm path"
              + (f": over all pairs Pontoon p50 {v['rtt_back_to_back']['pontoon']['p50']:.3f} ms, overlay "
                 f"{v['rtt_back_to_back']['overlay']['p50']:.3f} ms." if "rtt_back_to_back" in v else "."),
              f"- **iperf3**: Debian's iperf3 run from the host inside the containers' namespaces (nsenter; "
              f"no image here carries it), {c['iperf_seconds']} s TCP, received rate; the limit is the same "
              "from Pontoon's host A to its host B on their underlay addresses (veths through the underlay "
              "bridge, no VXLAN). All of it is one kernel on this machine's cores: CPU-bound, not wire-bound.",
              f"- **idle**: {c['idle_seconds']} s per container count in {c['idle_windows']} windows (the "
              "spread is over the windows' ratios), both systems at once. CPU: dockerd, its "
              f"containerd, the containers' shims and processes, and Pontoon, plus {'half' if n == 2 else 'a share'} "
              "of etcd's, the same for each Pontoon host (the "
              "swarm keeps its store inside the manager's dockerd). Bytes: both ways on the host's "
              "underlay interface (etcd's lease keep-alives and watch for Pontoon; swarm's gossip, "
              "heartbeats and raft for the overlay). Per host (Pontoon / overlay): "
              + "; ".join(f"{i['containers']} container{'s' if i['containers'] != 1 else ''}: CPU "
                          + ", ".join(f"{x:.2f}" for x in i["pontoon"]["cpu_s_per_min"]) + " / "
                          + ", ".join(f"{x:.2f}" for x in i["overlay"]["cpu_s_per_min"]) + " s, KiB "
                          + ", ".join(f"{x / 1024:.1f}" for x in i["pontoon"]["bytes_per_min"]) + " / "
                          + ", ".join(f"{x / 1024:.1f}" for x in i["overlay"]["bytes_per_min"])
                          for i in v["idle"]) + ".", *_idle_parts(v), ""]
    return lines


def _diagnosis(v: dict) -> list[str]:
    """What is left on Pontoon's path of the cost its bridge paid: the
    diagnoses measured in the same rounds, as ratios to Pontoon as shipped.
    Only this run's figures: earlier runs' belong in docs/benchmarks.md."""
    if f"{UNTRACKED}_vs_pontoon" not in v["rtt"]:
        return []  # a run before the diagnoses were measured
    rtt, iperf = v["rtt"], v["iperf"]

    def figures(kind: str) -> str:
        return (f"RTT p50 {_spread(rtt[f'{kind}_vs_pontoon']['p50'])}, "
                + ", ".join(f"iperf3 {_streams(s)} {_spread(t[f'{kind}_vs_pontoon'])}" for s, t in iperf.items()))
    return [
        "Why Pontoon's frames between hosts skip its bridge: the bridge is in the host's namespace, "
        "where dockerd sets `net.bridge.bridge-nf-call-iptables=1`, so every frame it forwards passes "
        "br_netfilter and every iptables table of the host's namespace (dockerd's and Pontoon's); the "
        "overlay's bridge is in a namespace of its own. A frame between a container and one on another "
        "host goes past the bridge by tc (docs/cluster.md, \"Unicast past the bridge\"). Two diagnoses, "
        "in the same rounds, as a ratio to Pontoon as shipped (for times below 1 is faster, for "
        "throughput above 1), check that nothing of that cost is left on the measured path: with that "
        f"sysctl at 0 on its hosts: {figures(UNFILTERED)}; with the raw NOTRACK for the subnet's addresses that are "
        f"not the host's own: {figures(UNTRACKED)}.",
    ]


def _idle_parts(v: dict) -> list[str]:
    """Where each system's idle CPU goes: the mean host's parts."""
    if "cpu_parts_s_per_min" not in v["idle"][0]["pontoon"]:
        return []  # a run before the parts were kept

    def parts(i: dict, name: str) -> str:
        hosts = i[name]["cpu_parts_s_per_min"]
        return ", ".join(f"{part} {_mean([h[part] for h in hosts]):.2f}" for part in hosts[0])
    return ["- **idle CPU by part** (CPU s per minute, mean host): "
            + "; ".join(f"{i['containers']} container{'s' if i['containers'] != 1 else ''}: Pontoon's "
                        f"{parts(i, 'pontoon')}; the overlay's {parts(i, 'overlay')}" for i in v["idle"]) + "."]


def plots(v: dict, out: Path) -> list[str]:
    """One PNG per figure, "bench-vs-swarm-<figure>.png" in ``out``; their names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pontoon": "tab:blue", "overlay": "tab:orange", "limit": "tab:grey", UNFILTERED: "lightblue",
               UNTRACKED: "lightsteelblue"}
    written = []

    def figure(name: str, draw) -> None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        draw(ax)
        fig.tight_layout()
        path = out / f"{PLOT_PREFIX}{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)

    def per_pair(title: str, series: dict[str, list[float]], extra: dict[str, list[float]] | None = None):
        def draw(ax):
            for name, values in series.items():
                ax.plot(range(1, len(values) + 1), values, "o-", color=colours[name], label=name)
            for label, values in (extra or {}).items():
                name = label.split(":")[0]
                ax.plot(range(1, len(values) + 1), values, "x:", color=colours[name], label=label)
            ax.set(title=title, xlabel="pair", ylabel="s", ylim=(0, None))
            ax.legend()
        return draw

    first = v["first_reply"]
    figure("first-reply", per_pair("docker run on A to first reply from B",
                                   {n: first[f"{n}_reply_s"] for n in SYSTEMS},
                                   {f"{n}: run -d returned": first[f"{n}_returned_s"] for n in SYSTEMS}))
    figure("by-name", per_pair("docker run --name x on A to first reply from x by name on B",
                               {n: v["by_name"][f"{n}_reply_s"] for n in SYSTEMS}))
    figure("removed", per_pair("docker rm -f on B to the last reply from its address on A",
                               {n: v["gone"][f"{n}_last_reply_s"] for n in SYSTEMS}))

    def rtt(key: str, title: str):
        def draw(ax):
            kinds = [k for k in ("pontoon", *DIAGNOSES, "overlay") if k in v[key]]
            for i, name in enumerate(kinds):
                r = v[key][name]
                ax.bar([i - 0.2, i + 0.2], [r["p50"], r["p99"]], width=0.35, color=colours[name])
                ax.text(i - 0.2, r["p50"], "p50", ha="center", va="bottom", fontsize=8)
                ax.text(i + 0.2, r["p99"], "p99", ha="center", va="bottom", fontsize=8)
            ax.set(title=title, ylabel="ms",
                   xticks=list(range(len(kinds))), xticklabels=[k.replace("_", "\n") for k in kinds])
        return draw
    figure("rtt", rtt("rtt", "ping RTT container to container across hosts, 10 ms apart"))
    if "rtt_back_to_back" in v:
        figure("rtt-back-to-back", rtt("rtt_back_to_back", "ping RTT container to container across hosts, "
                                                            "back to back"))

    def iperf(ax):
        kinds = [k for k in ("pontoon", *DIAGNOSES, "overlay", "limit") if k in next(iter(v["iperf"].values()))["bps"][0]]
        for j, (streams, t) in enumerate(v["iperf"].items()):
            for k, name in enumerate(kinds):
                values = [row[name] / 1e9 for row in t["bps"]]
                x = j * (len(kinds) + 1) + k
                ax.bar(x, statistics.median(values), color=colours[name], label=name if j == 0 else None)
                ax.plot([x] * len(values), values, "k.", markersize=4)
        ax.set(title="iperf3 TCP across hosts (dots: rounds)", ylabel="Gbit/s",
               xticks=[j * (len(kinds) + 1) + (len(kinds) - 1) / 2 for j in range(len(v["iperf"]))],
               xticklabels=[_streams(s) for s in v["iperf"]])
        ax.legend(fontsize=8)
    figure("iperf3", iperf)

    def idle(unit: str, label: str, scale: float):
        def draw(ax):
            for j, i in enumerate(v["idle"]):
                for k, name in enumerate(SYSTEMS):
                    ax.bar(j * 3 + k, _mean(i[name][unit]) / scale, color=colours[name], label=name if j == 0 else None)
            ax.set(title=f"idle host: {label} (mean of {_hosts(v)} hosts)", ylabel=label,
                   xticks=[j * 3 + 0.5 for j in range(len(v["idle"]))],
                   xticklabels=[f"{i['containers']} container{'s' if i['containers'] != 1 else ''}" for i in v["idle"]])
            ax.legend()
        return draw
    figure("idle-cpu", idle("cpu_s_per_min", "CPU s per minute", 1))
    figure("idle-bytes", idle("bytes_per_min", "underlay KiB per minute", 1024))
    return written
