"""Does the same handler cost more inside a worker than in a plain process, and why?

    python -m loadtest.inworker [--rounds 3] [--jobs 15]

For each onnxruntime thread setting (threads per pool, spinning, and onnxruntime's own default,
which pins each pool thread to a core) it measures the detector's handler (decode, prepare,
``session.run``, decode boxes) on one single-person photo:

  model         the CenterNet session alone, in a plain process
  plain         DetectorHandler alone, back to back, in a plain process
  plain+pose    DetectorHandler then PoseHandler, alternately, in one plain process
  worker N idle a real ``posefleet worker`` process (compute_ms of the job record) with N stage
                workers alive; only the detector gets work (jobs of a detect-only pipeline)
  worker N busy the same processes serving the pose pipeline at concurrency 1: the pose worker
                runs between two detector batches, as under ``posefleet up``
  saturated     the detector + pose workers serving a queued backlog of pose jobs (jobs/s)

N = 1 (detector), 2 (+ pose), 6 (every stage ``posefleet up`` starts). Settings and cells are
interleaved round by round (A B A B ...), so the ratios are like for like on a shared machine;
each cell reports its median over the rounds' medians and the spread. ``cpu ms/img`` is the CPU
time the measuring processes burnt per image (all their threads), which shows spinning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import yaml
from rich.console import Console
from rich.table import Table

from loadtest.photos import photos
from loadtest.stacks import ROOT
from services.cli.local import wait_for_workers
from services.cli.redis_server import start_redis
from services.core import keys
from services.core.dag import DagSteps
from services.core.jobs import job_view
from services.core.pipeline import load_pipelines

console = Console(stderr=True)
SIX_STAGES = ("detector", "pose", "multipose", "classifier-a", "classifier-b", "combine")
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Threads:
    """One onnxruntime thread setting, as the POSEFLEET_* environment sets it."""

    name: str
    threads: int
    spinning: str

    def env(self) -> dict[str, str]:
        return {
            "POSEFLEET_INTRA_OP_THREADS": str(self.threads),
            "POSEFLEET_INTER_OP_THREADS": "1",
            "POSEFLEET_INTRA_OP_SPINNING": self.spinning,
        }


SETTINGS = (
    Threads("ort default (pinned, spin)", -1, "always"),
    Threads("2 threads, spin", 2, "always"),
    Threads("2 threads, spin in run", 2, "run"),
    Threads("2 threads, no spin", 2, "off"),
    Threads("1 thread", 1, "off"),
)


def photo() -> bytes:
    return photos()[0]


def cpu_seconds(pids: list[int]) -> float:
    """user + system time of these processes, all threads (from /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * _TICK_S


def pinned_threads(pids: list[int]) -> tuple[int, int]:
    """(threads pinned to a single CPU, all threads) of these processes: onnxruntime's default
    pins each pool thread to a core, and to the same cores in every process."""
    pinned = total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            status = (task / "status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list"))
            allowed = line.split()[1]
            pinned += "-" not in allowed and "," not in allowed
            total += 1
    return pinned, total


# ---- the plain process: handlers called directly (a subprocess per setting) ----


def plain_main(calls: int) -> None:
    """Child mode: time the model, the detector handler alone, and detector + pose alternately;
    print one JSON line."""
    from loadtest.direct import DirectPose, run_handler
    from services.core.handler import Task

    direct = DirectPose(ort_default=False)
    detector, pose, run = direct.detector, direct.pose, run_handler
    image = photo()
    detect_task = Task("plain", "detect", {"image": image})
    feeds = direct.feeds(image).detector
    pid = [os.getpid()]
    out: dict[str, list[float]] = defaultdict(list)

    def timed(series: list[float], fn):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = fn()
        series.append((time.perf_counter() - started) * 1000)
        return result

    def call(cell: str, detector_ms: list[float], pose_ms: list[float]) -> None:
        if cell == "model":
            timed(detector_ms, lambda: detector.model.run(feeds))
            return
        boxes = timed(detector_ms, lambda: run(detector, detect_task))["boxes"]
        if cell == "plain+pose":
            keypoints = Task("plain", "keypoints", {"image": image, "boxes": boxes})
            timed(pose_ms, lambda: run(pose, keypoints))

    for cell in ("model", "plain", "plain+pose"):
        for _ in range(2):  # warm-up, not kept
            call(cell, [], [])
        cpu0 = cpu_seconds(pid)
        for _ in range(calls):
            call(cell, out[cell], out["plain+pose: pose"])
        out[cell + " cpu"] = [(cpu_seconds(pid) - cpu0) * 1000 / calls]
    print(json.dumps(out))


