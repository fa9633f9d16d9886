"""Every generic family, end to end through `models import` and the real stage handler, on small
real ONNX models whose outputs are known: the decoded boxes, labels and keypoints must be the
ground truth the test wrote into the model, in the ORIGINAL image's pixels."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from services.core.handler import HandlerContext, Task
from services.core.settings import Settings, get_settings
from services.detector.handler import DetectorHandler
from services.ensemble.classifier import ClassifierHandler
from services.ensemble.combine import CombineHandler
from services.factory.importer import ImportOptions, import_model
from services.factory.layouts import DecoderOptions, ImportRefused
from services.pose.handler import PoseHandler
from tests.conftest import encode
from tests.factory.onnx_models import colour_classifier, constant_outputs

WIDTH, HEIGHT = 640, 480  # every test image; a 320x320 letterbox scales it by 0.5, pads y by 40


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(model_root=tmp_path / "models", cache_dir=get_settings().cache_dir)


def image(colour=(0, 0, 0)) -> bytes:
    return encode(np.full((HEIGHT, WIDTH, 3), colour, np.uint8))


def run(handler, inputs: list[dict]) -> list[dict]:
    tasks = [Task(f"job-{i}", "node", item) for i, item in enumerate(inputs)]
    return handler.postprocess(handler.inference(handler.preprocess(tasks)), tasks)


def serve(handler_cls, settings: Settings, name: str, **options):
    handler = handler_cls()
    handler.initialize(HandlerContext("stage", settings, model=name, options=options))
    return handler


# --- image-classification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "color", "probabilities", "expected"),
    [
        ("NCHW", "RGB", False, "red"),
        ("NHWC", "RGB", True, "red"),
        ("NCHW", "BGR", False, "blue"),  # the model is fed B, G, R: red lands in channel 2
    ],
)
def test_classifier_layouts_colour_order_and_scores(
    tmp_path, settings, layout, color, probabilities, expected
):
    path = colour_classifier(tmp_path / "c.onnx", layout=layout, probabilities=probabilities)
    options = ImportOptions(
        "image-classification",
        color=color,
        decoder=DecoderOptions(labels=["red", "green", "blue"]),
    )
    result = import_model(path, "colours", options, settings)
    assert result["family"] == "classification"
    handler = serve(ClassifierHandler, settings, "colours")
    (out,) = run(handler, [{"image": image((255, 0, 0))}])
    assert out["top1"]["label"] == expected
    if probabilities:  # the model's own softmax is kept, not applied twice
        assert handler.activation == "none"
        softmax = np.exp([1, 0, 0]) / np.exp([1, 0, 0]).sum()
        assert out["probs"] == pytest.approx(list(softmax), abs=1e-5)
    else:  # logits (channel means of pixel / 255) get the softmax
        assert handler.activation == "softmax"
        assert max(out["probs"]) == pytest.approx(np.e / (np.e + 2), abs=1e-4)


def test_two_imported_classifiers_make_an_ensemble(tmp_path, settings):
    """Imported classifiers feed the combine stage as the catalog's do: it takes its class names
    from one of them (``labels_model``) and fuses the members' probabilities."""
    labels = DecoderOptions(labels=["red", "green", "blue"])
    for name, layout, probabilities in (("logits", "NCHW", False), ("probs", "NHWC", True)):
        path = colour_classifier(
            tmp_path / f"{name}.onnx", layout=layout, probabilities=probabilities
        )
        import_model(path, name, ImportOptions("image-classification", decoder=labels), settings)
    members = [
        run(serve(ClassifierHandler, settings, name), [{"image": image((0, 0, 255))}])[0]
        for name in ("logits", "probs")
    ]
    combine = CombineHandler()
    combine.initialize(
        HandlerContext("combine", settings, model=None, options={"labels_model": "logits"})
    )
    inputs = {"probs": [m["probs"] for m in members], "members": [m["top1"] for m in members]}
    task = Task("job-0", "vote", inputs, params={"method": "mean", "top_k": 2})
    (voted,) = combine.postprocess(combine.inference(combine.preprocess([task])), [task])
    assert [m["top1"]["label"] for m in members] == ["blue", "blue"]
    assert voted["label"] == "blue" and len(voted["top_k"]) == 2
    assert voted["members"] == [m["top1"] for m in members]
    expected = np.mean([m["probs"] for m in members], axis=0)[2]
    assert voted["score"] == pytest.approx(expected, abs=1e-4)


