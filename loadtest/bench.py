"""The numbers we publish and the targets they are held to, side by side in ONE run on one machine
(ratios between rows are the result; absolute times on a shared machine are noise).

    make bench                        # full run, several minutes (the first also builds Ray's venv)
    python -m loadtest.bench --smoke  # seconds; what CI runs (no Ray Serve)

Rows (the pose pipeline, single-person photos):
  models (ort defaults)  the two ONNX models alone, prepared inputs, onnxruntime's own settings
  models                 the same with Posefleet's settings (threads, spinning)
  handlers               the detector and pose handlers back to back in this process
  posefleet              gateway + Redis + workers (`Prefer: wait`); c=1 interleaved with the
                         three rows above, request by request; saturated with `hey`
  overload               3x the saturation concurrency against a backlog limit: 429s shed load
  naive                  one FastAPI app running both handlers per request, a process per core
  ray serve              the idiomatic Ray Serve composition running our handlers
  job API (hey), V2 HTTP / gRPC (perf_analyzer)
                         the Open Inference Protocol against the job API on the same stack,
                         photo and concurrency (loadtest/oip_bench.py)
  ceiling (no-op)        a no-op stage and an 8x8 image, driven by `hey`: the transport alone
Then the targets of docs/performance.md with PASS/FAIL. Saturated rows use `hey`, a native
load generator, so a Python client does not eat the cores it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from loadtest.hey import Row, hey, require_hey
from loadtest.oip_bench import oip_rows
from loadtest.peers import naive_server, ray_serve
from loadtest.photos import photos
from loadtest.stacks import ROOT, posefleet_stack
from loadtest.targets import Measured, evaluate, targets_table
from services.cli.redis_server import free_port
from services.core.settings import get_settings

console = Console(stderr=True)
WAIT = {"prefer": "wait=60"}


def sequential(
    url: str, images: list[bytes], count: int, name: str, ok: Callable[[httpx.Response], bool]
) -> Row:
    """Concurrency 1: each request sent when the last one answered."""
    row = Row(name, 1)
    with httpx.Client(timeout=120) as client:
        client.post(url, content=images[0], headers=WAIT)  # warm-up
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            response = client.post(url, content=images[i % len(images)], headers=WAIT)
            if ok(response):
                row.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                row.errors += 1
        row.seconds = time.perf_counter() - started
    return row


def job_done(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json().get("status") == "succeeded"


def answered(response: httpx.Response) -> bool:
    return response.status_code == 200


def interleaved_c1(url: str, images: list[bytes], count: int) -> tuple[list[Row], float]:
    """Models (onnxruntime's defaults, then ours), handlers and a posefleet request, one after
    the other for every request: like-for-like c=1 rows. Also returns the in-worker ratio: the
    workers' handler time (the job's compute_ms) over the handlers' time in this process."""
    from loadtest.direct import DirectPose

    direct = DirectPose()
    feeds = [direct.feeds(image) for image in images]
    rows = [Row(n, 1) for n in ("models (ort defaults)", "models", "handlers", "posefleet")]
    in_worker: list[float] = []
    with httpx.Client(timeout=120) as client:
        client.post(url, content=images[0], headers=WAIT)  # warm-up
        for i in range(count):
            k = i % len(images)
            rows[0].latencies_ms.append(direct.models_ms(feeds[k], ort_default=True))
            time.sleep(0.1)  # onnxruntime's default pools spin on after a run: let them stop
            # handlers before the models with the same sessions, so they start as cold as a
            # worker's (the in-worker ratio compares the two)
            rows[2].latencies_ms.append(direct.handlers_ms(images[k]))
            rows[1].latencies_ms.append(direct.models_ms(feeds[k], ort_default=False))
            t0 = time.perf_counter()
            response = client.post(url, content=images[k], headers=WAIT)
            if not job_done(response):
                rows[3].errors += 1
                continue
            rows[3].latencies_ms.append((time.perf_counter() - t0) * 1000)
            in_worker.append(sum(n["compute_ms"] for n in response.json()["nodes"].values()))
    for row in rows:  # c=1 throughput is the inverse of the time per request
        row.seconds = sum(row.latencies_ms) / 1000
    ratio = statistics.median(in_worker) / rows[2].pct(50) if in_worker else float("nan")
    return rows, ratio


def failed_jobs(base: str) -> int:
    """Jobs that ended failed in the last hour (GET /v1/stats): a saturated row driven by hey
    counts HTTP 200s, and a failed job answers 200 too."""
    stats = httpx.get(base + "/v1/stats", params={"window": "1h"}, timeout=30).json()
    return sum(p.get("failed", 0) for p in stats["pipelines"].values())


