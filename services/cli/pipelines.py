"""``posefleet pipelines``: list what a gateway serves, check a pipelines file, draw a DAG as
text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console

from services.cli.output import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    RetryOption,
    UrlOption,
    client,
    errors_as_one_line,
    print_json,
    print_rows,
)
from services.core.pipeline import load_pipelines

app = typer.Typer(no_args_is_help=True, help="List, validate and inspect pipelines.")
output = Console()


def layers(described: dict[str, Any]) -> list[list[str]]:
    """Nodes grouped by depth: a node sits one layer below its deepest input. Works on a
    pipeline as the API describes it (``nodes`` in topological order, ``edges``)."""
    upstream: dict[str, list[str]] = {n["name"]: [] for n in described["nodes"]}
    for up, down in described["edges"]:
        upstream[down].append(up)
    depth: dict[str, int] = {}
    for name in upstream:
        depth[name] = 1 + max((depth[u] for u in upstream[name]), default=-1)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for name in upstream:
        grouped[depth[name]].append(name)
    return grouped


def render(described: dict[str, Any]) -> str:
    description = described["description"]
    lines = [f"pipeline {described['name']}" + (f" — {description}" if description else "")]
    nodes = {n["name"]: n for n in described["nodes"]}
    for i, layer in enumerate(layers(described)):
        for j, name in enumerate(layer):
            node = nodes[name]
            inputs = ", ".join(
                f"{k}={'[' + ', '.join(v) + ']' if isinstance(v, list) else v}"
                for k, v in node["inputs"].items()
            )
            model = f" model={node['model']}" if node["model"] else ""
            params = " ".join(f"{k}={v}" for k, v in node["params"].items())
            label = f"step {i + 1}" if j == 0 else ""
            lines.append(
                f"{label:>9} │ {name} [{node['stage']}{model}{' ' + params if params else ''}]"
                f" ← {inputs}"
            )
    outputs = ", ".join(f"{k} ← {v}" for k, v in described["outputs"].items())
    lines.append(f"{'outputs':>9} │ {outputs}")
    return "\n".join(lines)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="pipelines file to check")]) -> None:
    """Load FILE with the same validation the services run at start-up."""
    config = load_pipelines(file)
    output.print(
        f"{file}: OK — {len(config.stages)} stages, {len(config.pipelines)} pipelines "
        f"({', '.join(config.pipelines)})"
    )


def described(
    file: Path | None, url: str, api_key: str | None, retry: bool, name: str | None = None
) -> list[dict[str, Any]]:
    """Pipelines as the API describes them (every one, or the one named): read from a local
    pipelines file, or asked of the gateway."""
    if file is not None:
        config = load_pipelines(file)
        local = {n: spec.describe(config.stages) for n, spec in config.pipelines.items()}
        if name is not None and name not in local:
            raise typer.BadParameter(f"no pipeline '{name}' in {file} (known: {sorted(local)})")
        return list(local.values()) if name is None else [local[name]]
    with errors_as_one_line(), client(url, api_key, retry) as api:
        if name is None:
            return api.get("/v1/pipelines")["pipelines"]
        return [api.get(f"/v1/pipelines/{quote(name, safe='')}")]


FileOption = Annotated[
    Path | None, typer.Option(help="read this pipelines file instead of asking a gateway")
]


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    file: FileOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """Draw pipeline NAME's DAG as text: nodes by step, with stage, model, params and inputs —
    as a gateway serves it (GET /v1/pipelines/NAME), or from a local file with --file."""
    (pipeline,) = described(file, url, api_key, retry, name)
    if as_json:
        print_json({**pipeline, "steps": layers(pipeline)})
        return
    output.print(render(pipeline), highlight=False, markup=False, soft_wrap=True)


LIST_COLUMNS = ("pipeline", "nodes", "stages", "outputs", "description")


@app.command("list")
def list_pipelines(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    file: FileOption = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """The pipelines a gateway serves (GET /v1/pipelines), or those in a local file."""
    pipelines = described(file, url, api_key, retry)
    rows = [
        {
            "pipeline": d["name"],
            "nodes": " ".join(n["name"] for n in d["nodes"]),
            "stages": " ".join(dict.fromkeys(n["stage"] for n in d["nodes"])),
            "outputs": " ".join(d["outputs"]),
            "description": d["description"],
        }
        for d in pipelines
    ]
    if as_json:
        print_json(pipelines)
        return
    print_rows(rows, LIST_COLUMNS, "pipelines", as_json=False)
