"""A stage that does nothing, for measuring the transport ceiling (gateway + Redis + DAG)."""

from __future__ import annotations

from typing import Any

from services.core.handler import Handler, Task


class Noop(Handler):
    def preprocess(self, tasks: list[Task]) -> None:
        return None

    def inference(self, batch: None) -> None:
        return None

    def postprocess(self, outputs: None, tasks: list[Task]) -> list[dict[str, Any]]:
        return [{"ok": True} for _ in tasks]
