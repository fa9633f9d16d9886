"""The no-op transport ceiling, variant against variant, interleaved: finished jobs/s through
gateway + Redis + DAG step + a no-op stage, driven by ``hey`` with ``Prefer: wait``.

    python -m loadtest.ceiling --variant now --variant "2 gateways:POSEFLEET_GATEWAY_PROCESSES=2"
    python -m loadtest.ceiling --variant "before:@/tmp/before" --variant now   # another checkout

A variant is ``name[:@checkout][:KEY=VALUE ...]``: its stack is ``posefleet up`` run from that
checkout (default: this one) with that environment. Round by round every variant gets a fresh
stack (A B C A B C ...); the table gives the best and median jobs/s and the latencies of the best
round, so before/after ratios are like for like on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from loadtest.hey import Row, hey
from loadtest.stacks import ROOT, local_stack
from services.cli.redis_server import free_port

console = Console(stderr=True)
NOOP = ROOT / "loadtest" / "noop-pipelines.yaml"


@dataclass
class Variant:
    name: str
    checkout: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, *parts = text.split(":")
        variant = cls(name)
        for part in parts:
            if part.startswith("@"):
                variant.checkout = Path(part[1:]).resolve()
            else:
                key, _, value = part.partition("=")
                variant.env[key] = value
        return variant


def run_once(variant: Variant, tmp: Path, concurrency: int, seconds: float) -> Row:
    port = free_port()
    env = {
        "POSEFLEET_CACHE_DIR": str(tmp),
        "POSEFLEET_REDIS_URL": "",
        "POSEFLEET_PIPELINES_FILE": str(NOOP),
        **variant.env,
    }
    tiny = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    url = f"http://127.0.0.1:{port}/v1/pipelines/noop/jobs"
    log = tmp / f"{variant.name.replace(' ', '-')}.log"
    with local_stack(port, log, "--no-build", env=env, root=variant.checkout):
        wait = {"prefer": "wait=60"}
        hey(url, tiny, name="warm-up", concurrency=concurrency, duration_s=1.0, headers=wait)
        return hey(
            url,
            tiny,
            name=variant.name,
            concurrency=concurrency,
            duration_s=seconds,
            content_type="image/png",
            headers=wait,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    variants = [Variant.parse(v) for v in args.variant]
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for variant in variants:
                row = run_once(variant, Path(tmp), args.concurrency, args.duration)
                console.print(f"round {r + 1}: {variant.name}: {row.images_per_s:.0f} jobs/s")
                variant.rows.append(row)
    load.append(os.getloadavg())
    table = Table(title=f"no-op ceiling, {args.concurrency} connections, {args.rounds} rounds")
    for column in ("variant", "best jobs/s", "median jobs/s", "vs first", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    first = max(r.images_per_s for r in variants[0].rows)
    for variant in variants:
        best = max(variant.rows, key=lambda r: r.images_per_s)
        median = statistics.median(r.images_per_s for r in variant.rows)
        table.add_row(
            variant.name,
            f"{best.images_per_s:.0f}",
            f"{median:.0f}",
            f"{best.images_per_s / first:.2f}x",
            f"{best.pct(50):.1f}",
            f"{best.pct(99):.1f}",
        )
    Console(width=140).print(table)
    console.print(f"load average before / after: {load[0]} / {load[1]}")


if __name__ == "__main__":
    main()
