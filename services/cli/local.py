"""``posefleet up``: the whole system on one machine — Redis, gateway, a worker per stage."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from services.cli.redis_server import free_port
from services.core import keys
from services.core.pipeline import load_pipelines
from services.core.runtime.cpus import available_cpus
from services.core.settings import Settings, get_settings
from services.core.worker import consumer_prefix
from services.factory.catalog import CATALOG


@contextmanager
def step_progress(console: Console) -> Iterator[Callable[[str, float | None], None]]:
    """A spinner/bar for long model commands; yields the ``report(step, fraction)`` callback."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("models", total=None)

        def report(step: str, fraction: float | None = None) -> None:
            progress.update(
                task,
                description=step,
                completed=None if fraction is None else fraction * 100,
                total=None if fraction is None else 100,
            )

        yield report


def build_models_with_progress(console: Console, names: list[str] | None) -> list[Any]:
    from services.factory.build import build_models

    settings = get_settings()
    with step_progress(console) as report:
        return build_models(names, settings.model_root, settings.cache_dir, report)


def ensure_port_free(
    host: str, port: int, what: str = "the gateway", option: str = "--port N or PORT=N"
) -> None:
    """Fail before starting anything, with the fix, rather than after a gateway crash."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"cannot use {host}:{port} for {what} ({exc.strerror}); "
                f"choose another port with {option}"
            ) from None


DEFAULT_GRPC_PORT = 8081


def choose_grpc_port(host: str, wanted: int | None) -> int:
    """The V2 gRPC port: the one asked for (which must be free; 0 = none), else 8081, else
    a free one — a second local stack on the same machine still comes up, and says where."""
    if wanted is not None:
        if wanted:
            ensure_port_free(host, wanted, "V2 gRPC", "--grpc-port N or GRPC_PORT=N (0 = off)")
        return wanted
    try:
        ensure_port_free(host, DEFAULT_GRPC_PORT)
    except RuntimeError:
        return free_port()
    return DEFAULT_GRPC_PORT


def gateway_processes(settings: Settings) -> int:
    """One gateway process per CPU unless POSEFLEET_GATEWAY_PROCESSES says otherwise: on one
    machine the gateway's Python caps the transport (two on two cores carried 1.4x the no-op
    jobs/s of one, docs/performance.md)."""
    if "gateway_processes" in settings.model_fields_set:
        return settings.gateway_processes
    return available_cpus()


def worker_groups(settings: Settings) -> dict[str, str]:
    """Each local worker's instance group, unless the environment sets it: two model copies,
    each with all of the machine's CPUs. With spinning off the oversubscription is cheap: on 2
    cores the pose pipeline served 9% more images saturated than with one copy, for 6% more
    latency at concurrency 1 (one copy per CPU: +19% and +32%; docs/performance.md). A pod
    gets its own CPUs instead, so the chart keeps one copy with the pod's CPU limit."""
    env = {}
    if "instances" not in settings.model_fields_set:
        env["POSEFLEET_INSTANCES"] = "2"
    if "intra_op_threads" not in settings.model_fields_set:
        env["POSEFLEET_INTRA_OP_THREADS"] = str(available_cpus())
    return env


def wait_for_workers(redis_url: str, workers: dict[str, tuple[str, int]], timeout_s: float) -> None:
    """A stage worker is ready once it has joined its stage's consumer group, i.e. after its
    model loaded. ``workers`` maps a process name to its (stage, pid)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    pending = dict(workers)
    try:
        while pending:
            for name, (stage, pid) in list(pending.items()):
                try:
                    consumers = client.xinfo_consumers(keys.stream(stage), keys.group(stage))
                except redis.ResponseError:  # the group does not exist yet
                    continue
                if any(c["name"].decode().startswith(consumer_prefix(pid)) for c in consumers):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout_s:.0f} s: {sorted(pending)}")
            time.sleep(0.1)  # poll interval while models load
    finally:
        client.close()


def run_local_system(
    console: Console,
    *,
    host: str,
    port: int,
    redis_url: str | None,
    workers_per_stage: int,
    build: bool,
    grpc_port: int | None = None,
) -> int:
    from services.cli.redis_server import start_redis
    from services.cli.supervised import supervised
    from services.cli.supervisor import ProcessSpec, RestartPolicy, Supervisor

    settings = get_settings()
    ensure_port_free(host, port)
    grpc_port = choose_grpc_port(host, grpc_port)
    config = load_pipelines(settings.pipelines_file)
    stages = sorted({s for p in config.pipelines.values() for s in p.stages()})
    # catalog models only: imported ones are in the repository already
    catalog_models = {config.stages[s].model for s in stages} & set(CATALOG)
    if build and catalog_models:
        build_models_with_progress(console, sorted(catalog_models))

    local_redis = None
    if redis_url is None:
        data_dir = Path(settings.cache_dir) / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        local_redis = start_redis(data_dir=data_dir, order=("path", "embedded"), appendonly=True)
        redis_url = local_redis.url
        console.print(f"redis: {local_redis.kind} server at {redis_url} (data in {data_dir})")
    env = {
        "POSEFLEET_REDIS_URL": redis_url,
        "HOST": host,
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "PYTHONUNBUFFERED": "1",
    }
    policy = RestartPolicy(
        settings.up_restart_initial_s, settings.up_restart_max_s, settings.up_restart_stable_s
    )
    supervisor = Supervisor(console, settings.up_stop_grace_s, policy)
    try:
        processes = {"POSEFLEET_GATEWAY_PROCESSES": str(gateway_processes(settings))}
        supervisor.start(
            ProcessSpec(
                "gateway",
                supervised("services.gateway"),
                {**env, **processes},
                ready_url=f"http://{host}:{port}/readyz",
            )
        )
        workers = {}
        groups = worker_groups(settings)
        for stage in stages:
            for i in range(1, workers_per_stage + 1):
                name = f"{stage}-{i}"
                argv = supervised("services.cli", "worker", stage)
                ports = {"POSEFLEET_METRICS_PORT": str(free_port())}  # /metrics, /healthz
                supervisor.start(ProcessSpec(name, argv, {**env, **groups, **ports}))
                workers[name] = (stage, supervisor.pids()[name])
        supervisor.start(
            ProcessSpec("control-1", supervised("services.cli", "control-worker"), env)
        )
        supervisor.wait_ready(timeout_s=60)
        with console.status("waiting for the workers to load their models"):
            wait_for_workers(redis_url, workers, timeout_s=120)
        base = f"http://{host}:{port}"
        v2 = f"  V2 (Open Inference Protocol): {base}/v2, gRPC {host}:{grpc_port}\n"
        console.print(
            f"[bold green]Posefleet is up[/bold green]: {base}  (API docs {base}/docs)\n"
            f"  console: open {base}/ in a browser and drop a photo\n"
            f"  curl -X POST --data-binary @photo.jpg -H 'Content-Type: image/jpeg' "
            f"-H 'Prefer: wait=10' {base}/v1/pipelines/pose/jobs\n"
            f"{v2 if grpc_port else ''}"
            "  A crashed process is restarted; Ctrl-C stops everything."
        )
        return supervisor.run_until_stopped()
    finally:
        supervisor.stop_all()
        if local_redis is not None:
            local_redis.stop()
