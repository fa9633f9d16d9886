"""``posefleet jobs get|watch|cancel``: one job, read, followed live or canceled."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from services.cli.output import (
    DEFAULT_URL,
    EXIT_NOT_SUCCEEDED,
    ApiKeyOption,
    JsonOption,
    RetryOption,
    UrlOption,
    client,
    errors_as_one_line,
    print_json,
    stderr,
)
from services.core.jobs import is_terminal

app = typer.Typer(no_args_is_help=True, help="Read, follow and cancel jobs.")
JobId = Annotated[str, typer.Argument(help="job id (from submit)")]
VISIBLE = 0.3  # keypoint score counted as visible in the text summary, as the console's default


def describe(job: dict[str, Any]) -> list[str]:
    """The job as plain lines: status and duration, one line per node, what it found."""
    took = ""
    if is_terminal(job["status"]):
        ms = _epoch_ms(job["updated_at"]) - _epoch_ms(job["created_at"])
        took = f" in {ms} ms"
    lines = [f"job {job['id']} ({job['pipeline']}): {job['status']}{took}"]
    width = max(len(name) for name in job["nodes"])
    for name, node in job["nodes"].items():
        parts = [f"{name:<{width}}  {node['status']:<9}"]
        if node["queue_ms"] is not None:
            parts.append(f"queue {node['queue_ms']} ms")
        if node["compute_ms"] is not None:
            parts.append(f"compute {node['compute_ms']:g} ms")
        if node["attempts"] > 1:
            parts.append(f"attempts {node['attempts']}")
        if node["worker"]:
            parts.append(f"on {node['worker']} ({node['pool']})")
        lines.append("  " + "  ".join(parts))
    if job.get("error"):
        error = job["error"]
        lines.append(f"error {error['code']}: {error['message']}")
    lines += result_lines(job.get("result"), job.get("image"))
    return lines


def result_lines(result: dict[str, Any] | None, image: dict[str, Any] | None) -> list[str]:
    if not result:
        return []
    lines = []
    if "people" in result:
        size = f" in {image['width']}x{image['height']} px" if image else ""
        lines.append(f"{len(result['people'])} people{size}")
        for i, person in enumerate(result["people"], 1):
            visible = sum(k["score"] >= VISIBLE for k in person["keypoints"])
            box = ", ".join(f"{v:.0f}" for v in person["box"])
            lines.append(
                f"  #{i} score {person['score']:.2f}  box {box}  "
                f"{visible}/17 keypoints >= {VISIBLE}"
            )
    if "label" in result:
        score = f" {result['score']:.3f}" if "score" in result else ""
        lines.append(f"label {result['label']}{score}")
        for member in result.get("members", []):
            lines.append(f"  {member['model']} votes {member['label']} {member['score']:.3f}")
    return lines


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def node_progress(data: dict[str, Any]) -> str:
    """One stderr line per node event of a watched job."""
    line = f"{data['node']} {data['status']}"
    if data["attempts"] > 1:
        line += f" (attempt {data['attempts']})"
    if data["status"] == "succeeded" and data["compute_ms"] is not None:
        line += f": queue {data['queue_ms']} ms, compute {data['compute_ms']:g} ms"
    return line


@app.command()
def get(
    job_id: JobId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """The job's status, per-node timings and, once finished, its result or error."""
    with errors_as_one_line(), client(url, api_key, retry) as api:
        job = api.get(f"/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        print("\n".join(describe(job)))


@app.command()
def watch(
    job_id: JobId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """Follow the job live (server-sent events) until it ends: each node as it starts and
    finishes on stderr, then the finished job. ``--json`` prints every event as a JSON line.
    Exits 1 unless the job succeeded."""
    job: dict[str, Any] | None = None
    with errors_as_one_line(), client(url, api_key, retry) as api:
        for event, data in api.events(f"/v1/jobs/{job_id}/events"):
            if as_json:
                print(json.dumps({"event": event, "data": data}), flush=True)
            elif event == "state":
                stderr.print(f"job {job_id} {data['status']}")
            elif event == "node":
                stderr.print(node_progress(data))
            elif event == "problem":
                stderr.print(f"[red]error:[/red] {data['code']}: {data['detail']}")
            if event in ("state", "end"):
                job = data
    if job is None or not is_terminal(job["status"]):
        raise typer.Exit(EXIT_NOT_SUCCEEDED)
    if not as_json:
        print("\n".join(describe(job)))
    if job["status"] != "succeeded":
        raise typer.Exit(EXIT_NOT_SUCCEEDED)


@app.command()
def cancel(
    job_id: JobId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """Cancel a queued or running job (a finished one cannot be: HTTP 409, exit 2)."""
    with errors_as_one_line(), client(url, api_key, retry) as api:
        job = api.cancel(job_id)
    if as_json:
        print_json(job)
    else:
        print(f"job {job['id']} canceled")
