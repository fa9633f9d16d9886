"""The images `make images` built, as a runtime sees them: the contract of docs/images.md
(user, labels, port, default stage), and models only where they are served — each worker image
holds exactly its service's models, the gateway none."""

from __future__ import annotations

import json

import pytest

from tools.containers.dockercli import docker
from tools.containers.images import (
    default_stage,
    image_tag,
    served_models,
    version,
    worker_services,
)

pytestmark = pytest.mark.deploy

LIST_MODELS = (
    "import json, os; print(json.dumps(sorted(os.listdir('/models'))"
    " if os.path.isdir('/models') else None))"
)


@pytest.mark.parametrize("service", ["gateway", *worker_services()])
def test_image_keeps_the_runtime_contract(images, service):
    tag = image_tag(service)
    config = json.loads(docker("image", "inspect", tag))[0]["Config"]
    env = dict(item.partition("=")[::2] for item in config["Env"])
    labels = config["Labels"]
    assert config["User"] == "10001:10001"
    assert labels["org.opencontainers.image.title"] == f"posefleet-{service}"
    assert labels["org.opencontainers.image.version"] == version()
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    ports = ["8080/tcp", "8081/tcp"] if service == "gateway" else ["9100/tcp"]  # HTTP, V2 gRPC
    assert list(config["ExposedPorts"]) == ports
    listed = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python",
                    tag, "-c", LIST_MODELS)  # fmt: skip
    if service == "gateway":
        assert json.loads(listed) is None
    else:
        assert json.loads(listed) == served_models(service)
        assert env["POSEFLEET_STAGE"] == default_stage(service)
        assert env["POSEFLEET_MODEL_ROOT"] == "/models"


CPUS_SEEN = (
    "import json; from services.core.runtime.cpus import available_cpus, cgroup_cpu_limit;"
    " print(json.dumps([cgroup_cpu_limit(), available_cpus()]))"
)


@pytest.mark.parametrize(("quota", "cpus"), [(0.5, 1), (1.5, 2)])
def test_a_worker_sizes_its_threads_by_the_containers_cpu_quota(images, quota, cpus):
    """A pod's CPU limit is a cgroup quota (``--cpus`` here, as the chart's pods run): a worker
    counts it, rounded up, instead of the machine's cores (docs/performance.md)."""
    tag = image_tag(next(iter(worker_services())))
    limits = ["--cpus", f"{quota:g}", "--cpuset-cpus", "0-1"]  # 2 CPUs to run on, a quota
    seen = docker("run", "--rm", "--read-only", "--network", "none", *limits,
                  "--entrypoint", "python", tag, "-c", CPUS_SEEN)  # fmt: skip
    assert json.loads(seen) == [quota, cpus]
