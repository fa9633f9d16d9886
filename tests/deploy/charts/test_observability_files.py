"""The recording rules and Grafana dashboard the chart ships: valid PromQL, real metric names,
and every recorded series the dashboard reads is one the rules define."""

import json
import re
from pathlib import Path

import promql_parser
import yaml
from prometheus_client import REGISTRY

import services.core.metrics  # noqa: F401 - registers the metric families

FILES = Path(__file__).resolve().parents[3] / "charts" / "posefleet" / "files"
RULES = yaml.safe_load((FILES / "rules.yaml").read_text())
DASHBOARD = json.loads((FILES / "dashboard.json").read_text())
RULE_EXPRS = {r["record"]: r["expr"] for g in RULES["groups"] for r in g["rules"]}
PANEL_EXPRS = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def raw_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bposefleet_[a-z_]+", expr))


def test_every_expression_parses():
    for expr in [*RULE_EXPRS.values(), *PANEL_EXPRS]:
        promql_parser.parse(expr)


def unknown_metrics(expr: str) -> set[str]:
    """Raw posefleet_* series in ``expr`` that no Posefleet metric family exports."""
    exported = exported_names()
    return {
        name
        for name in raw_metrics(expr)
        if not ({name} | {name[: -len(s)] for s in SUFFIXES if name.endswith(s)}) & exported
    }


def recorded_names(expr: str) -> set[str]:
    return set(re.findall(r"\bposefleet:[a-z0-9_:]+", expr))


def test_expressions_use_only_metrics_posefleet_exports():
    assert len(RULE_EXPRS) >= 5 and len(PANEL_EXPRS) >= 5, "rules or dashboard not parsed"
    for expr in [*RULE_EXPRS.values(), *PANEL_EXPRS]:
        assert not unknown_metrics(expr), f"{expr!r} reads metrics Posefleet does not export"


def test_recorded_series_used_by_rules_and_dashboard_are_defined():
    used = {name for expr in [*RULE_EXPRS.values(), *PANEL_EXPRS] for name in recorded_names(expr)}
    assert used, "no recorded series are read anywhere"
    assert used <= set(RULE_EXPRS), f"{sorted(used - set(RULE_EXPRS))} read but never recorded"


def test_dashboard_covers_what_operators_asked_for():
    titles = {p["title"] for p in DASHBOARD["panels"]}
    for wanted in (
        "Cost per 1000 images",
        "End-to-end latency",
        "Backlog per stage",
        "Mean batch size",
        "Replicas per pool",
        "Throughput per pipeline",
    ):
        assert wanted in titles
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
