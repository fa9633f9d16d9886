"""Stage backlog and dead-letter depth, read from Redis for the metrics (scrape time)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.core import keys
from services.core.metrics import DEAD_LETTERS, STAGE_BACKLOG


def backlog_commands(pipe: Any, stages: Iterable[str]) -> list[str]:
    """Queue XLEN of each stage's stream and dead-letter stream on ``pipe`` (sync or async)."""
    names = sorted(stages)
    for stage in names:
        pipe.xlen(keys.stream(stage))
        pipe.xlen(keys.dead(stage))
    return names


def record_backlog(names: list[str], replies: list[int]) -> None:
    for i, stage in enumerate(names):
        STAGE_BACKLOG.labels(stage).set(replies[2 * i])
        DEAD_LETTERS.labels(stage).set(replies[2 * i + 1])
