"""The Helm chart, short of a cluster: real `helm lint --strict` and `helm template` over the CI
values matrix, every object validated strictly against Kubernetes' and the CRDs' schemas, and
what the objects must MEAN checked on the rendered output."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import promql_parser
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor

from services.core import keys
from services.core.pipeline import load_pipelines
from tests.deploy.charts.conftest import CHART, env_of, helm, of_kind, render
from tests.deploy.charts.test_observability_files import recorded_names, unknown_metrics

KUBERNETES_VERSION = "1.35"
CRD_MODELS = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
    "ServiceMonitor": ServiceMonitor,
    "PodMonitor": PodMonitor,
    "PrometheusRule": PrometheusRule,
}


def validate_strictly(doc: dict[str, Any]) -> None:
    """Core kinds against Kubernetes' OpenAPI schema with unknown fields rejected; CRD kinds
    against their pydantic models, where an unknown field is one the model drops on the way
    back out (the models themselves accept extras)."""
    model = CRD_MODELS.get(doc["kind"])
    if model is None:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    back = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
    if back != doc:
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: unknown or invalid fields")


def workers(docs) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def pod_containers(docs):
    for doc in docs:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or (spec if doc["kind"] == "Pod" else None)
        if pod:
            for container in pod["containers"]:
                yield doc, pod, container


def test_lint_strict(ci_values):
    result = helm("lint", "--strict", str(CHART), "-f", str(ci_values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_object_is_valid(ci_values):
    docs = render(ci_values)
    assert docs
    for doc in docs:
        validate_strictly(doc)


def test_the_strict_checks_can_fail():
    deployment = of_kind(render(None), "Deployment")[0]
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    scaled = of_kind(render(None), "ScaledObject")[0]
    with pytest.raises(AssertionError, match="unknown"):
        validate_strictly({**scaled, "spec": {**scaled["spec"], "minReplicas": 1}})


def test_values_schema_rejects_a_typo():
    result = helm(
        "lint", "--strict", str(CHART), "--set", "autoscaling.keda.lagcount=5", check=False
    )
    assert result.returncode != 0 and "lagcount" in result.stdout + result.stderr


def test_each_stage_and_pool_is_a_deployment_of_its_stage_consumer_group(ci_values):
    docs = render(ci_values)
    served = {
        (
            d["metadata"]["labels"]["posefleet.io/stage"],
            d["metadata"]["labels"]["posefleet.io/pool"],
        )
        for d in workers(docs)
    }
    for deployment in workers(docs):
        stage = deployment["metadata"]["labels"]["posefleet.io/stage"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        # `posefleet worker STAGE` joins keys.group(STAGE) on keys.stream(STAGE)
        assert container["command"][-2:] == ["worker", stage]
        assert (
            env_of(container)["POSEFLEET_POOL"]
            == deployment["metadata"]["labels"]["posefleet.io/pool"]
        )
    for scaled in of_kind(docs, "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        deployment = next(d for d in workers(docs) if d["metadata"]["name"] == target)
        stage = deployment["metadata"]["labels"]["posefleet.io/stage"]
        (trigger,) = scaled["spec"]["triggers"]
        if trigger["type"] == "redis-streams":
            assert trigger["metadata"]["stream"] == keys.stream(stage)
            assert trigger["metadata"]["consumerGroup"] == keys.group(stage)
        else:
            assert f'stage="{stage}"' in trigger["metadata"]["query"]
    assert served  # every CI file runs some stage


def test_default_stages_are_the_pipelines_file_stages():
    stages = {d["metadata"]["labels"]["posefleet.io/stage"] for d in workers(render(None))}
    assert stages == set(load_pipelines(CHART.parents[1] / "pipelines.yaml").stages)


def test_accelerator_pools_request_their_devices(ci_values):
    deployments = workers(render(ci_values))
    assert deployments, "no worker Deployments rendered"
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        pool = deployment["metadata"]["labels"]["posefleet.io/pool"]
        limits = container["resources"]["limits"]
        env = env_of(container)
        if pool == "gpu":
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert env["POSEFLEET_PROVIDER"] in ("cuda", "tensorrt")
            assert container["image"].endswith("-gpu")
        elif pool == "inferentia":
            assert int(limits["aws.amazon.com/neuron"]) >= 1
            assert env["POSEFLEET_BACKEND"] == "neuron" and container["image"].endswith("-neuron")
        else:
            assert not {"nvidia.com/gpu", "aws.amazon.com/neuron"} & set(limits)


def test_grace_period_outlasts_the_longest_batch(ci_values):
    deployments = workers(render(ci_values))
    assert deployments, "no worker Deployments rendered"
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        batch_timeout = float(env_of(pod["containers"][0])["POSEFLEET_BATCH_TIMEOUT_S"])
        assert pod["terminationGracePeriodSeconds"] > batch_timeout


def test_nothing_runs_as_root_or_writes_its_image(ci_values):
    containers = list(pod_containers(render(ci_values)))
    assert len(containers) >= 3, "expected Redis, gateway and worker containers at least"
    for doc, pod, container in containers:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        user = container.get("securityContext", {}).get(
            "runAsUser", pod["securityContext"].get("runAsUser")
        )
        assert pod["securityContext"]["runAsNonRoot"] is True and user and user > 0, where
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where
        assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_keda_off_or_missing_means_cpu_hpas_never_below_one():
    for docs in (
        render(CHART / "ci" / "keda-off-values.yaml"),
        render(None, False),  # KEDA enabled, but its CRDs are not in the cluster
    ):
        assert not of_kind(docs, "ScaledObject")
        assert workers(docs), "no worker Deployments rendered"
        targets = {
            h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")
        }
        assert {w["metadata"]["name"] for w in workers(docs)} <= targets
        assert all(h["spec"]["minReplicas"] >= 1 for h in of_kind(docs, "HorizontalPodAutoscaler"))


def test_keda_scales_classifiers_to_zero_and_wakes_on_backlog():
    by_target = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]
        for s in of_kind(render(None), "ScaledObject")
    }
    assert by_target["pf-posefleet-classifier-a-cpu"]["minReplicaCount"] == 0
    assert by_target["pf-posefleet-detector-cpu"]["minReplicaCount"] == 1
    auth = of_kind(render(None), "TriggerAuthentication")[0]["spec"]["secretTargetRef"][0]
    assert auth["parameter"] == "password"


def test_monitoring_objects_only_with_the_operator_and_when_wanted():
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert kinds <= {d["kind"] for d in render(None)}
    assert not kinds & {d["kind"] for d in render(None, False)}
    assert not kinds & {d["kind"] for d in render(CHART / "ci" / "prometheus-off-values.yaml")}


def test_rules_and_alerts_use_only_real_series():
    (rule,) = of_kind(render(None), "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert {
        "PosefleetBacklogGrowing",
        "PosefleetDeadLetters",
        "PosefleetErrorRatio",
        "PosefleetNoWorkersForBacklog",
    } <= alerts
    assert "posefleet:cost_per_1000_images_dollars:by_pool" in recorded
    for r in rules:
        promql_parser.parse(r["expr"])
        assert not unknown_metrics(r["expr"]), r["expr"]
        assert recorded_names(r["expr"]) <= recorded, r["expr"]


def test_external_redis_over_tls():
    docs = render(CHART / "ci" / "external-redis-values.yaml")
    assert not of_kind(docs, "StatefulSet")
    (gateway,) = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    ]
    env = env_of(gateway["spec"]["template"]["spec"]["containers"][0])
    assert env["POSEFLEET_REDIS_URL"] == (
        "rediss://:$(POSEFLEET_REDIS_PASSWORD)@posefleet.abc123.cache.amazonaws.com:6380/0"
    )
    (scaled,) = of_kind(docs, "ScaledObject")
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    assert metadata["address"] == "posefleet.abc123.cache.amazonaws.com:6380"
    assert metadata["enableTLS"] == "true"
    assert of_kind(docs, "Ingress") and env["POSEFLEET_PIPELINES_FILE"]


def test_only_the_gateway_is_reachable_and_workers_reach_only_redis():
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(render(None), "NetworkPolicy")}
    deny = policies["pf-posefleet-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    gateway = policies["pf-posefleet-gateway-ingress"]
    assert gateway["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    egress = policies["pf-posefleet-redis-clients"]["egress"]
    redis_rule = next(rule for rule in egress if "to" in rule)
    assert (
        redis_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    )
    assert [p["port"] for p in redis_rule["ports"]] == [6379]


def test_helm_test_pod_submits_the_bundled_photo():
    docs = render(None)
    (pod,) = of_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "/v1/pipelines/pose/jobs" in script and "len(people) == 1" in script
    photo = next(d for d in of_kind(docs, "ConfigMap") if "binaryData" in d)
    assert photo["binaryData"]["astronaut.jpg"].startswith("/9j/")  # a base64 JPEG


def test_every_top_level_value_is_documented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if line and not line.startswith((" ", "#"))]
    assert len(keys) >= 5, "values.yaml has hardly any top-level keys"
    for i in keys:
        start = i
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1  # to the first line of the comment block above the key
        assert lines[start].startswith("# --"), f"values.yaml: {lines[i]!r} has no '# --' doc"


def test_private_docs_and_metrics_and_a_prometheus_that_sends_an_operator_key():
    docs = render(CHART / "ci" / "private-endpoints-values.yaml")
    (gateway,) = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    ]
    env = env_of(gateway["spec"]["template"]["spec"]["containers"][0])
    assert env["POSEFLEET_PUBLIC_DOCS"] == env["POSEFLEET_PUBLIC_METRICS"] == "false"
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "posefleet-prometheus-key", "key": "token"},
    }
    # The defaults keep both public and scrape without credentials.
    (default_gateway,) = [
        d for d in of_kind(render(None), "Deployment") if d["metadata"]["name"].endswith("-gateway")
    ]
    assert not {"POSEFLEET_PUBLIC_DOCS", "POSEFLEET_PUBLIC_METRICS"} & set(
        env_of(default_gateway["spec"]["template"]["spec"]["containers"][0])
    )
    assert "authorization" not in of_kind(render(None), "ServiceMonitor")[0]["spec"]["endpoints"][0]


def test_webhooks_get_their_secret_and_only_public_egress():
    assert not any(
        "webhooks" in p["metadata"]["name"] for p in of_kind(render(None), "NetworkPolicy")
    )
    docs = render(None, True, "webhooks.enabled=true", "webhooks.existingSecret=hooks")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    for name in ("pf-posefleet-gateway", "pf-posefleet-control"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        (secret,) = [e for e in container["env"] if e["name"] == "POSEFLEET_WEBHOOK_SECRET"]
        assert secret["valueFrom"]["secretKeyRef"] == {"name": "hooks", "key": "webhook-secret"}
    (policy,) = [p for p in of_kind(docs, "NetworkPolicy") if "webhooks" in p["metadata"]["name"]]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "control"
    (rule,) = spec["egress"]
    v4, v6 = (block["ipBlock"] for block in rule["to"])
    assert v4["cidr"] == "0.0.0.0/0" and {"10.0.0.0/8", "169.254.0.0/16"} <= set(v4["except"])
    assert v6["cidr"] == "::/0" and "fc00::/7" in v6["except"]
    assert [p["port"] for p in rule["ports"]] == [443]
    missing = helm("template", "pf", str(CHART), "--set", "webhooks.enabled=true", check=False)
    assert missing.returncode != 0 and "webhooks.existingSecret is required" in missing.stderr


def gateway_of(docs) -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    ]
    (service,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-gateway")]
    return deployment["spec"]["template"]["spec"]["containers"][0], service


def test_gateway_exposes_v2_grpc_and_can_turn_it_off():
    docs = render(None)
    container, service = gateway_of(docs)
    assert env_of(container)["GRPC_PORT"] == "8081"
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    probe = container["startupProbe"]["grpc"]
    assert probe == {"port": 8081, "service": "inference.GRPCInferenceService"}
    (grpc_port,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc_port["targetPort"] == "grpc" and grpc_port["appProtocol"] == "grpc"
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    ingress_ports = policies["pf-posefleet-gateway-ingress"]["ingress"][0]["ports"]
    assert [p["port"] for p in ingress_ports] == ["http", "grpc"]

    off = render(None, True, "gateway.grpc.enabled=false")
    container, service = gateway_of(off)
    assert env_of(container)["GRPC_PORT"] == "0"
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
