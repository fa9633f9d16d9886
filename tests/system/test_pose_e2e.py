"""The whole system as `make up` runs it: real gateway, workers, Redis, models, HTTP."""

import signal
import time

import jsonschema
import pytest

from tests.clirun import posefleet
from tests.inprocess import assert_same_people, pipeline
from tests.system.stack import descendants, local_stack


@pytest.mark.parametrize("name", ["astronaut", "basketball1", "coffee"])
def test_submit_poll_result_equals_in_process_handlers(api, photos, detector, pose, name):
    accepted = api.post(
        "/v1/pipelines/pose/jobs", content=photos[name], headers={"content-type": "image/jpeg"}
    )
    assert accepted.status_code == 202
    job_id = accepted.json()["id"]
    deadline = time.monotonic() + 30
    while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)  # a client polling, as the README shows
    assert job["status"] == "succeeded", job
    (reference,) = pipeline(detector, pose, [photos[name]])
    assert_same_people(job["result"]["people"], reference, atol=0.01)
    assert {n["status"] for n in job["nodes"].values()} == {"succeeded"}


def test_prefer_wait_returns_the_skeletons(api, photos):
    response = api.post(
        "/v1/pipelines/pose/jobs", content=photos["basketball2"], headers={"prefer": "wait=20"}
    )
    assert response.status_code == 200
    job = response.json()
    assert job["image"]["width"] == 640 and job["image"]["height"] == 480
    assert len(job["result"]["people"]) == 2


def test_bad_input_through_the_real_stack(api, photos):
    for body, status, code in [
        (b"hello, not an image", 415, "unsupported_media_type"),
        (photos["basketball1"][:100], 422, "undecodable_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (21 * 1024 * 1024), 413, "image_too_large"),
    ]:
        response = api.post("/v1/pipelines/pose/jobs", content=body)
        assert response.status_code == status and response.json()["code"] == code


def test_cli_submit_prints_people_and_draws(stack, photos, tmp_path):
    image = tmp_path / "basketball.png"
    image.write_bytes(photos["basketball1"])
    out = tmp_path / "drawn.png"
    result = posefleet(
        "submit", str(image), "--pipeline", "pose", "--url", stack.url, "--draw", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "2 people in 640x480 px" in result.stdout and "succeeded" in result.stdout
    assert out.stat().st_size > 10_000


def test_ctrl_c_stops_every_process_cleanly(model_root):
    with local_stack(model_root, "--workers-per-stage", "2") as stack:
        children = stack.children()
        assert len(children) >= 12  # redis, gateway, 2 workers for each of the 5 stages
        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(timeout=60) == 0
        output = stack.output()
    stages = ("detector", "pose", "classifier-a", "classifier-b", "combine")
    for name in (f"{stage}-{i}" for stage in stages for i in (1, 2)):
        assert f"{name}: exited 0" in output
    assert not (children & descendants(1) - {stack.proc.pid}), "processes left running"


def test_classify_runs_both_classifiers_in_parallel_and_fuses(api, photos):
    job = api.post(
        "/v1/pipelines/classify/jobs", content=photos["coffee"], headers={"prefer": "wait=30"}
    ).json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["label"] == "espresso" and result["score"] > 0.5
    assert len(result["top_k"]) == 5
    assert [m["model"] for m in result["members"]] == ["efficientnet-lite0", "efficientnet-lite2"]
    a, b = job["nodes"]["a"], job["nodes"]["b"]
    assert a["worker"] != b["worker"]
    # Both branches were released together and ran at the same time on their own workers.
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    assert job["nodes"]["vote"]["started_at"] >= max(a["finished_at"], b["finished_at"])


def test_scene_merges_both_pipelines_from_config_alone(api, photos):
    job = api.post(
        "/v1/pipelines/scene/jobs", content=photos["basketball1"], headers={"prefer": "wait=30"}
    ).json()
    assert job["status"] == "succeeded", job
    assert set(job["result"]) == {"people", "label", "top_k"}
    assert len(job["result"]["people"]) == 2 and len(job["result"]["top_k"]) == 3


@pytest.mark.parametrize(
    ("pipeline", "photo"),
    [("pose", "basketball1"), ("classify", "chelsea"), ("scene", "astronaut"), ("pose", "coffee")],
)
def test_results_match_the_published_output_schemas(api, photos, pipeline, photo):
    schemas = api.get(f"/v1/pipelines/{pipeline}").json()["output_schemas"]
    job = api.post(
        f"/v1/pipelines/{pipeline}/jobs", content=photos[photo], headers={"prefer": "wait=30"}
    ).json()
    assert job["status"] == "succeeded", job
    assert set(schemas) == set(job["result"])
    for name, value in job["result"].items():
        assert schemas[name], f"{pipeline}.{name} publishes no schema"
        jsonschema.validate(value, schemas[name])


def test_eval_client_reports_latency_throughput_and_accuracy(stack, photos, tmp_path):
    for name in ("chelsea", "coffee", "astronaut"):
        (tmp_path / f"{name}.jpg").write_bytes(photos[name])
    labels = tmp_path / "labels.csv"
    labels.write_text("chelsea.jpg,tabby|tiger cat|Egyptian cat\ncoffee.jpg,espresso\n")
    result = posefleet(
        "eval",
        str(tmp_path),
        "--pipeline",
        "classify",
        "--labels",
        str(labels),
        "--concurrency",
        "2",
        "--url",
        stack.url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 images, 3 succeeded" in result.stdout
    for column in ("min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "img/s"):
        assert column in result.stdout
    assert "✓ chelsea.jpg" in result.stdout and "✓ coffee.jpg" in result.stdout
    assert "accuracy: 2/2 = 100.0%" in result.stdout