# --- detectors -----------------------------------------------------------------------------

PERSON_BOX_IMAGE = [220.0, 140.0, 420.0, 340.0]
DOG_BOX_IMAGE = [80.0, 40.0, 160.0, 200.0]


def yolo_rows(objectness: bool = False) -> np.ndarray:
    """cx, cy, w, h (320x320 input pixels), then person and dog scores."""
    rows = np.array(
        [
            [160, 160, 100, 100, 0.9, 0.1],  # → PERSON_BOX_IMAGE after the letterbox
            [162, 161, 100, 100, 0.8, 0.0],  # the same person again: NMS removes it
            [60, 100, 40, 80, 0.1, 0.7],  # a dog → DOG_BOX_IMAGE
            [250, 250, 20, 20, 0.2, 0.0],  # below the 0.25 threshold
            [0, 0, 0, 0, 0.0, 0.0],
        ],
        np.float32,
    )
    if objectness:  # YOLOv5: cx, cy, w, h, obj, classes: obj 1 keeps the same scores
        rows = np.concatenate([rows[:, :4], np.ones((len(rows), 1), np.float32), rows[:, 4:]], 1)
    return rows


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("objectness", [False, True])
def test_yolo_anchors_first_and_transposed_with_nms_and_letterbox(
    tmp_path, settings, transposed, objectness
):
    rows = yolo_rows(objectness)
    path = constant_outputs(
        tmp_path / "yolo.onnx",
        ["batch", 3, 320, 320],
        {"output0": rows.T if transposed else rows},
    )
    labels = ["person", "dog"]
    result = import_model(
        path,
        "yolo",
        ImportOptions("person-detection", decoder=DecoderOptions(labels=labels)),
        settings,
    )
    layout = "channels-first" if transposed else "anchors-first"
    assert any(note.startswith(f"output layout: {layout}") for note in result["notes"])
    handler = serve(DetectorHandler, settings, "yolo")
    (out,) = run(handler, [{"image": image()}])
    assert out["boxes"] == [{"box": PERSON_BOX_IMAGE, "score": 0.9, "label": "person"}]

    everything = import_model(
        path,
        "yolo-all",
        ImportOptions("object-detection", decoder=DecoderOptions(labels=labels)),
        settings,
    )
    assert everything["family"] == "yolo"
    (out,) = run(serve(DetectorHandler, settings, "yolo-all"), [{"image": image()}] * 2)[1:]
    assert out["boxes"] == [
        {"box": PERSON_BOX_IMAGE, "score": 0.9, "label": "person"},
        {"box": DOG_BOX_IMAGE, "score": 0.7, "label": "dog"},
    ]


def test_yolo_stretch_and_node_threshold(tmp_path, settings):
    path = constant_outputs(
        tmp_path / "yolo.onnx", ["batch", 3, 320, 320], {"output0": yolo_rows()}
    )
    options = ImportOptions(
        "object-detection", resize="stretch", decoder=DecoderOptions(labels=["person", "dog"])
    )
    import_model(path, "stretched", options, settings)
    handler = serve(DetectorHandler, settings, "stretched")
    tasks = [Task("j", "n", {"image": image()}, params={"min_score": 0.8})]
    (out,) = handler.postprocess(handler.inference(handler.preprocess(tasks)), tasks)
    # stretched: x scales by 2, y by 1.5; only the 0.9 person passes min_score 0.8
    assert out["boxes"] == [{"box": [220.0, 165.0, 420.0, 315.0], "score": 0.9, "label": "person"}]


