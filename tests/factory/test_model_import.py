"""`posefleet models import`: what it writes, what it refuses (and says why), batch-1 wrapping,
the origin in `models list/info`, and the repository's other commands on imported models
(serving by default, int8 quantization, compilation)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper

from services.cli.models import catalog_rows, model_info
from services.core.handler import HandlerContext
from services.core.runtime.repository import ModelRepository
from services.core.settings import Settings, get_settings
from services.ensemble.classifier import ClassifierHandler
from services.factory import compile as compiling
from services.factory.build import sha256_file
from services.factory.importer import ImportOptions, import_model
from services.factory.layouts import DecoderOptions, ImportRefused
from services.factory.quantize import quantize_model
from tests.clirun import posefleet
from tests.factory.onnx_models import (
    batch_mixing_classifier,
    colour_classifier,
    constant_outputs,
    raw_graph,
)
from tests.factory.test_compile import ExactToolchain
from tests.factory.test_imported_families import image, run

LABELS = ["red", "green", "blue"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(model_root=tmp_path / "models", cache_dir=get_settings().cache_dir)


def classify(**kwargs) -> ImportOptions:
    return ImportOptions("image-classification", decoder=DecoderOptions(labels=LABELS), **kwargs)


def test_model_yaml_records_contract_hash_and_origin(tmp_path, settings):
    path = colour_classifier(tmp_path / "colours.onnx")
    result = import_model(path, "colours", classify(mean=[0, 0, 0], std=[255] * 3), settings)
    folder = settings.model_root / "colours" / "1"
    assert result["path"] == str(folder)
    spec = yaml.safe_load((folder / "model.yaml").read_text())
    assert spec["sha256"] == sha256_file(folder / "model.onnx") == sha256_file(path)
    assert spec["task"] == "image-classification" and spec["labels"] == LABELS
    assert spec["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}]
    assert spec["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}]
    assert spec["preprocessing"] == {
        "family": "classification",
        "size": [32, 32],
        "layout": "NCHW",
        "color": "RGB",
        "mean": [0.0, 0.0, 0.0],
        "std": [255.0, 255.0, 255.0],
        "resize_shorter": 37,
        "crop": 32,
    }
    assert spec["decoder"] == {"output": "logits", "score_activation": "softmax"}
    source = spec["source"]
    assert source["origin"] == "imported" and source["path"] == str(path.resolve())
    assert source["wrapped_batch"] is False and source["imported_at"].endswith("Z")
    assert spec["checks"]["batch_of_two_max_abs_diff"] == 0.0

    # a second import is the next version, and being newest (not derived) it is served
    import_model(path, "colours", classify(), settings)
    assert ModelRepository(settings.model_root).get("colours").version == "2"


def refused(tmp_path, settings, path, options, match):
    with pytest.raises(ImportRefused, match=match):
        import_model(path, "refused", options, settings)
    assert not (settings.model_root / "refused" / "1").exists()  # nothing half-written


def test_refusals_say_why_and_what_would_fix_it(tmp_path, settings):
    def graph(name, inputs, outputs, nodes):
        return raw_graph(tmp_path / f"{name}.onnx", inputs, outputs, nodes)

    value = helper.make_tensor_value_info
    f32 = TensorProto.FLOAT
    rank3 = graph(
        "rank3",
        [value("x", f32, ["batch", 32, 32])],
        [value("y", f32, ["batch", 32])],
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)],
    )
    refused(tmp_path, settings, rank3, classify(), r"rank 3 .*\[batch, 3, H, W\]")
    two_inputs = graph(
        "two",
        [value("a", f32, ["batch", 3, 8, 8]), value("b", f32, ["batch", 3, 8, 8])],
        [value("y", f32, ["batch", 3, 8, 8])],
        [helper.make_node("Add", ["a", "b"], ["y"])],
    )
    refused(tmp_path, settings, two_inputs, classify(), "2 inputs.*one image tensor")
    batch4 = colour_classifier(tmp_path / "b4.onnx", batch=4)
    refused(tmp_path, settings, batch4, classify(), "fixed batch of 4")
    batch1 = colour_classifier(tmp_path / "b1.onnx", batch=1)
    refused(tmp_path, settings, batch1, classify(), "fixed batch of 1.*--wrap-batch")
    dynamic = graph(
        "dynamic",
        [value("x", f32, ["batch", 3, "h", "w"])],
        [value("y", f32, ["batch", 3])],
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
    )
    refused(tmp_path, settings, dynamic, classify(), "dynamic height or width.*--size WxH")
    assert import_model(dynamic, "sized", classify(size=(48, 48)), settings)["version"] == "1"
    assert ModelRepository(settings.model_root).get("sized").spec["inputs"][0]["shape"] == [
        "batch",
        3,
        48,
        48,
    ]
    refused(tmp_path, settings, batch4, classify(mean=[1, 2]), "fixed batch of 4")
    colours = colour_classifier(tmp_path / "ok.onnx")
    refused(tmp_path, settings, colours, classify(mean=[1, 2]), "--mean takes 3 values")
    refused(
        tmp_path,
        settings,
        colours,
        ImportOptions("image-classification", decoder=DecoderOptions(labels=["a", "b"])),
        "--labels has 2 names but the model scores 3 classes",
    )
    refused(tmp_path, settings, colours, classify(family="yolo"), "does not serve image-class")
    bogus = ImportOptions(
        "image-classification", decoder=DecoderOptions(labels=LABELS, score_activation="relu")
    )
    refused(tmp_path, settings, colours, bogus, "--score-activation must be one of")
    refused(tmp_path, settings, colours, ImportOptions("segmentation"), "--task must be one of")
    with pytest.raises(ImportRefused, match="catalog model"):
        import_model(colours, "centernet", classify(), settings)
    uint8 = constant_outputs(
        tmp_path / "u8.onnx", ["batch", 8, 8, 3], {"y": np.zeros(3, np.float32)}, TensorProto.UINT8
    )
    refused(tmp_path, settings, uint8, classify(std=[1, 1, 1]), "raw 0-255 pixels")
    heat4d = constant_outputs(
        tmp_path / "h.onnx", ["batch", 3, 8, 8], {"y": np.zeros((3, 2, 2), np.float32)}
    )
    refused(tmp_path, settings, heat4d, classify(), "one output of rank 2")
    few_channels = constant_outputs(
        tmp_path / "y.onnx", ["batch", 3, 64, 64], {"out": np.zeros((100, 4), np.float32)}
    )
    refused(tmp_path, settings, few_channels, ImportOptions("object-detection"), "no class scores")
    three = {n: np.zeros((5, 4), np.float32) for n in ("a", "b", "c")}
    unnamed = constant_outputs(tmp_path / "s.onnx", ["batch", 3, 64, 64], three)
    refused(tmp_path, settings, unnamed, ImportOptions("object-detection"), "--outputs boxes=NAME")
    mixing = batch_mixing_classifier(tmp_path / "mix.onnx")
    refused(tmp_path, settings, mixing, classify(), "mixes images of a batch")
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"not a model")
    refused(tmp_path, settings, not_onnx, classify(), "onnxruntime cannot load it")


def test_fixed_batch_of_one_is_wrapped_and_then_batches(tmp_path, settings):
    path = colour_classifier(tmp_path / "b1.onnx", batch=1)
    result = import_model(path, "wrapped", classify(wrap_batch=True), settings)
    assert result["wrapped_batch"] is True
    entry = ModelRepository(settings.model_root).get("wrapped")
    assert entry.spec["source"]["wrapped_batch"] is True
    assert entry.spec["sha256"] != sha256_file(path)  # the stored file is the wrapped graph
    handler = ClassifierHandler()
    handler.initialize(HandlerContext("c", settings, model="wrapped"))
    outputs = run(handler, [{"image": image((255, 0, 0))}, {"image": image((0, 0, 255))}])
    assert [o["top1"]["label"] for o in outputs] == ["red", "blue"]  # one run, batch of two


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(250, 10, 10), (10, 240, 20), (30, 30, 200), (200, 90, 40)]):
        pixels = np.full((64, 80, 3), colour, np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    return folder


def test_quantize_and_compile_take_imported_models(tmp_path, settings, photos):
    import_model(colour_classifier(tmp_path / "c.onnx"), "colours", classify(), settings)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(
        "stages:\n"
        "  colours:\n"
        "    handler: services.ensemble.classifier:ClassifierHandler\n"
        "    model: colours\n"
        "    inputs: [image]\n"
        "    outputs: [probs, top1]\n"
        "pipelines:\n"
        "  colours:\n"
        "    nodes: {c: {stage: colours, inputs: {image: $request.image}}}\n"
        "    outputs: {top1: c.top1}\n"
    )
    local = Settings(
        model_root=settings.model_root, cache_dir=settings.cache_dir, pipelines_file=pipelines
    )
    result = quantize_model("colours", "static", photos, local, calibration_dir=photos)
    assert (result["stage"], result["from_version"], result["version"]) == ("colours", "1", "2")
    assert result["agreement"] == {"top1": 1.0}
    repository = ModelRepository(local.model_root)
    assert repository.get("colours").version == "1"  # the int8 version is served only pinned
    assert repository.get("colours", "2").spec["source"]["origin"] == "imported"

    compiled = compiling.compile_model(
        "colours", "neuron", local, batch_size=2, toolchain=ExactToolchain()
    )
    assert compiled["inputs"] == [{"name": "image", "dtype": "float32", "shape": [2, 3, 32, 32]}]
    assert compiled["checks"]["torch_vs_onnxruntime_max_abs_diff"] == {"logits": 0.0}


def test_cli_import_list_and_info(tmp_path, settings, model_root):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    path = colour_classifier(tmp_path / "colours.onnx", probabilities=True)
    env = {"POSEFLEET_MODEL_ROOT": str(settings.model_root)}
    args = ["models", "import", str(path), "--name", "colours", "--task", "image-classification"]
    result = posefleet(*args, "--labels", str(labels), env=env)
    assert result.returncode == 0, result.stderr
    assert "imported colours v1 (classification)" in result.stdout
    assert "scores: probabilities" in result.stderr  # the choice made for the user is shown

    batch1 = colour_classifier(tmp_path / "b1.onnx", batch=1)
    refusal = posefleet("models", "import", str(batch1), *args[3:], env=env)
    assert refusal.returncode == 1 and "Traceback" not in refusal.stderr
    assert "--wrap-batch" in " ".join(refusal.stderr.split())

    for catalog in ("centernet", "movenet-lightning"):  # a repository mixing both origins
        shutil.copytree(model_root / catalog, settings.model_root / catalog)
    rows = {r["model"]: r for r in catalog_rows(settings.model_root)}
    assert rows["colours"]["origin"].startswith("imported 20")
    assert rows["colours"]["source"] == str(path.resolve())
    assert rows["colours"]["output"] == "probs (classification)"
    assert rows["centernet"]["origin"] == "catalog"
    listed = posefleet("models", "list", env={**env, "COLUMNS": "300"})
    assert listed.returncode == 0 and "colours" in listed.stdout

    info = yaml.safe_load(model_info("colours", settings.model_root))
    assert info["origin"] == "imported" and info["versions"] == {"1": "imported (default)"}
    assert info["served"]["decoder"] == {"output": "probs", "score_activation": "none"}
    missing = posefleet("models", "info", "nope", env=env)
    assert missing.returncode == 1 and "nor imported" in missing.stderr
