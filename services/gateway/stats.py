"""``GET /v1/stats``: throughput, latency and cost per 1000 images over a recent window.

Inputs are all in Redis, so any gateway replica answers the same: the time-bucketed aggregates
the DAG's last step keeps (services/core/lua/stats.lua: counts, latency histograms and compute
time per pipeline, node, stage and pool, for the fleet and per tenant) and the worker registry
(each replica's stage, pool and lifetime). A window is read as a few dozen buckets — whole hours
where they fit, minutes at its start — so the cost of a call does not grow with
the traffic it summarises.

Cost is the replica-hours in the window times each pool's hourly price; a pipeline's share of a
pool's cost is its share of that pool's compute time. A tenant sees only its own jobs and, for
each pool its jobs ran on, the part of the pool's cost (and replica time) its compute share
accounts for.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from services.core import keys
from services.gateway.histograms import percentiles

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}
MAX_WINDOW_S = 24 * 3600
# Bucket sizes of the aggregate levels, finest first: mirrors STATS_LEVELS in lua/stats.lua,
# whose TTLs (25 h) outlast MAX_WINDOW_S plus one bucket.
BUCKET_SIZES_S = (60, 3600)


def parse_window(text: str) -> float:
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window '{text}' is not like 30s, 5m or 1h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"window must be between 1 s and {MAX_WINDOW_S // 3600} h")
    return seconds


@dataclass(frozen=True)
class WindowPlan:
    """The buckets that cover a window: ``start_ms`` is the window's start rounded down to the
    finest bucket, and every bucket from there on is read at the coarsest level aligned with
    it — minutes up to the first whole hour, then hours, the last one reaching up to now."""

    start_ms: int
    buckets: tuple[tuple[int, int], ...]  # (size s, start s)


def plan_window(now_ms: int, window_s: float) -> WindowPlan:
    step = BUCKET_SIZES_S[0] * 1000
    start_ms = (now_ms - int(window_s * 1000)) // step * step
    buckets = []
    cursor, now_s = start_ms // 1000, now_ms // 1000
    while cursor <= now_s:
        size = max(s for s in BUCKET_SIZES_S if cursor % s == 0)
        buckets.append((size, cursor))
        cursor += size
    return WindowPlan(start_ms, tuple(buckets))


def replica_seconds(
    workers: dict[bytes, bytes], start_ms: int, end_ms: int, stale_ms: int
) -> dict[str, float]:
    """Seconds each pool's replicas were alive inside the window. A replica counts as alive
    from ``started_ms`` until ``seen_ms`` plus the registration interval (``stale_ms``)."""
    per_pool: dict[str, float] = defaultdict(float)
    for raw in workers.values():
        record = json.loads(raw)
        alive_from = max(record["started_ms"], start_ms)
        alive_to = min(record["seen_ms"] + stale_ms, end_ms)
        if alive_to > alive_from:
            per_pool[record["pool"]] += (alive_to - alive_from) / 1000
    return dict(per_pool)


@dataclass
class NodeTotals:
    stage: str
    queue: dict[str, float] = field(default_factory=partial(defaultdict, float))
    compute: dict[str, float] = field(default_factory=partial(defaultdict, float))


@dataclass
class PipelineTotals:
    jobs: int = 0
    succeeded: int = 0
    latency: dict[str, float] = field(default_factory=partial(defaultdict, float))
    nodes: dict[str, NodeTotals] = field(default_factory=dict)
    compute_ms: dict[str, float] = field(default_factory=partial(defaultdict, float))  # by pool


@dataclass
class Totals:
    """The sum of a window's bucket hashes, by what each field means (see lua/stats.lua)."""

    pipelines: dict[str, PipelineTotals] = field(
        default_factory=partial(defaultdict, PipelineTotals)
    )
    stage_tasks: dict[str, int] = field(default_factory=partial(defaultdict, int))
    pool_compute_ms: dict[str, float] = field(default_factory=partial(defaultdict, float))


def add_up(hashes: list[dict[bytes, bytes]]) -> Totals:
    """Sum the buckets field by field first (their fields repeat), then sort each field into
    what it counts."""
    numbers: dict[bytes, int] = defaultdict(int)
    stages: dict[bytes, bytes] = {}
    for fields in hashes:
        for name, value in fields.items():
            if name.startswith(b"n|"):
                stages[name] = value
            else:
                numbers[name] += int(value)
    totals = Totals()
    for name, value in stages.items():
        _, pipeline, node = name.decode().split("|")
        totals.pipelines[pipeline].nodes[node] = NodeTotals(value.decode())
    for raw, value in numbers.items():
        kind, rest = raw.decode().split("|", 1)
        if kind == "t":
            totals.stage_tasks[rest] += value
        elif kind == "P":
            totals.pool_compute_ms[rest] += value / 1000  # stored in µs
        elif kind in ("j", "s", "l"):
            pipeline, _, bucket = rest.partition("|")
            line = totals.pipelines[pipeline]
            if kind == "l":
                line.latency[bucket] += value
            elif kind == "j":
                line.jobs += value
            else:
                line.succeeded += value
        elif kind == "p":
            pipeline, pool = rest.split("|", 1)
            totals.pipelines[pipeline].compute_ms[pool] += value / 1000
        elif kind in ("q", "c"):
            pipeline, node, bucket = rest.split("|")
            node_totals = totals.pipelines[pipeline].nodes[node]
            (node_totals.queue if kind == "q" else node_totals.compute)[bucket] += value
    return totals


