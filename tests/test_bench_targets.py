"""The benchmark's target verdicts (loadtest/targets.py) from rows: which rows each target reads
and where it turns from PASS to FAIL."""

from loadtest.hey import Row
from loadtest.targets import Measured, evaluate


def row(name: str, concurrency: int, ms: float, images: int = 10, seconds: float = 1.0) -> Row:
    return Row(name, concurrency, [ms] * images, seconds)


def rows(posefleet_c1_ms: float, posefleet_img_s: float, ceiling: float) -> list[Row]:
    return [
        row("models (ort defaults)", 1, 36.0),
        row("models", 1, 40.0),
        row("handlers", 1, 42.0),
        row("posefleet", 1, posefleet_c1_ms),
        row("posefleet", 8, 300.0, images=int(posefleet_img_s * 10), seconds=10.0),
        # our own V2 rows (loadtest/oip_bench.py) are not peers to be ahead of
        row("job API (hey)", 8, 300.0, images=300, seconds=10.0),
        row("V2 gRPC (perf_analyzer)", 8, 300.0, images=300, seconds=10.0),
        row("naive", 1, 45.0),
        row("naive", 8, 400.0, images=150, seconds=10.0),
        row("ceiling (no-op)", 64, 50.0, images=int(ceiling * 10), seconds=10.0),
    ]


def verdicts(**kwargs) -> dict[str, bool]:
    in_worker = kwargs.pop("in_worker", 1.0)
    return {v.target: v.passed for v in evaluate(Measured.of(rows(**kwargs), in_worker))}


def test_every_target_passes_on_good_rows():
    got = verdicts(posefleet_c1_ms=44.0, posefleet_img_s=26.0, ceiling=1200.0)
    assert got == {
        "P1 pose saturated throughput": True,
        "P2 p50 at concurrency 1": True,
        "P4 single-person images end to end": True,
        "P5 no-op transport ceiling (hey)": True,
        "same handler inside a worker": True,
        "ahead of naive": True,
    }


def test_targets_are_held_to_the_faster_models_and_fail_past_their_bounds():
    # models' own time is the faster row (36 ms): 51.5 ms is past +15; 24 img/s < 0.9 x 27.8
    got = verdicts(posefleet_c1_ms=51.5, posefleet_img_s=24.0, ceiling=999.0, in_worker=1.06)
    assert not got["P2 p50 at concurrency 1"]
    assert not got["P1 pose saturated throughput"]
    assert got["P4 single-person images end to end"]
    assert not got["P5 no-op transport ceiling (hey)"]
    assert not got["same handler inside a worker"]
    slower_than_naive = verdicts(posefleet_c1_ms=44.0, posefleet_img_s=14.0, ceiling=1200.0)
    assert not slower_than_naive["ahead of naive"]
