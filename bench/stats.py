"""Percentiles and A/B pair summaries, the only statistics the report uses."""
from __future__ import annotations

import statistics


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: p99 of 100 samples is the 99th, not an interpolation."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def alternating(pairs: int, a: str, b: str):
    """A-B then B-A, ``pairs`` times: whichever runs second in a pair may
    find warmer caches."""
    for i in range(pairs):
        yield (a, b) if i % 2 == 0 else (b, a)


def pair_ratios(pairs: list[tuple[float, float]]) -> dict:
    """Summary of (pontoon, baseline) pairs measured side by side.

    The ratio is taken per pair, so drift of this shared, noisy machine over
    the run cancels within each pair instead of biasing one side.
    """
    ratios = [a / b for a, b in pairs]
    return {
        "pairs": len(pairs),
        "median_a": statistics.median(a for a, _ in pairs),
        "median_b": statistics.median(b for _, b in pairs),
        "ratio": statistics.median(ratios),
        "ratio_p25": percentile(ratios, 25),
        "ratio_p75": percentile(ratios, 75),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
    }


def ratio_text(r: dict) -> str:
    """A pair_ratios summary as the report prints it: median (p25–p75)."""
    return f"{r['ratio']:.3f} ({r['ratio_p25']:.3f}–{r['ratio_p75']:.3f})"
