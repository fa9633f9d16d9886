"""Model loading for stage handlers: repository lookup, backend session, warm-up."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from services.core.handler import HandlerContext
from services.core.runtime.cpus import session_threads
from services.core.runtime.neuron import NeuronOptions, open_neuron_model
from services.core.runtime.onnx import OnnxModel, OnnxOptions
from services.core.runtime.repository import ModelEntry, ModelRepository
from services.core.settings import Settings

log = logging.getLogger("posefleet.runtime")


def neuron_options(settings: Settings) -> NeuronOptions:
    return NeuronOptions(
        target=settings.neuron_target,
        cores_per_instance=settings.neuron_cores_per_instance,
        first_core=settings.neuron_first_core,
    )


def open_model(entry: ModelEntry, settings: Settings, instance: int = 0) -> Any:
    """The backend the node pool's settings name; every backend has the same three members
    (``backend``, ``input_names``, ``run``), so handlers never know which one they got."""
    if settings.backend == "neuron":
        return open_neuron_model(entry, neuron_options(settings), instance)
    return OnnxModel(
        entry.path,
        OnnxOptions(
            provider=settings.provider,
            device_id=settings.device_id,
            intra_op_threads=session_threads(settings.intra_op_threads, settings.instances),
            inter_op_threads=settings.inter_op_threads,
            spinning=settings.intra_op_spinning,
            graph_optimization=settings.graph_optimization,
            trt_fp16=settings.trt_fp16,
            trt_engine_cache=settings.trt_engine_cache,
            allow_fallback=settings.allow_fallback,
        ),
    )


def load_model(ctx: HandlerContext, default: str) -> tuple[Any, ModelEntry]:
    """Load the stage's model and run it once on a zero batch of its real input shape, so the
    first request does not pay the backend's lazy initialisation."""
    entry = ModelRepository(ctx.settings.model_root).get(ctx.model or default, ctx.model_version)
    model = open_model(entry, ctx.settings, ctx.instance)
    started = time.perf_counter()
    spec = entry.spec["inputs"][0]
    shape = [1 if not isinstance(d, int) else d for d in spec["shape"]]
    model.run({spec["name"]: np.zeros(shape, dtype=spec["dtype"])})
    log.info(
        "model loaded",
        extra={
            "model": entry.name,
            "version": entry.version,
            "backend": model.backend,
            "instance": ctx.instance,
            "warmup_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return model, entry
