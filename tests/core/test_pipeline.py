from pathlib import Path

import pytest

from services.core.pipeline import PipelineConfigError, load_pipelines, parse_pipelines

ROOT = Path(__file__).resolve().parents[2]

STAGES = """
stages:
  det: {handler: m:C, inputs: [image], outputs: [boxes]}
  kp: {handler: m:C, inputs: [image, boxes], outputs: [people]}
  num: {handler: m:C, inputs: [value], outputs: [value]}
  add: {handler: m:C, inputs: [values], outputs: [total]}
"""


def parse(pipelines: str):
    return parse_pipelines(STAGES + "pipelines:\n" + pipelines, source="p.yaml")


def error_of(pipelines: str) -> str:
    with pytest.raises(PipelineConfigError) as info:
        parse(pipelines)
    return str(info.value)


def test_default_pipelines_file_is_valid():
    config = load_pipelines(ROOT / "pipelines.yaml")
    pose = config.pipelines["pose"]
    assert pose.roots() == ["detect"]
    assert pose.successors("detect") == ["keypoints"]


def test_compiled_dag_counts_distinct_upstream_nodes():
    spec = parse("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image}}
      a: {stage: num, inputs: {value: d.boxes}}
      b: {stage: num, inputs: {value: d.boxes}}
      s: {stage: add, inputs: {values: [a.value, b.value, a.value]}}
    outputs: {total: s.total}
""").pipelines["p"]
    dag = spec.compile()
    assert dag["nodes"]["d"]["wait"] == 0
    assert sorted(dag["nodes"]["d"]["next"]) == ["a", "b"]
    assert dag["nodes"]["s"]["wait"] == 2  # a feeds twice but finishes once
    assert dag["nodes"]["s"]["refs"] == ["a.value", "b.value", "a.value"]
    assert spec.order.index("s") > spec.order.index("a")


def test_unknown_stage_names_file_pipeline_and_node():
    msg = error_of("""
  p:
    nodes:
      d: {stage: detector, inputs: {image: $request.image}}
    outputs: {x: d.boxes}
""")
    assert msg.startswith("p.yaml: pipeline 'p', node 'd': unknown stage 'detector'")


def test_missing_input():
    msg = error_of("""
  p:
    nodes:
      k: {stage: kp, inputs: {image: $request.image}}
    outputs: {x: k.people}
""")
    assert "pipeline 'p', node 'k': missing input(s) ['boxes']" in msg


def test_unexpected_input():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image, mask: $request.image}}
    outputs: {x: d.boxes}
""")
    assert "node 'd': stage 'det' takes no input(s) ['mask']" in msg


def test_reference_to_unknown_node():
    msg = error_of("""
  p:
    nodes:
      k: {stage: kp, inputs: {image: $request.image, boxes: detect.boxes}}
    outputs: {x: k.people}
""")
    assert "node 'k': reference 'detect.boxes' names unknown node 'detect'" in msg


def test_reference_to_unknown_field():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image}}
      k: {stage: kp, inputs: {image: $request.image, boxes: d.people}}
    outputs: {x: k.people}
""")
    assert "stage 'det' has no output 'people'" in msg


def test_unknown_request_input():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.video}}
    outputs: {x: d.boxes}
""")
    assert "unknown request input '$request.video'" in msg


def test_cycle_is_named():
    msg = error_of("""
  p:
    nodes:
      a: {stage: num, inputs: {value: b.value}}
      b: {stage: num, inputs: {value: a.value}}
    outputs: {x: b.value}
""")
    assert "pipeline 'p': cycle between nodes" in msg
    assert "a" in msg and "b" in msg


def test_node_feeding_no_output_is_unreachable():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image}}
      extra: {stage: det, inputs: {image: $request.image}}
    outputs: {x: d.boxes}
""")
    assert "node 'extra': unreachable, feeds no output" in msg


def test_duplicate_node_is_an_error_not_an_overwrite():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image}}
      d: {stage: det, inputs: {image: $request.image}}
    outputs: {x: d.boxes}
""")
    assert "p.yaml: duplicate key 'd'" in msg


