"""``posefleet batches get|results``: a batch's progress and its per-frame results."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from services.cli.output import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    RetryOption,
    UrlOption,
    client,
    errors_as_one_line,
    print_json,
    print_rows,
)

app = typer.Typer(no_args_is_help=True, help="Read video/zip batches and their results.")
BatchId = Annotated[str, typer.Argument(help="batch id (from submit VIDEO|ZIP)")]
RESULT_COLUMNS = ("frame", "at", "status", "found")


def frame_row(line: dict[str, Any]) -> dict[str, Any]:
    """One result line as a table row: where the frame is and what the pipeline found."""
    if line.get("name") is not None:
        at = line["name"]
    elif line.get("timestamp_ms") is not None:
        at = f"{line['timestamp_ms'] / 1000:.2f} s"
    else:
        at = None
    if line["status"] != "succeeded":
        found = (line.get("error") or {}).get("code", line["status"])
    elif "people" in line:
        found = f"{len(line['people'])} {'person' if len(line['people']) == 1 else 'people'}"
    else:
        found = line.get("label")
    return {"frame": line["frame"], "at": at, "status": line["status"], "found": found}


@app.command()
def get(
    batch_id: BatchId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """Status and progress of a batch (frames done, failed, total)."""
    with errors_as_one_line(), client(url, api_key, retry) as api:
        batch = api.batch(batch_id)
    if as_json:
        print_json(batch)
        return
    total = "?" if batch["total"] is None else batch["total"]
    print(
        f"batch {batch['id']} ({batch['pipeline']}, {batch['kind']}): {batch['status']}, "
        f"{batch['done']} done, {batch['failed']} failed of {total} "
        f"({batch['submitted']} submitted)"
    )
    if batch.get("error"):
        print(f"error {batch['error']['code']}: {batch['error']['message']}")


@app.command()
def results(
    batch_id: BatchId,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """Every finished frame's result in frame order; ``--json`` prints the API's JSON Lines
    (one object per frame, the pipeline's outputs included)."""
    with errors_as_one_line(), client(url, api_key, retry) as api:
        lines = api.batch_results(batch_id)
    if as_json:
        for line in lines:
            print(json.dumps(line))
        return
    print_rows([frame_row(line) for line in lines], RESULT_COLUMNS, f"batch {batch_id}", False)
