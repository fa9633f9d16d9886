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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from loadtest import perf_analyzer
from loadtest.hey import Row
from loadtest.photos import photos
from loadtest.stacks import ROOT, posefleet_stack
from services.cli.redis_server import free_port
from services.core.imaging import sniff_image_type

MODEL = "pose"
JOB_API = "job API (hey)"
V2_HTTP = "V2 HTTP (perf_analyzer)"
V2_GRPC = "V2 gRPC (perf_analyzer)"
console = Console(stderr=True)


@dataclass
class OipRow(Row):
    """A row with the gateway's CPU time per request: the protocol's own cost, which the
    models' time hides in img/s (image decoding for validation is in it, on every path)."""

    gateway_cpu_s: float = 0.0

    @property
    def gateway_cpu_ms(self) -> float | None:
        done = len(self.latencies_ms)
        return self.gateway_cpu_s * 1000 / done if done else None

    def add(self, other: OipRow) -> None:
        self.latencies_ms += other.latencies_ms
        self.seconds += other.seconds
        self.rejected += other.rejected
        self.errors += other.errors
        self.gateway_cpu_s += other.gateway_cpu_s

    def summary(self, price_per_hour: float) -> dict[str, object]:
        cpu = self.gateway_cpu_ms
        return {
            **super().summary(price_per_hour),
            "gateway_cpu_ms_per_request": None if cpu is None else round(cpu, 2),
        }


def data_file(photo: bytes, folder: Path) -> Path:
    """perf_analyzer's input data: the BYTES tensor [photo] in its raw layout, base64'd."""
    raw = struct.pack("<I", len(photo)) + photo
    path = folder / "pa-data.json"
    tensor = {"b64": base64.b64encode(raw).decode(), "shape": [1]}
    path.write_text(json.dumps({"data": [{"image": tensor}]}))
    return path


def perf_analyzer_row(
    model: str, name: str, protocol: str, target: str, data: Path, concurrency: int, requests: int
) -> OipRow:
    """perf_analyzer's own per-request record (--profile-export-file): every latency, and the
    span from the first request's start to the last response (its printed infer/sec counts
    whole seconds in --request-count mode)."""
    binary, env = perf_analyzer.ensure()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "profile.json"
        cmd = [
            str(binary), "-m", model, "-u", target, "-i", protocol,
            "--input-data", str(data), "--shape", "image:1",
            "--concurrency-range", str(concurrency), "--request-count", str(requests),
            "--profile-export-file", str(export),
        ]  # fmt: skip
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if run.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
        # The export embeds the request's image bytes as they are (not UTF-8); the JSON
        # around them is well-formed, so read it byte for byte.
        (experiment,) = json.loads(export.read_bytes().decode("latin-1"))["experiments"]
    sent = [(r["timestamp"], r["response_timestamps"][-1]) for r in experiment["requests"]]
    row = OipRow(name, concurrency)
    row.latencies_ms = [(end - start) / 1e6 for start, end in sent]
    row.seconds = (max(end for _, end in sent) - min(start for start, _ in sent)) / 1e9
    return row


