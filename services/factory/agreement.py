"""How far a changed model (int8, another backend) strays from its fp32 reference, measured on
the stage's OWN outputs — the numbers a user of the API would see change.

- pose (``people``): PCK@0.1 — a keypoint agrees when it lies within 0.1 times the person box's
  longer side of the fp32 keypoint. Only keypoints the fp32 model is confident about (score ≥
  0.3) count: disagreeing about an invisible ankle is not an error anyone sees.
- detector (``boxes``): recall and precision of the fp32 boxes at IoU ≥ 0.5.
- classifier (``top1``): the fraction of images whose top-1 label is unchanged.
"""

from __future__ import annotations

import math
from typing import Any

PCK_ALPHA = 0.1
CONFIDENT = 0.3
MATCH_IOU = 0.5


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _match(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by box IoU, best pairs first."""
    pairs = sorted(
        (
            (iou(r["box"], o["box"]), i, j)
            for i, r in enumerate(reference)
            for j, o in enumerate(other)
        ),
        reverse=True,
    )
    used_r, used_o, matched = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU or i in used_r or j in used_o:
            continue
        used_r.add(i)
        used_o.add(j)
        matched.append((i, j))
    return matched


def pck(reference: list[list[dict[str, Any]]], other: list[list[dict[str, Any]]]) -> float | None:
    """Per image, a list of people; a reference person the other model missed scores zero."""
    agree = total = 0
    for ref_people, other_people in zip(reference, other, strict=True):
        partner = dict(_match(ref_people, other_people))
        for i, person in enumerate(ref_people):
            x1, y1, x2, y2 = person["box"]
            limit = PCK_ALPHA * max(x2 - x1, y2 - y1)
            theirs = other_people[partner[i]]["keypoints"] if i in partner else None
            for k, point in enumerate(person["keypoints"]):
                if point["score"] < CONFIDENT:
                    continue
                total += 1
                if theirs is not None:
                    agree += (
                        math.dist((point["x"], point["y"]), (theirs[k]["x"], theirs[k]["y"]))
                        <= limit
                    )
    return agree / total if total else None


def box_agreement(
    reference: list[list[dict[str, Any]]], other: list[list[dict[str, Any]]]
) -> dict[str, float | None]:
    matched = sum(len(_match(r, o)) for r, o in zip(reference, other, strict=True))
    ref_total, other_total = sum(map(len, reference)), sum(map(len, other))
    return {
        "recall": matched / ref_total if ref_total else None,
        "precision": matched / other_total if other_total else None,
    }


def top1_agreement(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> float | None:
    same = sum(r["label"] == o["label"] for r, o in zip(reference, other, strict=True))
    return same / len(reference) if reference else None


def agreement(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare two runs of the same stage over the same images (one output dict per image)."""
    if not reference:
        return {}
    if "people" in reference[0]:
        people = [r["people"] for r in reference], [o["people"] for o in other]
        return {
            "pck@0.1": pck(*people),
            "people": [sum(map(len, people[0])), sum(map(len, people[1]))],
        }
    if "boxes" in reference[0]:
        return box_agreement([r["boxes"] for r in reference], [o["boxes"] for o in other])
    if "top1" in reference[0]:
        return {"top1": top1_agreement([r["top1"] for r in reference], [o["top1"] for o in other])}
    raise ValueError(f"no agreement measure for outputs {sorted(reference[0])}")
