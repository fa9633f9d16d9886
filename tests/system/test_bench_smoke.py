"""Smoke run of the benchmark harness: every row is produced and shaped right. The numbers are
not asserted — benchmarks are not timed tests."""

import json
import subprocess
import sys

from tests.clirun import ROOT


def test_bench_smoke_writes_every_row(tmp_path, model_root):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [(r["name"], r["concurrency"]) for r in report["rows"]]
    ours = [
        ("models (ort defaults)", 1),
        ("models", 1),
        ("handlers", 1),
        ("posefleet", 1),
        ("posefleet", 8),
        ("job API (hey)", 1),
        ("V2 HTTP (perf_analyzer)", 1),
        ("V2 gRPC (perf_analyzer)", 1),
        ("job API (hey)", 8),
        ("V2 HTTP (perf_analyzer)", 8),
        ("V2 gRPC (perf_analyzer)", 8),
        ("overload", 24),
        ("naive", 1),
        ("naive", 8),
        ("ceiling (no-op)", 64),
    ]
    # the Open Inference Protocol rows (loadtest/oip_bench.py, when present) come in between
    assert [n for n in names if n in ours] == ours
    for row in report["rows"]:
        assert row["images"] > 0 and row["errors"] == 0, row
        assert row["cost_per_1000_images"] > 0
    targets = {t["target"]: t for t in report["targets"]}
    assert {"P1 pose saturated throughput", "P5 no-op transport ceiling (hey)"} <= set(targets)
    assert "ahead of naive" in targets and "same handler inside a worker" in targets
    assert all(isinstance(t["passed"], bool) for t in targets.values())
    assert "pose pipeline on" in result.stdout and "$/1000 img" in result.stdout
    assert "PASS" in result.stdout or "FAIL" in result.stdout


def test_instances_bench_prints_every_grouping(model_root):
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.instances", "--images", "4", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("│")[1:4] for line in result.stdout.splitlines() if "x │" in line]
    assert [[c.strip() for c in row[:2]] for row in rows] == [["1", "1"], ["1", "2"], ["2", "1"]]
