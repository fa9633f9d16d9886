"""The docker CLI as the tools call it: the engine is whatever DOCKER_HOST names (the private
one under `python -m tools.containers.engine run`), and a failing command raises with its
stderr, so a broken build or run says why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class DockerError(RuntimeError):
    pass


def docker(*args: str, check: bool = True, timeout: float | None = None) -> str:
    """Run ``docker ARGS`` and return its stdout."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} …: {result.stderr.strip()[-2000:]}")
    return result.stdout


def image_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", name], capture_output=True, check=False
        ).returncode
        == 0
    )


def posefleet_cache() -> Path:
    """Where the tools keep what outlives a run (the base root filesystem)."""
    return Path(os.environ.get("POSEFLEET_CACHE_DIR", Path.home() / ".cache" / "posefleet"))