def plain_cell(setting: Threads, calls: int) -> dict[str, list[float]]:
    env = {**os.environ, **setting.env()}
    argv = [sys.executable, "-m", "loadtest.inworker", "--plain", str(calls)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- real worker processes on a private Redis ----


def pipelines_file(directory: Path) -> Path:
    """The repository's pipelines plus a detect-only one (the detector alone gets work)."""
    config = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    config["pipelines"]["detect-only"] = {
        "nodes": {"detect": {"stage": "detector", "inputs": {"image": "$request.image"}}},
        "outputs": {"boxes": "detect.boxes"},
    }
    path = directory / "pipelines.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def workers(
    stages: tuple[str, ...], setting: Threads, redis_url: str, pipelines: Path
) -> Iterator[list[int]]:
    env = {
        **os.environ,
        **setting.env(),
        "POSEFLEET_REDIS_URL": redis_url,
        "POSEFLEET_PIPELINES_FILE": str(pipelines),
        "POSEFLEET_METRICS_PORT": "0",
    }
    procs = {
        stage: subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", stage],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for stage in stages
    }
    try:
        wait_for_workers(redis_url, {s: (s, p.pid) for s, p in procs.items()}, timeout_s=180)
        yield [p.pid for p in procs.values()]
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)


class Driver:
    """Submits jobs straight into Redis (no gateway) and waits for each on the events channel."""

    def __init__(self, client: redis.Redis, pipelines: Path) -> None:
        self.client = client
        self.steps = DagSteps(client)
        self.specs = load_pipelines(pipelines).pipelines
        self.events = client.pubsub(ignore_subscribe_messages=True)
        self.events.subscribe(keys.EVENTS_CHANNEL)

    def submit(self, pipeline: str, image: bytes) -> str:
        job_id = str(uuid.uuid4())
        self.steps.create(
            job_id, self.specs[pipeline], image, {"tenant": "bench"}, ttl_s=600, deadline_s=600
        )
        return job_id

    def wait(self, pending: set[str]) -> None:
        deadline = time.monotonic() + 120
        while pending:
            message = self.events.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None and time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} jobs did not finish")
            if message is not None:
                pending.discard(message["data"].decode())

    def compute_ms(self, job_id: str) -> dict[str, float]:
        view = job_view(self.client.hgetall(keys.job(job_id)))
        assert view["status"] == "succeeded", view
        return {node: n["compute_ms"] for node, n in view["nodes"].items()}

    def one_by_one(self, pipeline: str, image: bytes, jobs: int, pids: list[int]):  # type: ignore[no-untyped-def]
        """Concurrency 1: each job submitted after the last one ended; per-node compute_ms."""
        for _ in range(2):  # warm-up
            self.wait({self.submit(pipeline, image)})
        cpu0 = cpu_seconds(pids)
        out: dict[str, list[float]] = defaultdict(list)
        for _ in range(jobs):
            job_id = self.submit(pipeline, image)
            self.wait({job_id})
            for node, ms in self.compute_ms(job_id).items():
                out[node].append(ms)
        out["cpu"] = [(cpu_seconds(pids) - cpu0) * 1000 / jobs]
        return out

    def saturated(self, image: bytes, jobs: int) -> float:
        """A queued backlog of pose jobs served as fast as the workers can: jobs/s."""
        started = time.perf_counter()
        self.wait({self.submit("pose", image) for _ in range(jobs)})
        return jobs / (time.perf_counter() - started)


