"""Finding 7: ``GET /v1/stats`` must answer in well under a second however long the history.

100,000 job endings spread over the last 23.5 hours are recorded by ``record_stats`` — the very
Lua function complete.lua and fail.lua call when a job ends (services/core/lua/stats.lua) — run
on a real job record whose node fields are set per job, many endings per EVAL so the test
writes them in seconds. Then the real gateway is asked for the 24 h window, as the fleet (an
operator key) and as each tenant, and must answer each in < 1 s with the right volumes and
percentiles within the bucket scheme's bound of the exact ones. Before the aggregates (one
stream entry per job, read back with XRANGE) the same call took 6.7 to 7.7 s here (and 503 after
the 5 s socket timeout in the original report).
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from loadtest.statsreplay import Ending, redis_now_ms, replay
from services.core.pipeline import load_pipelines
from services.gateway.histograms import RELATIVE_WIDTH
from tests.workers import TEST_PIPELINES

pytestmark = pytest.mark.faults

JOBS = 100_000
SPREAD_MS = int(23.5 * 3600 * 1000)
NODES = {"m": "cpu", "double": "cpu", "triple": "gpu", "sum": "cpu"}  # diamond's nodes, pools
TENANTS = ("team-a", "team-b")
KEYS = {"key-a": "team-a", "key-b": "team-b", "key-op": "operator"}
DIAMOND = load_pipelines(TEST_PIPELINES).pipelines["diamond"]


def record_endings(client, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Record JOBS endings of the diamond pipeline over the last 23.5 h; returns what was
    recorded, for the checks."""
    now_ms = redis_now_ms(client)
    recorded = {
        "ended": now_ms - np.arange(JOBS, dtype=np.int64) * SPREAD_MS // JOBS,
        "tenant": np.arange(JOBS) % 2,
        "failed": np.arange(JOBS) % 50 == 7,
        "e2e": np.round(rng.lognormal(np.log(120), 0.5, JOBS)),
        "queue": np.round(rng.exponential(8.0, (JOBS, len(NODES)))),
        "compute": np.round(rng.gamma(4.0, 6.0, (JOBS, len(NODES))), 3),
    }
    endings = (
        Ending(
            TENANTS[recorded["tenant"][j]],
            "failed" if recorded["failed"][j] else "succeeded",
            int(recorded["ended"][j]),
            int(recorded["e2e"][j]),
            {
                node: (int(recorded["queue"][j, n]), float(recorded["compute"][j, n]), pool)
                for n, (node, pool) in enumerate(NODES.items())
            },
        )
        for j in range(JOBS)
    )
    replay(client, DIAMOND, endings)
    return recorded


def timed_stats(api: httpx.Client, key: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = api.get("/v1/stats", params={"window": "24h"}, headers={"x-api-key": key})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, response.json()


def exact(values: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}


def assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    """Within one histogram bucket (4.43 %) of the exact percentile, plus the rounding."""
    for name, value in want.items():
        assert abs(got[name] - value) <= RELATIVE_WIDTH * value + 0.005, (name, got, want)


def test_stats_over_100k_jobs_answers_in_under_a_second(redis_client, start_gateway):
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    recorded = record_endings(redis_client, rng)
    print(f"recorded {JOBS} job endings in {time.perf_counter() - started:.1f} s")
    url = start_gateway(api_keys=KEYS)
    timings: dict[str, list[float]] = {}
    views = {}
    with httpx.Client(base_url=url, timeout=60) as api:
        for key in ("key-op", "key-a", "key-b"):  # the first call of all opens the connections
            for _ in range(3):
                elapsed, views[key] = timed_stats(api, key)
                timings.setdefault(key, []).append(round(elapsed, 3))
        healthz = time.perf_counter()
        assert api.get("/healthz").status_code == 200
        healthz_s = time.perf_counter() - healthz
    print("GET /v1/stats?window=24h seconds:", timings)
    assert max(max(t) for t in timings.values()) < 1.0, timings
    assert healthz_s < 0.5

    fleet = views["key-op"]
    assert fleet["scope"] == "fleet"
    diamond = fleet["pipelines"]["diamond"]
    assert diamond["jobs"] == JOBS
    assert diamond["failed"] == int(recorded["failed"].sum())
    ok = ~recorded["failed"]
    assert_close(diamond["latency_ms"], exact(recorded["e2e"][ok]))
    for n, name in enumerate(NODES):
        assert_close(diamond["nodes"][name]["queue_ms"], exact(recorded["queue"][ok, n]))
        assert_close(diamond["nodes"][name]["compute_ms"], exact(recorded["compute"][ok, n]))
    for key, index in (("key-a", 0), ("key-b", 1)):
        assert views[key]["scope"] == "tenant" and views[key]["tenant"] == TENANTS[index]
        own = views[key]["pipelines"]["diamond"]
        mine = recorded["tenant"] == index
        assert own["jobs"] == int(mine.sum())
        assert own["succeeded"] == int((mine & ok).sum())
        assert_close(own["latency_ms"], exact(recorded["e2e"][mine & ok]))
        assert views[key]["stages"]["scale"]["tasks"] == 2 * int(mine.sum())
