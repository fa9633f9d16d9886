"""The Ray Serve peer's own virtualenv: the ``rayserve`` extra's pins (pyproject.toml), created
under the cache directory on first use like the model builder's, so Ray never enters
Posefleet's install. Our code reaches it through PYTHONPATH, as the builder's does."""

from __future__ import annotations

from pathlib import Path

from services.factory.builder_venv import PROJECT_ROOT, ensure_venv, extra_requirements
from services.pins import Progress

# no usage reports, no cluster token written under ~/.ray: a private, loopback-only cluster
RAY_ENV = {
    "PYTHONPATH": str(PROJECT_ROOT),
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


def ensure_ray_venv(cache_dir: Path, report: Progress) -> Path:
    """The venv's python; creating it downloads Ray (a few hundred MB) once."""
    return ensure_venv(
        cache_dir / "rayserve-venv", extra_requirements("rayserve"), report, "the Ray Serve venv"
    )
