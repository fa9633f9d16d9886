"""The numbers we publish: raw models vs Posefleet vs a naive server vs the transport ceiling,
side by side in ONE run on one machine (ratios between rows are the result; absolute times on a
shared machine are noise).

    make bench                        # full run, a few minutes
    python -m loadtest.bench --smoke  # seconds; what CI runs

Rows:
  raw        the pose pipeline's two models called directly in this process (the limit)
  posefleet  the same images through gateway + Redis + workers (`Prefer: wait`), c=1 and saturated
  naive      one FastAPI app running both models per request, one uvicorn process per core
  ceiling    posefleet with a no-op stage and a tiny image: jobs/s of the transport alone
  overload   posefleet at 3x the saturation concurrency with a small backlog limit: 429s shed load
  V2 / job API (hey)  the Open Inference Protocol over HTTP and gRPC (perf_analyzer) beside the
             job API (hey) on the same stack, photo and concurrency (loadtest/oip_bench.py)
Columns follow AWS's OpenPose-on-Inferentia table: img/s, latency, cost per 1000 images.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from skimage import data

from loadtest.stacks import ROOT, local_stack
from services.cli.redis_server import free_port
from services.core.settings import get_settings

console = Console(stderr=True)


@dataclass
class Row:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    rejected: int = 0
    errors: int = 0

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def summary(self, price_per_hour: float) -> dict[str, object]:
        ips = self.images_per_s
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "images": len(self.latencies_ms),
            "seconds": round(self.seconds, 2),
            "images_per_s": round(ips, 2),
            "p50_ms": round(self.pct(50), 1),
            "p95_ms": round(self.pct(95), 1),
            "p99_ms": round(self.pct(99), 1),
            "rejected": self.rejected,
            "errors": self.errors,
            "cost_per_1000_images": round(price_per_hour / (ips * 3600) * 1000, 5) if ips else None,
        }


def photos() -> list[bytes]:
    """Single-person photos: the workload the ≥ 20 img/s target is stated for."""
    astronaut = data.astronaut()
    variants = [astronaut, cv2.flip(astronaut, 1), cv2.resize(astronaut, (384, 384))]
    return [cv2.imencode(".jpg", cv2.cvtColor(v, cv2.COLOR_RGB2BGR))[1].tobytes() for v in variants]


def run_raw(images: list[bytes], count: int) -> Row:
    from loadtest.baselines.naive_server import estimate  # loads the models once

    estimate(images[0])  # warm-up
    row = Row("raw", 1)
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        estimate(images[i % len(images)])
        row.latencies_ms.append((time.perf_counter() - t0) * 1000)
    row.seconds = time.perf_counter() - started
    return row


async def closed_loop(
    url: str,
    images: list[bytes],
    concurrency: int,
    *,
    count: int | None,
    duration_s: float | None,
    name: str,
    ok: Callable[[httpx.Response], bool],
    headers: dict[str, str] | None = None,
) -> Row:
    """``concurrency`` clients each sending the next request as soon as the last one ends."""
    row = Row(name, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    deadline = time.perf_counter() + (duration_s or 1e9)
    remaining = [count if count is not None else 1 << 62]
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for image in images[:1]:  # warm-up, not measured
            await client.post(url, content=image, headers=headers)

        async def loop(worker: int) -> None:
            i = worker
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    response = await client.post(
                        url, content=images[i % len(images)], headers=headers
                    )
                except httpx.HTTPError:
                    row.errors += 1
                    continue
                if response.status_code == 429:
                    row.rejected += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 10)
                elif ok(response):
                    row.latencies_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    row.errors += 1
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in range(concurrency)))
        row.seconds = time.perf_counter() - started
    return row


def job_done(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json().get("status") == "succeeded"


@contextmanager
def naive_server(workers: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "loadtest.baselines.naive_server:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/docs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the naive server did not start")
            time.sleep(0.2)  # poll interval while the models load
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks it works")
    parser.add_argument("--requests", type=int, default=40, help="c=1 requests per row")
    parser.add_argument("--duration", type=float, default=20.0, help="s per saturated row")
    parser.add_argument("--concurrency", type=int, default=8, help="saturation clients")
    parser.add_argument(
        "--price-per-hour",
        type=float,
        default=get_settings().pool_hourly_cost.get("cpu", 0.085),
        help="$ per hour of this machine, for cost per 1000 images",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench.json")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.duration = 3, 2.0
    images = photos()
    tiny = [cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()]
    c, cores = args.concurrency, os.cpu_count() or 1

    def measure(
        url: str,
        name: str,
        concurrency: int,
        sample: list[bytes] = images,
        ok: Callable[[httpx.Response], bool] = job_done,
    ) -> Row:
        """Concurrency 1 runs a fixed count; saturated rows run for the duration."""
        single = concurrency == 1
        headers = {"prefer": "wait=60"} if ok is job_done else None
        return asyncio.run(
            closed_loop(
                url,
                sample,
                concurrency,
                count=args.requests if single else None,
                duration_s=None if single else args.duration,
                name=name,
                ok=ok,
                headers=headers,
            )
        )

    console.print("raw: models in this process")
    rows = [run_raw(images, args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        console.print("posefleet: starting the stack")
        grpc_port = free_port()
        with posefleet_stack(tmp, "pose", GRPC_PORT=str(grpc_port)) as base:
            url = base + "/v1/pipelines/pose/jobs"
            rows += [measure(url, "posefleet", 1), measure(url, "posefleet", c)]
            from loadtest.oip_bench import oip_rows  # it builds on this module's rows

            rows += oip_rows(base, f"127.0.0.1:{grpc_port}", images[0], [1, c], args.requests)
        console.print("overload: 3x saturation with a small backlog limit")
        with posefleet_stack(tmp, "overload", POSEFLEET_MAX_BACKLOG=str(c)) as base:
            rows.append(measure(base + "/v1/pipelines/pose/jobs", "overload", 3 * c))
        console.print("naive: FastAPI + both models per request")
        with naive_server(cores) as naive:
            rows += [
                measure(naive + "/pose", "naive", n, ok=lambda r: r.status_code == 200)
                for n in (1, c)
            ]
        console.print("ceiling: no-op stage, tiny image")
        noop = str(ROOT / "loadtest" / "noop-pipelines.yaml")
        with posefleet_stack(tmp, "noop", POSEFLEET_PIPELINES_FILE=noop) as base:
            rows.append(
                measure(base + "/v1/pipelines/noop/jobs", "ceiling (no-op)", 4 * c, sample=tiny)
            )
    report(rows, args.price_per_hour, args.out)
    return 0


@contextmanager
def posefleet_stack(tmp: str, name: str, **env: str) -> Iterator[str]:
    """``posefleet up`` with its own Redis under ``tmp``; yields the base URL."""
    port = free_port()
    stack_env = {"POSEFLEET_CACHE_DIR": tmp, "POSEFLEET_REDIS_URL": "", **env}
    with local_stack(port, Path(tmp) / f"{name}.log", "--no-build", env=stack_env):
        yield f"http://127.0.0.1:{port}"


def report(rows: list[Row], price: float, out: Path) -> None:
    raw = rows[0]
    table = Table(title=f"pose pipeline on {os.cpu_count()} cores, cost at ${price}/h")
    for column in (
        "path",
        "conc.",
        "img/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "overhead ms",
        "x raw img/s",
        "429s",
        "$/1000 img",
    ):
        table.add_column(column, justify="right")
    summaries = []
    for row in rows:
        s = row.summary(price)
        s["overhead_ms_vs_raw"] = (
            round(row.pct(50) - raw.pct(50), 1) if row.concurrency == 1 else None
        )
        s["throughput_vs_raw"] = round(row.images_per_s / raw.images_per_s, 3)
        summaries.append(s)
        table.add_row(
            row.name,
            str(row.concurrency),
            f"{s['images_per_s']:.1f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            "" if s["overhead_ms_vs_raw"] is None else f"{s['overhead_ms_vs_raw']:+.1f}",
            f"{s['throughput_vs_raw']:.2f}",
            str(row.rejected),
            "" if s["cost_per_1000_images"] is None else f"{s['cost_per_1000_images']:.4f}",
        )
    Console(width=150).print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"price_per_hour": price, "cores": os.cpu_count(), "rows": summaries}, indent=2)
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
