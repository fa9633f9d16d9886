"""V2 (Open Inference Protocol) against the job API: the same photo at the same concurrency,
measured in one run on one stack, by load tools we did not write — Triton's perf_analyzer over
V2 HTTP and gRPC (the image as a BYTES input from a JSON data file), Debian's hey over the job
API (POST with ``Prefer: wait``). The protocol must not cost throughput: the last column is
img/s relative to the job API at the same concurrency.

    python -m loadtest.oip_bench            # starts `posefleet up`, ~2 minutes
    python -m loadtest.oip_bench --smoke    # a few requests per row

`make bench` adds these rows to its table (``oip_rows``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from loadtest import perf_analyzer
from loadtest.bench import Row, photos, posefleet_stack
from services.cli.redis_server import free_port

MODEL = "pose"
console = Console(stderr=True)


@dataclass
class OipRow(Row):
    """A row with the gateway's CPU time per request: the protocol's own cost, which the
    models' time hides in img/s (image decoding for validation is in it, on both paths)."""

    gateway_cpu_ms: float | None = None

    def summary(self, price_per_hour: float) -> dict[str, object]:
        cpu = None if self.gateway_cpu_ms is None else round(self.gateway_cpu_ms, 2)
        return {**super().summary(price_per_hour), "gateway_cpu_ms_per_request": cpu}


