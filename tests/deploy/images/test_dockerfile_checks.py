"""The image recipes' static checks (tools/dockerfile_checks.py): every recipe passes them, and
each check catches the breakage it is there for, so none passes by accident. The cpu images are
also built and run (tests/deploy); the gpu and neuron targets only have these checks."""

from __future__ import annotations

import pytest

from tools.dockerfile_checks import RECIPES, all_problems, problems, shared_dependency_layers


def recipe(name: str) -> str:
    return RECIPES[name].path.read_text()


def test_every_recipe_passes_every_check():
    assert all_problems() == []


# (recipe, text replaced once, replacement, what the checks must say)
BREAKAGES = [
    ("worker", "ARG PYTHON_IMAGE=", "# syntax=docker/dockerfile:1.7\nARG PYTHON_IMAGE=", "syntax"),
    ("worker", "python:3.11.11-slim-bookworm", "python:latest", "not pinned"),
    ("gateway", "python:3.11.11-slim-bookworm", "python", "not pinned"),
    ("redis", "debian:12.11-slim", "debian", "not pinned"),
    ("worker", "AS neuron", "AS inferentia", "missing targets"),
    ("worker", "USER 10001:10001\nEXPOSE", "USER root\nEXPOSE", "non-root"),
    ("gateway", "USER 10001:10001\n", "", "non-root"),
    ("redis", "USER 999:999", "USER 0", "non-root"),
    ("worker", "COPY --from=models", "COPY --from=modelz", "is no stage"),
    ("worker", "COPY services ./services", "COPY servicez ./services", "not exist"),
    ("gateway", "COPY services ./services", "COPY tests ./tests", "dockerignore"),
    ("redis", "COPY entrypoint.sh", "COPY start.sh", "not exist"),
    ("models", "COPY . /models/", "COPY centernet /models/", "whole, to /models"),
    (
        "worker",
        "RUN pip install --no-cache-dir --no-deps . &&",
        "RUN posefleet models build && pip install --no-cache-dir --no-deps . &&",
        "builds models",
    ),
    ("worker", "--from=models /models /models\nARG", "--from=models /tmp /opt\nARG", "more than"),
    ("worker", "COPY --from=models /models /models\nARG", "ARG", "does not copy the model"),
    ("worker", "FROM ${MODELS_IMAGE} AS models", "FROM python:3.11 AS models", "MODELS_IMAGE"),
    ("worker", "FROM ${PYTHON_IMAGE} AS cpu", "FROM models AS cpu", "builds on the models stage"),
    ("worker", 'test -n "${STAGE}"', "true", "require SERVICE and STAGE"),
    ("worker", '"services.cli", "worker"]', '"services.nope", "worker"]', "importable"),
    ("worker", '"services.cli", "worker"]', '"services.cli", "worker", "pose"]', "POSEFLEET_STAGE"),
    ("worker", "POSEFLEET_STAGE=${STAGE}", "POSEFLEET_STAGE=pose", "POSEFLEET_STAGE"),
    ("worker", "ENTRYPOINT []\nCMD", 'ENTRYPOINT ["/bin/sh"]\nCMD', "ENTRYPOINT"),
    ("gateway", "ENTRYPOINT []\n", "", "ENTRYPOINT"),
    ("worker", "EXPOSE 9100", "EXPOSE 8000", "EXPOSE"),
    ("gateway", "PORT=8080", "PORT=9000", "the gateway's is"),
    ("gateway", "HOME=/tmp", "HOME=/home/app", "HOME must be under /tmp"),
    ("worker", "POSEFLEET_MODEL_ROOT=/models", "POSEFLEET_MODEL_ROOT=/srv", "MODEL_ROOT is not"),
    ("gateway", "POSEFLEET_PIPELINES_FILE=/app/", "POSEFLEET_PIPELINES_FILE=/etc/", "PIPELINES"),
    ("gateway", '["python", "-m", "services.gateway"]', "python -m services.gateway", "exec-form"),
    ("gateway", 'services.gateway"]', 'services.cli", "control-worker"]', "not run the gateway"),
    (
        "worker",
        '      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \\\n',
        "",
        "missing OCI label",
    ),
    ("gateway", "ARG VERSION=0.1.0", "ARG VERSION=9.9.9", "pyproject's version"),
    ("models", 'title="posefleet-models"', 'title="posefleet-pose"', "title/licenses"),
    (
        "worker",
        "pip install --no-cache-dir --no-deps . &&",
        "pip install --no-cache-dir --no-deps . numpy==2.4.6 &&",
        "outside pyproject.toml",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "complaint"), BREAKAGES)
def test_the_checks_catch_a_broken_recipe(name, old, new, complaint):
    text = recipe(name)
    assert old in text, "the breakage no longer applies to the recipe: update it"
    found = problems(text.replace(old, new, 1), name)
    assert any(complaint in p for p in found), found


def test_a_careless_dockerfile_fails_on_every_count():
    careless = "FROM python:latest AS cpu\nCOPY . /app\nUSER root\nCMD python -m services.gateway\n"
    found = "\n".join(problems(careless, "gateway"))
    for complaint in ("not pinned", "non-root", "exec-form", "OCI label", "EXPOSE", "/tmp"):
        assert complaint in found


def test_gateway_and_workers_share_the_dependency_install():
    gateway, worker = recipe("gateway"), recipe("worker")
    assert shared_dependency_layers(gateway, worker) == []
    changed = gateway.replace("pip install --no-cache-dir .", "pip install --no-cache-dir -q .", 1)
    assert shared_dependency_layers(changed, worker)
