"""What each generic model family can read, checked on an ONNX model before it is imported.

``posefleet models import`` runs the model once and hands this module the concrete shape of
every output (batch first); each family finds its outputs among them, refuses layouts its
decoder cannot read — with what would make them readable — and returns the ``decoder`` section
of model.yaml (the contracts are in docs/model-families.md). Nothing here guesses silently:
every choice it makes is returned, so the import can print it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.core.families import (
    ACTIVATIONS,
    BACKGROUNDS,
    BOX_FORMATS,
    MAX_DETECTIONS,
    YOLO_LAYOUTS,
)
from services.factory.build import ModelBuildError

COCO17_SIZE = 17
TASK_FAMILIES = {
    "image-classification": ("classification",),
    "person-detection": ("yolo", "ssd"),
    "object-detection": ("yolo", "ssd"),
    "pose-estimation": ("simcc", "heatmap"),
}
# Defaults a user can override per model (import options) and per stage (options.min_score).
DEFAULT_MIN_SCORE = {"yolo": 0.25, "ssd": 0.25}


class ImportRefused(ModelBuildError):
    """The model cannot be served as asked; the message says why and what would fix it."""


@dataclass
class DecoderOptions:
    """The decoder-side import options (None = work it out from the model and say so)."""

    output: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # role -> output name (ssd, simcc)
    labels: list[str] | None = None
    classes: list[int] | None = None
    score_activation: str | None = None
    box_format: str = "cxcywh"
    normalized: bool = False
    output_layout: str | None = None
    objectness: bool | None = None
    background: str = "none"
    min_score: float | None = None
    nms_iou: float = 0.5
    max_detections: int = MAX_DETECTIONS
    coco17_from: list[int] | None = None


@dataclass
class Probe:
    """The model as the import saw it: its input size and one real run's output shapes."""

    width: int
    height: int
    shapes: dict[str, tuple[int, ...]]  # output name -> shape of a batch-of-one run
    task: str
    options: DecoderOptions


@dataclass
class Decoded:
    family: str
    decoder: dict[str, Any]
    labels: list[str]
    notes: list[str]  # the choices made on the user's behalf, printed by the import


