"""Triton's perf_analyzer, runnable on this machine without a package manager beyond PyPI and
Debian: the binary and libcudart come from the wheels pinned under [tool.posefleet.perf-analyzer]
in pyproject.toml (why those wheels: see there), fetched once into the cache, sha256-checked and
unpacked per version; libb64 is Debian's libb64-0d (`make bench` installs it).

    python -m loadtest.perf_analyzer --version   # runs perf_analyzer with these arguments
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from services.pins import PypiWheel, fetch_wheel

ROOT = Path(__file__).resolve().parents[1]
BINARY = "tritonclient-2.51.0.data/data/bin/perf_analyzer"
CUDART = "nvidia/cuda_runtime/lib/libcudart.so.12"


class Unavailable(RuntimeError):
    """perf_analyzer cannot run here; the message says what to install."""


def pin() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["posefleet"]["perf-analyzer"]


def cache_dir() -> Path:
    return Path(os.environ.get("POSEFLEET_CACHE_DIR", Path.home() / ".cache" / "posefleet"))


def _wheel(spec: str, filename: str, sha256: str) -> Path:
    package, _, version = spec.partition("==")
    return fetch_wheel(
        PypiWheel(package, version, filename, sha256, licence="BSD-3-Clause"),
        cache_dir(),
        lambda step, fraction=None: print(f"{step} (perf_analyzer)", file=sys.stderr),
    )


def ensure() -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment it runs in (its libcudart)."""
    if platform.machine() != "x86_64":
        raise Unavailable("the pinned perf_analyzer wheel is x86_64 only")
    if ctypes.util.find_library("b64") is None:
        raise Unavailable("perf_analyzer needs libb64.so.0d: apt-get install libb64-0d")
    wanted = pin()
    folder = cache_dir() / "perf_analyzer" / wanted["sha256"][:16]
    binary, lib = folder / "perf_analyzer", folder / "lib"
    if not binary.exists():
        staging = folder.with_suffix(".partial")
        (staging / "lib").mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(_wheel(wanted["wheel"], wanted["filename"], wanted["sha256"])) as w:
            (staging / "perf_analyzer").write_bytes(w.read(BINARY))
        cudart = _wheel(wanted["cudart-wheel"], wanted["cudart-filename"], wanted["cudart-sha256"])
        with zipfile.ZipFile(cudart) as w:
            (staging / "lib" / Path(CUDART).name).write_bytes(w.read(CUDART))
        (staging / "perf_analyzer").chmod(0o755)
        staging.rename(folder)  # whole or absent: a crash mid-extract leaves no half tool
    return binary, {**os.environ, "LD_LIBRARY_PATH": str(lib)}


def main() -> int:
    binary, env = ensure()
    return subprocess.run([str(binary), *sys.argv[1:]], env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