def test_ssd_boxes_scores_labels(tmp_path, settings):
    boxes = (
        np.array(  # x1, y1, x2, y2 as fractions of the 320x320 input
            [[110, 110, 210, 210], [40, 60, 80, 140], [0, 0, 10, 10]], np.float32
        )
        / 320
    )
    path = constant_outputs(
        tmp_path / "ssd.onnx",
        ["batch", 3, 320, 320],
        {
            "detection_boxes": boxes,
            "detection_scores": np.array([0.95, 0.6, 0.1], np.float32),
            "detection_classes": np.array([1, 2, 1], np.int64),
        },
    )
    labels = ["background", "person", "dog"]
    options = ImportOptions(
        "object-detection",
        decoder=DecoderOptions(labels=labels, box_format="xyxy", normalized=True),
    )
    result = import_model(path, "ssd", options, settings)
    assert result["family"] == "ssd"
    assert (
        "outputs: boxes=detection_boxes, scores=detection_scores, labels=detection_classes"
        in result["notes"]
    )
    (out,) = run(serve(DetectorHandler, settings, "ssd"), [{"image": image()}])
    assert out["boxes"] == [
        {"box": PERSON_BOX_IMAGE, "score": 0.95, "label": "person"},
        {"box": DOG_BOX_IMAGE, "score": 0.6, "label": "dog"},
    ]
    person = import_model(
        path,
        "ssd-person",
        ImportOptions(
            "person-detection",
            decoder=DecoderOptions(labels=labels, box_format="xyxy", normalized=True),
        ),
        settings,
    )
    assert "classes: [1] ('person'; task person-detection)" in person["notes"]
    (out,) = run(serve(DetectorHandler, settings, "ssd-person"), [{"image": image()}])
    assert [b["label"] for b in out["boxes"]] == ["person"]


def test_detr_logits_with_no_object_class(tmp_path, settings):
    """DETR: cxcywh normalised boxes, softmax over person, dog, no-object."""
    boxes = np.array([[160, 160, 100, 100], [60, 100, 40, 80]], np.float32) / 320
    logits = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 5.0]], np.float32)  # person; nothing
    path = constant_outputs(
        tmp_path / "detr.onnx",
        ["batch", 3, 320, 320],
        {"pred_logits": logits, "pred_boxes": boxes},
    )
    options = ImportOptions(
        "object-detection",
        decoder=DecoderOptions(
            labels=["person", "dog", "no-object"],
            box_format="cxcywh",
            normalized=True,
            score_activation="softmax",
            background="last",
        ),
    )
    import_model(path, "detr", options, settings)
    (out,) = run(serve(DetectorHandler, settings, "detr"), [{"image": image()}])
    person = float(np.exp(4) / (np.exp(4) + 2))
    assert out["boxes"] == [{"box": PERSON_BOX_IMAGE, "score": round(person, 4), "label": "person"}]


# --- top-down pose -------------------------------------------------------------------------

BOX = [100.0, 50.0, 196.0, 306.0]  # 96x256 in the image
# mmpose's top-down crop for a 192x256 (W x H) input: the box x1.25 = 120x320, widened to the
# input's 3:4 aspect = 240x320, centred on the box.
CROP_X0, CROP_Y0, CROP_W, CROP_H = 28.0, 18.0, 240.0, 320.0


def expected_points(x_input: np.ndarray, y_input: np.ndarray) -> list[tuple[float, float]]:
    """Input pixels of a 192x256 input → image pixels through the crop."""
    return [
        (round(CROP_X0 + x / 192 * CROP_W, 2), round(CROP_Y0 + y / 256 * CROP_H, 2))
        for x, y in zip(x_input, y_input, strict=True)
    ]


def pose(settings: Settings, name: str) -> list[dict]:
    (out,) = run(
        serve(PoseHandler, settings, name),
        [{"image": image(), "boxes": [{"box": BOX, "score": 0.9}]}],
    )
    (person,) = out["people"]
    assert person["box"] == BOX
    return person["keypoints"]


