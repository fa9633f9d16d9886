"""The gateway refuses an upload cut short with 422 ``undecodable_image`` from its header and a
completeness check, without decoding it (docs/performance.md), and accepts a whole one."""

import httpx
import pytest

from tests.faults.hostile import jpeg
from tests.gateway.conftest import png


@pytest.fixture
def api(start_gateway):
    with httpx.Client(base_url=start_gateway(), timeout=30) as client:
        yield client


@pytest.mark.parametrize("image", [jpeg(64, 48), png(64, 48)], ids=["jpeg", "png"])
def test_cut_short_upload_is_422_and_whole_one_is_accepted(api, image):
    cut = api.post("/v1/pipelines/single/jobs", content=image[: len(image) - 8])
    assert cut.status_code == 422, cut.text
    assert cut.json()["code"] == "undecodable_image"
    whole = api.post("/v1/pipelines/single/jobs", content=image)
    assert whole.status_code == 202, whole.text
    assert whole.json()["status"] == "queued"
