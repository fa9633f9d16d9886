"""The catalog's crop-based pose models: every one the design names, and MediaPipe converted
to compute only what is served."""

import os
import subprocess

from services.core.runtime.repository import ModelRepository
from services.core.settings import get_settings
from services.factory.builder_venv import PROJECT_ROOT, ensure_builder_venv
from services.factory.catalog import CATALOG

POSE_MODELS = [
    name
    for name, recipe in CATALOG.items()
    if recipe.preprocessing.get("family") in ("movenet", "mediapipe-pose")
]


MEDIAPIPE = [n for n in POSE_MODELS if CATALOG[n].preprocessing["family"] == "mediapipe-pose"]


DEAD_NODES = """
import sys, onnx
from services.factory.builder.convert_tflite import live_nodes
for path in sys.argv[1:]:
    body = onnx.load(path).graph.node[0].attribute[0].g
    print(len(body.node) - len(live_nodes(body, {o.name for o in body.output})))
"""


def test_the_catalog_offers_every_pose_model_the_design_names():
    assert set(POSE_MODELS) == {
        "movenet-lightning",
        "movenet-thunder",
        "mediapipe-pose-lite",
        "mediapipe-pose-full",
        "mediapipe-pose-heavy",
    }


def test_mediapipe_models_are_pinned_and_compute_only_what_is_served(build_catalog):
    """The build drops the segmentation, heatmap and world-landmark outputs AND every layer that
    only fed them: onnxruntime does not prune dead nodes inside the Scan body (as converted
    with the outputs merely dropped, 60 of lite's 203 nodes were dead: 3.2x its time)."""
    repo = ModelRepository(build_catalog(*MEDIAPIPE))
    entries = [repo.get(name) for name in MEDIAPIPE]
    for name, entry in zip(MEDIAPIPE, entries, strict=True):
        assert entry.spec["sha256"] == CATALOG[name].onnx_sha256
        assert [o["name"] for o in entry.spec["outputs"]] == ["landmarks", "pose_flag"]
    python = ensure_builder_venv(get_settings().cache_dir, lambda step, fraction=None: None)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [str(python), "-c", DEAD_NODES, *(str(e.path) for e in entries)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    assert done.stdout.split() == ["0"] * len(MEDIAPIPE)