def test_output_must_reference_a_node_field():
    msg = error_of("""
  p:
    nodes:
      d: {stage: det, inputs: {image: $request.image}}
    outputs: {x: $request.image}
""")
    assert "output 'x': must reference node.field" in msg


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(PipelineConfigError, match="cannot read pipelines file"):
        load_pipelines(tmp_path / "missing.yaml")


def test_bad_yaml_names_the_file():
    with pytest.raises(PipelineConfigError, match=r"^x\.yaml: not valid YAML"):
        parse_pipelines("stages: [", source="x.yaml")


PARAM_STAGES = """
stages:
  a: {handler: m:C, inputs: [image], outputs: [probs]}
  fuse:
    handler: m:C
    inputs: [probs]
    outputs: [label]
    params:
      method: {enum: [mean, weighted, vote, max]}
      top_k: {type: integer, minimum: 1}
      weights: {type: array}
pipelines:
  p:
    nodes:
      a: {stage: a, inputs: {image: $request.image}}
      v: {stage: fuse, inputs: {probs: [a.probs]}, params: PARAMS}
    outputs: {label: v.label}
"""


def param_error(params: str) -> str:
    with pytest.raises(PipelineConfigError) as info:
        parse_pipelines(PARAM_STAGES.replace("PARAMS", params), source="p.yaml")
    return str(info.value)


def test_unknown_combine_method_stops_loading():
    msg = param_error("{method: median}")
    assert msg.startswith("p.yaml: pipeline 'p', node 'v': param 'method' is 'median'")
    assert "['mean', 'weighted', 'vote', 'max']" in msg


def test_param_types_minimum_and_unknown_names():
    assert "param 'top_k' must be of type integer" in param_error("{top_k: five}")
    assert "param 'top_k' must be >= 1" in param_error("{top_k: 0}")
    assert "param 'weights' must be of type array" in param_error("{weights: 2}")
    assert "stage 'fuse' takes no param 'topk'" in param_error("{topk: 3}")


def test_valid_params_are_kept():
    spec = parse_pipelines(
        PARAM_STAGES.replace("PARAMS", "{method: weighted, weights: [1, 2], top_k: 3}")
    ).pipelines["p"]
    assert spec.nodes["v"].params == {"method": "weighted", "weights": [1, 2], "top_k": 3}


def test_outputs_may_declare_json_schemas_and_pipelines_publish_them():
    config = parse_pipelines("""
schemas:
  num: &num {type: number}
stages:
  s: {handler: m:C, inputs: [image], outputs: {value: *num, raw: }}
pipelines:
  p:
    nodes:
      n: {stage: s, inputs: {image: $request.image}}
    outputs: {v: n.value, r: n.raw}
""")
    assert config.stages["s"].outputs == ("value", "raw")
    assert config.pipelines["p"].output_schemas(config.stages) == {"v": {"type": "number"}, "r": {}}


def test_unknown_top_level_key():
    with pytest.raises(PipelineConfigError, match="unknown top-level keys \\['stage'\\]"):
        parse_pipelines("stage: {}\npipelines: {}", source="x.yaml")


def test_batching_is_declared_per_stage_with_defaults():
    config = parse("""
  p:
    nodes: {d: {stage: det, inputs: {image: $request.image}}}
    outputs: {b: d.boxes}
""")
    assert (config.stages["det"].max_batch, config.stages["det"].max_delay_ms) == (8, 0)
    served = load_pipelines(ROOT / "pipelines.yaml").stages
    assert served["detector"].max_batch == 4 and served["pose"].max_batch == 8


@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True])
def test_batching_values_must_be_positive_integers(value):
    text = f"stages:\n  s: {{handler: m:C, inputs: [image], outputs: [x], max_batch: {value!r}}}\n"
    text += "pipelines:\n  p: {nodes: {n: {stage: s, inputs: {image: $request.image}}}, "
    text += "outputs: {x: n.x}}\n"
    with pytest.raises(PipelineConfigError, match="stage 's': 'max_batch' must be an integer >= 1"):
        parse_pipelines(text, source="x.yaml")
