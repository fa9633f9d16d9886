"""The service images, checked statically. There is no Docker engine here, so each Dockerfile is
parsed with a real parser (dockerfile-parse) and held to what a reviewer would insist on; every
check is also fed broken Dockerfiles, so none of them passes by accident."""

from __future__ import annotations

import fnmatch
import importlib.util
import io
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from services.core.pipeline import load_pipelines
from services.core.settings import Settings
from services.factory.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "detector", "pose", "ensemble")
WORKER_TARGETS = frozenset({"cpu", "gpu", "neuron"})
# What a runtime image must never do: build or download models, or reach for npm.
FETCHES = re.compile(
    r"posefleet models build|\bnpm\b|\bnpx\b|pip download|\bwget\b|\bcurl\b|huggingface|hf_hub"
)
PIN = re.compile(r"([A-Za-z0-9_.\[\]-]+)==\d")
OCI_LABELS = ("title", "description", "version", "source", "licenses")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def pairs(self, instruction: str) -> dict[str, str]:
        """ENV / LABEL / ARG key=value pairs, later ones winning, as Docker applies them."""
        found: dict[str, str] = {}
        for value in self.values(instruction):
            for token in shlex.split(value):
                key, _, val = token.partition("=")
                found[key] = val
        return found

    def copies(self) -> list[tuple[dict[str, str], list[str], str]]:
        """Each COPY/ADD as (flags, sources, destination)."""
        found = []
        for value in self.values("COPY") + self.values("ADD"):
            words = json.loads(value) if value.startswith("[") else shlex.split(value)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            found.append((flags, paths[:-1], paths[-1]))
        return found


@dataclass
class Dockerfile:
    service: str
    args: dict[str, str]
    stages: list[Stage]

    @property
    def targets(self) -> frozenset[str]:
        return frozenset({"cpu"}) if self.service == "gateway" else WORKER_TARGETS

    def runtime(self) -> list[Stage]:
        return [s for s in self.stages if s.name in self.targets]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)


def parse(text: str, service: str) -> Dockerfile:
    # An in-memory file object: given a path instead, the parser would write to it.
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = re.split(r"\s+as\s+", value, flags=re.I, maxsplit=1)
            base, name = words[0].strip(), (words[1].strip() if len(words) > 1 else "")
            stages.append(Stage(name or str(len(stages)), base))
        elif instruction == "ARG" and not stages:
            key, _, default = value.partition("=")
            args[key] = default.strip('"')
        elif stages and instruction != "COMMENT":
            stages[-1].instructions.append((instruction, value))
    return Dockerfile(service, args, stages)