def saturated(base: str, pipeline: str, body: bytes, name: str, c: int, seconds: float) -> Row:
    before = failed_jobs(base)
    row = hey(
        f"{base}/v1/pipelines/{pipeline}/jobs",
        body,
        name=name,
        concurrency=c,
        duration_s=seconds,
        content_type="image/png" if body.startswith(b"\x89PNG") else "image/jpeg",
        headers=WAIT,
    )
    failed = failed_jobs(base) - before
    row.errors += failed
    del row.latencies_ms[:failed]  # a failed job's 200 is not an image served
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no Ray: checks it works")
    parser.add_argument("--requests", type=int, default=40, help="c=1 requests per row")
    parser.add_argument("--duration", type=float, default=20.0, help="s per saturated row")
    parser.add_argument("--concurrency", type=int, default=8, help="saturation clients")
    parser.add_argument("--ceiling-concurrency", type=int, default=64, help="no-op row clients")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray Serve rows")
    parser.add_argument(
        "--price-per-hour",
        type=float,
        default=get_settings().pool_hourly_cost.get("cpu", 0.085),
        help="$ per hour of this machine, for cost per 1000 images",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench.json")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.duration, args.no_ray = 3, 2.0, True
    require_hey()
    load_before = os.getloadavg()
    images = photos()
    tiny = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    c, cores, n, secs = args.concurrency, os.cpu_count() or 1, args.requests, args.duration
    pose = "/v1/pipelines/pose/jobs"
    with tempfile.TemporaryDirectory() as tmp:
        console.print("posefleet (c=1 interleaved with the models and the handlers)")
        grpc_port = free_port()
        with posefleet_stack(tmp, "pose", GRPC_PORT=str(grpc_port)) as base:
            rows, in_worker = interleaved_c1(base + pose, images, n)
            rows.append(saturated(base, "pose", images[0], "posefleet", c, secs))
            rows += oip_rows(base, f"127.0.0.1:{grpc_port}", images[0], [1, c], n)
        console.print("overload: 3x saturation with a small backlog limit")
        with posefleet_stack(tmp, "overload", POSEFLEET_MAX_BACKLOG=str(c)) as base:
            rows.append(saturated(base, "pose", images[0], "overload", 3 * c, secs))
        console.print("naive: FastAPI + both handlers per request")
        with naive_server(cores, Path(tmp) / "naive.log") as naive:
            rows.append(sequential(naive + "/pose", images, n, "naive", answered))
            rows.append(
                hey(naive + "/pose", images[0], name="naive", concurrency=c, duration_s=secs)
            )
        rows += ray_rows(args.no_ray, Path(tmp), images, c, n, secs)
        console.print("ceiling: no-op stage, tiny image, hey")
        noop = str(ROOT / "loadtest" / "noop-pipelines.yaml")
        with posefleet_stack(tmp, "noop", POSEFLEET_PIPELINES_FILE=noop) as base:
            saturated(base, "noop", tiny, "warm-up", args.ceiling_concurrency, 1.0)
            rows.append(
                saturated(base, "noop", tiny, "ceiling (no-op)", args.ceiling_concurrency, secs)
            )
    load = (load_before, os.getloadavg())
    report(rows, Measured.of(rows, in_worker), args.price_per_hour, args.out, load)
    return 0


def ray_rows(skip: bool, tmp: Path, images: list[bytes], c: int, n: int, secs: float) -> list[Row]:
    if skip:
        return []
    console.print("ray serve: the idiomatic composition running our handlers")
    try:
        server = ray_serve(get_settings().cache_dir, tmp / "ray.log", console.print)
        with server as ray:
            return [
                sequential(ray + "/pose", images, n, "ray serve", answered),
                hey(ray + "/pose", images[0], name="ray serve", concurrency=c, duration_s=secs),
            ]
    except Exception as exc:  # no Ray wheel for this platform, a failed start: say so, go on
        console.print(f"[red]ray serve rows left out: {exc}[/red]")
        return []


def report(
    rows: list[Row],
    measured: Measured,
    price: float,
    out: Path,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    models = measured.models_ms
    table = Table(title=f"pose pipeline on {os.cpu_count()} cores, cost at ${price}/h")
    columns = ("path", "conc.", "img/s", "p50 ms", "p95 ms", "p99 ms", "vs models ms")
    for column in (*columns, "x models img/s", "429s", "errors", "$/1000 img"):
        table.add_column(column, justify="right")
    summaries: list[dict[str, Any]] = []
    for row in rows:
        s = row.summary(price)
        s["overhead_ms_vs_models"] = (
            round(row.pct(50) - models, 1) if row.concurrency == 1 else None
        )
        s["throughput_vs_models"] = round(row.images_per_s * models / 1000, 3)
        summaries.append(s)
        table.add_row(
            row.name,
            str(row.concurrency),
            f"{s['images_per_s']:.1f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            "" if s["overhead_ms_vs_models"] is None else f"{s['overhead_ms_vs_models']:+.1f}",
            f"{s['throughput_vs_models']:.2f}",
            str(row.rejected),
            str(row.errors),
            "" if s["cost_per_1000_images"] is None else f"{s['cost_per_1000_images']:.4f}",
        )
    wide = Console(width=160)
    wide.print(table)
    verdicts = evaluate(measured)
    wide.print(targets_table(verdicts))
    loads = " -> ".join(", ".join(f"{x:.2f}" for x in la) for la in load)
    wide.print(f"load average (1, 5, 15 min) before -> after: {loads}")
    out.parent.mkdir(parents=True, exist_ok=True)
    report_json = {
        "price_per_hour": price,
        "cores": os.cpu_count(),
        "load_average": {"before": load[0], "after": load[1]},
        "rows": summaries,
        "targets": [v.as_dict() for v in verdicts],
    }
    out.write_text(json.dumps(report_json, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
