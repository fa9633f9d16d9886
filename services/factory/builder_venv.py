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


def extra_requirements(extra: str) -> list[str]:
    """An extra's pins (``builder``, ``rayserve``), read from the installed distribution's
    metadata."""
    pins = []
    for req in metadata.requires("posefleet") or []:
        spec, _, marker = req.partition(";")
        if f'extra == "{extra}"' in marker:
            pins.append(spec.strip())
    if not pins:
        raise BuilderUnavailable(f"no {extra} pins found: reinstall posefleet (pip install -e .)")
    return sorted(pins)


def builder_requirements() -> list[str]:
    """The ``builder`` extra's pins."""
    return extra_requirements("builder")


def ensure_venv(venv: Path, pins: list[str], report: Progress, what: str) -> Path:
    """A venv with exactly ``pins``, created (or re-created when the pins changed) on first
    use; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / "posefleet-pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(pins):
        return python
    report(f"creating {what} (first run only)", None)
    shutil.rmtree(venv, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(venv)], f"create {what}")
    run_checked(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        f"install the packages of {what}",
    )
    stamp.write_text("\n".join(pins))
    return python


def ensure_builder_venv(cache_dir: Path, report: Progress) -> Path:
    return ensure_venv(
        cache_dir / "builder-venv",
        builder_requirements(),
        report,
        "the model-builder venv (TensorFlow + tf2onnx)",
    )


BUILDER_ENV = {
    "PYTHONPATH": str(PROJECT_ROOT),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUDA_VISIBLE_DEVICES": "",
}
