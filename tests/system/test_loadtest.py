"""Smoke run of the locustfile (benchmarks are not timed tests: this checks it works)."""

import csv
import os
import subprocess

from loadtest.run_local import locust_command
from tests.system.stack import ROOT


def test_locust_reports_end_to_end_job_latency(stack, tmp_path):
    prefix = tmp_path / "smoke"
    env = {**os.environ, "LOADTEST_PIPELINES": "pose,classify"}
    result = subprocess.run(
        locust_command(stack.url, 2, 2, "5s", prefix),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(f"{prefix}_stats.csv") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    jobs = [r for (kind, _), r in rows.items() if kind == "JOB"]
    assert jobs and sum(int(r["Request Count"]) for r in jobs) > 0
    assert all(int(r["Failure Count"]) == 0 for r in rows.values())
