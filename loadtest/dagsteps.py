"""The DAG steps' own cost: begin + complete of a no-op node against a private Redis, pipelined
in batches of 64 as a worker does — µs per task, the Lua steps alone (no HTTP, no handler), for
before/after comparisons of the Lua hot path (e.g. a PUBLISH added to a step).

    python -m loadtest.dagsteps               # 3 repeats of 5000 tasks, median/min/max

On a shared machine single runs are noise: compare medians of repeats taken back to back.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import cv2
import numpy as np
import redis
from rich.console import Console

from loadtest.stacks import ROOT
from services.cli.redis_server import start_redis
from services.core import keys
from services.core.dag import DagSteps
from services.core.pipeline import load_pipelines

NOOP_FILE = ROOT / "loadtest" / "noop-pipelines.yaml"
BATCH = 64


def tiny_png() -> bytes:
    return cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def dag_steps_us(client: redis.Redis, tasks: int) -> float:
    """µs per task of begin + complete, pipelined per batch like the worker loop."""
    spec = load_pipelines(NOOP_FILE).pipelines["noop"]
    steps, image = DagSteps(client), tiny_png()
    stream, group = keys.stream("noop"), keys.group("noop")
    client.delete(stream)
    client.xgroup_create(stream, group, id="0", mkstream=True)
    pipe = client.pipeline(transaction=False)
    for _ in range(tasks):
        steps.create(str(uuid.uuid4()), spec, image, {}, ttl_s=600, deadline_s=600, client=pipe)
    pipe.execute()
    spent = 0.0
    while True:
        batch = client.xreadgroup(group, "bench", {stream: ">"}, count=BATCH)
        if not batch:
            break
        entries = [(e, {k.decode(): v.decode() for k, v in f.items()}) for e, f in batch[0][1]]
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for _, task in entries:
            steps.begin(task["job"], task["node"], "bench", "cpu", 3, client=pipe)
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        for entry, task in entries:
            steps.complete(task["job"], task["node"], "noop", entry.decode(), {"ok": 1}, 0.0, pipe)
        pipe.execute()
        spent += time.perf_counter() - started
    client.xgroup_destroy(stream, group)
    return spent / tasks * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per repeat")
    args = parser.parse_args()
    with start_redis(order=("path", "embedded")) as server:
        client = redis.Redis.from_url(server.url)
        dag_steps_us(client, 500)  # warm-up: script load, allocator
        runs = [dag_steps_us(client, args.tasks) for _ in range(args.repeat)]
        client.close()
    Console().print(
        f"dag steps: median {statistics.median(runs):.1f} µs/task "
        f"(min {min(runs):.1f}, max {max(runs):.1f}; {args.repeat} x {args.tasks} tasks)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
