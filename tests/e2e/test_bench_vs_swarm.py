"""`python -m bench`'s side by side with swarm's overlay (bench/pontoon_vs_swarm.py),
in its --quick form: the mechanics only (three hosts per system come up, a swarm forms,
every figure is measured on both systems and the report and plot are
written). No timing is asserted: --quick counts are too small for figures."""
from __future__ import annotations

import pytest

from bench import machine, pontoon_vs_swarm, report_vs_swarm

pytestmark = pytest.mark.e2e


def test_quick_side_by_side_measures_every_row_on_both_systems(tmp_path):
    reason = pontoon_vs_swarm.missing()
    if reason:
        pytest.skip(reason)
    v = pontoon_vs_swarm.run(quick=True)
    counts = pontoon_vs_swarm.QUICK

    # Both networks carry their driver's MTU, the underlay's less VXLAN's.
    assert v["mtu"] == {"pontoon": v["underlay_mtu"] - 50, "overlay": v["underlay_mtu"] - 50}
    first = v["first_reply"]
    assert first["pairs"] == counts["reply_pairs"]
    for name in ("pontoon", "overlay"):
        assert all(0 < returned <= pontoon_vs_swarm.REPLY_LIMIT and 0 < reply < pontoon_vs_swarm.REPLY_LIMIT
                   for reply, returned in zip(first[f"{name}_reply_s"], first[f"{name}_returned_s"]))
    by_name = v["by_name"]
    assert by_name["pairs"] == counts["name_pairs"]
    assert all(0 < s < pontoon_vs_swarm.REPLY_LIMIT for name in ("pontoon", "overlay")
               for s in by_name[f"{name}_reply_s"])
    # A removed container's address answered A until its removal began, and
    # stopped before the removal's second of silence ended.
    gone = v["gone"]
    for name in ("pontoon", "overlay"):
        assert len(gone[f"{name}_last_reply_s"]) == counts["gone_pairs"]
        assert all(0 <= last < returned + 1 for last, returned in
                   zip(gone[f"{name}_last_reply_s"], gone[f"{name}_returned_s"]))
    # Pontoon is measured as shipped and under each diagnosis, in the same rounds.
    kinds = ("pontoon", "overlay", *pontoon_vs_swarm.DIAGNOSES)
    assert v["rtt"]["p50"]["pairs"] == counts["rtt_pairs"]
    assert all(0 < v["rtt"][kind]["p50"] <= v["rtt"][kind]["p99"] for kind in kinds)
    assert all(v["rtt"][f"{kind}_vs_pontoon"]["p50"]["pairs"] == counts["rtt_pairs"]
               for kind in pontoon_vs_swarm.DIAGNOSES)
    # Back to back too, on both systems, each round the same count of pings.
    assert v["rtt_back_to_back"]["p50"]["pairs"] == counts["rtt_pairs"]
    assert all(0 < v["rtt_back_to_back"][name]["p50"] <= v["rtt_back_to_back"][name]["p99"]
               for name in ("pontoon", "overlay"))
    for streams in ("1", "4"):
        rows = v["iperf"][streams]["bps"]
        assert len(rows) == counts["iperf_pairs"]
        assert all(row[kind] > 0 for row in rows for kind in (*kinds, "limit"))
    assert [i["containers"] for i in v["idle"]] == list(counts["idle_counts"])
    for window in v["idle"]:
        for name in ("pontoon", "overlay"):
            # Every host of the system, its CPU the sum of its parts.
            assert len(window[name]["cpu_s_per_min"]) == len(window[name]["bytes_per_min"]) == counts["hosts"]
            assert min(window[name]["cpu_s_per_min"] + window[name]["bytes_per_min"]) >= 0
            assert [sum(p.values()) for p in window[name]["cpu_parts_s_per_min"]] == window[name]["cpu_s_per_min"]
        assert set(window["pontoon"]["cpu_parts_s_per_min"][0]) == {"dockerd", "shims", "pontoon", "etcd"}

    # Host B killed: Pontoon's record of it goes with its lease (TTL 15 s,
    # inside the window) and its entries stay past that: B's container
    # still answers A's after B left the record.
    killed = v["killed"]
    gone_at, last = killed["pontoon"]["unrecorded_s"], killed["pontoon"]["last_reply_s"]
    assert 0 < gone_at < killed["window_s"]
    assert last is None or last > gone_at, killed

    lines = report_vs_swarm.details({"vs_swarm": v, "machine": machine.describe()})
    table = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(report_vs_swarm.rows(v))  # the header and a row per figure
    written = report_vs_swarm.plots(v, tmp_path)
    assert len(written) == 8 and all((tmp_path / name).stat().st_size > 0 for name in written)