def _check_choice(what: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ImportRefused(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _describe(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def _one_output(probe: Probe, rank: int, what: str) -> str:
    """The output a one-output family reads: ``--output``, or the model's only one of
    ``rank``."""
    if probe.options.output is not None:
        if probe.options.output not in probe.shapes:
            raise ImportRefused(
                f"--output {probe.options.output}: the model's outputs are "
                f"{_describe(probe.shapes)}"
            )
        candidates = [probe.options.output]
    else:
        candidates = [n for n, s in probe.shapes.items() if len(s) == rank]
    if len(candidates) != 1:
        raise ImportRefused(
            f"{what} reads one output of rank {rank}; the model's outputs are "
            f"{_describe(probe.shapes)}: name the one to read with --output"
        )
    name = candidates[0]
    if len(probe.shapes[name]) != rank:
        raise ImportRefused(
            f"{what} reads an output of rank {rank}, but {name} has shape "
            f"{list(probe.shapes[name])}"
        )
    return name


def _roles(probe: Probe, wanted: dict[str, tuple[str, ...]], what: str) -> dict[str, str]:
    """Outputs by role: ``--outputs role=name``, else the one output whose name contains one of
    the role's words (``boxes``, ``scores`` …); ambiguity is refused, not guessed."""
    found = dict(probe.options.outputs)
    unknown = set(found) - set(wanted)
    if unknown:
        raise ImportRefused(f"--outputs: {what} has no role(s) {sorted(unknown)}")
    for role, name in found.items():
        if name not in probe.shapes:
            raise ImportRefused(
                f"--outputs {role}={name}: the model's outputs are {_describe(probe.shapes)}"
            )
    for role, words in wanted.items():
        if role in found:
            continue
        matches = [
            n
            for n in probe.shapes
            if n not in found.values() and any(w in n.lower() for w in words)
        ]
        if len(matches) == 1:
            found[role] = matches[0]
    return found


def _labels(probe: Probe, classes: int, notes: list[str]) -> list[str]:
    labels = probe.options.labels
    if labels is None:
        if probe.task == "person-detection" and classes == 1:
            notes.append("labels: ['person'] (one class, task person-detection)")
            return ["person"]
        notes.append(f"labels: class ids 0-{classes - 1} (give --labels FILE for names)")
        return [str(i) for i in range(classes)]
    if len(labels) != classes:
        raise ImportRefused(
            f"--labels has {len(labels)} names but the model scores {classes} classes"
        )
    return labels


def _detection_common(probe: Probe, labels: list[str], notes: list[str]) -> dict[str, Any]:
    options = probe.options
    _check_choice("--box-format", options.box_format, BOX_FORMATS)
    _check_choice("--score-activation", options.score_activation, ACTIVATIONS)
    classes = options.classes
    if classes is None and probe.task == "person-detection":
        person = labels.index("person") if "person" in labels else 0
        classes = [person]
        notes.append(f"classes: [{person}] ({labels[person]!r}; task person-detection)")
    for k in classes or []:
        if not 0 <= k < len(labels):
            raise ImportRefused(
                f"--classes: {k} is not a class id of the model (0-{len(labels) - 1})"
            )
    return {
        "box_format": options.box_format,
        "normalized": options.normalized,
        "classes": classes,
        "score_activation": options.score_activation or "none",
        "nms_iou": options.nms_iou,
        "max_detections": options.max_detections,
    }


def classification(probe: Probe) -> Decoded:
    _check_choice("--score-activation", probe.options.score_activation, ACTIVATIONS)
    name = _one_output(probe, 2, "image-classification")
    notes: list[str] = []
    classes = probe.shapes[name][1]
    labels = _labels(probe, classes, notes)
    return Decoded(
        "classification",
        {"output": name, "score_activation": probe.options.score_activation},
        labels,
        notes,
    )


def yolo(probe: Probe) -> Decoded:
    """``[batch, anchors, 4 + classes]`` or its transpose; ``5 + classes`` with objectness."""
    options = probe.options
    _check_choice("--output-layout", options.output_layout, YOLO_LAYOUTS)
    name = _one_output(probe, 3, "the yolo family")
    _, d1, d2 = probe.shapes[name]
    notes: list[str] = []
    extra = (1 if options.objectness else 0) if options.objectness is not None else None
    layout = options.output_layout
    if layout is None:
        if options.labels is not None:  # the channel axis is the one that fits the labels
            fits = [
                axis
                for axis, size in (("anchors-first", d2), ("channels-first", d1))
                if size - len(options.labels) in ((4 + extra,) if extra is not None else (4, 5))
            ]
            layout = fits[0] if len(fits) == 1 else None
        if layout is None and d1 != d2:  # anchors outnumber box + class channels
            layout = "channels-first" if d1 < d2 else "anchors-first"
        if layout is None:
            raise ImportRefused(
                f"cannot tell which axis of {name} {list(probe.shapes[name])} holds the box and "
                "class channels: give --output-layout anchors-first|channels-first"
            )
        notes.append(f"output layout: {layout} ({name} {list(probe.shapes[name])})")
    channels = d2 if layout == "anchors-first" else d1
    if extra is None:
        extra = 1 if options.labels is not None and channels - len(options.labels) == 5 else 0
        if extra:
            notes.append("objectness: yes (5 + classes channels)")
    classes = channels - 4 - extra
    if classes < 1:
        raise ImportRefused(
            f"{name}: {channels} channels leave no class scores after the {4 + extra} box "
            "values; the yolo family reads 4 (+1 objectness) + classes channels per candidate"
        )
    labels = _labels(probe, classes, notes)
    decoder = {
        "output": name,
        "layout": layout,
        "objectness": bool(extra),
        **_detection_common(probe, labels, notes),
    }
    return Decoded("yolo", decoder, labels, notes)


def ssd(probe: Probe) -> Decoded:
    """``boxes [batch, n, 4]`` + ``scores [batch, n]`` + ``labels [batch, n]``, or
    ``scores [batch, n, classes]``."""
    options = probe.options
    _check_choice("--background", options.background, BACKGROUNDS)
    roles = _roles(
        probe,
        {
            "boxes": ("box",),
            "scores": ("score", "logit", "conf", "prob"),
            "labels": ("label", "class"),
        },
        "the ssd family",
    )
    for role in ("boxes", "scores"):
        if role not in roles:
            raise ImportRefused(
                f"cannot tell which output holds the {role} among {_describe(probe.shapes)}: "
                f"give --outputs boxes=NAME,scores=NAME[,labels=NAME]"
            )
    boxes, scores = probe.shapes[roles["boxes"]], probe.shapes[roles["scores"]]
    if len(boxes) != 3 or boxes[2] != 4:
        raise ImportRefused(
            f"the ssd family reads boxes as [batch, n, 4]; {roles['boxes']} is {list(boxes)}"
        )
    if scores[:2] != boxes[:2] or len(scores) not in (2, 3):
        raise ImportRefused(
            f"the ssd family reads scores as [batch, n] (+ labels) or [batch, n, classes] "
            f"matching boxes {list(boxes)}; {roles['scores']} is {list(scores)}"
        )
    notes = [f"outputs: {', '.join(f'{r}={n}' for r, n in roles.items())}"]
    if len(scores) == 2:
        if "labels" not in roles or probe.shapes[roles["labels"]][:2] != boxes[:2]:
            raise ImportRefused(
                f"{roles['scores']} {list(scores)} has one score per box, so the class of each "
                "box must come from a labels output [batch, n]: give --outputs labels=NAME"
            )
        if options.labels is None:
            raise ImportRefused(
                "with class ids in a labels output the number of classes is not in the model's "
                "shapes: give --labels FILE (one name per class id, line 1 = id 0)"
            )
        labels = options.labels
    else:
        roles.pop("labels", None)
        labels = _labels(probe, scores[2], notes)
    decoder = {
        "boxes": roles["boxes"],
        "scores": roles["scores"],
        "labels": roles.get("labels"),
        "background": options.background,
        **_detection_common(probe, labels, notes),
    }
    return Decoded("ssd", decoder, labels, notes)


def _coco17(probe: Probe, keypoints: int, name: str) -> list[int] | None:
    chosen = probe.options.coco17_from
    if chosen is None:
        if keypoints != COCO17_SIZE:
            raise ImportRefused(
                f"{name} has {keypoints} keypoints; the pose stage answers in COCO-17: give "
                "--coco17-from with the 17 indices of nose, eyes, ears, shoulders, elbows, "
                "wrists, hips, knees, ankles in COCO order (COCO-WholeBody and Halpe: 0-16)"
            )
        return None
    if len(chosen) != COCO17_SIZE or not all(0 <= k < keypoints for k in chosen):
        raise ImportRefused(f"--coco17-from needs 17 indices in 0-{keypoints - 1}, got {chosen}")
    return chosen


def simcc(probe: Probe) -> Decoded:
    """``x [batch, K, W * r]`` and ``y [batch, K, H * r]``."""
    roles = _roles(probe, {"x": ("_x", "x_"), "y": ("_y", "y_")}, "the simcc family")
    ranked = [n for n, s in probe.shapes.items() if len(s) == 3]
    if not {"x", "y"} <= set(roles) and len(ranked) == 2:
        # No names to go by: the pair whose bins per input pixel agree (x first when both do).
        for x, y in (ranked, ranked[::-1]):
            if probe.shapes[x][2] * probe.height == probe.shapes[y][2] * probe.width:
                roles = {"x": x, "y": y}
                break
    if not {"x", "y"} <= set(roles):
        raise ImportRefused(
            "the simcc family reads two outputs [batch, K, W * ratio] and [batch, K, H * ratio]; "
            f"the model's outputs are {_describe(probe.shapes)}: give --outputs x=NAME,y=NAME"
        )
    x, y = probe.shapes[roles["x"]], probe.shapes[roles["y"]]
    if len(x) != 3 or len(y) != 3 or x[1] != y[1]:
        raise ImportRefused(
            f"simcc outputs must be [batch, K, bins] with the same K: x {list(x)}, y {list(y)}"
        )
    ratio = x[2] / probe.width
    if abs(y[2] / probe.height - ratio) > 1e-6:
        raise ImportRefused(
            f"simcc x has {x[2]} bins for {probe.width} px and y {y[2]} for {probe.height} px: "
            "the two split ratios differ (is --size W x H the right way round?)"
        )
    notes = [f"simcc: x={roles['x']}, y={roles['y']}, split ratio {ratio:g}"]
    _check_choice("--score-activation", probe.options.score_activation, ACTIVATIONS)
    decoder = {
        "x": roles["x"],
        "y": roles["y"],
        "split_ratio": ratio,
        "coco17_from": _coco17(probe, x[1], roles["x"]),
        "score_activation": probe.options.score_activation or "none",
    }
    return Decoded("simcc", decoder, [], notes)


def heatmap(probe: Probe) -> Decoded:
    """``[batch, K, h, w]``."""
    name = _one_output(probe, 4, "the heatmap family")
    _, keypoints, h, w = probe.shapes[name]
    if h > probe.height or w > probe.width:
        raise ImportRefused(
            f"{name} {list(probe.shapes[name])} is not [batch, K, h, w] heatmaps at most the "
            f"input's {probe.height}x{probe.width}: channels-last heatmaps are not read"
        )
    _check_choice("--score-activation", probe.options.score_activation, ("none", "sigmoid"))
    decoder = {
        "output": name,
        "coco17_from": _coco17(probe, keypoints, name),
        "score_activation": probe.options.score_activation or "none",
    }
    return Decoded("heatmap", decoder, [], [f"heatmaps: {name} {h}x{w}"])


FAMILIES: dict[str, Callable[[Probe], Decoded]] = {
    "classification": classification,
    "yolo": yolo,
    "ssd": ssd,
    "simcc": simcc,
    "heatmap": heatmap,
}


def guess_family(probe: Probe) -> str:
    """The task's family that fits the output ranks: one rank-3 output → yolo, several → ssd;
    one rank-4 → heatmap, two rank-3 → simcc."""
    families = TASK_FAMILIES[probe.task]
    if len(families) == 1:
        return families[0]
    ranks = sorted(len(s) for s in probe.shapes.values())
    if probe.task == "pose-estimation":
        if ranks.count(4) == 1 and probe.options.output is None:
            return "heatmap"
        return "simcc"
    if len(ranks) == 1 or probe.options.output is not None:
        return "yolo"
    return "ssd"


def decode_layout(probe: Probe, family: str | None) -> Decoded:
    if probe.task not in TASK_FAMILIES:
        raise ImportRefused(f"--task must be one of {', '.join(TASK_FAMILIES)}, not {probe.task!r}")
    chosen = family or guess_family(probe)
    if chosen not in TASK_FAMILIES[probe.task]:
        raise ImportRefused(
            f"--family {chosen} does not serve {probe.task}; its families: "
            f"{', '.join(TASK_FAMILIES[probe.task])}"
        )
    decoded = FAMILIES[chosen](probe)
    if family is None:
        decoded.notes.insert(0, f"family: {chosen} (from the output shapes; --family overrides)")
    return decoded
