"""The runtime view of the model repository: ``<root>/<model>/<version>/model.onnx + model.yaml``.

A worker loads one model at start-up; refusing a missing or corrupted file there, with the
command that fixes it, beats a confusing onnxruntime error or wrong outputs later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.pins import sha256_file


class ModelNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    path: Path  # model.onnx
    spec: dict[str, Any]  # model.yaml


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        found = (
            [p.name for p in folder.iterdir() if (p / "model.yaml").exists()]
            if (folder.is_dir())
            else []
        )
        return sorted(found, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))

    def default_version(self, name: str, versions: list[str]) -> str:
        """The newest version built from the catalog or imported (``models import``). Derived
        versions (``models quantize``) are served only when pinned: being newest must not put an
        unreviewed int8 model live."""
        for version in reversed(versions):
            spec = yaml.safe_load((self.root / name / version / "model.yaml").read_text())
            if "quantization" not in spec:
                return version
        raise ModelNotFound(
            f"model '{name}' has only derived versions {versions} in {self.root}: pin one, or "
            f"build or import an fp32 version"
        )

    def get(self, name: str, version: str | None = None) -> ModelEntry:
        # The runtime does not know the catalog (the factory does), so a model that is absent
        # gets both ways to make it; one that is present says which way it was made.
        fix = (
            f"run `posefleet models build {name}` for a catalog model, or import your own: "
            f"`posefleet models import PATH --name {name} --task TASK`"
        )
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(f"model '{name}' is not in the repository {self.root}; {fix}")
        version = version or self.default_version(name, versions)
        if version not in versions:
            raise ModelNotFound(
                f"model '{name}' has no version {version} in {self.root} (have {versions})"
            )
        folder = self.root / name / version
        spec = yaml.safe_load((folder / "model.yaml").read_text())
        fix = (
            f"import it again (`posefleet models import … --name {name}`)"
            if spec.get("source", {}).get("origin") == "imported"
            else f"run `posefleet models build {name}`"
        )
        path = folder / spec.get("file", "model.onnx")
        if not path.exists():
            raise ModelNotFound(f"{path} is missing; {fix}")
        actual = sha256_file(path)
        if actual != spec.get("sha256"):
            raise ModelNotFound(
                f"{path}: sha256 {actual} differs from model.yaml's "
                f"{spec.get('sha256')} (corrupted or replaced); {fix}"
            )
        return ModelEntry(name, version, path, spec)
