"""``posefleet stats``: the console's Fleet page as tables — throughput, latency percentiles
per pipeline and node, backlog per stage, replicas and cost per pool — once or ``--watch``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from services.cli.client import JobClient
from services.cli.output import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    RetryOption,
    UrlOption,
    client,
    errors_as_one_line,
    is_terminal,
    print_json,
    print_rows,
    stop_on_interrupt,
)

QUANTILES = ("p50", "p95", "p99")


def snapshot(api: JobClient, window: str) -> dict[str, Any]:
    """``GET /v1/stats`` plus what waits now, from the gateway's /metrics: ``backlog`` and
    ``dead_letters`` per stage."""
    stats = api.get(f"/v1/stats?window={window}")
    gauges: dict[str, dict[str, float]] = {"backlog": {}, "dead_letters": {}}
    names = {"posefleet_stage_backlog": "backlog", "posefleet_dead_letters": "dead_letters"}
    for family in text_string_to_metric_families(api.text("/metrics")):
        for sample in family.samples:
            if sample.name in names:
                gauges[names[sample.name]][sample.labels["stage"]] = sample.value
    return {**stats, **gauges}


def sections(stats: dict[str, Any]) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    """(title, columns, rows) for each table of the fleet view."""

    def q(values: dict[str, float] | None, name: str) -> float | None:
        return values[name] if values else None

    pipelines = [
        {
            "pipeline": name,
            "jobs": p["jobs"],
            "failed": p["failed"],
            "img/s": p["throughput_per_s"],
            **{f"{k} ms": q(p["latency_ms"], k) for k in QUANTILES},
            "$/1000 img": p["cost_per_1000_images"],
        }
        for name, p in sorted(stats["pipelines"].items())
    ]
    nodes = [
        {
            "pipeline": name,
            "node": node,
            "stage": n["stage"],
            **{f"q{k[1:]}": q(n["queue_ms"], k) for k in QUANTILES},
            **{f"c{k[1:]}": q(n["compute_ms"], k) for k in QUANTILES},
        }
        for name, p in sorted(stats["pipelines"].items())
        for node, n in p["nodes"].items()
    ]
    stage_names = sorted({*stats["stages"], *stats["backlog"], *stats["dead_letters"]})
    stages = [
        {
            "stage": s,
            "tasks/s": stats["stages"].get(s, {}).get("throughput_per_s", 0.0),
            "backlog": int(stats["backlog"].get(s, 0)),
            "dead letters": int(stats["dead_letters"].get(s, 0)),
        }
        for s in stage_names
    ]
    pools = [
        {
            "pool": name,
            "replicas": p["replicas"],
            "replica hours": p["replica_hours"],
            "$/h": p["hourly_cost_dollars"],
            "cost $": p["cost_dollars"],
        }
        for name, p in stats["pools"].items()
    ]
    cost = stats["cost_per_1000_images"]
    window = f"last {stats['window_s']:g} s, $/1000 images overall: {cost if cost else '-'}"
    return [
        (f"pipelines ({window})", list(pipelines[0]) if pipelines else ["pipeline"], pipelines),
        (
            "nodes: queue (q) and compute (c) percentiles, ms",
            list(nodes[0]) if nodes else ["pipeline", "node"],
            nodes,
        ),
        ("stages", ["stage", "tasks/s", "backlog", "dead letters"], stages),
        ("pools", ["pool", "replicas", "replica hours", "$/h", "cost $"], pools),
    ]


NAME_COLUMNS = ("pipeline", "node", "stage", "pool")


def tables(stats: dict[str, Any]) -> Group:
    rendered = []
    for title, columns, rows in sections(stats):
        table = Table(title=title, title_justify="left")
        for column in columns:
            if column in NAME_COLUMNS:  # names are never cut or wrapped; numbers give way
                table.add_column(column, no_wrap=True)
            else:
                table.add_column(column.replace(" ", "\n"), overflow="fold", justify="right")
        for row in rows:
            table.add_row(*(_number(row[c]) for c in columns))
        rendered.append(table)
    return Group(*rendered)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def print_plain(stats: dict[str, Any]) -> None:
    for title, columns, rows in sections(stats):
        print(f"# {title}")
        print_rows(rows, columns, title, as_json=False)


def stats(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    window: Annotated[str, typer.Option(help="30s, 5m, 1h … up to 24h")] = "5m",
    watch: Annotated[bool, typer.Option("--watch", help="refresh until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=1.0, help="seconds between refreshes")] = 5.0,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """The fleet over a recent window: throughput and p50/p95/p99 per pipeline and node,
    backlog and dead letters per stage, replicas and cost per pool. ``--json`` prints the
    /v1/stats body plus ``backlog`` and ``dead_letters`` (one object per refresh)."""
    with errors_as_one_line(), client(url, api_key, retry) as api:
        if not watch:
            show(snapshot(api, window), as_json)
            return
        with stop_on_interrupt() as stop:
            if is_terminal() and not as_json:
                with Live(tables(snapshot(api, window)), console=Console()) as live:
                    while not stop.wait(interval):
                        live.update(tables(snapshot(api, window)))
                return
            show(snapshot(api, window), as_json, compact=True)
            while not stop.wait(interval):
                show(snapshot(api, window), as_json, compact=True)


def show(data: dict[str, Any], as_json: bool, compact: bool = False) -> None:
    if as_json and compact:  # --watch --json: one object per line
        print(json.dumps(data), flush=True)
    elif as_json:
        print_json(data)
    elif is_terminal():
        Console().print(tables(data))
    else:
        print_plain(data)
        print(flush=True)
