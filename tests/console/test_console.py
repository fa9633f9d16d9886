"""The web console in a real Chromium against a real gateway, real workers and real models
(`posefleet up`): what a person sees, asserted through what the page says it drew."""

import json
import re
import time
from pathlib import Path

import cv2
import httpx
import pytest

from tests.conftest import OPENCV_DATA

pytestmark = pytest.mark.browser


def keypoints_above(people: list[dict], threshold: float) -> int:
    return sum(k["score"] >= threshold for p in people for k in p["keypoints"])


def raw_job(page) -> dict:
    page.click("#tab-json")
    return json.loads(page.text_content("#code"))


def test_try_it_draws_people_and_skeletons_live(page, stack, screenshot):
    page.goto(stack.url + "/")
    assert page.url.endswith("/console/")
    page.click("[data-pipeline=pose]")
    assert page.get_attribute("[data-pipeline=pose]", "aria-checked") == "true"
    assert page.locator("#dag .node").count() == 2
    # record each status the page shows with the DAG's node statuses at that moment
    page.evaluate(
        """() => { window.seen = [];
          new MutationObserver(() => window.seen.push([
            document.getElementById('job-status').dataset.status,
            [...document.querySelectorAll('#dag .node')].map((n) => n.dataset.status)]))
          .observe(document.getElementById('job-status'), {attributes: true}); }"""
    )
    page.set_input_files("#file", str(OPENCV_DATA / "basketball1.png"))
    canvas = page.wait_for_selector("#result-canvas[data-people]")
    seen = page.evaluate("window.seen")
    assert seen[-1] == ["succeeded", ["succeeded", "succeeded"]]
    for badge, nodes in seen:  # live states are consistent: done only when every node is
        assert badge != "succeeded" or set(nodes) == {"succeeded"}, seen
    job = raw_job(page)
    people = job["result"]["people"]
    assert canvas.get_attribute("data-people") == str(len(people)) == "2"
    shown = keypoints_above(people, 0.3)
    assert canvas.get_attribute("data-keypoints-above") == str(shown) and shown > 20
    assert page.text_content("#result-summary") == f"2 people, {shown} keypoints above 0.30"
    # the live timeline and the DAG end with every node done
    assert page.get_attribute("#timeline", "data-nodes-done") == "2"
    assert page.locator('#dag .node[data-status="succeeded"]').count() == 2
    assert page.get_attribute("#job-status", "data-status") == "succeeded"
    page.click("#tab-curl")
    screenshot(page, "try-pose")

    page.fill("#threshold", "0.6")  # a stricter threshold draws fewer keypoints
    stricter = keypoints_above(people, 0.6)
    assert stricter < shown
    assert page.get_attribute("#result-canvas", "data-keypoints-above") == str(stricter)

    page.locator("#result-canvas").scroll_into_view_if_needed()
    box = page.locator("#result-canvas").bounding_box()
    best = max(people[0]["keypoints"], key=lambda k: k["score"])
    scale = box["width"] / job["image"]["width"]
    page.mouse.move(box["x"] + best["x"] * scale, box["y"] + best["y"] * scale)
    assert page.text_content("#hover").startswith(f"#1 {best['name']}")
    assert f"score {best['score']:.2f}" in page.text_content("#hover")

    page.click("#tab-curl")
    assert f"{stack.url}/v1/pipelines/pose/jobs" in page.text_content("#code")
    page.click("#tab-python")
    assert "httpx.post(" in page.text_content("#code")


def test_classify_shows_top_labels_and_each_members_vote(page, stack, photos, tmp_path, screenshot):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos["coffee"])
    page.goto(stack.url + "/console/#/try?pipeline=classify")
    page.wait_for_selector('[data-pipeline=classify][aria-checked="true"]')
    # parallel branches: a and b share a column of the drawn DAG, vote follows
    assert page.locator("#dag .node").count() == 3
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#topk[data-labels]")
    assert page.get_attribute("#topk", "data-labels") == "5"
    assert page.locator("#topk .bar-row .name").first.text_content() == "espresso"
    members = page.locator("#members .member")
    assert members.count() == 2
    assert {members.nth(i).locator(".model").text_content() for i in range(2)} == {
        "efficientnet-lite0",
        "efficientnet-lite2",
    }
    assert page.locator("#picture-panel").is_hidden()
    rows = page.locator("#timeline .row")
    assert rows.count() == 3
    screenshot(page, "try-classify")


def webm_from_vtest(path, frames: int = 30) -> None:
    """vtest.avi's first seconds as VP8 WebM, a format Chromium plays (AVI it cannot)."""
    capture = cv2.VideoCapture(str(OPENCV_DATA / "vtest.avi"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), 10, (768, 576))
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok
        writer.write(frame)
    writer.release()
    capture.release()


