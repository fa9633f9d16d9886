"""The chart rendered for containers on this engine: `helm template` with the default values,
plus only what maps its images to the local tags `make images` builds (and whatever a caller
adds, such as a test's deliberately broken values)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tools.containers.images import REDIS_TAG, REGISTRY, version
from tools.kubetools import ROOT, ensure

CHART = ROOT / "charts" / "posefleet"
RELEASE = "posefleet"  # the release name makes the Service names: posefleet-gateway, ...
NAMESPACE = "posefleet"


def local_images() -> dict[str, Any]:
    """Values pointing every image at the local tags (<registry>/<service>:<tag>-<target>)."""
    repository, _, tag = REDIS_TAG.rpartition(":")
    return {
        "image": {"registry": REGISTRY, "tag": version()},
        "redis": {"image": {"repository": repository, "tag": tag}},
    }


def render(*values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object `helm template` renders (the `helm test` hooks included) for the default
    values, the local images, then ``values`` in order."""
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for index, layer in enumerate((local_images(), *values)):
            path = Path(folder) / f"values-{index}.yaml"
            path.write_text(yaml.safe_dump(layer))
            files += ["-f", str(path)]
        cmd = [str(ensure("helm")), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        result = subprocess.run([*cmd, *files], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