def worker_cells(
    setting: Threads, driver: Driver, redis_url: str, pipelines: Path, jobs: int
) -> dict[str, list[float]]:
    image = photo()
    out: dict[str, list[float]] = {}
    for stages in (SIX_STAGES[:1], SIX_STAGES[:2], SIX_STAGES):
        n = len(stages)
        with workers(stages, setting, redis_url, pipelines) as pids:
            idle = driver.one_by_one("detect-only", image, jobs, pids)
            out[f"worker {n} idle"], out[f"worker {n} idle cpu"] = idle["detect"], idle["cpu"]
            if n > 1:
                busy = driver.one_by_one("pose", image, jobs, pids)
                out[f"worker {n} busy"], out[f"worker {n} busy cpu"] = busy["detect"], busy["cpu"]
                out[f"worker {n} busy: pose"] = busy["keypoints"]
            if n == len(SIX_STAGES):
                pinned, total = pinned_threads(pids)
                out["pinned"], out["threads"] = [pinned], [total]
            if n == 2:
                out["saturated jobs/s"] = [driver.saturated(image, 4 * jobs)]
    return out


CELLS = (
    "model",
    "plain",
    "plain+pose",
    "worker 1 idle",
    "worker 2 idle",
    "worker 2 busy",
    "worker 6 idle",
    "worker 6 busy",
)


def report(results: dict[str, dict[str, list[float]]], rounds: int) -> None:
    """Per cell: the best and the median of the rounds' medians (the best is the least disturbed
    by other load on a shared machine), and for the worker cells the ratio of their best to the
    same setting's plain process (and to the plain process with onnxruntime's defaults)."""

    def best(name: str, cell: str, most: bool = False) -> float:
        return (max if most else min)(results[name][cell])

    def median(name: str, cell: str) -> float:
        return statistics.median(results[name][cell])

    default_plain = best(SETTINGS[0].name, "plain")
    table = Table(title=f"detector handler ms: best / median of {rounds} interleaved rounds")
    for column in ("cell", *[s.name for s in SETTINGS]):
        table.add_column(column, justify="right")
    for cell in CELLS:
        row = [cell]
        for setting in SETTINGS:
            low, mid = best(setting.name, cell), median(setting.name, cell)
            text = f"{low:.1f} / {mid:.1f}"
            if cell.startswith("worker"):
                plain = best(setting.name, "plain")
                text += f"  {low / plain:.2f}x ({low / default_plain:.2f}x)"
            row.append(text)
        table.add_row(*row)
    for extra in ("plain+pose: pose", "worker 2 busy: pose", "worker 6 busy: pose"):
        table.add_row(
            extra, *[f"{best(s.name, extra):.1f} / {median(s.name, extra):.1f}" for s in SETTINGS]
        )
    for cpu in ("model cpu", "plain cpu", "worker 2 busy cpu", "worker 6 busy cpu"):
        table.add_row(
            cpu.replace("cpu", "cpu ms/img"),
            *[f"{best(s.name, cpu):.1f} / {median(s.name, cpu):.1f}" for s in SETTINGS],
        )
    cell = "saturated jobs/s"
    table.add_row(
        "saturated jobs/s, 2 workers (most / median)",
        *[f"{best(s.name, cell, most=True):.2f} / {median(s.name, cell):.2f}" for s in SETTINGS],
    )
    table.add_row(
        "threads pinned to one CPU, 6 workers",
        *[f"{best(s.name, 'pinned'):.0f} of {best(s.name, 'threads'):.0f}" for s in SETTINGS],
    )
    Console(width=220).print(table)
    console.print(
        "worker cells: best / median ms, then best / the same setting's best plain process "
        "(and / the best plain process with onnxruntime's defaults)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=15, help="measured calls per cell")
    parser.add_argument("--plain", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.plain is not None:
        plain_main(args.plain)
        return
    console.print(f"load average before: {os.getloadavg()}")
    # per setting, per cell: one median per round
    results: dict[str, dict[str, list[float]]] = {s.name: defaultdict(list) for s in SETTINGS}
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        with tempfile.TemporaryDirectory() as tmp:
            pipelines = pipelines_file(Path(tmp))
            driver = Driver(client, pipelines)
            for r in range(args.rounds):
                order = SETTINGS[r % len(SETTINGS) :] + SETTINGS[: r % len(SETTINGS)]
                for setting in order:
                    console.print(f"round {r + 1}/{args.rounds}: {setting.name}")
                    cells = plain_cell(setting, args.jobs)
                    cells |= worker_cells(setting, driver, server.url, pipelines, args.jobs)
                    for cell, series in cells.items():
                        results[setting.name][cell].append(statistics.median(series))
    finally:
        server.stop()
    console.print(f"load average after: {os.getloadavg()}")
    report(results, args.rounds)


if __name__ == "__main__":
    main()
