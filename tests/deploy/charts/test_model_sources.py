"""The chart's model sources (values `models`): what each renders, read on the output of a real
Helm — the workers' /models volume, the init container that fills it, the egress it needs."""

from __future__ import annotations

import pytest

from tests.deploy.charts.conftest import CHART, helm, of_kind, render
from tests.deploy.charts.test_helm_chart import validate_strictly, workers


def pods(*sets: str) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in workers(render(None, True, *sets))]


def mount(container: dict) -> dict | None:
    return next((m for m in container["volumeMounts"] if m["name"] == "models"), None)


def volume(pod: dict) -> dict | None:
    return next((v for v in pod["volumes"] if v["name"] == "models"), None)


def test_default_serves_the_models_baked_into_the_images():
    for pod in pods():
        assert "initContainers" not in pod and volume(pod) is None
        assert mount(pod["containers"][0]) is None


def test_pvc_is_mounted_read_only_on_every_worker():
    for pod in pods("models.source=pvc", "models.pvc.claimName=repo", "models.pvc.subPath=v2"):
        assert volume(pod)["persistentVolumeClaim"] == {"claimName": "repo", "readOnly": True}
        assert mount(pod["containers"][0]) == {
            "name": "models", "mountPath": "/models", "readOnly": True, "subPath": "v2"
        }  # fmt: skip


def test_modelcar_copied_by_an_init_container_into_an_empty_dir():
    sets = ("models.source=modelcar", "models.modelcar.image=acme/models:1")
    for pod in pods(*sets):
        (init,) = pod["initContainers"]
        assert init["image"] == "acme/models:1"
        assert init["command"] == ["sh", "-c", 'cp -R "$0"/. /posefleet-models/', "/models"]
        assert init["volumeMounts"] == [{"name": "models", "mountPath": "/posefleet-models"}]
        assert volume(pod)["emptyDir"] == {"sizeLimit": "10Gi"}
        assert mount(pod["containers"][0])["readOnly"] is True


def test_modelcar_as_an_image_volume_needs_no_copy():
    sets = ("models.source=modelcar", "models.modelcar.image=acme/models:1")
    for pod in pods(*sets, "models.modelcar.mode=volume", "models.modelcar.path=/srv/models"):
        assert "initContainers" not in pod
        assert volume(pod)["image"] == {"reference": "acme/models:1", "pullPolicy": "IfNotPresent"}
        assert mount(pod["containers"][0])["subPath"] == "srv/models"


def test_s3_is_pulled_and_verified_by_the_workers_own_cli():
    sets = (
        "models.source=s3",
        "models.s3.url=s3://bucket/prod",
        "models.s3.endpointUrl=http://minio:9000",
        "models.s3.region=eu-west-1",
        "models.s3.port=9000",
        "models.s3.secret.name=minio",
    )
    docs = render(None, True, *sets)
    for pod in pods(*sets):
        (init,) = pod["initContainers"]
        worker = pod["containers"][0]
        assert init["image"] == worker["image"]  # the same image: no extra image to trust
        assert init["command"] == [
            "python", "-m", "services.cli", "models", "pull", "s3://bucket/prod",
            "--to", "/models", "--endpoint-url", "http://minio:9000",
        ]  # fmt: skip
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"] if "valueFrom" in e
        }
        assert secrets == {
            "AWS_ACCESS_KEY_ID": {"name": "minio", "key": "AWS_ACCESS_KEY_ID"},
            "AWS_SECRET_ACCESS_KEY": {"name": "minio", "key": "AWS_SECRET_ACCESS_KEY"},
        }
        assert {"name": "AWS_REGION", "value": "eu-west-1"} in init["env"]
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        assert mount(worker) == {"name": "models", "mountPath": "/models", "readOnly": True}
    (egress,) = [
        p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("model-storage")
    ]
    assert egress["spec"]["egress"] == [{"ports": [{"port": 9000, "protocol": "TCP"}]}]
    assert egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    for doc in docs:
        validate_strictly(doc)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["models.source=s3"], "models.s3.url is required"),
        (["models.source=pvc"], "models.pvc.claimName is required"),
        (["models.source=modelcar"], "models.modelcar.image is required"),
        (["models.source=nfs"], "/models/source"),
    ],
)
def test_a_source_without_its_settings_fails_the_render(sets, message):
    args = ["template", "pf", str(CHART)]
    for assignment in sets:
        args += ["--set", assignment]
    result = helm(*args, check=False)
    assert result.returncode != 0 and message in result.stderr
