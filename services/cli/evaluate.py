"""``posefleet eval``: a client in the spirit of the OVMS sample client — send every image of a
folder through a pipeline and report latency percentiles, throughput and, given expected
labels, accuracy."""

from __future__ import annotations

import csv
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.cli.client import JobClient, JobClientError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class Outcome:
    image: str
    seconds: float
    job: dict[str, Any] | None
    error: str | None = None


def read_expected(path: Path) -> dict[str, set[str]]:
    """CSV rows ``file,label`` where label may list alternatives as ``a|b`` (e.g. cat breeds)."""
    with path.open(newline="") as f:
        return {
            row[0].strip(): {x.strip() for x in row[1].split("|")}
            for row in csv.reader(f)
            if len(row) >= 2 and not row[0].startswith("#")
        }


def run_eval(
    url: str,
    api_key: str | None,
    folder: Path,
    pipeline: str,
    concurrency: int,
    timeout_s: float,
    console: Console,
) -> list[Outcome]:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise RuntimeError(f"no .jpg/.png/.webp images in {folder}")

    def one(path: Path) -> Outcome:
        started = time.perf_counter()
        try:
            with JobClient(url, api_key) as client:
                job = client.submit(pipeline, path.read_bytes(), wait_s=min(timeout_s, 60))
                if job["status"] in ("queued", "running"):
                    job = client.wait(job["id"], timeout_s)
        except JobClientError as exc:
            return Outcome(path.name, time.perf_counter() - started, None, str(exc))
        return Outcome(path.name, time.perf_counter() - started, job)

    outcomes = []
    with (
        Progress(console=console, transient=True) as progress,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        task = progress.add_task(f"{pipeline}: {len(images)} images", total=len(images))
        for outcome in pool.map(one, images):
            outcomes.append(outcome)
            progress.advance(task)
    return outcomes


def report(
    outcomes: list[Outcome], wall_s: float, expected: dict[str, set[str]] | None, output: Console
) -> float | None:
    """Print the summary table; returns accuracy when expected labels were given."""
    done = [o for o in outcomes if o.job and o.job["status"] == "succeeded"]
    latencies = sorted(o.seconds * 1000 for o in done)
    table = Table(title=f"{len(outcomes)} images, {len(done)} succeeded")
    for column in ("min", "p50", "p90", "p99", "max", "img/s"):
        table.add_column(column + (" ms" if column != "img/s" else ""), justify="right")
    if latencies:
        cuts = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else [latencies[0]] * 99
        )
        table.add_row(
            *(f"{v:.1f}" for v in (latencies[0], cuts[49], cuts[89], cuts[98], latencies[-1])),
            f"{len(done) / wall_s:.2f}",
        )
    output.print(table)
    for o in outcomes:
        if o.error or not o.job or o.job["status"] != "succeeded":
            output.print(f"[red]{o.image}[/red]: {o.error or (o.job and o.job.get('error'))}")
    if not expected:
        return None
    scored = [o for o in done if o.image in expected]
    correct = [o for o in scored if o.job["result"].get("label") in expected[o.image]]
    for o in scored:
        mark = "✓" if o in correct else "✗"
        output.print(
            f"{mark} {o.image}: {o.job['result'].get('label')} "
            f"(expected {' | '.join(sorted(expected[o.image]))})"
        )
    accuracy = len(correct) / len(scored) if scored else 0.0
    output.print(f"accuracy: {len(correct)}/{len(scored)} = {accuracy:.1%}")
    return accuracy
