"""Instance groups side by side: how should one pod spend its cores — one model copy with N
intra-op threads, or N copies with one thread each (Triton's instance groups; one copy per
NeuronCore on Inferentia)?

    python -m loadtest.instances [--stage detector] [--images 48]

Every configuration serves the same backlog with the real stage (its model, batching and Redis
round trips) in this process against a private Redis, so the rows differ only in the grouping.
The ratios between rows are the result; absolute numbers on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass

import cv2
import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from skimage import data

from services.cli.redis_server import start_redis
from services.core import keys
from services.core.dag import DagSteps
from services.core.jobs import job_view
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings
from services.core.worker import start_instances

console = Console(stderr=True)
# (instances, intra-op threads per instance)
CONFIGS = ((1, 1), (1, 2), (2, 1))
# A pipeline whose first node is the stage under test; its later nodes are never served.
PIPELINE_OF = {"detector": "pose", "classifier-a": "classify", "classifier-b": "classify"}


@dataclass(frozen=True)
class Result:
    instances: int
    threads: int
    images_per_s: float
    batch_compute_ms_p50: float


def photo() -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def serve_backlog(
    client: redis.Redis, stage: str, instances: int, threads: int, images: int
) -> Result:
    settings = get_settings().model_copy(
        update={
            "instances": instances,
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "metrics_port": 0,
            "block_ms": 20,
        }
    )
    config = load_pipelines(settings.pipelines_file)
    spec = config.pipelines[PIPELINE_OF[stage]]
    client.flushdb()
    steps, image = DagSteps(client), photo()
    for i in range(images):
        steps.create(f"job-{i}", spec, image, {"tenant": "bench"}, ttl_s=600, deadline_s=600)
    stopping = threading.Event()
    workers = start_instances(config.stages[stage], settings, client, stopping)
    loops = [threading.Thread(target=w.run, daemon=True) for w in workers]
    started = time.perf_counter()
    for loop in loops:
        loop.start()
    # Entries are deleted once acked, so an empty stream means every image was served.
    while client.xlen(keys.stream(stage)) > 0:
        time.sleep(0.01)  # poll interval; the measurement's resolution
    elapsed = time.perf_counter() - started
    stopping.set()
    for loop in loops:
        loop.join()
    node = spec.roots()[0]
    # compute_ms is the batch's compute time, which each of its tasks records
    compute = [
        job_view(client.hgetall(keys.job(f"job-{i}")))["nodes"][node]["compute_ms"]
        for i in range(images)
    ]
    return Result(instances, threads, images / elapsed, statistics.median(compute))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", default="detector", choices=sorted(PIPELINE_OF))
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats per config")
    args = parser.parse_args()
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    results: dict[tuple[int, int], list[Result]] = {c: [] for c in CONFIGS}
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("serving", total=args.rounds * len(CONFIGS))
            for _ in range(args.rounds):
                for instances, threads in CONFIGS:
                    progress.update(task, description=f"{instances}x{threads} threads")
                    results[(instances, threads)].append(
                        serve_backlog(client, args.stage, instances, threads, args.images)
                    )
                    progress.advance(task)
    finally:
        server.stop()
    table = Table(title=f"{args.stage}: {args.images} images, best of {args.rounds} rounds")
    for column in ("instances", "threads each", "img/s", "vs 1x1", "batch compute ms p50"):
        table.add_column(column, justify="right")
    base = max(r.images_per_s for r in results[(1, 1)])
    for (instances, threads), rows in results.items():
        best = max(rows, key=lambda r: r.images_per_s)
        table.add_row(
            str(instances),
            str(threads),
            f"{best.images_per_s:.2f}",
            f"{best.images_per_s / base:.2f}x",
            f"{best.batch_compute_ms_p50:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
