"""Record job endings through ``record_stats`` — the function complete.lua and fail.lua call when
a job ends (services/core/lua/stats.lua) — fast, for the stats benchmark and tests.

One real job record (made by create.lua) is rewritten per ending as begin/complete would have
left it (tenant, creation time, each started node's enqueue/start times, compute time and pool)
and then ``record_stats`` runs on it with the ending's time, many endings per EVAL. So the
aggregates are produced by the DAG step's own code, at any chosen time and volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from typing import Any

from services.core import keys
from services.core.dag import DagSteps
from services.core.pipeline import PipelineSpec

STATS_LUA = resources.files("services.core").joinpath("lua", "stats.lua").read_text()

# ARGV per ending: tenant, status, ended ms, end-to-end ms, k, then k x (node, queue ms,
# compute ms, pool). Nodes not listed have not started (their start time is cleared).
DRIVER = """
local job, target = KEYS[1], KEYS[2]
local dag = cjson.decode(redis.call('HGET', job, 'dag'))
local i = 1
while i <= #ARGV do
  local ended, k = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 4])
  redis.call('HSET', job, 'tenant', ARGV[i], 'created_at', ended - tonumber(ARGV[i + 3]))
  for name in pairs(dag.nodes) do redis.call('HDEL', job, 'n:' .. name .. ':start') end
  for n = 0, k - 1 do
    local a = i + 5 + 4 * n
    local np = 'n:' .. ARGV[a] .. ':'
    local start = ended - 1000
    redis.call('HSET', job, np .. 'enq', start - tonumber(ARGV[a + 1]), np .. 'start', start,
      np .. 'compute_ms', ARGV[a + 2], np .. 'pool', ARGV[a + 3])
  end
  record_stats(job, dag, target, ended, ARGV[i + 1])
  i = i + 5 + 4 * k
end
return 'ok'
"""


@dataclass
class Ending:
    tenant: str
    status: str  # succeeded | failed
    ended_ms: int
    e2e_ms: float
    nodes: dict[str, tuple[float, float, str]]  # started node -> (queue ms, compute ms, pool)

    def args(self) -> list[Any]:
        out: list[Any] = [self.tenant, self.status, self.ended_ms, self.e2e_ms, len(self.nodes)]
        for node, (queue_ms, compute_ms, pool) in self.nodes.items():
            out += [node, queue_ms, compute_ms, pool]
        return out


def redis_now_ms(client: Any) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def _chunks(endings: Iterable[Ending], size: int) -> Iterator[list[Ending]]:
    it = iter(endings)
    while chunk := list(islice(it, size)):
        yield chunk


def replay(
    client: Any,
    spec: PipelineSpec,
    endings: Iterable[Ending],
    *,
    library: str = STATS_LUA,
    target: str = keys.STATS_PREFIX,
    per_call: int = 1000,
) -> None:
    """Record ``endings`` of the pipeline ``spec`` through ``library``'s ``record_stats`` into
    ``target`` (the stats key prefix it is given in production)."""
    job = f"replay-{spec.name}"
    DagSteps(client).create(job, spec, b"x", {}, ttl_s=3600, deadline_s=600)
    record = client.register_script(library + DRIVER)
    pipe = client.pipeline(transaction=False)
    for chunk in _chunks(endings, per_call):
        args = [a for ending in chunk for a in ending.args()]
        record(keys=[keys.job(job), target], args=args, client=pipe)
        if len(pipe) >= 10:
            pipe.execute()
    pipe.execute()
