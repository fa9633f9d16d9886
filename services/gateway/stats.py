"""``GET /v1/stats``: throughput, latency and cost per 1000 images over a recent window.

Inputs are all in Redis, so any gateway replica answers the same: the stats stream (one summary
per ended job, written atomically by the DAG's last step) and the worker registry (each
replica's stage, pool and lifetime). Cost is the replica-hours in the window times each pool's
hourly price, spread over the window's succeeded images; a pipeline's share of each pool is its
share of that pool's compute time.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from typing import Any

from services.core import keys

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}
MAX_WINDOW_S = 24 * 3600


def parse_window(text: str) -> float:
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window '{text}' is not like 30s, 5m or 1h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"window must be between 1 s and {MAX_WINDOW_S // 3600} h")
    return seconds


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2)}


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


def summarise(
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    workers: dict[bytes, bytes],
    prices: dict[str, float],
    window_s: float,
    now_ms: int,
    stale_ms: int = 10_000,
) -> dict[str, Any]:
    jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, fields in entries:
        jobs[fields[b"pipeline"].decode()].append(
            {
                "status": fields[b"status"].decode(),
                "ms": float(fields[b"ms"]),
                "nodes": json.loads(fields[b"nodes"]),
            }
        )
    pools = replica_seconds(workers, now_ms - int(window_s * 1000), now_ms, stale_ms)
    pool_cost = {p: s / 3600 * prices.get(p, 0.0) for p, s in pools.items()}
    compute: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # pool->pl
    stage_tasks: dict[str, int] = defaultdict(int)
    for pipeline, records in jobs.items():
        for record in records:
            for node in record["nodes"].values():
                compute[node["pool"]][pipeline] += node["compute_ms"]
                stage_tasks[node["stage"]] += 1
    succeeded_total = sum(r["status"] == "succeeded" for rs in jobs.values() for r in rs)
    pipelines = {}
    for pipeline, records in jobs.items():
        ok = [r for r in records if r["status"] == "succeeded"]
        by_pool = {}
        for pool, cost in pool_cost.items():
            used = sum(compute[pool].values())
            share = compute[pool][pipeline] / used if used else 0.0
            by_pool[pool] = cost * share
        node_names = sorted({n for r in records for n in r["nodes"]})
        pipelines[pipeline] = {
            "jobs": len(records),
            "succeeded": len(ok),
            "failed": len(records) - len(ok),
            "throughput_per_s": round(len(ok) / window_s, 4),
            "latency_ms": percentiles(sorted(r["ms"] for r in ok)),
            "nodes": {
                name: {
                    "stage": next(r["nodes"][name]["stage"] for r in records if name in r["nodes"]),
                    "queue_ms": percentiles(
                        sorted(r["nodes"][name]["queue_ms"] for r in ok if name in r["nodes"])
                    ),
                    "compute_ms": percentiles(
                        sorted(r["nodes"][name]["compute_ms"] for r in ok if name in r["nodes"])
                    ),
                }
                for name in node_names
            },
            "cost_per_1000_images": _per_1000(sum(by_pool.values()), len(ok)),
            "cost_per_1000_images_by_pool": {p: _per_1000(c, len(ok)) for p, c in by_pool.items()},
        }
    return {
        "window_s": window_s,
        "pipelines": pipelines,
        "stages": {
            s: {"tasks": n, "throughput_per_s": round(n / window_s, 4)}
            for s, n in sorted(stage_tasks.items())
        },
        "pools": {
            p: {
                "replicas": round(s / window_s, 3),
                "replica_hours": round(s / 3600, 5),
                "hourly_cost_dollars": prices.get(p, 0.0),
                "cost_dollars": round(pool_cost[p], 6),
            }
            for p, s in sorted(pools.items())
        },
        "cost_per_1000_images": _per_1000(sum(pool_cost.values()), succeeded_total),
    }


def _per_1000(cost: float, images: int) -> float | None:
    return round(cost / images * 1000, 6) if images else None


async def read_stats(client: Any, window_s: float, prices: dict[str, float]) -> dict[str, Any]:
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    start = f"{now_ms - int(window_s * 1000)}-0"
    pipe = client.pipeline(transaction=False)
    pipe.xrange(keys.STATS_STREAM, min=start, max="+")
    pipe.hgetall(keys.WORKERS)
    entries, workers = await pipe.execute()
    return summarise(entries, workers, prices, window_s, now_ms)
