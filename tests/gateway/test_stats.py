"""Cost and latency statistics: the arithmetic on aggregates the DAG's own Lua wrote, the
accuracy of percentiles read back from bucket histograms, the window plan, and the real path
end to end."""

import json

import httpx
import numpy as np
import pytest

from loadtest.statsreplay import Ending, redis_now_ms, replay
from services.core import keys
from services.core.pipeline import load_pipelines
from services.gateway.histograms import RELATIVE_WIDTH, bounds, percentiles
from services.gateway.stats import (
    MAX_WINDOW_S,
    Totals,
    add_up,
    parse_window,
    plan_window,
    replica_seconds,
    summarise,
)
from tests.gateway.conftest import png
from tests.workers import TEST_PIPELINES, make_worker, worker_threads

PIPELINES = load_pipelines(TEST_PIPELINES).pipelines


def worker(pool: str, started_ms: int, seen_ms: int) -> bytes:
    return json.dumps(
        {"stage": "s", "pool": pool, "started_ms": started_ms, "seen_ms": seen_ms}
    ).encode()


def totals(client, tenant: str | None = None, window_s: float = 3600) -> Totals:
    """What GET /v1/stats adds up for a window: every bucket hash of its plan."""
    plan = plan_window(redis_now_ms(client), window_s)
    return add_up([client.hgetall(keys.stats_bucket(s, b, tenant)) for s, b in plan.buckets])


def assert_close(got: dict[str, float] | None, values, tolerance: float = RELATIVE_WIDTH) -> None:
    """Within one bucket width of numpy's percentiles (the 'linear' method is the same
    interpolation as statistics.quantiles(method="inclusive")), plus the 2-decimal rounding."""
    assert got is not None
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        want = float(np.percentile(values, q))
        assert abs(got[name] - want) <= tolerance * want + 0.005, (name, got[name], want)


def test_cost_per_1000_images_from_replica_time_and_prices(redis_client):
    # 900 two-node jobs (gpu 30 ms, then cpu 10 ms) and 10 that failed on their first node,
    # for team-a; 100 one-node cpu jobs (30 ms) for team-b; all in the last 20 minutes.
    now = redis_now_ms(redis_client)
    chain = {"m": (1, 30.0, "gpu"), "double": (2, 10.0, "cpu")}
    replay(
        redis_client,
        PIPELINES["slow-chain"],
        [Ending("team-a", "succeeded", now - i * 1000, 100, chain) for i in range(900)]
        + [Ending("team-a", "failed", now - i, 5, {"m": chain["m"]}) for i in range(10)],
    )
    replay(
        redis_client,
        PIPELINES["single"],
        [Ending("team-b", "succeeded", now - i, 50, {"m": (1, 30.0, "cpu")}) for i in range(100)],
    )
    # One cpu replica all hour, one gpu replica half of it, $0.10 and $1.00 an hour.
    pools, prices = {"cpu": 3600.0, "gpu": 1800.0}, {"cpu": 0.1, "gpu": 1.0}
    fleet = totals(redis_client)
    stats = summarise(fleet, pools, prices, 3600, 3600)
    assert stats["pools"]["cpu"]["replica_hours"] == 1.0
    assert stats["pools"]["gpu"]["replicas"] == 0.5
    # $0.10 (cpu) + $0.50 (gpu) for 1000 succeeded images
    assert stats["cost_per_1000_images"] == pytest.approx(0.6)
    chain_stats = stats["pipelines"]["slow-chain"]
    assert (chain_stats["jobs"], chain_stats["succeeded"], chain_stats["failed"]) == (910, 900, 10)
    assert chain_stats["throughput_per_s"] == 0.25
    # slow-chain used all of the gpu time and 9000 of the cpu's 12000 compute-ms
    by_pool = chain_stats["cost_per_1000_images_by_pool"]
    assert by_pool["gpu"] == pytest.approx(0.5 / 900 * 1000, abs=1e-6)
    assert by_pool["cpu"] == pytest.approx(0.075 / 900 * 1000, abs=1e-6)
    assert chain_stats["latency_ms"]["p50"] == pytest.approx(100, rel=RELATIVE_WIDTH)
    assert chain_stats["nodes"]["double"]["compute_ms"]["p99"] == pytest.approx(10, rel=0.05)
    assert chain_stats["nodes"]["m"]["stage"] == "slow-measure"
    assert stats["stages"] == {
        "measure": {"tasks": 100, "throughput_per_s": round(100 / 3600, 4)},
        "scale": {"tasks": 900, "throughput_per_s": 0.25},
        "slow-measure": {"tasks": 910, "throughput_per_s": round(910 / 3600, 4)},
    }

    # team-b's view: its pipeline only, and the quarter of the cpu pool its compute used.
    mine = summarise(
        totals(redis_client, "team-b"), pools, prices, 3600, 3600, fleet.pool_compute_ms
    )
    assert set(mine["pipelines"]) == {"single"} and set(mine["stages"]) == {"measure"}
    assert mine["pools"] == {
        "cpu": {
            "replicas": 0.25,
            "replica_hours": 0.25,
            "hourly_cost_dollars": 0.1,
            "cost_dollars": 0.025,
        }
    }
    assert mine["cost_per_1000_images"] == pytest.approx(0.25)
    assert mine["pipelines"]["single"]["cost_per_1000_images"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        # Guaranteed: one bucket width (4.43 %). Spread-out data does far better, since the
        # values inside a bucket are close to evenly spread; a constant is the worst case.
        ("lognormal", 0.015),
        ("small integers with zeros", 0.015),
        ("bimodal", 0.015),
        ("sub-millisecond", 0.015),
        ("constant", RELATIVE_WIDTH),
    ],
)
def test_percentiles_from_buckets_are_within_one_bucket_of_exact(redis_client, name, tolerance):
    rng = np.random.default_rng(11)
    n = 3000
    values = {
        "lognormal": np.round(rng.lognormal(np.log(120), 0.6, n)),
        "small integers with zeros": rng.integers(0, 40, n).astype(float),
        "bimodal": np.round(
            np.where(rng.random(n) < 0.7, rng.normal(30, 3, n), rng.normal(400, 40, n))
        ),
        "constant": np.full(n, 100.0),
        "sub-millisecond": np.round(rng.gamma(2.0, 0.25, n), 3),
    }[name]
    now = redis_now_ms(redis_client)
    endings = [
        Ending("t", "succeeded", now - i, float(v), {"m": (float(v), float(v), "cpu")})
        for i, v in enumerate(values)
    ]
    replay(redis_client, PIPELINES["single"], endings)
    single = summarise(totals(redis_client), {}, {}, 3600, 3600)["pipelines"]["single"]
    assert single["succeeded"] == n
    assert_close(single["latency_ms"], values, tolerance)
    assert_close(single["nodes"]["m"]["queue_ms"], values, tolerance)
    assert_close(single["nodes"]["m"]["compute_ms"], values, tolerance)


