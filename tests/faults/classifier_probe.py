"""``python -m tests.faults.classifier_probe IMAGE MODEL...``: the real classifiers' preprocessing
on one image, in a fresh process, and what it cost: prints one JSON object with the seconds, the
peak RSS growth over the loaded, warmed-up handlers, and each handler's outcome.

A separate process, so the measurement is the classifiers' alone and a blow-up cannot take the
test runner with it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from services.core.handler import HandlerContext, Task, TaskError
from services.core.imaging import encode_png
from services.core.settings import get_settings
from services.ensemble.classifier import ClassifierHandler
from tests.faults.served import memory_kib, peak_growth_mib, reset_peak


def main(image: Path, models: list[str]) -> None:
    handlers = []
    for model in models:
        handler = ClassifierHandler()
        handler.initialize(HandlerContext(model, get_settings(), model=model))
        handler.preprocess([Task("warm", "a", {"image": encode_png(np.zeros((64, 48, 3), "u1"))})])
        handlers.append(handler)
    data = image.read_bytes()
    pid = int(Path("/proc/self/stat").read_text().split()[0])
    reset_peak(pid)
    since = memory_kib(pid, "VmRSS")
    started = time.perf_counter()
    outcomes = []
    for handler in handlers:
        try:
            batch = handler.preprocess([Task("job", "a", {"image": data})])
            outcomes.append(f"ok {list(batch.shape)}")
        except TaskError as exc:
            outcomes.append(f"refused: {exc}")
    seconds = time.perf_counter() - started
    growth = peak_growth_mib(pid, since)
    print(json.dumps({"seconds": seconds, "growth_mib": growth, "outcomes": outcomes}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
