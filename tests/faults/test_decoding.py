"""Hostile images at the edge (issue 10, findings 2-4): decompression bombs, forged headers and
thin images are refused from their header, before any decode, by a real gateway process; the
classifiers' own preprocessing stays bounded for an image that reaches them another way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from services.core.handler import HandlerContext, Task, TaskError
from services.core.settings import Settings
from services.ensemble.classifier import ClassifierHandler
from tests.faults.hostile import (
    jpeg,
    jpeg_claiming,
    png_header_only,
    png_zeros,
    webp_header_only,
)
from tests.faults.served import ROOT, gateway_process, memory_kib, peak_growth_mib, reset_peak

pytestmark = pytest.mark.faults

# The stable codes of docs/limits.md for an image refused after its bytes were read.
IMAGE_CODES = {
    "undecodable_image",
    "image_too_many_pixels",
    "image_side_too_long",
    "image_aspect_too_extreme",
}
CLASSIFIERS = ["efficientnet-lite0", "efficientnet-lite2"]


@pytest.fixture(scope="module")
def gateway(redis_server, tmp_path_factory, photos) -> Iterator[tuple[httpx.Client, int]]:
    """A real gateway process on the served pipelines (no workers: accepted jobs just queue),
    warmed up by one ordinary photo so later peaks are the hostile requests' own."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with (
        gateway_process(redis_server.url, log) as (url, pid),
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        warm = client.post("/v1/pipelines/pose/jobs", content=photos["astronaut"])
        assert warm.status_code == 202, warm.text
        yield client, pid


def assert_refused_at_once(
    gateway: tuple[httpx.Client, int], pipeline: str, body: bytes, codes: set[str]
) -> None:
    """POST one image: a 422 problem with one of ``codes``, in < 1 s, with the gateway's peak
    RSS < 100 MiB over what it was before (the figures are in every failure message)."""
    client, pid = gateway
    reset_peak(pid)
    since = memory_kib(pid, "VmRSS")
    started = time.perf_counter()
    response = client.post(f"/v1/pipelines/{pipeline}/jobs", content=body)
    seconds, growth = time.perf_counter() - started, peak_growth_mib(pid, since)
    figures = f"{len(body)} B: {response.status_code}, {seconds:.2f} s, +{growth:.0f} MiB"
    assert response.status_code == 422, figures
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in codes, (response.json(), figures)
    assert seconds < 1.0, figures
    assert growth < 100, figures


BOMBS = {
    # ~110 KB, a real PNG: 30000x30000 black pixels, 2.5 GiB once decoded
    "png-30000x30000": lambda: png_zeros(30000, 30000),
    # ~11 KB, a real 96x96 JPEG whose frame header says 30000x30000
    "jpeg-claims-30000x30000": lambda: jpeg_claiming(30000, 30000),
    # 45 bytes: a PNG signature and an IHDR claiming 30000x30000 RGB, no pixel data
    "png-header-30000x30000": lambda: png_header_only(30000, 30000),
}


@pytest.mark.parametrize("name", BOMBS)
def test_decompression_bombs_are_refused_from_the_header(gateway, name):
    assert_refused_at_once(gateway, "pose", BOMBS[name](), {"image_too_many_pixels"})


GIGAPIXEL_HEADERS = {  # each claims >= 2^30 pixels, OpenCV's own limit, in a few KB
    "jpeg-65500x65500": lambda: jpeg_claiming(65500, 65500),
    "jpeg-40000x30000": lambda: jpeg_claiming(40000, 30000),
    "png-40000x40000": lambda: png_zeros(40000, 40000),
    "png-header-65535x65535": lambda: png_header_only(65535, 65535),
    "webp-header-50000x50000": lambda: webp_header_only(50000, 50000),
}


def test_gigapixel_headers_are_422_never_500(gateway, photos):
    client, _ = gateway
    answers: dict[str, tuple[int | str, str]] = {}
    for name, make in GIGAPIXEL_HEADERS.items():
        try:
            response = client.post("/v1/pipelines/pose/jobs", content=make())
        except httpx.TransportError as exc:  # what a 500 from a crashed handler looked like
            answers[name] = ("no answer", repr(exc))
            continue
        problem = response.headers.get("content-type") == "application/problem+json"
        answers[name] = (
            response.status_code,
            response.json()["code"] if problem else response.text,
        )
    assert all(status == 422 and code in IMAGE_CODES for status, code in answers.values()), answers
    # the same keep-alive connection still serves an ordinary upload: nothing was reset
    assert client.post("/v1/pipelines/pose/jobs", content=photos["coffee"]).status_code == 202


THIN = {
    "png-50000x2": lambda: png_zeros(50000, 2, rgb=True),  # ~370 bytes
    "jpeg-1x65500": lambda: jpeg(1, 65500, noise=False),  # ~17 KB
}


@pytest.mark.parametrize("name", THIN)
def test_thin_images_are_refused_by_the_gateway(gateway, name):
    codes = {"image_side_too_long", "image_aspect_too_extreme"}
    assert_refused_at_once(gateway, "classify", THIN[name](), codes)


@pytest.mark.parametrize("name", THIN)
def test_classifier_workers_refuse_thin_images(model_root, name):
    """A worker checks the same limits as the gateway before decoding (an image may reach a
    stage by another way: a batch, an older gateway, a replayed dead letter)."""
    body = THIN[name]()
    for model in CLASSIFIERS:
        handler = ClassifierHandler()
        handler.initialize(HandlerContext(model, Settings(), model=model))
        started = time.perf_counter()
        with pytest.raises(TaskError, match=r"side|aspect"):
            handler.preprocess([Task("job", "a", {"image": body})])
        assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("name", THIN)
def test_classifier_preprocessing_is_bounded_without_the_limits(model_root, tmp_path, name):
    """With the per-side and aspect limits lifted, the real classifiers' preprocessing of a thin
    image still takes seconds at most and well under 500 MiB (it resized the whole image to
    224/260 on the shorter side: 5.6 GiB and ~55 s for the 50000x2 PNG)."""
    image = tmp_path / "thin.img"
    image.write_bytes(THIN[name]())
    lifted = {"POSEFLEET_MAX_IMAGE_SIDE": "1000000", "POSEFLEET_MAX_IMAGE_ASPECT": "1000000"}
    probe = subprocess.run(
        [sys.executable, "-m", "tests.faults.classifier_probe", str(image), *CLASSIFIERS],
        cwd=ROOT,
        env={**os.environ, **lifted},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    cost = json.loads(probe.stdout.splitlines()[-1])
    assert all(outcome.startswith("ok") for outcome in cost["outcomes"]), cost
    assert cost["seconds"] < 5 and cost["growth_mib"] < 500, cost
