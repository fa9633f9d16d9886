"""k8s/ (the chart rendered for kustomize, plus pool overlays) and skaffold.yaml."""

import copy
import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from tests.deploy.charts.conftest import env_of
from tests.deploy.charts.test_helm_chart import validate_strictly, workers
from tools.containers.images import default_stage, worker_services
from tools.dockerfile_checks import RECIPES, parse
from tools.kubetools import ROOT, ensure
from tools.render_k8s import BASE, render

SKAFFOLD_SCHEMA = ROOT / "tests" / "data" / "skaffold-v4beta13.json"


def kustomize(overlay: str) -> tuple[dict, ...]:
    out = subprocess.run(
        [str(ensure("kubectl")), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def test_base_is_the_chart_rendered_now():
    assert BASE.read_text() == render(), "k8s/base is stale: run `make k8s`"


@pytest.mark.parametrize("overlay", ["cpu", "gpu", "inferentia"])
def test_overlays_render_valid_objects(overlay):
    docs = kustomize(overlay)
    for doc in docs:
        validate_strictly(doc)
    assert all(d["metadata"].get("namespace") == "posefleet" for d in docs)


@pytest.mark.parametrize(
    ("overlay", "stages", "pool", "device"),
    [
        ("gpu", {"detector", "pose", "multipose"}, "gpu", "nvidia.com/gpu"),
        ("inferentia", {"pose", "multipose"}, "inferentia", "aws.amazon.com/neuron"),
        ("cpu", set(), "cpu", None),
    ],
)
def test_overlays_move_stages_onto_their_pool(overlay, stages, pool, device):
    deployments = workers(kustomize(overlay))
    rendered = {d["metadata"]["labels"]["posefleet.io/stage"] for d in deployments}
    assert deployments and stages <= rendered, f"{overlay}: stages {stages} not all rendered"
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        stage = deployment["metadata"]["labels"]["posefleet.io/stage"]
        env = env_of(container)
        if stage in stages:
            assert env["POSEFLEET_POOL"] == pool
            assert json.loads(env["POSEFLEET_POOL_HOURLY_COST"]).keys() == {pool}
            assert device in container["resources"]["limits"]
        else:
            assert env["POSEFLEET_POOL"] == "cpu" and container["image"].endswith("-cpu")


def test_skaffold_config_matches_the_official_schema():
    schema = json.loads(SKAFFOLD_SCHEMA.read_text())
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["apiVersion"] == "skaffold/v4beta13"
    assert {p["name"] for p in config["profiles"]} == {"cpu", "gpu", "inferentia", "dev"}
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict enough to catch typos
        jsonschema.validate({**config, "deploy": {"helm": {"release": []}}}, schema)


def test_skaffold_builds_every_service_image_from_its_recipe():
    """Each service image from its recipe and a target it defines (the gpu and inferentia
    profiles' patched targets included); each worker from the worker recipe with its service's
    build args and models image; every image the chart runs is among them."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    workers = set(worker_services())
    assert set(artifacts) == {f"posefleet/{s}" for s in ("gateway", *workers)} | {
        f"posefleet/models-{s}" for s in workers
    }
    variants = [config["build"]["artifacts"]]
    for profile in config["profiles"]:
        patched = copy.deepcopy(config["build"]["artifacts"])
        for patch in profile.get("patches", []):
            match = re.fullmatch(r"/build/artifacts/(\d+)/docker/target", patch["path"])
            if match:
                patched[int(match[1])]["docker"]["target"] = patch["value"]
            elif patch["path"].endswith("valuesFiles"):
                assert all((ROOT / f).exists() for f in patch["value"])
        variants.append(patched)
    for variant in variants:
        for artifact in variant:
            service = artifact["image"].removeprefix("posefleet/")
            if service.startswith("models-"):
                assert artifact["custom"]["buildCommand"].endswith(
                    f"--models-image {service.removeprefix('models-')}"
                )
                continue
            recipe = "gateway" if service == "gateway" else "worker"
            docker = artifact["docker"]
            assert docker["dockerfile"] == f"images/{recipe}.Dockerfile"
            parsed = parse((ROOT / docker["dockerfile"]).read_text(), RECIPES[recipe])
            assert docker["target"] in {s.name for s in parsed.runtime()}
            if recipe == "worker":
                assert docker["buildArgs"] == {"SERVICE": service, "STAGE": default_stage(service)}
                assert artifact["requires"] == [
                    {"image": f"posefleet/models-{service}", "alias": "MODELS_IMAGE"}
                ]
    release = config["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
