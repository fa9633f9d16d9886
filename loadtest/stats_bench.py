"""What ``GET /v1/stats`` costs (docs/stats-and-auth.md): the Redis time each job end spends on
the aggregates, their memory and keys per minute of traffic, and how long a read takes after
100,000 jobs.

    python -m loadtest.stats_bench [--jobs 100000] [--rate 17]

Every ending goes through ``record_stats``, the DAG step's own code (loadtest/statsreplay.py),
for the real ``pose`` pipeline (two nodes) with latencies like the local stack's, into a private
Redis; reads call the gateway's ``read_stats`` (the route's work minus HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
import redis
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from loadtest.statsreplay import STATS_LUA, Ending, redis_now_ms, replay
from services.cli.redis_server import start_redis
from services.core import keys
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings
from services.gateway.stats import read_stats

NO_STATS = "local function record_stats() end\n"  # the replay driver alone, as a baseline


def endings(count: int, end_ms: int, spread_ms: int, tenants: int, seed: int = 1) -> list[Ending]:
    """``count`` pose jobs ending evenly over ``spread_ms`` up to ``end_ms``."""
    rng = np.random.default_rng(seed)
    e2e = np.round(rng.lognormal(np.log(95), 0.3, count))
    queue = np.round(rng.exponential(6.0, (count, 2)))
    compute = np.round(rng.gamma(9.0, [4.5, 2.9], (count, 2)), 3)
    return [
        Ending(
            f"tenant-{j % tenants}",
            "failed" if j % 100 == 0 else "succeeded",
            end_ms - j * spread_ms // count,
            float(e2e[j]),
            {
                "detect": (float(queue[j, 0]), float(compute[j, 0]), "cpu"),
                "keypoints": (float(queue[j, 1]), float(compute[j, 1]), "cpu"),
            },
        )
        for j in range(count)
    ]


def redis_time_per_job(client: redis.Redis, spec, batch: list[Ending], library: str) -> float:
    client.flushall()
    client.config_resetstat()
    replay(client, spec, batch, library=library)
    return client.info("commandstats")["cmdstat_evalsha"]["usec"] / len(batch)


def stats_memory(client: redis.Redis) -> tuple[int, int]:
    names = client.keys(keys.STATS_PREFIX + "*")
    return len(names), sum(client.memory_usage(k, samples=0) or 0 for k in names)


async def read_seconds(url: str, window_s: float, tenant: str | None, repeat: int = 5) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await read_stats(client, window_s, get_settings().pool_hourly_cost, tenant)
            times.append(time.perf_counter() - started)
        return statistics.median(times)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs recorded before reads")
    parser.add_argument("--rate", type=float, default=17.0, help="jobs/s for the memory figure")
    args = parser.parse_args()
    spec = load_pipelines(get_settings().pipelines_file).pipelines["pose"]
    console = Console()
    table = Table(title="/v1/stats aggregates (pose pipeline, record_stats in Lua)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    with start_redis(order=("path", "embedded")) as server:
        client = redis.Redis.from_url(server.url)
        now = redis_now_ms(client)
        sample = endings(5000, now, int(5000 / args.rate * 1000), tenants=1)
        baseline = min(redis_time_per_job(client, spec, sample, NO_STATS) for _ in range(3))
        with_stats = min(redis_time_per_job(client, spec, sample, STATS_LUA) for _ in range(3))
        cost = f"{with_stats - baseline:.1f}"
        table.add_row("Redis time per job end (µs, fleet + 1 tenant)", cost)

        client.flushall()
        hour = int(args.rate * 3600)
        replay(client, spec, endings(hour, now, 3_600_000, tenants=1))
        count, size = stats_memory(client)
        table.add_row(f"keys after 1 h at {args.rate:g} jobs/s (fleet + 1 tenant)", str(count))
        per_minute = f"{size / 60 / 1024:.1f}"
        table.add_row("memory per minute of traffic (KiB, fleet + 1 tenant)", per_minute)

        client.flushall()
        replay(client, spec, endings(args.jobs, now, int(23.5 * 3600 * 1000), tenants=2))
        for window_s, label in ((300, "5m"), (3600, "1h"), (86_400, "24h")):
            for tenant in (None, "tenant-0"):
                seconds = asyncio.run(read_seconds(server.url, window_s, tenant))
                who = "fleet" if tenant is None else "one tenant"
                table.add_row(
                    f"read window={label}, {who}, {args.jobs:,} jobs in 23.5 h (ms)",
                    f"{seconds * 1000:.1f}",
                )
        client.close()
    console.print(table)


if __name__ == "__main__":
    main()
