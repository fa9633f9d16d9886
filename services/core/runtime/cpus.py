"""How many CPUs this process may really use, and so how many threads a model session gets.

onnxruntime's own default (``intra_op_num_threads = 0``) is one thread per *physical core of the
machine*, each pinned to its core, and the pool's threads busy-wait between operators: right for
one process alone on a machine, wrong for a worker fleet. Every worker process pins its pool
threads to the same cores, a 2-CPU pod on a 64-core node gets 63 pinned threads, and a pool that
spins after ``session.run`` returns steals the core the next stage's worker is about to use
(docs/performance.md measures each). So Posefleet never leaves the count to onnxruntime: the
setting's 0 means the CPUs this process may use — its CPU affinity, capped by a cgroup CPU quota
(a pod's CPU limit, ``docker run --cpus``) — shared by the process's model copies.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``cpu.max`` of cgroup v2, else
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` of v1); ``None`` when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = _CGROUP) -> int:
    """CPUs this process may run on (affinity), capped by the cgroup quota rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus or 1, math.ceil(limit))
    return max(1, cpus or 1)


ORT_DEFAULT = -1  # the setting's value for onnxruntime's own choice (pinned, per physical core)


def session_threads(configured: int, instances: int, cpus: int | None = None) -> int:
    """Intra-op threads per model copy for onnxruntime: the configured count; for 0, this
    process's CPUs shared by its ``instances`` copies, at least one each; for ``ORT_DEFAULT``,
    onnxruntime's own 0 (kept to measure it against, docs/performance.md)."""
    if configured == ORT_DEFAULT:
        return 0
    if configured > 0:
        return configured
    return max(1, (cpus if cpus is not None else available_cpus()) // max(1, instances))