def test_batch_streams_frames_and_plays_back_with_skeletons(page, stack, tmp_path, screenshot):
    video = tmp_path / "walk.webm"
    webm_from_vtest(video)
    page.goto(stack.url + "/console/#/batches")
    page.wait_for_selector("#batch-pipeline option[value=pose]", state="attached")
    page.set_input_files("#batch-file", str(video))
    page.fill("#frame-stride", "10")
    page.fill("#max-frames", "3")
    page.click("#batch-submit")
    progress = page.wait_for_selector("#batch-progress[data-status=succeeded]", timeout=120_000)
    assert (progress.get_attribute("data-done"), progress.get_attribute("data-total")) == ("3", "3")
    assert page.locator("#frame-list li").count() == 3
    assert page.get_attribute("#frame-chart", "data-frames") == "3"

    # frame 1 is at 1.0 s (every 10th frame of a 10 fps video): seek there, its skeletons show
    page.evaluate("document.getElementById('batch-video').currentTime = 1.0")
    overlay = page.wait_for_selector("#batch-overlay[data-drawn-frame='1']")
    assert overlay.get_attribute("data-exact") == "true"
    assert int(overlay.get_attribute("data-people")) > 0
    summary = page.text_content("#player-summary")
    assert re.fullmatch(r"frame #1 at 1 s: \d+ (person|people)", summary)
    screenshot(page, "batch-video")

    with page.expect_download() as download:
        page.click("#batch-download")
    text = Path(download.value.path()).read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2]
    assert lines[1]["timestamp_ms"] == 1000.0 and lines[1]["people"]


def test_fleet_page_draws_charts_from_stats_and_metrics(page, stack, photos, screenshot):
    with httpx.Client(base_url=stack.url, timeout=60) as api:
        for pipeline, photo in (("pose", "astronaut"), ("classify", "coffee")):
            job = api.post(
                f"/v1/pipelines/{pipeline}/jobs",
                content=photos[photo],
                headers={"prefer": "wait=30"},
            ).json()
            assert job["status"] == "succeeded"
    page.goto(stack.url + "/console/#/fleet")
    page.wait_for_selector("#node-table table")
    assert int(page.get_attribute("#node-table", "data-rows")) >= 5  # pose 2 + classify 3
    assert int(page.get_attribute("#chart-latency", "data-bars")) >= 6  # p50/p95/p99 x 2
    assert int(page.get_attribute("#chart-pools", "data-bars")) >= 1
    assert int(page.get_attribute("#chart-cost", "data-bars")) >= 2
    assert page.get_attribute("#chart-backlog", "data-bars") == str(2 * 6)  # 6 stages
    assert page.locator("#kpis .kpi").count() == 6
    assert "pose" in page.get_attribute("#chart-latency", "aria-label")
    # a second sample 5 s later turns the throughput into a line
    # (polled from here: the page's CSP forbids the eval behind wait_for_function)
    deadline = time.monotonic() + 20
    while int(page.get_attribute("#chart-throughput", "data-points") or 0) < 4:
        assert time.monotonic() < deadline, "the fleet page did not refresh"
        page.wait_for_timeout(250)
    screenshot(page, "fleet")


def test_an_api_key_is_asked_for_and_kept_for_the_session(
    page, page_errors, start_gateway, screenshot
):
    url = start_gateway(api_keys={"secret-key": "alice"})
    page.goto(url + "/console/")
    page.wait_for_selector("#key-form:not([hidden])")
    assert page.text_content("#notice") == "This gateway needs an API key."
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.fill("#api-key", "secret-key")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-pipeline=diamond]")
    assert page.evaluate("sessionStorage.getItem('posefleet.apiKey')") == "secret-key"
    # keyboard: arrow keys move the pipeline choice
    page.focus('[data-pipeline][aria-checked="true"]')
    first = page.get_attribute('[aria-checked="true"]', "data-pipeline")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute('[aria-checked="true"]', "data-pipeline") != first
    page_errors[:] = [e for e in page_errors if "401" not in e]  # the refused first request


def test_usable_on_a_phone(open_page, stack, screenshot):
    page = open_page(390, 844, scale=2)
    page.goto(stack.url + "/console/")
    page.click("#sample")
    page.wait_for_selector("#result-canvas[data-people='1']", timeout=60_000)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    assert page.locator("nav a").count() == 3 and page.locator("nav").is_visible()
    screenshot(page, "phone", full_page=False)
