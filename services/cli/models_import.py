"""``posefleet models import PATH --name NAME --task TASK``: a user's ONNX file into the model
repository (services.factory.importer), with the contract of its family as options.

Options left out are worked out from the model where that is safe (layout, output roles, class
count, logits vs probabilities) and printed, so a user sees every choice made for them; the
rest have the defaults of docs/model-families.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
output = Console(soft_wrap=True)
Opt = typer.Option


def floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(v) for v in text.split(",")]


def ids(text: str | None) -> list[int] | None:
    """``0,2,5`` or ranges ``0-16``."""
    if text is None:
        return None
    found: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        found += list(range(int(first), int(last or first) + 1))
    return found


def size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def roles(text: str | None) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in (text or "").split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise typer.BadParameter("expected role=name[,role=name]", param_hint="--outputs")
    return dict(pairs)  # type: ignore[arg-type]


def read_labels(path: Path | None) -> list[str] | None:
    """One class name per line, line 1 = class id 0; blank lines at the end are ignored."""
    return None if path is None else path.read_text().rstrip("\n").split("\n")


def models_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the .onnx file")],
    name: Annotated[str, Opt(help="name in the repository (pipelines.yaml `model:`)")],
    task: Annotated[
        str,
        Opt(help="image-classification | person-detection | object-detection | pose-estimation"),
    ],
    family: Annotated[
        str | None, Opt(help="classification | yolo | ssd | simcc | heatmap (default: guessed)")
    ] = None,
    labels: Annotated[
        Path | None, Opt(exists=True, dir_okay=False, help="class names, one per line, id order")
    ] = None,
    size_: Annotated[
        str | None, Opt("--size", help="WxH to serve a dynamic height/width at, e.g. 640x640")
    ] = None,
    layout: Annotated[str | None, Opt(help="NCHW | NHWC (default: the 3-channel axis)")] = None,
    color: Annotated[str, Opt(help="RGB | BGR: the channel order the model was trained on")] = (
        "RGB"
    ),
    mean: Annotated[str | None, Opt(help="per-channel mean on 0-255 pixels, e.g. 123.675,…")] = (
        None
    ),
    std: Annotated[str | None, Opt(help="per-channel std (default 255,255,255: pixels / 255)")] = (
        None
    ),
    resize: Annotated[str, Opt(help="detectors: letterbox (centred, grey) | stretch")] = (
        "letterbox"
    ),
    crop_ratio: Annotated[float, Opt(help="classifiers: centre crop / shorter side")] = 0.875,
    output_name: Annotated[str | None, Opt("--output", help="the output to read")] = None,
    outputs: Annotated[
        str | None, Opt(help="output roles, e.g. boxes=dets,scores=conf,labels=cls or x=..,y=..")
    ] = None,
    classes: Annotated[str | None, Opt(help="class ids to keep, e.g. 0 or 0,2-7")] = None,
    score_activation: Annotated[str | None, Opt(help="none | sigmoid | softmax")] = None,
    box_format: Annotated[str, Opt(help="xyxy | cxcywh | xywh | yxyx")] = "cxcywh",
    normalized: Annotated[
        bool, Opt(help="boxes are fractions of the input size, not input pixels")
    ] = False,
    output_layout: Annotated[str | None, Opt(help="yolo: anchors-first | channels-first")] = None,
    objectness: Annotated[bool | None, Opt(help="yolo: a 5th objectness column")] = None,
    background: Annotated[str, Opt(help="ssd: a no-object class column: none|first|last")] = (
        "none"
    ),
    min_score: Annotated[float | None, Opt(help="detectors: default score threshold")] = None,
    nms_iou: Annotated[float, Opt(help="detectors: NMS IoU")] = 0.5,
    max_detections: Annotated[int, Opt(help="detectors: most boxes per image")] = 100,
    coco17_from: Annotated[
        str | None, Opt(help="pose: the 17 COCO keypoints among the model's, e.g. 0-16")
    ] = None,
    wrap_batch: Annotated[
        bool, Opt(help="wrap a fixed-batch-1 graph in a Scan over a batch axis")
    ] = False,
    licence: Annotated[str, Opt(help="shown by `models list`")] = "",
) -> None:
    """Import an ONNX model as the next version of NAME; refuse what no stage could serve."""
    from services.cli.local import step_progress
    from services.core.settings import get_settings
    from services.factory.importer import ImportOptions, import_model
    from services.factory.layouts import DecoderOptions

    options = ImportOptions(
        task=task,
        family=family,
        size=size(size_),
        layout=layout,
        color=color,
        mean=floats(mean),
        std=floats(std),
        resize=resize,
        crop_ratio=crop_ratio,
        wrap_batch=wrap_batch,
        licence=licence,
        decoder=DecoderOptions(
            output=output_name,
            outputs=roles(outputs),
            labels=read_labels(labels),
            classes=ids(classes),
            score_activation=score_activation,
            box_format=box_format,
            normalized=normalized,
            output_layout=output_layout,
            objectness=objectness,
            background=background,
            min_score=min_score,
            nms_iou=nms_iou,
            max_detections=max_detections,
            coco17_from=ids(coco17_from),
        ),
    )
    with step_progress(console) as report:
        result = import_model(path, name, options, get_settings(), report)
    for note in result["notes"]:
        console.print(f"  {note}")
    wrapped = " (wrapped in a batch Scan)" if result["wrapped_batch"] else ""
    output.print(
        f"imported {result['model']} v{result['version']} ({result['family']}){wrapped}: "
        f"{result['path']}"
    )
