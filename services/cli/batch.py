"""``posefleet submit VIDEO|ZIP``: a batch with a progress bar, results per frame, and an
annotated video."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli.client import JobClient, JobClientError
from services.cli.draw import draw_people
from services.core.jobs import is_terminal


def submit_batch(
    path: Path,
    pipeline: str,
    url: str,
    api_key: str | None,
    frame_stride: int,
    max_frames: int | None,
    timeout_s: float,
    draw: Path | None,
    as_json: bool,
    console: Console,
    output: Console,
) -> int:
    try:
        with JobClient(url, api_key) as client:
            batch = client.submit_batch(pipeline, path.read_bytes(), frame_stride, max_frames)
            state = _follow(client, batch["id"], timeout_s, console)
            results = client.batch_results(batch["id"])
    except JobClientError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if as_json:
        for line in results:
            print(json.dumps(line))
    else:
        output.print(
            f"batch {batch['id']} ({pipeline}, {batch['kind']}): {state['status']}, "
            f"{state['done']} frames done, {state['failed']} failed"
        )
        if state.get("error"):  # why the whole batch failed, written for users
            output.print(f"  {state['error']['message']} ({state['error']['code']})")
        for line in results:
            where = line.get("name") or f"{line['timestamp_ms']:.0f} ms"
            found = (
                f"{len(line['people'])} people"
                if "people" in line
                else line.get("label") or line.get("error")
            )
            output.print(f"  frame {line['frame']:>4} ({where}): {found}")
    if draw is not None:
        if batch["kind"] != "video":
            console.print("--draw writes a video; this batch is a zip of images")
        else:
            written = write_annotated(path, draw, frame_stride, results)
            console.print(f"wrote {draw} ({written} frames)")
    return 0 if state["status"] == "succeeded" and not state["failed"] else 1


def _follow(client: JobClient, batch_id: str, timeout_s: float, console: Console) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"batch {batch_id[:8]}", total=None)
        while True:
            state = client.batch(batch_id)
            progress.update(
                task,
                total=state["total"],
                completed=state["done"] + state["failed"],
                description=f"batch {batch_id[:8]} {state['status']}",
            )
            if is_terminal(state["status"]) or time.monotonic() > deadline:
                return state
            time.sleep(0.5)  # poll interval of the progress bar


def write_annotated(
    video: Path, out: Path, frame_stride: int, results: list[dict[str, Any]]
) -> int:
    """Re-read the video with the same stride and draw each frame's people on it."""
    by_frame = {r["frame"]: r for r in results}
    capture = cv2.VideoCapture(str(video))
    fps = (capture.get(cv2.CAP_PROP_FPS) or 10.0) / frame_stride
    writer = None
    position = written = 0
    try:
        while written < len(by_frame) and capture.grab():
            if position % frame_stride == 0:
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                people = by_frame.get(written, {}).get("people", [])
                rgb = draw_people(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), people)
                if writer is None:
                    writer = cv2.VideoWriter(
                        str(out),
                        cv2.VideoWriter_fourcc(*"MJPG"),
                        max(fps, 1.0),
                        (rgb.shape[1], rgb.shape[0]),
                    )
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                written += 1
            position += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return written