@cache
def served_stages(service: str) -> tuple[str, ...]:
    """The pipeline stages whose Deployments run this service's image (the chart decides)."""
    values = yaml.safe_load((ROOT / "charts" / "posefleet" / "values.yaml").read_text())
    return tuple(s for s, spec in values["stages"].items() if spec["image"] == service)


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def dockerignored(path: str) -> bool:
    """Docker's rule for a top-level path: the last .dockerignore pattern that matches decides."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").removeprefix("**/")
        if fnmatch.fnmatchcase(path, pattern):
            ignored = not negated
    return ignored


# ---- the checks: each takes a parsed Dockerfile and returns what is wrong with it ----


def pinned_bases(df: Dockerfile) -> list[str]:
    names = {s.name for s in df.stages}
    found = []
    for stage in df.stages:
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: df.args.get(m[1], m[0]), stage.base)
        if base in names:
            continue
        last = base.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if "$" in base or ("@sha256:" not in base and tag in ("", "latest")):
            found.append(f"stage {stage.name}: base image {base!r} is not pinned by tag or digest")
    return found


def expected_targets(df: Dockerfile) -> list[str]:
    missing = df.targets - {s.name for s in df.stages}
    return [f"missing targets {sorted(missing)}"] if missing else []


def non_root_user(df: Dockerfile) -> list[str]:
    found = []
    for stage in df.runtime():
        users = stage.values("USER")
        user = users[-1] if users else "root (no USER)"
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
            found.append(f"target {stage.name}: must end as a non-root numeric USER, not {user}")
    return found


def copy_sources(df: Dockerfile) -> list[str]:
    found = []
    for index, stage in enumerate(df.stages):
        earlier = {s.name for s in df.stages[:index]}
        for flags, sources, _ in stage.copies():
            if "from" in flags:
                if flags["from"] not in earlier:
                    found.append(f"stage {stage.name}: COPY --from={flags['from']} is no stage")
                continue
            for source in sources:
                path = Path(source).as_posix()
                if re.match(r"https?://", source):
                    found.append(f"stage {stage.name}: ADD fetches {source}")
                elif path == ".":
                    found.append(f"stage {stage.name}: copies the whole context; name the paths")
                elif not (ROOT / path).exists():
                    found.append(f"stage {stage.name}: COPY source {source} does not exist")
                elif dockerignored(path.split("/")[0]):
                    found.append(
                        f"stage {stage.name}: COPY source {source} is excluded by .dockerignore"
                    )
    return found


def no_model_fetching(df: Dockerfile) -> list[str]:
    return [
        f"target {stage.name}: fetches or builds models at image build: {run[:70]}"
        for stage in df.runtime()
        for run in stage.values("RUN")
        if FETCHES.search(run)
    ]


def models_from_models_stage(df: Dockerfile) -> list[str]:
    """Workers take the ONNX repository, and only it, from the models stage: never the builder
    venv, the npm cache, or the models stage itself as a base."""
    found = []
    if df.service != "gateway":
        models = df.stage("models")
        builds = [r for r in (models.values("RUN") if models else []) if "models build" in r]
        if not any("POSEFLEET_MODEL_ROOT=/models " in r for r in builds):
            found.append("no models stage running `posefleet models build` into /models")
    for stage in df.runtime():
        if stage.base == "models":
            found.append(f"target {stage.name}: builds on the models stage")
        from_models = [(src, dst) for f, src, dst in stage.copies() if f.get("from") == "models"]
        if any(src != ["/models"] for src, _ in from_models):
            found.append(f"target {stage.name}: copies more than /models from the models stage")
        if df.service != "gateway" and not from_models:
            found.append(f"target {stage.name}: does not copy the model repository")
    return found


def default_models(df: Dockerfile) -> list[str]:
    """By default an image carries every catalog model of the tasks its stages serve, so that
    switching a stage's model (POSEFLEET_STAGE_MODELS) is a settings change, not a rebuild."""
    if df.service == "gateway":
        return []
    models = df.stage("models")
    arg = models.pairs("ARG").get("MODELS") if models else None
    if arg is None:
        return ["models stage: no MODELS build arg"]
    names = set(arg.split())
    config = load_pipelines(ROOT / "pipelines.yaml")
    defaults = {config.stages[s].model for s in served_stages(df.service)} - {None}
    tasks = {CATALOG[m].task for m in defaults}
    wanted = {name for name, recipe in CATALOG.items() if recipe.task in tasks}
    found = [f"MODELS: {n} is not in the catalog" for n in sorted(names - set(CATALOG))]
    if names != wanted:
        found.append(f"MODELS default {sorted(names)} is not the served tasks' {sorted(wanted)}")
    return found


def command(df: Dockerfile) -> list[str]:
    found = []
    for stage in df.runtime():
        # Base images bring entrypoints (NVIDIA's banner script, the Neuron image's TorchServe
        # launcher); clearing them makes the CMD the whole command, as the chart's is.
        if stage.values("ENTRYPOINT")[-1:] != ["[]"]:
            found.append(f"target {stage.name}: must clear the base image's ENTRYPOINT with []")
        cmd = stage.values("CMD")
        if not cmd or not cmd[-1].startswith("["):
            found.append(f"target {stage.name}: needs an exec-form CMD")
            continue
        argv = json.loads(cmd[-1])
        if len(argv) < 3 or argv[:2] != ["python", "-m"] or not importlib.util.find_spec(argv[2]):
            found.append(f"target {stage.name}: CMD runs no importable module: {argv}")
        elif df.service == "gateway" and argv[2:] != ["services.gateway"]:
            found.append(f"target {stage.name}: CMD {argv} does not run the gateway")
        elif df.service != "gateway" and (
            argv[2:4] != ["services.cli", "worker"]
            or argv[4:] not in [[s] for s in served_stages(df.service)]
        ):
            found.append(f"target {stage.name}: CMD {argv} runs no stage this image serves")
    return found