def test_simcc_non_square_crop(tmp_path, settings):
    k = np.arange(17)
    x_bins, y_bins = 20 + 10 * k, 30 + 20 * k
    simcc_x = np.zeros((17, 384), np.float32)  # split ratio 2: 2 bins per input pixel
    simcc_y = np.zeros((17, 512), np.float32)
    simcc_x[k, x_bins] = 0.9
    simcc_y[k, y_bins] = 0.7
    path = constant_outputs(
        tmp_path / "rtmpose.onnx",
        ["batch", 3, 256, 192],
        {"simcc_x": simcc_x, "simcc_y": simcc_y},
    )
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    result = import_model(
        path, "rtmpose", ImportOptions("pose-estimation", mean=mean, std=std), settings
    )
    assert result["family"] == "simcc"
    assert "simcc: x=simcc_x, y=simcc_y, split ratio 2" in result["notes"]
    keypoints = pose(settings, "rtmpose")
    got = [(p["x"], p["y"]) for p in keypoints]
    assert got == expected_points(x_bins / 2, y_bins / 2)
    assert {p["score"] for p in keypoints} == {0.7}  # the smaller of the two maxima
    assert keypoints[0]["name"] == "nose" and keypoints[16]["name"] == "right_ankle"


def test_heatmaps_with_quarter_pixel_refinement_and_more_keypoints(tmp_path, settings):
    """HRNet-style 64x48 heatmaps for a 256x192 input, 26 keypoints (Halpe) → COCO's first 17."""
    k = np.arange(26)
    xs, ys = 10 + (k % 17), 20 + (k % 17)
    maps = np.zeros((26, 64, 48), np.float32)
    maps[k, ys, xs] = 1.0
    maps[k, ys, xs + 1] = 0.5  # right neighbour higher than the left: x + 0.25
    maps[k, ys, xs - 1] = 0.2
    maps[k, ys - 1, xs] = 0.6  # upper neighbour higher: y - 0.25
    maps[k, ys + 1, xs] = 0.3
    path = constant_outputs(tmp_path / "hrnet.onnx", ["batch", 3, 256, 192], {"heatmaps": maps})
    with pytest.raises(ImportRefused, match=r"26 keypoints.*--coco17-from"):
        import_model(path, "hrnet", ImportOptions("pose-estimation"), settings)
    options = ImportOptions("pose-estimation", decoder=DecoderOptions(coco17_from=list(range(17))))
    assert import_model(path, "hrnet", options, settings)["family"] == "heatmap"
    keypoints = pose(settings, "hrnet")
    # heatmap px x 4 = input px (192 / 48 = 256 / 64 = 4)
    expected = expected_points((xs[:17] + 0.25) * 4, (ys[:17] - 0.25) * 4)
    assert [(p["x"], p["y"]) for p in keypoints] == expected
    assert {p["score"] for p in keypoints} == {1.0}


@pytest.mark.parametrize(
    ("shape", "dtype", "layout", "numpy_dtype"),
    [
        (["batch", 320, 320, 3], TensorProto.UINT8, "NHWC", "uint8"),  # TF exports: raw pixels
        (["batch", 3, 320, 320], TensorProto.FLOAT16, "NCHW", "float16"),  # half-precision
    ],
)
def test_input_dtypes_and_layouts(tmp_path, settings, shape, dtype, layout, numpy_dtype):
    path = constant_outputs(tmp_path / "m.onnx", shape, {"out": yolo_rows()}, dtype)
    result = import_model(
        path,
        "typed",
        ImportOptions("person-detection", decoder=DecoderOptions(labels=["person", "dog"])),
        settings,
    )
    handler = serve(DetectorHandler, settings, "typed")
    spec = handler.entry.spec
    assert spec["preprocessing"]["layout"] == layout
    assert spec["inputs"][0]["dtype"] == numpy_dtype and result["family"] == "yolo"
    (out,) = run(handler, [{"image": image()}])
    assert out["boxes"] == [{"box": PERSON_BOX_IMAGE, "score": 0.9, "label": "person"}]
