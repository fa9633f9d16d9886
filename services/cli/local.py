"""``posefleet up``: the whole system on one machine — Redis, gateway, a worker per stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from services.core.pipeline import load_pipelines
from services.core.settings import get_settings


def build_models_with_progress(console: Console, names: list[str] | None) -> list[Any]:
    from services.core.models.build import build_models

    settings = get_settings()
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

        return build_models(names, settings.model_root, settings.cache_dir, report)


def run_local_system(
    console: Console,
    *,
    host: str,
    port: int,
    redis_url: str | None,
    workers_per_stage: int,
    build: bool,
) -> int:
    from services.cli.supervisor import ProcessSpec, Supervisor
    from services.core.redis_server import start_redis

    settings = get_settings()
    config = load_pipelines(settings.pipelines_file)
    stages = sorted({s for p in config.pipelines.values() for s in p.stages()})
    if build:
        build_models_with_progress(
            console, sorted({config.stages[s].model for s in stages if config.stages[s].model})
        )

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
        "PYTHONUNBUFFERED": "1",
    }
    supervisor = Supervisor(console)
    try:
        supervisor.start(
            ProcessSpec(
                "gateway",
                [sys.executable, "-m", "services.gateway"],
                env,
                ready_url=f"http://{host}:{port}/readyz",
            )
        )
        for stage in stages:
            for i in range(1, workers_per_stage + 1):
                supervisor.start(
                    ProcessSpec(
                        f"{stage}-{i}", [sys.executable, "-m", "services.cli", "worker", stage], env
                    )
                )
        supervisor.wait_ready(timeout_s=60)
        base = f"http://{host}:{port}"
        console.print(
            f"[bold green]Posefleet is up[/bold green]: {base}  (API docs {base}/docs)\n"
            f"  curl -X POST --data-binary @photo.jpg -H 'Content-Type: image/jpeg' "
            f"-H 'Prefer: wait=10' {base}/v1/pipelines/pose/jobs\n"
            "  Ctrl-C stops everything."
        )
        return supervisor.run_until_stopped()
    finally:
        supervisor.stop_all()
        if local_redis is not None:
            local_redis.stop()
