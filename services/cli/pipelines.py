"""``posefleet pipelines``: list what a gateway serves, check a pipelines file, draw a DAG as
text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from services.core.pipeline import PipelineConfig, PipelineSpec, load_pipelines
from services.core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="List, validate and inspect pipelines.")
output = Console()


def layers(spec: PipelineSpec) -> list[list[str]]:
    """Nodes grouped by depth: a node sits one layer below its deepest input."""
    depth: dict[str, int] = {}
    for name in spec.order:
        upstream = spec.nodes[name].upstream()
        depth[name] = 1 + max((depth[u] for u in upstream), default=-1)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for name in spec.order:
        grouped[depth[name]].append(name)
    return grouped


def render(config: PipelineConfig, spec: PipelineSpec) -> str:
    lines = [f"pipeline {spec.name}" + (f" — {spec.description}" if spec.description else "")]
    for i, layer in enumerate(layers(spec)):
        for j, name in enumerate(layer):
            node = spec.nodes[name]
            stage = config.stages[node.stage]
            inputs = ", ".join(
                f"{k}={'[' + ', '.join(v) + ']' if isinstance(v, list) else v}"
                for k, v in node.inputs.items()
            )
            model = f" model={stage.model}" if stage.model else ""
            params = (
                " " + " ".join(f"{k}={v}" for k, v in node.params.items()) if node.params else ""
            )
            label = f"step {i + 1}" if j == 0 else ""
            lines.append(f"{label:>9} │ {name} [{node.stage}{model}{params}] ← {inputs}")
    outputs = ", ".join(f"{k} ← {v}" for k, v in spec.outputs.items())
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


def as_dict(config: PipelineConfig, spec: PipelineSpec) -> dict[str, Any]:
    """A pipeline as ``show --json`` prints it: its steps and each node's stage and model."""
    return {
        "name": spec.name,
        "description": spec.description,
        "steps": layers(spec),
        "nodes": [
            {
                "name": n,
                "stage": spec.nodes[n].stage,
                "model": config.stages[spec.nodes[n].stage].model,
                "inputs": spec.nodes[n].inputs,
                "params": spec.nodes[n].params,
            }
            for n in spec.order
        ],
        "outputs": spec.outputs,
    }


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    file: Annotated[Path | None, typer.Option(help="pipelines file (default: settings)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Draw pipeline NAME's DAG as text: nodes by step, with stage, model, params and inputs."""
    config = load_pipelines(file or get_settings().pipelines_file)
    if name not in config.pipelines:
        raise typer.BadParameter(f"no pipeline '{name}' (known: {sorted(config.pipelines)})")
    if as_json:
        print_json(as_dict(config, config.pipelines[name]))
        return
    output.print(
        render(config, config.pipelines[name]), highlight=False, markup=False, soft_wrap=True
    )


LIST_COLUMNS = ("pipeline", "nodes", "stages", "outputs", "description")


@app.command("list")
def list_pipelines(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    file: Annotated[
        Path | None, typer.Option(help="list this pipelines file instead of asking a gateway")
    ] = None,
    as_json: JsonOption = False,
    retry: RetryOption = False,
) -> None:
    """The pipelines a gateway serves (GET /v1/pipelines), or those in a local file."""
    if file is not None:
        config = load_pipelines(file)
        described = [as_dict(config, spec) for spec in config.pipelines.values()]
    else:
        with errors_as_one_line(), client(url, api_key, retry) as api:
            described = api.get("/v1/pipelines")["pipelines"]
    rows = [
        {
            "pipeline": d["name"],
            "nodes": " ".join(n["name"] for n in d["nodes"]),
            "stages": " ".join(dict.fromkeys(n["stage"] for n in d["nodes"])),
            "outputs": " ".join(d["outputs"]),
            "description": d["description"],
        }
        for d in described
    ]
    if as_json:
        print_json(described)
        return
    print_rows(rows, LIST_COLUMNS, "pipelines", as_json=False)
