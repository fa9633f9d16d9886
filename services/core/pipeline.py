"""Pipelines as data: load ``pipelines.yaml``, validate it, compile each DAG for the job record.

Validation happens once, at load, and every mistake is reported as one message naming the file,
the pipeline and the node, so a bad config stops start-up instead of failing jobs at run time.
The compiled DAG is stored inside each job record, which keeps in-flight jobs immune to a config
change made while they run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml

REQUEST_PREFIX = "$request."
REQUEST_INPUTS = ("image",)
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# an entry point name in the group posefleet.handlers (services.core.plugins)
_ENTRY_POINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PipelineConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StageSpec:
    name: str
    handler: str  # "module:Class", or a plug-in's entry point name (services.core.plugins)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    model: str | None = None
    model_version: str | None = None
    # Dynamic batching, set per stage and nowhere else: at most ``max_batch`` tasks (a task is
    # one node of one job, e.g. one image) per handler call, collected within ``max_delay_ms``
    # of the first. 0 ms batches what is already queued without waiting (Triton's default).
    max_batch: int = 8
    max_delay_ms: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    # node params this stage accepts: name -> {enum, type, minimum} (a small JSON-schema subset)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # JSON schema of each output, when the stage declares outputs as a mapping
    output_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    stage: str
    # input name -> a reference ("$request.image" / "node.field") or a list of references (fan-in)
    inputs: dict[str, str | list[str]]
    params: dict[str, Any]

    def refs(self) -> list[str]:
        out: list[str] = []
        for value in self.inputs.values():
            out.extend(value if isinstance(value, list) else [value])
        return out

    def upstream(self) -> set[str]:
        return {r.split(".", 1)[0] for r in self.refs() if not r.startswith(REQUEST_PREFIX)}


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    name: str
    description: str
    nodes: dict[str, NodeSpec]
    outputs: dict[str, str]  # output name -> "node.field"
    order: tuple[str, ...]  # topological

    def roots(self) -> list[str]:
        return [n for n in self.order if not self.nodes[n].upstream()]

    def successors(self, node: str) -> list[str]:
        return [n for n in self.order if node in self.nodes[n].upstream()]

    def stages(self) -> list[str]:
        return sorted({n.stage for n in self.nodes.values()})

    def output_schemas(self, stages: dict[str, StageSpec]) -> dict[str, dict[str, Any]]:
        """The JSON schema of each pipeline output, from the stage that produces it."""
        schemas = {}
        for name, ref in self.outputs.items():
            node, _, fld = ref.partition(".")
            schemas[name] = stages[self.nodes[node].stage].output_schemas.get(fld, {})
        return schemas

    def describe(self, stages: dict[str, StageSpec]) -> dict[str, Any]:
        """The pipeline as clients see it (``GET /v1/pipelines/{name}``, ``posefleet pipelines
        show --file``): what may be submitted, what comes back, and the DAG's nodes and edges."""
        request_inputs = sorted(
            {
                ref[len(REQUEST_PREFIX) :]
                for node in self.nodes.values()
                for ref in node.refs()
                if ref.startswith(REQUEST_PREFIX)
            }
        )
        return {
            "name": self.name,
            "description": self.description,
            "inputs": request_inputs,
            "outputs": self.outputs,
            "output_schemas": self.output_schemas(stages),
            "stages": self.stages(),
            "nodes": [
                {
                    "name": n,
                    "stage": self.nodes[n].stage,
                    "inputs": self.nodes[n].inputs,
                    "params": self.nodes[n].params,
                    "model": stages[self.nodes[n].stage].model,
                    "model_version": stages[self.nodes[n].stage].model_version,
                }
                for n in self.order
            ],
            "edges": [(up, n) for n in self.order for up in sorted(self.nodes[n].upstream())],
        }

    def compile(self) -> dict[str, Any]:
        """The job record's copy of this DAG, read by the Lua DAG steps and the workers."""
        return {
            "pipeline": self.name,
            "nodes": {
                name: {
                    "stage": node.stage,
                    "inputs": node.inputs,
                    "refs": node.refs(),
                    "params": node.params,
                    "next": self.successors(name),
                    "wait": len(node.upstream()),
                }
                for name, node in self.nodes.items()
            },
            "outputs": [{"name": k, "ref": v} for k, v in self.outputs.items()],
        }


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    source: str
    stages: dict[str, StageSpec]
    pipelines: dict[str, PipelineSpec]


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a duplicated node must be an error instead."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise PipelineConfigError(
                f"duplicate key '{key}' at line {key_node.start_mark.line + 1}"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_pipelines(path: Path) -> PipelineConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineConfigError(f"{path}: cannot read pipelines file: {exc.strerror}") from exc
    return parse_pipelines(text, source=str(path))


