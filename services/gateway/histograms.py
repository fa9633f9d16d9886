"""Percentiles from the log-bucketed histograms lua/stats.lua keeps, instead of from raw values.

Bucket ``i`` holds values in ``[2^(i/16), 2^((i+1)/16))`` ms and bucket ``z`` holds zeros. A
percentile is interpolated as the exact one is (``statistics.quantiles(method="inclusive")``:
between the two order statistics around rank ``q·(n-1)``), each order statistic placed inside
its bucket as if the bucket's values were spread evenly across it — Prometheus'
``histogram_quantile`` idea, applied per order statistic. Every estimated order statistic lies
in the same bucket as the true one, so a reported percentile is never further than one bucket
width (4.43 %) from the exact percentile of the same values.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate

PER_DOUBLING = 16  # buckets per doubling: mirrors STATS_LOG_STEP in lua/stats.lua
ZERO = "z"
RELATIVE_WIDTH = 2 ** (1 / PER_DOUBLING) - 1  # 0.0443: the bound on a percentile's error
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def bounds(bucket: str) -> tuple[float, float]:
    """The ``[low, high)`` ms a bucket holds."""
    if bucket == ZERO:
        return 0.0, 0.0
    index = int(bucket)
    return 2 ** (index / PER_DOUBLING), 2 ** ((index + 1) / PER_DOUBLING)


def percentiles(counts: Mapping[str, float]) -> dict[str, float] | None:
    """p50/p95/p99 (ms, 2 decimals) of a histogram ``{bucket: count}``; None when empty."""
    ordered = sorted(((bounds(b), int(n)) for b, n in counts.items() if n > 0))
    if not ordered:
        return None
    ends = list(accumulate(n for _, n in ordered))  # order statistics < ends[k] are in bucket k

    def order_statistic(rank: int) -> float:
        k = bisect_right(ends, rank)
        (low, high), n = ordered[k]
        before = ends[k] - n
        return low + (high - low) * (rank - before + 0.5) / n

    out = {}
    for name, q in QUANTILES.items():
        position = q * (ends[-1] - 1)
        below = math.floor(position)
        value = order_statistic(below)
        if position > below:
            value += (position - below) * (order_statistic(below + 1) - value)
        out[name] = round(value, 2)
    return out
