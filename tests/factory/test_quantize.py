"""int8 quantization: a new, pinned-only version, and a report measured through the real stage."""

import shutil

import cv2
import pytest
import yaml
from skimage import data

from services.cli.models import model_info
from services.core.handler import HandlerContext
from services.core.runtime.repository import ModelRepository
from services.core.settings import Settings, get_settings
from services.factory.agreement import agreement, pck
from services.factory.build import ModelBuildError
from services.factory.quantize import quantize_model
from services.pins import sha256_file
from services.pose.handler import PoseHandler
from tests.clirun import posefleet
from tests.conftest import OPENCV_DATA


def person(x: float, box=(0, 0, 100, 200), score=0.9) -> dict:
    return {
        "box": list(box),
        "score": 0.8,
        "keypoints": [{"name": f"k{i}", "x": x, "y": 10.0 * i, "score": score} for i in range(17)],
    }


def test_pck_counts_confident_keypoints_within_a_tenth_of_the_box():
    ref = [[person(50)]]
    assert pck(ref, [[person(50 + 19)]]) == 1.0  # 19 px < 0.1 * 200
    assert pck(ref, [[person(50 + 21)]]) == 0.0
    assert pck(ref, [[]]) == 0.0  # a person the other model lost scores zero
    assert pck([[person(50, score=0.1)]], [[person(90)]]) is None  # nothing confident


def test_agreement_picks_the_measure_from_the_stage_outputs():
    boxes = [{"boxes": [{"box": [0, 0, 10, 10], "score": 0.9}]}]
    moved = [{"boxes": [{"box": [0, 0, 10, 10], "score": 0.5}, {"box": [50, 50, 60, 60]}]}]
    assert agreement(boxes, moved) == {"recall": 1.0, "precision": 0.5}
    labels = [{"top1": {"label": "cat"}}, {"top1": {"label": "cup"}}]
    assert agreement(labels, [{"top1": {"label": "cat"}}, {"top1": {"label": "dog"}}]) == {
        "top1": 0.5
    }


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "astronaut.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "coffee.jpg"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    shutil.copy(OPENCV_DATA / "basketball1.png", folder)
    return folder


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    """Other photos than the evaluation set, as calibration should be."""
    folder = tmp_path_factory.mktemp("calibration")
    shutil.copy(OPENCV_DATA / "basketball2.png", folder)
    shutil.copy(OPENCV_DATA / "messi5.jpg", folder)
    return folder


@pytest.fixture
def private_root(tmp_path, model_root):
    """A copy of the built models, so a new version never reaches other tests."""
    for name in ("centernet", "movenet-lightning"):
        shutil.copytree(model_root / name, tmp_path / name)
    return Settings(model_root=tmp_path, cache_dir=get_settings().cache_dir)


def test_static_int8_pose_model_is_a_pinned_version_that_agrees_with_fp32(
    private_root, photo_dir, calibration_dir
):
    result = quantize_model(
        "movenet-lightning", "static", photo_dir, private_root, calibration_dir=calibration_dir
    )
    assert (result["from_version"], result["version"], result["stage"]) == ("1", "2", "pose")
    fp32_mb, int8_mb = result["size_mb"]
    assert int8_mb < fp32_mb / 2
    assert all(ms > 0 for ms in result["median_ms"])
    assert result["agreement"]["people"] == [3, 3]  # astronaut 1, basketball1 2, coffee 0
    assert result["agreement"]["pck@0.1"] >= 0.9  # measured 1.0 on this machine

    repository = ModelRepository(private_root.model_root)
    assert repository.get("movenet-lightning").version == "1"  # newest, but not the default
    pinned = repository.get("movenet-lightning", "2")
    spec = yaml.safe_load((pinned.path.parent / "model.yaml").read_text())
    assert spec["sha256"] == sha256_file(pinned.path)
    assert spec["quantization"]["mode"] == "static"
    assert spec["quantization"]["calibration_images"] == 2
    assert spec["quantization"]["from_sha256"] == repository.get("movenet-lightning").spec["sha256"]
    assert spec["checks"]["quantization_report"]["agreement"] == result["agreement"]

    info = yaml.safe_load(model_info("movenet-lightning", private_root.model_root))
    assert info["versions"] == {
        "1": "fp32 (default)",
        "2": "int8 static from v1 (served only where pinned)",
    }
    handler = PoseHandler()  # the int8 version serves the stage when pinned
    handler.initialize(HandlerContext("pose", private_root, "movenet-lightning", "2"))
    assert handler.entry.version == "2"


def test_static_without_calibration_photos_is_refused(private_root, photo_dir):
    with pytest.raises(ModelBuildError, match="--calibration"):
        quantize_model("movenet-lightning", "static", photo_dir, private_root)


def test_cli_reports_size_latency_and_agreement(private_root, photo_dir):
    env = {
        "POSEFLEET_MODEL_ROOT": str(private_root.model_root),
        "POSEFLEET_CACHE_DIR": str(private_root.cache_dir),
    }
    args = ["models", "quantize", "movenet-lightning", "--images", str(photo_dir)]
    result = posefleet(*args, "--mode", "dynamic", env=env)
    assert result.returncode == 0, result.stderr
    for row in ("size MB", "median ms", "agreement pck@0.1", "people"):
        assert row in result.stdout
    refused = posefleet(*args, "--mode", "static", env=env)
    assert refused.returncode == 1 and "--calibration" in refused.stderr
