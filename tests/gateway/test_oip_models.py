"""Every pipeline as a V2 model: the tensor mapping derived from the output schemas, and the
tensors' wire layouts — no Redis, no HTTP."""

import json

import numpy as np
import pytest

from services.core.pipeline import parse_pipelines
from services.core.settings import Settings
from services.gateway.errors import Problem
from services.gateway.v2.infer import InputTensor, image_batch
from services.gateway.v2.models import ModelCatalog
from services.gateway.v2.wire import Tensor, deserialize_bytes, serialize_bytes
from tests.stages import person

SERVED = ModelCatalog(parse_pipelines(Settings().pipelines_file.read_text()))
POSE_TENSORS = [
    ("boxes", "FP32", [-1, 4]),
    ("scores", "FP32", [-1]),
    ("keypoints", "FP32", [-1, 17, 3]),
    ("batch_index", "INT32", [-1]),
]


def outputs(model: str) -> list[tuple[str, str, list[int]]]:
    return [(o["name"], o["datatype"], o["shape"]) for o in SERVED.get(model).metadata()["outputs"]]


def test_every_served_pipeline_is_a_model_with_typed_outputs():
    assert set(SERVED.models) == {"pose", "pose-multi", "classify", "scene"}
    result = ("result", "BYTES", [-1])
    assert outputs("pose") == outputs("pose-multi") == [*POSE_TENSORS, result]
    assert outputs("scene") == [*POSE_TENSORS, ("label", "BYTES", [-1]), result]
    assert outputs("classify") == [("label", "BYTES", [-1]), ("score", "FP32", [-1]), result]
    meta = SERVED.get("pose", "1").metadata()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "posefleet_pipeline"
    config = SERVED.get("scene").config()
    assert config["max_batch_size"] == 0
    assert {o["name"]: o["data_type"] for o in config["output"]}["label"] == "TYPE_STRING"


def test_unknown_model_and_version_are_404():
    for name, version, code in [
        ("nope", "", "model_not_found"),
        ("pose", "2", "version_not_found"),
    ]:
        with pytest.raises(Problem) as err:
            SERVED.get(name, version)
        assert err.value.status == 404 and err.value.code == code


def test_a_batch_concatenates_rows_with_their_image_index():
    model = SERVED.get("scene")
    results = [
        {"people": [person(0, 5), person(1, 5)], "label": "court", "top_k": []},
        {"people": [], "label": "cat", "top_k": []},
        {"people": [person(2, 9)], "label": "street", "top_k": []},
    ]
    tensors = {o.spec.name: o.gather(results) for o in model.outputs}
    assert tensors["boxes"].shape == (3, 4) and tensors["boxes"].dtype == np.float32
    assert tensors["keypoints"].shape == (3, 17, 3)
    np.testing.assert_allclose(tensors["keypoints"][2, 1], [3.0, 10.0, 0.51], rtol=1e-6)
    assert tensors["batch_index"].tolist() == [0, 0, 2]
    assert tensors["label"] == [b"court", b"cat", b"street"]
    assert [json.loads(r) for r in tensors["result"]] == results


def test_two_detection_outputs_or_a_clash_prefix_the_tensor_names():
    people = (
        "{type: array, items: {type: object, required: [box, score], properties: "
        "{box: {type: array, items: {type: number}, minItems: 4, maxItems: 4}, score: "
        "{type: number}}}}"
    )
    config = parse_pipelines(
        f"""
stages:
  s:
    handler: tests.stages:People
    inputs: [image]
    outputs: {{people: {people}, faces: {people}, scores: {{type: number}}}}
pipelines:
  two:
    nodes: {{n: {{stage: s, inputs: {{image: $request.image}}}}}}
    outputs: {{people: n.people, faces: n.faces}}
  clash:
    nodes: {{n: {{stage: s, inputs: {{image: $request.image}}}}}}
    outputs: {{people: n.people, scores: n.scores}}
"""
    )
    catalog = ModelCatalog(config)
    names = [o.spec.name for o in catalog.get("two").outputs]
    assert names == [
        "people_boxes", "people_scores", "people_batch_index",
        "faces_boxes", "faces_scores", "faces_batch_index", "result",
    ]  # fmt: skip
    names = [o.spec.name for o in catalog.get("clash").outputs]
    assert names == ["people_boxes", "people_scores", "people_batch_index", "scores", "result"]


def test_bytes_tensors_round_trip_and_malformed_ones_are_400():
    elements = [b"", b"\xff\xd8 jpeg", b"x" * 300]
    raw = serialize_bytes(elements)
    assert deserialize_bytes(raw, "t") == elements
    for broken in (raw[:-1], raw[:2], b"\xff\xff\xff\x7f"):
        with pytest.raises(Problem) as err:
            deserialize_bytes(broken, "t")
        assert err.value.status == 400
    floats = Tensor("scores", "FP32", (2,), np.array([0.5, 1.0], np.float32))
    assert floats.raw() == np.array([0.5, 1.0], "<f4").tobytes()
    assert floats.json_data() == [0.5, 1.0]


def test_image_batch_limits():
    model = SERVED.get("pose")
    settings = Settings(oip_max_batch=2, max_image_bytes=10)

    def batch(*inputs: InputTensor) -> list[bytes]:
        return image_batch(model, list(inputs), settings)

    assert batch(InputTensor("image", "BYTES", (2,), [b"a", b"b"])) == [b"a", b"b"]
    cases = [
        ((InputTensor("image", "BYTES", (3,), [b"a"] * 3),), "bad_batch"),
        ((InputTensor("image", "BYTES", (0,), []),), "bad_batch"),
        ((InputTensor("image", "BYTES", (1,), [b"x" * 11]),), "image_too_large"),
        ((InputTensor("image", "FP32", (1,), []),), "bad_datatype"),
        ((InputTensor("image", "BYTES", (2,), [b"a"]),), "bad_shape"),
        ((InputTensor("img", "BYTES", (1,), [b"a"]),), "unknown_input"),
        ((), "missing_input"),
    ]
    for inputs, code in cases:
        with pytest.raises(Problem) as err:
            batch(*inputs)
        assert err.value.code == code