def test_percentiles_of_a_histogram():
    assert percentiles({}) is None
    assert percentiles({"z": 7}) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    low, high = bounds("106")  # 100 ms lies in [98.7, 103.1)
    assert low <= 100 < high and high / low - 1 == pytest.approx(RELATIVE_WIDTH)
    one = percentiles({"106": 1})
    assert one["p50"] == round((low + high) / 2, 2)
    # 99 zeros and one value: p99 interpolates 1 % of the way to it, as the exact one does
    mixed = percentiles({"z": 99, "106": 1})
    assert mixed["p50"] == 0.0 and 0 < mixed["p99"] < 2


def test_a_day_is_read_as_at_most_84_buckets_and_windows_round_out_to_the_minute():
    now_ms = 1_700_000_123_456
    for window_s in (1, 30, 300, 3600, 5000, MAX_WINDOW_S):
        plan = plan_window(now_ms, window_s)
        assert plan.start_ms % 60_000 == 0
        assert 0 <= now_ms - window_s * 1000 - plan.start_ms < 60_000
        cursor = plan.start_ms // 1000
        for size, start in plan.buckets:  # contiguous, aligned, ending at now
            assert start == cursor and start % size == 0
            cursor += size
        assert plan.buckets[-1][1] <= now_ms // 1000 < cursor
    assert len(plan_window(now_ms, MAX_WINDOW_S).buckets) <= 84
    assert {size for size, _ in plan_window(now_ms, 300).buckets} == {60}


def test_replicas_outside_the_window_cost_nothing():
    assert replica_seconds({b"x": worker("cpu", 0, 1000)}, 5000, 9000, stale_ms=0) == {}


def test_window_parsing():
    assert parse_window("90s") == 90 and parse_window("5m") == 300 and parse_window("2h") == 7200
    for bad in ("soon", "0s", "48h"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_stats_endpoint_after_real_jobs(redis_client, start_gateway):
    url = start_gateway()
    with worker_threads() as start, httpx.Client(base_url=url, timeout=30) as api:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        for _ in range(3):
            job = api.post(
                "/v1/pipelines/diamond/jobs", content=png(), headers={"prefer": "wait=10"}
            ).json()
            assert job["status"] == "succeeded"
        stats = api.get("/v1/stats", params={"window": "1m"}).json()
        assert api.get("/v1/stats", params={"window": "forever"}).json()["code"] == "bad_window"
    assert stats["scope"] == "fleet" and 60 <= stats["span_s"] < 120
    diamond = stats["pipelines"]["diamond"]
    assert diamond["succeeded"] == 3 and diamond["latency_ms"]["p50"] >= 0
    assert set(diamond["nodes"]) == {"m", "double", "triple", "sum"}
    assert stats["stages"]["scale"]["tasks"] == 6
    assert stats["pools"]["cpu"]["replica_hours"] > 0  # three registered worker replicas
    assert stats["cost_per_1000_images"] > 0
    # The DAG step wrote a minute and an hour bucket for the fleet and for the open
    # gateway's tenant, each expiring a little after the longest window.
    written = [k.decode() for k in redis_client.keys(keys.STATS_PREFIX + "*")]
    assert {k.split(":")[2] for k in written} == {"60", "3600"}
    assert {k.endswith(":t:default") for k in written} == {True, False}
    assert all(MAX_WINDOW_S < redis_client.ttl(k) <= 25 * 3600 for k in written)
