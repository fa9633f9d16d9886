"""The chart's Redis has a maxmemory below its container limit (noeviction), derived from the
limit so the two stay consistent, and memory alerts on series the gateway really exports."""

from __future__ import annotations

import httpx
import redis

from services.cli.redis_server import start_redis
from services.core.settings import Settings
from tests.deploy.charts.conftest import CHART, helm, of_kind, render
from tests.workers import TEST_PIPELINES, gateway_server

GIB = 1024**3


def redis_args(*sets: str) -> list[str]:
    (statefulset,) = of_kind(render(None, True, *sets), "StatefulSet")
    return statefulset["spec"]["template"]["spec"]["containers"][0]["args"]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_maxmemory_is_three_quarters_of_the_limit_and_never_evicts():
    args = redis_args()
    assert int(flag(args, "--maxmemory")) == int(1.5 * GIB)  # 75% of the 2Gi limit
    assert flag(args, "--maxmemory-policy") == "noeviction"


def test_maxmemory_follows_the_limit_or_an_explicit_value():
    assert int(flag(redis_args("redis.resources.limits.memory=4Gi"), "--maxmemory")) == 3 * GIB
    both = ("redis.resources.limits.memory=4Gi", "redis.maxmemoryPercent=80")
    assert int(flag(redis_args(*both), "--maxmemory")) == int(3.2 * GIB)
    assert int(flag(redis_args("redis.maxmemory=1000Mi"), "--maxmemory")) == 1000 * 1024**2


def test_a_redis_without_limit_or_maxmemory_is_refused():
    result = helm("template", "pf", str(CHART), "--set", "redis.resources.limits=null", check=False)
    assert result.returncode != 0
    assert "redis.resources.limits.memory" in result.stderr


def test_memory_alerts_are_shipped():
    (rule,) = of_kind(render(None), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "> 0.8" in alerts["PosefleetRedisMemoryHigh"]["expr"]
    assert 'code="store_full"' in alerts["PosefleetRedisFull"]["expr"]
    assert alerts["PosefleetRedisFull"]["labels"]["severity"] == "critical"


def test_the_gateway_exports_the_memory_the_alerts_read():
    with start_redis(order=("path", "embedded")) as server:
        redis.Redis.from_url(server.url).config_set("maxmemory", str(64 * 1024**2))
        settings = Settings(redis_url=server.url, pipelines_file=TEST_PIPELINES)
        with gateway_server(settings) as url:
            text = httpx.get(f"{url}/metrics").text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    assert float(samples["posefleet_redis_memory_max_bytes"]) == 64 * 1024**2
    assert 0 < float(samples["posefleet_redis_memory_used_bytes"]) < 64 * 1024**2
