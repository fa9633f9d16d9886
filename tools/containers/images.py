"""`make images`: the cpu images of the gateway and of every worker service the chart runs, and
the Redis image, built with no registry.

Without ``--python-image`` the base is made here (tools/containers/base.py). Models are never
built inside an image: the host's repository (`posefleet models build`, cached) is staged per
service into a models-only image (images/models.Dockerfile), which the worker recipe copies from
(build arg MODELS_IMAGE). Each service gets every catalog model of the tasks its stages serve,
so a stage's model switches by settings (POSEFLEET_STAGE_MODELS), and no other model.

    python -m tools.containers.images                       # everything, then a size/time table
    python -m tools.containers.images pose gateway          # some of it
    python -m tools.containers.images --python-image python:3.11.11-slim-bookworm
    python -m tools.containers.images --models pose=movenet-lightning,movenet-multipose
    IMAGE=reg/models-pose:x python -m tools.containers.images --models-image pose   # skaffold
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from services.core.pipeline import load_pipelines
from services.core.settings import get_settings
from services.factory.build import build_models
from services.factory.catalog import CATALOG
from tools.containers.base import ensure_base
from tools.containers.dockercli import docker, image_exists, posefleet_cache
from tools.containers.engine import answers

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "images"
REGISTRY = "posefleet"  # local tags follow the chart: <registry>/<service>:<tag>-<target>
TARGET = "cpu"
REDIS_TAG = f"{REGISTRY}/redis:7.0-bookworm"


@cache
def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@cache
def worker_services() -> dict[str, tuple[str, ...]]:
    """Each worker image the chart runs and the stages it runs it for, in the chart's order."""
    values = yaml.safe_load((ROOT / "charts" / "posefleet" / "values.yaml").read_text())
    services: dict[str, list[str]] = {}
    for stage, spec in values["stages"].items():
        services.setdefault(spec["image"], []).append(stage)
    return {service: tuple(stages) for service, stages in services.items()}


def default_stage(service: str) -> str:
    """The stage an image runs when its command names none: the one named like the service,
    else its first."""
    stages = worker_services()[service]
    return service if service in stages else stages[0]


def served_models(service: str) -> list[str]:
    """Every catalog model of the tasks the service's stages serve by default."""
    config = load_pipelines(ROOT / "pipelines.yaml")
    defaults = {config.stages[s].model for s in worker_services()[service]} - {None}
    tasks = {CATALOG[m].task for m in defaults}
    return sorted(name for name, recipe in CATALOG.items() if recipe.task in tasks)


def image_tag(service: str) -> str:
    return f"{REGISTRY}/{service}:{version()}-{TARGET}"


def models_tag(service: str) -> str:
    return f"{REGISTRY}/models-{service}:{version()}"


def all_tags() -> list[str]:
    return [image_tag("gateway"), *map(image_tag, worker_services()), REDIS_TAG]


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float

    def size_mb(self) -> float:
        return int(docker("image", "inspect", "--format", "{{.Size}}", self.tag)) / 1e6


def build(tag: str, context: Path, dockerfile: Path, **args: str) -> Built:
    """``docker build`` of one image; the build's own output only when it fails."""
    started = time.perf_counter()
    print(f"building {tag}", file=sys.stderr, flush=True)
    cmd = ["build", "--force-rm", "-f", str(dockerfile), "-t", tag, str(context)]
    if "target" in args:
        cmd[1:1] = ["--target", args.pop("target")]
    for key, value in args.items():
        cmd[1:1] = ["--build-arg", f"{key}={value}"]
    docker(*cmd)
    return Built(tag, time.perf_counter() - started)


def stage_models(service: str, names: list[str]) -> Path:
    """A build context holding only ``names`` from the host's model repository (hard links
    where the file system allows), built first if missing."""
    settings = get_settings()
    built = build_models(names, settings.model_root, settings.cache_dir)
    context = posefleet_cache() / "images" / f"models-{service}"
    shutil.rmtree(context, ignore_errors=True)
    for model in built:
        target = context / model.name / model.version
        shutil.copytree(model.path, target, copy_function=_link_or_copy)
    return context


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_models_image(service: str, tag: str, names: list[str] | None = None) -> Built:
    context = stage_models(service, names or served_models(service))
    return build(tag, context, RECIPES / "models.Dockerfile", VERSION=version())


def build_images(
    services: list[str], python_image: str | None, models: dict[str, list[str]]
) -> list[Built]:
    base = python_image or ensure_base()
    built = []
    if "redis" in services:
        built.append(build(REDIS_TAG, RECIPES / "redis", RECIPES / "redis" / "Dockerfile",
                           BASE_IMAGE=base))  # fmt: skip
    if "gateway" in services:
        built.append(build(image_tag("gateway"), ROOT, RECIPES / "gateway.Dockerfile",
                           target=TARGET, PYTHON_IMAGE=base, VERSION=version()))  # fmt: skip
    for service in worker_services():
        if service not in services:
            continue
        built.append(build_models_image(service, models_tag(service), models.get(service)))
        worker_args = {"PYTHON_IMAGE": base, "MODELS_IMAGE": models_tag(service)}
        worker_args |= {"SERVICE": service, "STAGE": default_stage(service), "VERSION": version()}
        built.append(build(image_tag(service), ROOT, RECIPES / "worker.Dockerfile",
                           target=TARGET, **worker_args))  # fmt: skip
    return built


def local_redis_image() -> str | None:
    """The local Redis image for testcontainers (built if missing) when an engine answers on
    DOCKER_HOST; None where there is none."""
    host = os.environ.get("DOCKER_HOST")
    if not host or not answers(host):
        return None
    if not image_exists(REDIS_TAG):
        build_images(["redis"], None, {})
    return REDIS_TAG


def main() -> None:
    choices = ["gateway", *worker_services(), "redis"]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("services", nargs="*", help=f"any of {choices} (default: all)")
    parser.add_argument("--python-image", help="base image (default: make one with mmdebstrap)")
    parser.add_argument("--models", action="append", default=[], metavar="SERVICE=M1,M2",
                        help="ship only these models in SERVICE's image")  # fmt: skip
    parser.add_argument("--models-image", metavar="SERVICE",
                        help="only SERVICE's models image, tagged $IMAGE (skaffold's custom "
                        "builder contract; pushed when $PUSH_IMAGE is true)")  # fmt: skip
    args = parser.parse_args()
    if args.models_image:
        build_models_image(args.models_image, os.environ["IMAGE"])
        if os.environ.get("PUSH_IMAGE") == "true":
            docker("push", os.environ["IMAGE"])
        return
    unknown = sorted(set(args.services) - set(choices))
    if unknown:
        parser.error(f"unknown image(s) {unknown}; choose from {choices}")
    models = {}
    for item in args.models:
        service, _, names = item.partition("=")
        models[service] = names.split(",")
    started = time.perf_counter()
    built = build_images(args.services or choices, args.python_image, models)
    print(f"\n{'image':<40} {'size MB':>8} {'build s':>8}")
    for item in built:
        print(f"{item.tag:<40} {item.size_mb():>8.0f} {item.seconds:>8.1f}")
    print(f"{'total':<40} {'':>8} {time.perf_counter() - started:>8.1f}")


if __name__ == "__main__":
    main()
