"""The ensemble's classifiers on bundled photos, and the combiner's fusion methods."""

import numpy as np
import pytest
import yaml

from services.core.handler import HandlerContext, Task, TaskError
from services.core.settings import get_settings
from services.ensemble.classifier import ClassifierHandler, centre_crop
from services.ensemble.combine import CombineHandler, fuse
from tests.inprocess import run

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module", params=["efficientnet-lite0", "efficientnet-lite2"])
def classifier(request, model_root):
    handler = ClassifierHandler()
    handler.initialize(HandlerContext(request.param, get_settings(), model=request.param))
    return handler


@pytest.fixture(scope="module")
def combiner(model_root):
    handler = CombineHandler()
    handler.initialize(
        HandlerContext("combine", get_settings(), options={"labels_model": "efficientnet-lite0"})
    )
    return handler


def test_known_photos_get_their_classes(classifier, photos):
    tasks = [Task("j", "a", {"image": photos[n]}) for n in ("chelsea", "coffee")]
    cat, coffee = run(classifier, tasks)
    assert cat["top1"]["label"] in CATS
    assert coffee["top1"]["label"] == "espresso" and coffee["top1"]["score"] > 0.5
    assert len(cat["probs"]) == 1000 and abs(sum(cat["probs"]) - 1) < 1e-3


def test_export_was_checked_against_pytorch(model_root):
    for name in ("efficientnet-lite0", "efficientnet-lite2"):
        spec = yaml.safe_load((model_root / name / "1" / "model.yaml").read_text())
        assert spec["checks"]["export_max_abs_diff"] < 1e-4
        assert len(spec["labels"]) == 1000 and spec["labels"][967] == "espresso"


def test_garbage_is_a_task_error(classifier):
    with pytest.raises(TaskError):
        classifier.preprocess([Task("j", "a", {"image": b"not an image"})])


@pytest.mark.parametrize("shape", [(2, 50000, 3), (65500, 1, 3), (480, 1920, 3)])
def test_centre_crop_resizes_only_a_band_of_elongated_images(shape):
    """Beyond RESIZE_SPAN:1 only the centre band is resized (a 1x65500 image resized whole to
    224 across would be ~10 GiB); the crop still comes from the image's centre."""
    rgb = np.zeros(shape, np.uint8)
    centre = (shape[0] // 2, shape[1] // 2)
    rgb[centre] = 255  # one bright pixel at the centre
    crop = centre_crop(rgb, 224, 224)
    assert crop.shape == (224, 224, 3)
    assert crop[100:124, 100:124].max() > 0  # the centre pixel lands in the crop's centre


PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.6, 0.1, 0.3]])


def test_fusion_methods():
    np.testing.assert_allclose(fuse(PROBS, "mean"), PROBS.mean(axis=0))
    np.testing.assert_allclose(fuse(PROBS, "weighted", [0, 1, 0]), PROBS[1])
    top = PROBS.max(axis=0)
    np.testing.assert_allclose(fuse(PROBS, "max"), top / top.sum())
    assert fuse(PROBS, "vote").argmax() == 0  # two of three members vote class 0
    tie = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    assert fuse(tie, "vote").argmax() == 0  # tie broken by the higher mean probability
    for method in ("mean", "weighted", "max", "vote"):
        weights = [1, 1, 1] if method == "weighted" else None
        assert abs(fuse(PROBS, method, weights).sum() - 1) < 1e-9


def test_bad_fusion_params_are_task_errors():
    with pytest.raises(TaskError, match="non-negative weights"):
        fuse(PROBS, "weighted", [1, 2])
    with pytest.raises(TaskError, match="unknown combine method 'median'"):
        fuse(PROBS, "median")


def test_combiner_reports_label_top_k_and_members(combiner):
    probs = np.zeros((2, 1000))
    probs[0, 281], probs[0, 285] = 0.7, 0.3  # tabby, Egyptian cat
    probs[1, 285], probs[1, 281] = 0.6, 0.4
    members = [
        {"model": "a", "label": "tabby", "score": 0.7},
        {"model": "b", "label": "Egyptian cat", "score": 0.6},
    ]
    task = Task(
        "j",
        "vote",
        {"probs": probs.tolist(), "members": members},
        params={"method": "mean", "top_k": 2},
    )
    (out,) = run(combiner, [task])
    assert out["label"] == "tabby" and out["score"] == pytest.approx(0.55)
    assert [t["label"] for t in out["top_k"]] == ["tabby", "Egyptian cat"]
    assert out["members"] == members
