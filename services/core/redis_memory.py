"""Redis memory, read when the gateway is scraped: what the memory alerts compare
(``posefleet_redis_memory_used_bytes`` against ``posefleet_redis_memory_max_bytes``), with no
exporter to deploy and the same for the in-chart Redis and a managed one."""

from __future__ import annotations

from typing import Any

from services.core.metrics import REDIS_MEMORY_MAX, REDIS_MEMORY_USED


def memory_command(pipe: Any) -> None:
    """Queue INFO memory on ``pipe`` (sync or async)."""
    pipe.info("memory")


def record_memory(info: dict[str, Any]) -> None:
    REDIS_MEMORY_USED.set(info["used_memory"])
    REDIS_MEMORY_MAX.set(info["maxmemory"])
