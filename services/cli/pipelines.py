"""``posefleet pipelines``: check a pipelines file and draw a DAG as text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.core.pipeline import PipelineConfig, PipelineSpec, load_pipelines
from services.core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Validate and inspect pipelines.yaml.")
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


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    file: Annotated[Path | None, typer.Option(help="pipelines file (default: settings)")] = None,
) -> None:
    """Draw pipeline NAME's DAG as text: nodes by step, with stage, model, params and inputs."""
    config = load_pipelines(file or get_settings().pipelines_file)
    if name not in config.pipelines:
        raise typer.BadParameter(f"no pipeline '{name}' (known: {sorted(config.pipelines)})")
    output.print(
        render(config, config.pipelines[name]), highlight=False, markup=False, soft_wrap=True
    )