def ports_and_paths(df: Dockerfile) -> list[str]:
    found = []
    for stage in df.runtime():
        env = stage.pairs("ENV")
        if df.service == "gateway":
            main = (ROOT / "services" / "gateway" / "__main__.py").read_text()
            port = re.search(r'environ\.get\("PORT", "(\d+)"\)', main)[1]
            grpc = re.search(r'environ\.get\("GRPC_PORT", "(\d+)"\)', main)[1]
            if env.get("PORT") != port:
                found.append(
                    f"target {stage.name}: PORT={env.get('PORT')}, the gateway's is {port}"
                )
            if env.get("GRPC_PORT") != grpc:
                found.append(f"target {stage.name}: GRPC_PORT={env.get('GRPC_PORT')}, not {grpc}")
            ports = [port, grpc]
        else:
            port = str(Settings.model_fields["metrics_port"].default)
            ports = [port]
            model_root = [dst for f, _, dst in stage.copies() if f.get("from") == "models"]
            if env.get("POSEFLEET_MODEL_ROOT") not in model_root:
                found.append(f"target {stage.name}: POSEFLEET_MODEL_ROOT is not where /models goes")
        if " ".join(stage.values("EXPOSE")).split() != ports:
            found.append(f"target {stage.name}: EXPOSE {stage.values('EXPOSE')}, expected {ports}")
        for key in ("HOME", "TMPDIR", "POSEFLEET_CACHE_DIR"):
            if not env.get(key, "").startswith("/tmp"):
                found.append(
                    f"target {stage.name}: {key} must be under /tmp (the only writable path)"
                )
        workdir = (stage.values("WORKDIR") or ["/"])[-1]
        if env.get("POSEFLEET_PIPELINES_FILE") != f"{workdir}/pipelines.yaml" or not any(
            "pipelines.yaml" in src and dst in ("./", f"{workdir}/")
            for _, src, dst in stage.copies()
        ):
            found.append(f"target {stage.name}: POSEFLEET_PIPELINES_FILE names no copied file")
    return found


def oci_labels(df: Dockerfile) -> list[str]:
    found = []
    if df.args.get("VERSION") != pyproject()["version"]:
        found.append(f"ARG VERSION={df.args.get('VERSION')} is not pyproject's version")
    for stage in df.runtime():
        labels = stage.pairs("LABEL")
        missing = [k for k in OCI_LABELS if f"org.opencontainers.image.{k}" not in labels]
        if missing:
            found.append(f"target {stage.name}: missing OCI label(s) {missing}")
        elif (
            labels["org.opencontainers.image.title"] != f"posefleet-{df.service}"
            or labels["org.opencontainers.image.licenses"] != pyproject()["license"]
        ):
            found.append(f"target {stage.name}: OCI title/licenses label is wrong")
    return found


def no_python_pins(df: Dockerfile) -> list[str]:
    """Versions live in pyproject.toml; images install `.` and its extras, never a second list."""
    return [
        f"stage {stage.name}: pins {sorted(set(PIN.findall(run)))} outside pyproject.toml"
        for stage in df.stages
        for run in stage.values("RUN")
        if PIN.search(run)
    ]


CHECKS: tuple[Callable[[Dockerfile], list[str]], ...] = (
    pinned_bases,
    expected_targets,
    non_root_user,
    copy_sources,
    no_model_fetching,
    models_from_models_stage,
    default_models,
    command,
    ports_and_paths,
    oci_labels,
    no_python_pins,
)


def problems(text: str, service: str) -> list[str]:
    """Everything wrong with one service's Dockerfile; empty means it passes."""
    df = parse(text, service)
    return [problem for check in CHECKS for problem in check(df)]


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


# ---- the tests ----


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_every_check(service):
    assert problems(dockerfile(service), service) == []


