"""The detector stage serving NanoDet, chosen by the model's family, on bundled photos."""

import pytest

from services.core.handler import HandlerContext, Task
from services.core.settings import get_settings
from services.detector.handler import DetectorHandler
from services.factory.catalog import CATALOG
from tests.inprocess import run


@pytest.fixture(scope="module")
def nanodet(build_catalog) -> DetectorHandler:
    build_catalog("nanodet")
    """No stage options: the threshold is the model's own ``default_min_score``."""
    handler = DetectorHandler()
    handler.initialize(HandlerContext("detector", get_settings(), model="nanodet"))
    return handler


def boxes(handler: DetectorHandler, image: bytes, **params: float) -> list[dict]:
    return run(handler, [Task("j", "detect", {"image": image}, params)])[0]["boxes"]


def test_detector_decoder_comes_from_the_models_family(build_catalog):
    build_catalog("movenet-thunder")
    assert CATALOG["nanodet"].preprocessing["family"] == "nanodet"
    handler = DetectorHandler()
    with pytest.raises(ValueError, match=r"'movenet-thunder'.*'movenet'.*not a person detector"):
        handler.initialize(HandlerContext("detector", get_settings(), model="movenet-thunder"))


def test_nanodet_finds_one_person_in_astronaut(nanodet, photos):
    assert nanodet.min_score == CATALOG["nanodet"].preprocessing["default_min_score"]
    (person,) = boxes(nanodet, photos["astronaut"])
    x1, y1, x2, y2 = person["box"]
    assert x1 < 60 and y1 < 60 and x2 > 300 and y2 > 450  # the left two-thirds, to the bottom
    assert person["score"] > 0.5


@pytest.mark.parametrize("name", ["basketball1", "basketball2"])
def test_nanodet_finds_two_people_in_basketball(nanodet, photos, name):
    found = boxes(nanodet, photos[name])
    assert len(found) == 2
    left, right = sorted(found, key=lambda b: b["box"][0])
    assert left["box"][2] < 320 < right["box"][0]  # one each side of the 640 px frame
    for b in found:
        x1, y1, x2, y2 = b["box"]
        assert y2 - y1 > 300 and 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480  # whole players


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_nanodet_finds_no_people_in_person_free_photos(nanodet, photos, name):
    assert boxes(nanodet, photos[name]) == []


def test_nanodet_threshold_follows_the_node_param(nanodet, photos):
    low = boxes(nanodet, photos["basketball1"], min_score=0.1)
    assert len(low) > 2 and min(b["score"] for b in low) >= 0.1
    assert [b["score"] for b in low] == sorted((b["score"] for b in low), reverse=True)


def test_nanodet_batch_equals_one_at_a_time(nanodet, photos):
    images = [photos[n] for n in ("basketball1", "astronaut", "coffee", "basketball2")]
    together = run(nanodet, [Task(f"j{i}", "d", {"image": im}) for i, im in enumerate(images)])
    assert [out["boxes"] for out in together] == [boxes(nanodet, im) for im in images]