def summarise(
    totals: Totals,
    pools: dict[str, float],
    prices: dict[str, float],
    window_s: float,
    span_s: float,
    fleet_compute_ms: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The response. ``pools`` is replica-seconds per pool over the ``span_s`` the buckets
    cover. ``fleet_compute_ms`` (compute ms per pool, all tenants) makes this a tenant's view:
    only the pools its jobs used, each at the share of the pool its compute accounts for."""
    used = totals.pool_compute_ms if fleet_compute_ms is None else fleet_compute_ms
    if fleet_compute_ms is None:
        shares = dict.fromkeys(pools, 1.0)
    else:
        shares = {
            p: totals.pool_compute_ms.get(p, 0.0) / used[p]
            for p in pools
            if used.get(p) and totals.pool_compute_ms.get(p)
        }
    pool_cost = {p: pools[p] / 3600 * prices.get(p, 0.0) for p in shares}
    pipelines = {}
    for name, line in sorted(totals.pipelines.items()):
        by_pool = {
            p: cost * line.compute_ms.get(p, 0.0) / used[p] if used.get(p) else 0.0
            for p, cost in pool_cost.items()
        }
        pipelines[name] = {
            "jobs": line.jobs,
            "succeeded": line.succeeded,
            "failed": line.jobs - line.succeeded,
            "throughput_per_s": round(line.succeeded / span_s, 4),
            "latency_ms": percentiles(line.latency),
            "nodes": {
                node: {
                    "stage": n.stage,
                    "queue_ms": percentiles(n.queue),
                    "compute_ms": percentiles(n.compute),
                }
                for node, n in sorted(line.nodes.items())
            },
            "cost_per_1000_images": _per_1000(sum(by_pool.values()), line.succeeded),
            "cost_per_1000_images_by_pool": {
                p: _per_1000(c, line.succeeded) for p, c in by_pool.items()
            },
        }
    succeeded = sum(line.succeeded for line in totals.pipelines.values())
    return {
        "window_s": window_s,
        "span_s": round(span_s, 3),
        "pipelines": pipelines,
        "stages": {
            s: {"tasks": n, "throughput_per_s": round(n / span_s, 4)}
            for s, n in sorted(totals.stage_tasks.items())
        },
        "pools": {
            p: {
                "replicas": round(pools[p] * share / span_s, 3),
                "replica_hours": round(pools[p] * share / 3600, 5),
                "hourly_cost_dollars": prices.get(p, 0.0),
                "cost_dollars": round(pool_cost[p] * share, 6),
            }
            for p, share in sorted(shares.items())
        },
        "cost_per_1000_images": _per_1000(
            sum(cost * shares[p] for p, cost in pool_cost.items()), succeeded
        ),
    }


def _per_1000(cost: float, images: int) -> float | None:
    return round(cost / images * 1000, 6) if images else None


async def read_stats(
    client: Any, window_s: float, prices: dict[str, float], tenant: str | None = None
) -> dict[str, Any]:
    """The fleet's stats, or with ``tenant`` that tenant's view (scope and tenant say which)."""
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    plan = plan_window(now_ms, window_s)
    pipe = client.pipeline(transaction=False)
    for size, start in plan.buckets:
        pipe.hgetall(keys.stats_bucket(size, start, tenant))
    pipe.hgetall(keys.WORKERS)
    *hashes, workers = await pipe.execute()
    totals = add_up(hashes)
    pools = replica_seconds(workers, plan.start_ms, now_ms, stale_ms=10_000)
    fleet_compute_ms = None
    if tenant is not None:
        fleet_compute_ms = await _fleet_compute_ms(client, plan, sorted(totals.pool_compute_ms))
    span_s = max(now_ms - plan.start_ms, 1) / 1000
    stats = summarise(totals, pools, prices, window_s, span_s, fleet_compute_ms)
    scope = {"scope": "fleet"} if tenant is None else {"scope": "tenant", "tenant": tenant}
    return {**stats, **scope, "start_resolution_s": BUCKET_SIZES_S[0]}


async def _fleet_compute_ms(client: Any, plan: WindowPlan, pools: list[str]) -> dict[str, float]:
    """All tenants' compute ms per pool over the same buckets: the denominator of a tenant's
    share of each pool, read field by field so no other tenant's figures leave Redis."""
    if not pools:
        return {}
    pipe = client.pipeline(transaction=False)
    for size, start in plan.buckets:
        pipe.hmget(keys.stats_bucket(size, start), [f"P|{p}" for p in pools])
    used: dict[str, float] = defaultdict(float)
    for values in await pipe.execute():
        for pool, value in zip(pools, values, strict=True):
            used[pool] += int(value or 0) / 1000
    return dict(used)
