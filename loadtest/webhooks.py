"""Webhook delivery latency: from the moment a job ends (the ending DAG step's time on the Redis
clock, the job's ``updated_at``) to the moment the receiver has read the signed POST, through
the whole real path: callbacks.lua → the relay (consumer group) → RQ → a delivery thread → HTTP.

    python -m loadtest.webhooks [--jobs 100] [--concurrency 8]

A private Redis, the gateway and a model-free stage in this process (the test pipelines), the
real ``posefleet control-worker`` process and a local receiver on 127.0.0.1, reusing the test
suite's harness (tests/webhooks.py). One row per load: jobs one after another, then
``--concurrency`` submitters at once. Redis, this process and the receiver share one host, so
one clock measures both ends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.table import Table

from services.cli.redis_server import start_redis
from services.core import keys
from services.core.settings import Settings
from tests.gateway.conftest import png
from tests.webhooks import SECRET, Receiver, control_worker, webhook_env
from tests.workers import TEST_PIPELINES, gateway_server, make_worker, worker_threads

console = Console(stderr=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(api: httpx.Client, receiver: Receiver, client: redis.Redis, jobs: int, users: int):
    """Latencies (ms) of ``jobs`` deliveries submitted by ``users`` concurrent clients."""
    start = len(receiver.received)

    def one(_: int) -> str:
        response = api.post(
            "/v1/pipelines/single/jobs",
            params={"callback_url": receiver.url()},
            content=png(),
            headers={"Prefer": "wait=30"},
        )
        return response.json()["id"]

    with ThreadPoolExecutor(users) as pool:
        ids = list(pool.map(one, range(jobs)))
    hits = receiver.wait_for(start + jobs, timeout_s=120)[start:]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "updated_at")
    ended = {job_id: int(ms) / 1000 for job_id, ms in zip(ids, pipe.execute(), strict=True)}
    return sorted((hit.at - ended[json.loads(hit.body)["id"]]) * 1000 for hit in hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    table = Table(title="webhook delivery latency after the job ended (ms)")
    for column in ("load", "deliveries", "p50", "p95", "max", "control worker CPU ms/delivery"):
        table.add_column(column, justify="right" if column != "load" else "left")
    with start_redis(order=("path", "embedded")) as server:
        client = redis.Redis.from_url(server.url)
        trusted = {"webhook_secret": SECRET, "webhook_trusted_hosts": ["127.0.0.1"]}
        settings = Settings(redis_url=server.url, pipelines_file=TEST_PIPELINES, **trusted)
        env = webhook_env(server.url, TEST_PIPELINES, webhook_trusted_hosts=["127.0.0.1"])
        with (
            gateway_server(settings) as url,
            httpx.Client(base_url=url, timeout=60) as api,
            worker_threads() as start,
            control_worker(env) as control,
            Receiver() as receiver,
        ):
            start(make_worker(client, "measure"))
            run_load(api, receiver, client, 5, 1)  # warm-up: connections, scripts, imports
            for label, users in (
                ("sequential", 1),
                (f"{args.concurrency} at once", args.concurrency),
            ):
                cpu_before = cpu_s(control.pid)
                latencies = run_load(api, receiver, client, args.jobs, users)
                cpu_ms = (cpu_s(control.pid) - cpu_before) * 1000 / args.jobs
                p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
                table.add_row(
                    label,
                    str(len(latencies)),
                    f"{statistics.median(latencies):.1f}",
                    f"{p95:.1f}",
                    f"{latencies[-1]:.1f}",
                    f"{cpu_ms:.1f}",
                )
    Console().print(table)


if __name__ == "__main__":
    main()
