"""The transport's own cost, in two rows, for before/after comparisons of the hot path:

  dag steps  begin + complete of a no-op node against a private Redis, pipelined in batches
             of 64 as a worker does (µs per task; the Lua steps alone, no HTTP, no handler)
  no-op      ``posefleet up`` with the no-op pipeline and an 8x8 image, closed loop (jobs/s)

    python -m loadtest.ceiling                    # 3 repeats of each, a table and out/ceiling.json
    python -m loadtest.ceiling --repeat 5 --duration 10

On a shared machine single runs are noise: compare medians of repeats taken back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from loadtest.bench import closed_loop, job_done, posefleet_stack
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
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per dag-steps repeat")
    parser.add_argument("--duration", type=float, default=8.0, help="s per no-op repeat")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--label", default="", help="tag for this run in the output")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "ceiling.json")
    args = parser.parse_args()
    console = Console(stderr=True)

    with start_redis(order=("path", "embedded")) as server:
        client = redis.Redis.from_url(server.url)
        dag_steps_us(client, 500)  # warm-up: script load, allocator
        steps = [dag_steps_us(client, args.tasks) for _ in range(args.repeat)]
        client.close()
    console.print(f"dag steps: {', '.join(f'{s:.1f}' for s in steps)} µs/task")

    noop: list[float] = []
    p50: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        posefleet_stack(tmp, "ceiling", POSEFLEET_PIPELINES_FILE=str(NOOP_FILE)) as base,
    ):
        for _ in range(args.repeat):
            row = asyncio.run(
                closed_loop(
                    base + "/v1/pipelines/noop/jobs",
                    [tiny_png()],
                    args.concurrency,
                    count=None,
                    duration_s=args.duration,
                    name="no-op",
                    ok=job_done,
                    headers={"prefer": "wait=60"},
                )
            )
            noop.append(row.images_per_s)
            p50.append(row.pct(50))
    console.print(f"no-op: {', '.join(f'{n:.1f}' for n in noop)} jobs/s")

    table = Table(title=f"transport ceiling {args.label}".strip())
    for column in ("row", "runs", "median", "min", "max", "unit"):
        table.add_column(column, justify="right")
    rows = {
        "dag steps": (steps, "µs/task"),
        "no-op jobs/s": (noop, f"jobs/s (c={args.concurrency})"),
        "no-op p50": (p50, "ms"),
    }
    for name, (values, unit) in rows.items():
        table.add_row(
            name,
            str(len(values)),
            f"{statistics.median(values):.1f}",
            f"{min(values):.1f}",
            f"{max(values):.1f}",
            unit,
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {k: {"runs": v, "unit": u} for k, (v, u) in rows.items()}
    args.out.write_text(json.dumps({"label": args.label, **summary}, indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
