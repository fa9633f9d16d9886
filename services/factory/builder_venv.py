"""The builder virtualenv: TensorFlow, tf2onnx, torch and onnx, kept out of the runtime install.

It lives under the cache directory and is created on first use with the exact pins of the
``builder`` extra in pyproject.toml (read from the installed distribution's metadata, so
pyproject.toml stays the one place versions live). Code that runs INSIDE it is the
``services.factory.builder`` subpackage, started as ``python -m`` subprocesses with the project
root on PYTHONPATH.
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

from services.pins import Progress, run_checked

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BuilderUnavailable(RuntimeError):
    """The builder venv cannot be made (the installed distribution carries no builder pins)."""


def builder_requirements() -> list[str]:
    """The ``builder`` extra's pins, read from the installed distribution's metadata."""
    pins = []
    for req in metadata.requires("posefleet") or []:
        spec, _, marker = req.partition(";")
        if 'extra == "builder"' in marker:
            pins.append(spec.strip())
    if not pins:
        raise BuilderUnavailable("no builder pins found: reinstall posefleet (pip install -e .)")
    return sorted(pins)


def ensure_builder_venv(cache_dir: Path, report: Progress) -> Path:
    venv = cache_dir / "builder-venv"
    python = venv / "bin" / "python"
    pins = builder_requirements()
    stamp = venv / "posefleet-pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(pins):
        return python
    report("creating the model-builder venv (TensorFlow + tf2onnx; first run only)", None)
    shutil.rmtree(venv, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(venv)], "create the builder venv")
    run_checked(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        "install the builder packages",
    )
    stamp.write_text("\n".join(pins))
    return python


BUILDER_ENV = {
    "PYTHONPATH": str(PROJECT_ROOT),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUDA_VISIBLE_DEVICES": "",
}