@dataclass
class ToolRow(OipRow):
    """A row from a load tool that reports throughput and percentiles, not every latency."""

    count: int = 0
    percentiles_ms: dict[int, float] = field(default_factory=dict)

    def pct(self, q: int) -> float:
        return self.percentiles_ms[q]

    @property
    def images_per_s(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def summary(self, price_per_hour: float) -> dict[str, object]:
        return {**super().summary(price_per_hour), "images": self.count}


def data_file(photo: bytes, folder: Path) -> Path:
    """perf_analyzer's input data: the BYTES tensor [photo] in its raw layout, base64'd."""
    raw = struct.pack("<I", len(photo)) + photo
    path = folder / "pa-data.json"
    tensor = {"b64": base64.b64encode(raw).decode(), "shape": [1]}
    path.write_text(json.dumps({"data": [{"image": tensor}]}))
    return path


def perf_analyzer_row(
    name: str, protocol: str, target: str, data: Path, concurrency: int, requests: int
) -> ToolRow:
    binary, env = perf_analyzer.ensure()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pa.csv"
        cmd = [
            str(binary),
            "-m",
            MODEL,
            "-u",
            target,
            "-i",
            protocol,
            "--input-data",
            str(data),
            "--shape",
            "image:1",
            "--concurrency-range",
            str(concurrency),
            "--request-count",
            str(requests),
            "-f",
            str(report),
        ]
        started = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
        (result,) = csv.DictReader(io.StringIO(report.read_text()))
    # img/s from the wall clock, as for hey: perf_analyzer's own Inferences/Second counts whole
    # seconds in --request-count mode (8 requests in 1.6 s read 4.00/s)
    return ToolRow(
        name,
        concurrency,
        seconds=seconds,
        count=requests,
        percentiles_ms={q: float(result[f"p{q} latency"]) / 1000 for q in (50, 95, 99)},
    )


def hey_row(url: str, photo: Path, concurrency: int, requests: int) -> Row:
    """The job API path: hey POSTs the photo with Prefer: wait, one job per request."""
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("the job API row needs Debian's hey: apt-get install hey")
    cmd = [
        hey,
        "-n",
        str(max(requests, concurrency)),
        "-c",
        str(concurrency),
        "-t",
        "120",
        "-m",
        "POST",
        "-D",
        str(photo),
        "-T",
        "image/jpeg",
        "-H",
        "Prefer: wait=60",
        "-o",
        "csv",
        url,
    ]
    started = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    row = OipRow("job API (hey)", concurrency, seconds=time.perf_counter() - started)
    for record in csv.DictReader(io.StringIO(run.stdout)):
        status = int(record["status-code"])
        if status == 200:  # the finished job (202 = not finished within the wait)
            row.latencies_ms.append(float(record["response-time"]) * 1000)
        elif status == 429:
            row.rejected += 1
        else:
            row.errors += 1
    return row


def gateway_process(base: str) -> psutil.Process:
    """The process listening on the gateway's port (the stack's gateway)."""
    port = int(base.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"no process listens on port {port}")


def measured(gateway: psutil.Process, measure: Callable[[], OipRow]) -> OipRow:
    before = sum(gateway.cpu_times()[:2])
    row = measure()
    done = row.count if isinstance(row, ToolRow) else len(row.latencies_ms)
    spent_ms = (sum(gateway.cpu_times()[:2]) - before) * 1000
    row.gateway_cpu_ms = spent_ms / done if done else None
    return row


def oip_rows(
    base: str, grpc_target: str, photo: bytes, concurrencies: list[int], requests: int
) -> list[Row]:
    """Per concurrency: the job API (hey), V2 HTTP and V2 gRPC (perf_analyzer), same photo."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo.jpg"
        image.write_bytes(photo)
        data = data_file(photo, Path(tmp))
        httpx.post(
            f"{base}/v1/pipelines/{MODEL}/jobs",
            content=photo,
            headers={"prefer": "wait=60"},
            timeout=120,
        )  # warm-up
        http_target = base.removeprefix("http://")
        gateway = gateway_process(base)
        jobs = f"{base}/v1/pipelines/{MODEL}/jobs"
        for c in concurrencies:
            console.print(f"V2 vs job API at concurrency {c}")
            n = max(requests, c)  # every client sends at least one request
            rows.append(measured(gateway, partial(hey_row, jobs, image, c, n)))
            for name, protocol, target in (
                ("V2 HTTP (perf_analyzer)", "http", http_target),
                ("V2 gRPC (perf_analyzer)", "grpc", grpc_target),
            ):
                rows.append(
                    measured(
                        gateway, partial(perf_analyzer_row, name, protocol, target, data, c, n)
                    )
                )
    return rows


def report(rows: list[Row]) -> None:
    table = Table(title=f"{MODEL}: V2 (perf_analyzer) vs the job API (hey), same photo")
    columns = [
        "path",
        "conc.",
        "requests",
        "img/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "429s",
        "errors",
        "gateway CPU ms/req",
        "img/s vs job API",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    baseline = {r.concurrency: r.images_per_s for r in rows if r.name.startswith("job API")}
    for row in rows:
        done = row.count if isinstance(row, ToolRow) else len(row.latencies_ms)
        ratio = row.images_per_s / (baseline[row.concurrency] or float("nan"))
        cpu = row.gateway_cpu_ms if isinstance(row, OipRow) else None
        table.add_row(
            row.name,
            str(row.concurrency),
            str(done),
            f"{row.images_per_s:.2f}",
            f"{row.pct(50):.1f}",
            f"{row.pct(95):.1f}",
            f"{row.pct(99):.1f}",
            str(row.rejected),
            str(row.errors),
            "" if cpu is None else f"{cpu:.1f}",
            f"{ratio:.2f}",
        )
    Console(width=150).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few requests per row")
    parser.add_argument("--requests", type=int, default=40, help="requests per row")
    parser.add_argument("--concurrency", type=int, default=8, help="the saturated rows' clients")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 4
    grpc_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        console.print("starting posefleet up")
        with posefleet_stack(tmp, "oip", GRPC_PORT=str(grpc_port)) as base:
            rows = oip_rows(
                base, f"127.0.0.1:{grpc_port}", photos()[0], [1, args.concurrency], args.requests
            )
    report(rows)
    ratios = [
        r.images_per_s / b.images_per_s
        for r in rows
        for b in rows
        if b.name.startswith("job API") and b.concurrency == r.concurrency and r is not b
    ]
    console.print(f"V2 img/s / job API img/s: median {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
