"""The harness's reading of the chart (tools/containers/podspec.py), without an engine: what a
kubelet would make of each pod spec, and the refusals where the harness would differ from one."""

from __future__ import annotations

import copy

import pytest

from services.core.settings import Settings
from tools.containers.chart import render
from tools.containers.kubelet import PodFailed, effective_user
from tools.containers.podspec import Unsupported, expand, pods, quantity, service_links


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render()


def by_owner(docs, owner: str):
    return next(p for p in pods(docs) if p.owner == owner)


def test_the_chart_pods_as_a_kubelet_reads_them(docs):
    found = {p.owner: p for p in pods(docs)}
    assert next(iter(found)) == "posefleet-redis"  # StatefulSets first: everything needs Redis
    redis, gateway = found["posefleet-redis"], found["posefleet-gateway"]
    password = dict(redis.container.env)["REDIS_PASSWORD"]
    assert len(password) == 32  # from the rendered Secret, base64-decoded
    assert redis.container.args[-2:] == ("--requirepass", password)  # $(REDIS_PASSWORD) expanded
    assert [(m.kind, m.volume, m.path) for m in redis.container.mounts] == [
        ("volume", "data-posefleet-redis-0", "/data"),
        ("tmpfs", "tmp", "/tmp"),
    ]
    assert redis.aliases == ("posefleet-redis", "posefleet-redis-0.posefleet-redis")
    env = dict(gateway.container.env)
    assert env["POSEFLEET_REDIS_URL"] == f"redis://:{password}@posefleet-redis:6379/0"
    assert gateway.redirects == ((80, 8080),)  # Service port 80 -> targetPort http
    c = gateway.container
    assert (c.user, c.group, c.extra_groups, c.read_only) == (10001, 10001, (10001,), True)
    assert (c.cap_drop, c.no_new_privileges, c.cpus, c.memory) == (("ALL",), True, 1, 2**30)
    assert c.cpu_shares == 256  # requests.cpu 250m, the kubelet's conversion
    # started = V2 gRPC serving (grpc.health.v1), then the HTTP probes
    assert (c.startup.kind, c.startup.port, c.startup.path) == (
        "grpc",
        8081,
        "inference.GRPCInferenceService",
    )
    assert (c.readiness.port, c.readiness.path, c.liveness.period) == (8080, "/readyz", 10)
    worker = found["posefleet-detector-cpu"]
    assert worker.grace == 330 and worker.container.command[-1] == "detector"


def test_service_variables_shadow_no_setting(docs):
    """The kubelet adds FOO_SERVICE_HOST, FOO_PORT=tcp://… for every Service: for the Service
    posefleet-redis that is POSEFLEET_REDIS_PORT, which a setting `redis_port` would read."""
    links = {k.removeprefix("POSEFLEET_").lower() for k in service_links(docs)}
    assert {"redis_port", "gateway_service_host"} <= links
    assert not links & set(Settings.model_fields)
    for pod in pods(docs):
        assert dict(pod.container.env)["POSEFLEET_REDIS_PORT"].startswith("tcp://")


def test_kubernetes_variable_expansion():
    env = {"A": "x"}
    assert expand("$(A)-$(B)-$$(A)-$", env) == "x-$(B)-$(A)-$"
    assert [quantity(q) for q in ("250m", "2Gi", "1", "512Mi")] == [0.25, 2**31, 1, 2**29]


SECRET = {"name": "nope", "key": "k"}


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("hostNetwork",), True, "pod fields"),
        (("containers", 0, "lifecycle"), {"preStop": {}}, "fields"),
        (("containers", 0, "resources", "limits", "nvidia.com/gpu"), 1, "does not have"),
        (
            ("containers", 0, "env"),
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            "not rendered",
        ),
        (("containers", 0, "livenessProbe"), {"httpGet": {"port": 1, "scheme": "HTTPS"}}, "probe"),
        (("containers", 0, "securityContext", "procMount"), "Unmasked", "securityContext"),
    ],
)
def test_what_the_harness_cannot_do_it_refuses(docs, path, value, complaint):
    """A field the harness does not emulate stops it, instead of running something else."""
    broken = copy.deepcopy(docs)
    target = gateway_pod(broken)
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(Unsupported, match=complaint):
        pods(broken)


def gateway_pod(docs) -> dict:
    deployment = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "posefleet-gateway"
    )
    return deployment["spec"]["template"]["spec"]


def test_run_as_non_root_is_enforced(docs):
    """The kubelet refuses a runAsNonRoot container that would run as root (the chart's
    values schema already refuses runAsUser 0, so the manifest is edited here)."""
    assert effective_user(by_owner(docs, "posefleet-gateway"), "0") == "10001:10001"
    edited = copy.deepcopy(docs)
    gateway_pod(edited)["containers"][0]["securityContext"]["runAsUser"] = 0
    with pytest.raises(PodFailed, match="would run as root"):
        effective_user(by_owner(edited, "posefleet-gateway"), "10001")
    del gateway_pod(edited)["securityContext"]["runAsUser"]
    del gateway_pod(edited)["containers"][0]["securityContext"]["runAsUser"]
    with pytest.raises(PodFailed, match="not numeric"):
        effective_user(by_owner(edited, "posefleet-gateway"), "redis")