# (service, text replaced once, replacement, what the checks must say)
BREAKAGES = [
    ("pose", "python:3.11.11-slim-bookworm", "python:latest", "not pinned"),
    ("pose", "python:3.11.11-slim-bookworm", "python", "not pinned"),
    ("pose", "AS neuron", "AS inferentia", "missing targets"),
    ("pose", "USER 10001:10001\nEXPOSE", "USER root\nEXPOSE", "non-root"),
    ("pose", "USER 10001:10001\nEXPOSE", "USER 0\nEXPOSE", "non-root"),
    ("detector", "USER 10001:10001\n", "", "non-root"),
    ("pose", "COPY --from=models", "COPY --from=modelz", "is no stage"),
    ("pose", "COPY services ./services\nRUN pip", "COPY servicez ./services\nRUN pip", "not exist"),
    ("pose", "COPY services ./services\nRUN pip", "COPY tests ./tests\nRUN pip", ".dockerignore"),
    (
        "pose",
        "RUN pip install --no-cache-dir . &&",
        "RUN posefleet models build && pip install . &&",
        "builds models",
    ),
    (
        "ensemble",
        "WORKDIR /app\nCOPY",
        "RUN npm pack @vladmandic/human\nWORKDIR /app\nCOPY",
        "builds models",
    ),
    (
        "pose",
        "COPY --from=models /models /models\nUSER",
        "COPY --from=models /tmp /opt\nUSER",
        "more than /models",
    ),
    ("pose", "COPY --from=models /models /models\nUSER", "USER", "does not copy the model"),
    ("pose", "FROM ${PYTHON_IMAGE} AS cpu", "FROM models AS cpu", "builds on the models stage"),
    (
        "pose",
        'MODELS="movenet-lightning movenet-thunder',
        'MODELS="movenet-lightning',
        "served tasks",
    ),
    ("detector", 'MODELS="centernet nanodet"', 'MODELS="centernet nanodett"', "not in the catalog"),
    ("pose", '"services.cli", "worker", "pose"', '"services.nope", "worker", "pose"', "importable"),
    ("pose", '"worker", "pose"]', '"worker", "detector"]', "no stage this image serves"),
    ("ensemble", "ENTRYPOINT []\nCMD", 'ENTRYPOINT ["/bin/sh"]\nCMD', "ENTRYPOINT"),
    ("gateway", "ENTRYPOINT []\n", "", "ENTRYPOINT"),
    ("pose", "EXPOSE 9100", "EXPOSE 8000", "EXPOSE"),
    ("gateway", "EXPOSE 8080", "EXPOSE 8000", "EXPOSE"),
    ("gateway", " PORT=8080", " PORT=9000", "the gateway's is"),
    ("gateway", "GRPC_PORT=8081", "GRPC_PORT=9001", "GRPC_PORT=9001, not 8081"),
    ("gateway", "HOME=/tmp", "HOME=/home/app", "HOME must be under /tmp"),
    ("pose", "ROOT=/models \\\n", "ROOT=/srv/models \\\n", "POSEFLEET_MODEL_ROOT is not where"),
    ("pose", "ROOT=/models POSEFLEET_CACHE_DIR", "ROOT=/srv POSEFLEET_CACHE_DIR", "into /models"),
    ("gateway", "POSEFLEET_PIPELINES_FILE=/app/", "POSEFLEET_PIPELINES_FILE=/etc/", "PIPELINES"),
    (
        "gateway",
        'CMD ["python", "-m", "services.gateway"]',
        "CMD python -m services.gateway",
        "exec-form",
    ),
    ("gateway", 'services.gateway"]', 'services.cli", "control-worker"]', "not run the gateway"),
    (
        "pose",
        '      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \\\n',
        "",
        "missing OCI label",
    ),
    ("gateway", "ARG VERSION=0.1.0", "ARG VERSION=9.9.9", "pyproject's version"),
    (
        "pose",
        "pip install --no-cache-dir . &&",
        "pip install --no-cache-dir . numpy==2.4.6 &&",
        "outside pyproject.toml",
    ),
]


@pytest.mark.parametrize(("service", "old", "new", "complaint"), BREAKAGES)
def test_the_checks_catch_a_broken_dockerfile(service, old, new, complaint):
    text = dockerfile(service)
    assert old in text, "the breakage no longer applies to the Dockerfile: update it"
    found = problems(text.replace(old, new, 1), service)
    assert any(complaint in p for p in found), found


def test_a_careless_dockerfile_fails_on_every_count():
    careless = "FROM python:latest AS cpu\nCOPY . /app\nUSER root\nCMD python -m services.gateway\n"
    found = "\n".join(problems(careless, "gateway"))
    for complaint in ("not pinned", "non-root", "exec-form", "OCI label", "EXPOSE", "/tmp"):
        assert complaint in found


def test_worker_dockerfiles_differ_only_in_service_models_and_stage():
    """Docker has no include, so the three worker Dockerfiles repeat one layout; normalised,
    they must be the same text, so a fix made to one is made to all."""

    def normalised(service: str) -> str:
        text = dockerfile(service)
        text = text[text.index("\nARG ") :]  # the header comment says what the image is for
        text = text.replace(f"posefleet-{service}", "posefleet-SERVICE")
        text = text.replace(f"Posefleet {service} worker", "Posefleet SERVICE worker")
        text = re.sub(r'ARG MODELS="[^"]*"', 'ARG MODELS="…"', text)
        return re.sub(r'"worker", "[a-z-]+"', '"worker", "STAGE"', text)

    assert normalised("detector") == normalised("pose") == normalised("ensemble")


def test_every_chart_stage_runs_an_image_built_here():
    values = yaml.safe_load((ROOT / "charts" / "posefleet" / "values.yaml").read_text())
    assert {spec["image"] for spec in values["stages"].values()} == set(SERVICES) - {"gateway"}


def test_skaffold_builds_targets_the_dockerfiles_define():
    """Including the targets the gpu and inferentia profiles patch in."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    variants = [config["build"]["artifacts"]]
    for profile in config["profiles"]:
        artifacts = json.loads(json.dumps(config["build"]["artifacts"]))
        for patch in profile.get("patches", []):
            match = re.fullmatch(r"/build/artifacts/(\d+)/docker/target", patch["path"])
            if match:
                artifacts[int(match[1])]["docker"]["target"] = patch["value"]
        variants.append(artifacts)
    for artifacts in variants:
        for artifact in artifacts:
            service = artifact["image"].removeprefix("posefleet/")
            assert artifact["docker"]["dockerfile"] == f"services/{service}/Dockerfile"
            df = parse(dockerfile(service), service)
            assert artifact["docker"]["target"] in {s.name for s in df.runtime()}
