"""``posefleet models pull URL --to DIR``: the init container's command (services.factory.pull).
Progress goes to stderr one line per file, which reads the same in a terminal and in pod logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def models_pull(
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix holding <model>/<version>/…")],
    to: Annotated[Path, typer.Option(help="the folder to fill (the workers' model root)")],
    endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="AWS_ENDPOINT_URL", help="S3-compatible server, e.g. MinIO's URL"),
    ] = None,
    region: Annotated[str | None, typer.Option(envvar="AWS_REGION")] = None,
) -> None:
    """Copy a model repository from an S3-compatible bucket and verify every sha256."""
    from services.core.settings import get_settings
    from services.factory.pull import pull_repository

    to.mkdir(parents=True, exist_ok=True)
    result = pull_repository(
        url,
        to,
        endpoint_url,
        region,
        get_settings().model_pull_concurrency,
        say=lambda line: console.print(line, markup=False, highlight=False),
    )
    console.print(
        f"pulled {result['files']} files ({result['bytes'] / 1e6:.1f} MB) from {url} into {to}"
    )