def hey_row(url: str, photo: Path, concurrency: int, requests: int) -> OipRow:
    media = sniff_image_type(photo.read_bytes()) or "application/octet-stream"
    """The job API path: hey POSTs the photo with Prefer: wait, one job per request."""
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("the job API row needs Debian's hey: apt-get install hey")
    cmd = [
        hey, "-n", str(requests), "-c", str(concurrency), "-t", "120",
        "-m", "POST", "-D", str(photo), "-T", media, "-H", "Prefer: wait=60",
        "-o", "csv", url,
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    row, ends = OipRow(JOB_API, concurrency), []
    for record in csv.DictReader(io.StringIO(run.stdout)):
        status, took = int(record["status-code"]), float(record["response-time"])
        ends.append(float(record["offset"]) + took)  # offset: since hey's first request
        if status == 200:  # the finished job (202 = not finished within the wait)
            row.latencies_ms.append(took * 1000)
        elif status == 429:
            row.rejected += 1
        else:
            row.errors += 1
    row.seconds = max(ends, default=0.0)
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
    row.gateway_cpu_s = sum(gateway.cpu_times()[:2]) - before
    return row


def oip_rows(
    base: str,
    grpc_target: str,
    photo: bytes,
    concurrencies: list[int],
    requests: int,
    rounds: int = 4,
    model: str = MODEL,
) -> list[Row]:
    """Per concurrency: the job API (hey), V2 HTTP and V2 gRPC (perf_analyzer), same photo,
    ``requests`` each, in ``rounds`` interleaved rounds (the order rotating), so that a
    machine whose load drifts — a shared one — does not favour whichever path ran first."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo"
        image.write_bytes(photo)
        data = data_file(photo, Path(tmp))
        jobs = f"{base}/v1/pipelines/{model}/jobs"
        httpx.post(jobs, content=photo, headers={"prefer": "wait=60"}, timeout=120)  # warm-up
        gateway = gateway_process(base)
        http_target = base.removeprefix("http://")
        for c in concurrencies:
            console.print(f"V2 vs job API at concurrency {c}")
            laps = max(1, min(rounds, requests // c))
            # per lap, a multiple of c: hey sends n // c per client, and every client sends
            n = c * -(-requests // (laps * c))
            v2 = partial(perf_analyzer_row, model)
            paths: dict[str, Callable[[], OipRow]] = {
                JOB_API: partial(hey_row, jobs, image, c, n),
                V2_HTTP: partial(v2, V2_HTTP, "http", http_target, data, c, n),
                V2_GRPC: partial(v2, V2_GRPC, "grpc", grpc_target, data, c, n),
            }
            totals = {name: OipRow(name, c) for name in paths}
            for lap in range(laps):
                order = list(paths)[lap % 3 :] + list(paths)[: lap % 3]
                for name in order:
                    totals[name].add(measured(gateway, paths[name]))
            rows += totals.values()
    return rows


def report(rows: list[Row], title: str) -> None:
    table = Table(title=title)
    columns = [
        "path", "conc.", "requests", "img/s", "p50 ms", "p95 ms", "p99 ms", "429s",
        "errors", "gateway CPU ms/req", "img/s vs job API",
    ]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    baseline = {r.concurrency: r.images_per_s for r in rows if r.name == JOB_API}
    for row in rows:
        ratio = row.images_per_s / (baseline[row.concurrency] or float("nan"))
        cpu = row.gateway_cpu_ms if isinstance(row, OipRow) else None
        table.add_row(
            row.name,
            str(row.concurrency),
            str(len(row.latencies_ms)),
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


def on_stack(
    name: str,
    model: str,
    photo: bytes,
    concurrencies: list[int],
    requests: int,
    rounds: int,
    **env: str,
) -> list[Row]:
    """oip_rows on a fresh `posefleet up` (its gRPC on a free port)."""
    grpc_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"starting posefleet up ({name})")
        with posefleet_stack(tmp, name, GRPC_PORT=str(grpc_port), **env) as base:
            target = f"127.0.0.1:{grpc_port}"
            return oip_rows(base, target, photo, concurrencies, requests, rounds, model)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few requests per row")
    parser.add_argument("--requests", type=int, default=40, help="requests per pose row")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per row")
    parser.add_argument("--concurrency", type=int, default=8, help="the saturated rows' clients")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 4
    c = args.concurrency
    pose = on_stack("oip", MODEL, photos()[0], [1, c], args.requests, args.rounds)
    report(pose, f"{MODEL}: V2 (perf_analyzer) vs the job API (hey), same photo")
    # The no-op pipeline: nothing but the transport, so any cost of the protocol shows
    tiny = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    noop_file = str(ROOT / "loadtest" / "noop-pipelines.yaml")
    noop = on_stack(
        "oip-noop",
        "noop",
        tiny,
        [4 * c],
        10 * args.requests,
        args.rounds,
        POSEFLEET_PIPELINES_FILE=noop_file,
    )
    report(noop, "transport ceiling: a no-op stage and an 8x8 PNG")
    rows = pose + noop
    ratios = [
        r.images_per_s / b.images_per_s
        for r in rows
        for b in rows
        if b.name == JOB_API and r.name != JOB_API and b.concurrency == r.concurrency
    ]
    console.print(f"V2 img/s / job API img/s: median {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
