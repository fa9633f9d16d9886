"""Threads per model session (services/core/runtime/cpus.py): the CPUs a process may use, a
cgroup quota (a pod's CPU limit) included, shared by its instances; never onnxruntime's own
default, which pins one thread per physical core of the whole machine in every process."""

import os
from pathlib import Path

import pytest

from services.core.runtime.cpus import (
    ORT_DEFAULT,
    available_cpus,
    cgroup_cpu_limit,
    session_threads,
)
from services.core.runtime.onnx import OnnxModel, OnnxOptions
from services.core.runtime.repository import ModelRepository


def cgroup(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu__cpu.cfs_quota_us": "200000\n", "cpu__cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu__cpu.cfs_quota_us": "-1\n", "cpu__cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
    ids=["v2-quota", "v2-unlimited", "v1-quota", "v1-unlimited", "none"],
)
def test_cgroup_cpu_limit(tmp_path, files, limit):
    assert cgroup_cpu_limit(cgroup(tmp_path, **files)) == limit


def test_a_quota_caps_the_cpus_rounded_up(tmp_path):
    root = cgroup(tmp_path, **{"cpu.max": "50000 100000"})
    assert available_cpus(root) == 1
    unlimited = cgroup(tmp_path / "u", **{"cpu.max": "max 100000"})
    assert available_cpus(unlimited) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("configured", "instances", "cpus", "threads"),
    [(0, 1, 2, 2), (0, 2, 2, 1), (0, 3, 2, 1), (0, 2, 8, 4), (3, 2, 8, 3), (ORT_DEFAULT, 1, 8, 0)],
)
def test_session_threads(configured, instances, cpus, threads):
    assert session_threads(configured, instances, cpus) == threads


def pinned_threads() -> int:
    """Threads of this process allowed on one CPU only."""
    pinned = 0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        status = (task / "status").read_text().splitlines()
        allowed = next(x for x in status if x.startswith("Cpus_allowed_list")).split()[1]
        pinned += "-" not in allowed and "," not in allowed
    return pinned


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning shows with 2+ CPUs")
def test_explicit_threads_are_not_pinned_and_spinning_is_configured(model_root):
    path = ModelRepository(model_root).get("movenet-lightning").path
    before = pinned_threads()
    model = OnnxModel(path, OnnxOptions(intra_op_threads=2, spinning="off"))
    assert pinned_threads() == before
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    run_only = OnnxModel(path, OnnxOptions(intra_op_threads=2, spinning="run")).session
    entries = run_only.get_session_options()
    assert entries.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert entries.get_session_config_entry("session.force_spinning_stop") == "1"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning shows with 2+ CPUs")
def test_onnxruntimes_own_default_pins_its_pool_threads(model_root):
    """What the setting's 0 avoids: every process's pool threads pinned to the same cores."""
    path = ModelRepository(model_root).get("movenet-lightning").path
    before = pinned_threads()
    model = OnnxModel(path, OnnxOptions(intra_op_threads=session_threads(ORT_DEFAULT, 1)))
    assert pinned_threads() > before
    del model
