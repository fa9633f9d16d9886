"""The chart rendered by a real Helm (v4, from the pinned PyPI wheel) for each CI values file."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.kubetools import ROOT, ensure

CHART = ROOT / "charts" / "posefleet"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CRDS = ("keda.sh/v1alpha1", "monitoring.coreos.com/v1")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure("helm")), *args], capture_output=True, text=True, check=check, cwd=ROOT
    )


@cache
def render(values: Path | None, crds: bool = True, *sets: str) -> tuple[dict[str, Any], ...]:
    """Every object ``helm template`` renders (hooks and the test pod included)."""
    args = ["template", "pf", str(CHART), "--namespace", "posefleet"]
    if values is not None:
        args += ["-f", str(values)]
    if crds:
        args += [f"--api-versions={v}" for v in CRDS]
    for assignment in sets:
        args += ["--set", assignment]
    return tuple(d for d in yaml.safe_load_all(helm(*args).stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.fixture(params=CI_VALUES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def ci_values(request) -> Path:
    return request.param