def parse_pipelines(text: str, source: str = "<string>") -> PipelineConfig:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except PipelineConfigError as exc:
        raise PipelineConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{source}: expected a mapping with 'stages' and 'pipelines'")
    # 'schemas' only holds YAML anchors that stage outputs reuse.
    unknown = set(raw) - {"stages", "pipelines", "schemas"}
    if unknown:
        raise PipelineConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
    stages = {
        name: _parse_stage(source, name, body)
        for name, body in _mapping(source, raw, "stages").items()
    }
    pipelines = {
        name: _parse_pipeline(source, name, body, stages)
        for name, body in _mapping(source, raw, "pipelines").items()
    }
    if not pipelines:
        raise PipelineConfigError(f"{source}: no pipelines declared")
    return PipelineConfig(source=source, stages=stages, pipelines=pipelines)


def _mapping(where: str, raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise PipelineConfigError(f"{where}: '{key}' must be a mapping")
    return value


def _parse_stage(source: str, name: str, body: Any) -> StageSpec:
    where = f"{source}: stage '{name}'"
    if not _NAME.match(str(name)):
        raise PipelineConfigError(f"{where}: name must match {_NAME.pattern}")
    handler = str(body.get("handler", "")) if isinstance(body, dict) else ""
    if ":" not in handler and not _ENTRY_POINT.match(handler):
        raise PipelineConfigError(
            f"{where}: 'handler' must be 'module:Class' or a plug-in's entry point name"
        )
    unknown = set(body) - {
        "handler",
        "inputs",
        "outputs",
        "model",
        "model_version",
        "max_batch",
        "max_delay_ms",
        "options",
        "params",
    }
    if unknown:
        raise PipelineConfigError(f"{where}: unknown keys {sorted(unknown)}")
    inputs, outputs = body.get("inputs") or [], body.get("outputs") or []
    if not outputs:
        raise PipelineConfigError(f"{where}: declares no outputs")
    # outputs: a list of names, or a mapping of names to the JSON schema of each
    schemas = {k: v or {} for k, v in outputs.items()} if isinstance(outputs, dict) else {}
    version = body.get("model_version")
    return StageSpec(
        name=name,
        handler=body["handler"],
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        model=body.get("model"),
        model_version=None if version is None else str(version),
        max_batch=_count(where, body, "max_batch", 8, minimum=1),
        max_delay_ms=_count(where, body, "max_delay_ms", 0, minimum=0),
        options=dict(body.get("options") or {}),
        params=dict(body.get("params") or {}),
        output_schemas=schemas,
    )


def _count(where: str, body: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PipelineConfigError(f"{where}: '{key}' must be an integer >= {minimum}")
    return value


def _parse_pipeline(
    source: str, name: str, body: Any, stages: dict[str, StageSpec]
) -> PipelineSpec:
    where = f"{source}: pipeline '{name}'"
    if not _NAME.match(str(name)):
        raise PipelineConfigError(f"{where}: name must match {_NAME.pattern}")
    if not isinstance(body, dict):
        raise PipelineConfigError(f"{where}: must be a mapping with 'nodes' and 'outputs'")
    raw_nodes = _mapping(where, body, "nodes")
    if not raw_nodes:
        raise PipelineConfigError(f"{where}: has no nodes")
    nodes = {n: _parse_node(where, n, b, stages) for n, b in raw_nodes.items()}
    for node in nodes.values():
        for ref in node.refs():
            _check_ref(f"{where}, node '{node.name}'", ref, nodes, stages)
    outputs = body.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise PipelineConfigError(f"{where}: 'outputs' must map output names to node.field")
    for out_name, ref in outputs.items():
        if not isinstance(ref, str) or ref.startswith(REQUEST_PREFIX):
            raise PipelineConfigError(f"{where}, output '{out_name}': must reference node.field")
        _check_ref(f"{where}, output '{out_name}'", ref, nodes, stages)
    try:
        order = tuple(TopologicalSorter({n: s.upstream() for n, s in nodes.items()}).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise PipelineConfigError(f"{where}: cycle between nodes {cycle}") from None
    _check_all_feed_outputs(where, nodes, outputs)
    return PipelineSpec(
        name=name,
        description=str(body.get("description", "")),
        nodes=nodes,
        outputs=dict(outputs),
        order=order,
    )


def _parse_node(where: str, name: str, body: Any, stages: dict[str, StageSpec]) -> NodeSpec:
    here = f"{where}, node '{name}'"
    if not _NAME.match(str(name)):
        raise PipelineConfigError(f"{here}: name must match {_NAME.pattern}")
    if not isinstance(body, dict):
        raise PipelineConfigError(f"{here}: must be a mapping with 'stage' and 'inputs'")
    stage = body.get("stage")
    if stage not in stages:
        raise PipelineConfigError(f"{here}: unknown stage '{stage}' (known: {sorted(stages)})")
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise PipelineConfigError(f"{here}: 'inputs' must be a mapping")
    declared = set(stages[stage].inputs)
    missing, extra = declared - set(inputs), set(inputs) - declared
    if missing:
        raise PipelineConfigError(f"{here}: missing input(s) {sorted(missing)} of stage '{stage}'")
    if extra:
        raise PipelineConfigError(f"{here}: stage '{stage}' takes no input(s) {sorted(extra)}")
    for key, value in inputs.items():
        ok = isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        )
        if not ok:
            raise PipelineConfigError(
                f"{here}: input '{key}' must be a reference or a list of them"
            )
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise PipelineConfigError(f"{here}: 'params' must be a mapping")
    for key, value in params.items():
        _check_param(here, stages[stage], key, value)
    return NodeSpec(name=name, stage=stage, inputs=dict(inputs), params=dict(params))


_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "array": (list,),
    "boolean": (bool,),
}


def _check_param(here: str, stage: StageSpec, key: str, value: Any) -> None:
    """Node params are checked against what the stage declares, so a typo such as an unknown
    combine method stops start-up instead of failing every job."""
    schema = stage.params.get(key)
    if schema is None:
        raise PipelineConfigError(
            f"{here}: stage '{stage.name}' takes no param '{key}' (params: {sorted(stage.params)})"
        )
    if "enum" in schema and value not in schema["enum"]:
        raise PipelineConfigError(
            f"{here}: param '{key}' is '{value}', must be one of {schema['enum']}"
        )
    kind = schema.get("type")
    if kind and (
        not isinstance(value, _PARAM_TYPES[kind])
        or (kind in ("integer", "number") and isinstance(value, bool))
    ):
        raise PipelineConfigError(f"{here}: param '{key}' must be of type {kind}")
    if "minimum" in schema and value < schema["minimum"]:
        raise PipelineConfigError(f"{here}: param '{key}' must be >= {schema['minimum']}")


def _check_ref(
    here: str, ref: str, nodes: dict[str, NodeSpec], stages: dict[str, StageSpec]
) -> None:
    if ref.startswith(REQUEST_PREFIX):
        if ref[len(REQUEST_PREFIX) :] not in REQUEST_INPUTS:
            raise PipelineConfigError(f"{here}: unknown request input '{ref}'")
        return
    node, _, fld = ref.partition(".")
    if not fld:
        raise PipelineConfigError(f"{here}: reference '{ref}' must be 'node.field' or '$request.x'")
    if node not in nodes:
        raise PipelineConfigError(f"{here}: reference '{ref}' names unknown node '{node}'")
    stage = stages[nodes[node].stage]
    if fld not in stage.outputs:
        raise PipelineConfigError(
            f"{here}: reference '{ref}': stage '{stage.name}' has no output '{fld}' "
            f"(outputs: {list(stage.outputs)})"
        )


def _check_all_feed_outputs(
    where: str, nodes: dict[str, NodeSpec], outputs: dict[str, str]
) -> None:
    """A node no output depends on would run for nothing and keep its job from finishing."""
    reached: set[str] = set()
    todo = [ref.split(".", 1)[0] for ref in outputs.values()]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(nodes[name].upstream())
    for name in nodes:
        if name not in reached:
            raise PipelineConfigError(f"{where}, node '{name}': unreachable, feeds no output")
