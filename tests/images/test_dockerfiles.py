"""The service images, checked statically (no Docker engine here): what a reviewer of a
Dockerfile would insist on, parsed with a real Dockerfile parser."""

from __future__ import annotations

import importlib.util
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from services.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WORKER_TARGETS = {"cpu", "gpu", "neuron"}
EXPECTED_TARGETS = {
    "gateway": {"cpu"},
    "detector": WORKER_TARGETS,
    "pose": WORKER_TARGETS,
    "ensemble": WORKER_TARGETS,
}
MODEL_FETCHES = re.compile(r"posefleet models build|\bnpm\b|huggingface|hf_hub|wget|curl .*\.onnx")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    # An in-memory file: given a path (the default is ./Dockerfile), the parser writes to it.
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            base, _, name = value.partition(" AS ")
            found.append(Stage(name.strip() or str(len(found)), base.strip()))
        elif instruction == "ARG" and not found:
            key, _, default = value.partition("=")
            global_args[key] = default
        elif found and instruction != "COMMENT":
            found[-1].instructions.append((instruction, value))
    return global_args, found


def resolved_base(stage: Stage, global_args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), stage.base)


def problems(text: str, service: str) -> list[str]:
    """Everything wrong with one service's Dockerfile; empty means it passes."""
    found: list[str] = []
    global_args, all_stages = stages(text)
    names = {s.name for s in all_stages}
    for stage in all_stages:
        base = resolved_base(stage, global_args)
        if base in names:
            continue
        tag = base.rpartition(":")[2] if ":" in base.split("/")[-1] else ""
        if "@sha256:" not in base and (not tag or tag == "latest"):
            found.append(f"stage {stage.name}: base image {base!r} is not pinned by tag")
    runtime = [s for s in all_stages if s.name in EXPECTED_TARGETS[service]]
    missing = EXPECTED_TARGETS[service] - {s.name for s in runtime}
    if missing:
        found.append(f"missing targets {sorted(missing)}")
    for stage in runtime:
        users = stage.values("USER")
        user = users[-1].split(":")[0] if users else "root"
        if not user.isdigit() or int(user) == 0:
            found.append(f"target {stage.name}: must end as a non-root numeric USER, not {user}")
        for run in stage.values("RUN"):
            if MODEL_FETCHES.search(run):
                found.append(f"target {stage.name}: fetches or builds models: {run[:60]}")
        copies = stage.values("COPY") + stage.values("ADD")
        if service != "gateway" and not any(
            c.startswith("--from=models") and "/models" in c for c in copies
        ):
            found.append(f"target {stage.name}: does not copy /models from the models stage")
        for copy in copies:
            parts = [p for p in copy.split() if not p.startswith("--")]
            source_stage = re.search(r"--from=(\S+)", copy)
            if source_stage:
                if source_stage[1] not in names:
                    found.append(f"target {stage.name}: COPY --from={source_stage[1]} is no stage")
                continue
            for source in parts[:-1]:
                if not (ROOT / source).exists():
                    found.append(f"target {stage.name}: COPY source {source} does not exist")
        command = stage.values("CMD") or stage.values("ENTRYPOINT")
        if not command:
            found.append(f"target {stage.name}: no CMD")
        else:
            argv = json.loads(command[-1])
            module = argv[argv.index("-m") + 1] if "-m" in argv else None
            if module is None or importlib.util.find_spec(module) is None:
                found.append(f"target {stage.name}: CMD runs no importable module: {argv}")
    return found


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


@pytest.mark.parametrize("service", sorted(EXPECTED_TARGETS))
def test_dockerfile_passes_every_check(service):
    assert problems(dockerfile(service), service) == []


@pytest.mark.parametrize("service", sorted(EXPECTED_TARGETS))
def test_ports_and_paths_match_the_settings(service):
    _, all_stages = stages(dockerfile(service))
    defaults = Settings()
    for stage in (s for s in all_stages if s.name in EXPECTED_TARGETS[service]):
        env = " ".join(stage.values("ENV"))
        assert "POSEFLEET_MODEL_ROOT=/models" in env and "HOME=/tmp" in env
        assert "POSEFLEET_PIPELINES_FILE=/app/pipelines.yaml" in env
        port = 8080 if service == "gateway" else defaults.metrics_port
        assert stage.values("EXPOSE") == [str(port)]


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        (("python:3.11.11-slim-bookworm", "python:latest"), "not pinned"),
        (("USER 10001:10001\nEXPOSE 9100\nCMD", "USER root\nEXPOSE 9100\nCMD"), "non-root"),
        (("COPY --from=models /models /models", "COPY --from=modelz /models /models"), "no stage"),
        (
            (
                "COPY services ./services\nRUN pip install --no-cache-dir .",
                "COPY servicez ./s\nRUN pip install --no-cache-dir .",
            ),
            "does not exist",
        ),
        (
            (
                "RUN pip install --no-cache-dir . &&",
                "RUN posefleet models build centernet && pip install --no-cache-dir . &&",
            ),
            "fetches or builds models",
        ),
        (('"services.cli", "worker"', '"services.nope", "worker"'), "no importable module"),
    ],
)
def test_the_checks_catch_a_bad_dockerfile(mutation, complaint):
    old, new = mutation
    text = dockerfile("detector")
    assert old in text
    assert any(complaint in p for p in problems(text.replace(old, new, 1), "detector"))


def test_runtime_images_build_from_pyproject_pins_only():
    """Versions live in pyproject.toml: images install `.` (plus its extras), never a second
    list of Python pins — except AWS's SDK, which lives on AWS's own index."""
    for service in EXPECTED_TARGETS:
        _, all_stages = stages(dockerfile(service))
        for stage in all_stages:
            for run in stage.values("RUN"):
                pins = set(re.findall(r"([A-Za-z0-9_.-]+)==\d", run)) - {
                    "torch-neuronx",
                    "neuronx-cc",
                }
                assert not pins, f"{service}/{stage.name} pins {pins} outside pyproject.toml"


def test_worker_dockerfiles_differ_only_in_service_models_and_command():
    """Docker has no include, so the three worker Dockerfiles repeat one layout; this keeps
    them from drifting apart: normalised, they must be the same text."""

    def normalised(service: str) -> str:
        text = dockerfile(service)
        for where in ("services/{}/", "posefleet/{}:", "Posefleet {} worker"):
            text = text.replace(where.format(service), where.format("SERVICE"))
        text = re.sub(r'ARG MODELS="[^"]*"', 'ARG MODELS="…"', text)
        return re.sub(r'"worker", "[a-z-]+"', '"worker", "STAGE"', text)

    assert normalised("detector") == normalised("pose") == normalised("ensemble")
