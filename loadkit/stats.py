"""Percentiles as the reports quote them."""

from __future__ import annotations

PCTS = [1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97, 98, 99, 99.5, 99.9]


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile of sorted `xs` (nearest rank), nan when there are none."""
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[i]
