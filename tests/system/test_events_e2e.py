"""Server-sent events through the whole system (`posefleet up`): a real pose job's nodes, and a
zip batch's frames arriving one by one from the control plane, then the CLI reading it back."""

import io
import json
import zipfile

from httpx_sse import connect_sse

from tests.clirun import posefleet


def test_pose_job_stream_has_both_nodes_with_timings_and_the_people(api, photos):
    job = api.post("/v1/pipelines/pose/jobs", content=photos["basketball1"]).json()
    with connect_sse(api, "GET", f"/v1/jobs/{job['id']}/events") as source:
        events = [(e.event, json.loads(e.data)) for e in source.iter_sse() if e.data]
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert kinds[0] in ("state", "node", "end")  # a fast job may already have moved on
    nodes = {data["node"]: data for kind, data in events if kind == "node"}
    end = events[-1][1]
    assert end["status"] == "succeeded" and len(end["result"]["people"]) == 2
    for name in ("detect", "keypoints"):
        node = nodes.get(name, end["nodes"][name])
        assert node["status"] == "succeeded" and node["compute_ms"] > 0


def test_zip_batch_stream_sends_every_frame_then_the_end(api, stack, photos):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("astronaut", "basketball1", "basketball2"):
            archive.writestr(f"{name}.jpg", photos[name])
    batch = api.post("/v1/pipelines/pose/batches", content=buffer.getvalue()).json()
    with connect_sse(api, "GET", f"/v1/batches/{batch['id']}/events") as source:
        events = [(e.event, json.loads(e.data), e.id) for e in source.iter_sse() if e.data]
    frames = sorted((d for kind, d, _ in events if kind == "frame"), key=lambda d: d["frame"])
    assert [(f["frame"], f["name"], len(f["people"])) for f in frames] == [
        (0, "astronaut.jpg", 1),
        (1, "basketball1.jpg", 2),
        (2, "basketball2.jpg", 2),
    ]
    kind, final, last_id = events[-1]
    assert (kind, last_id, final["status"], final["done"], final["total"]) == (
        "end",
        "end",
        "succeeded",
        3,
        3,
    )
    assert all(kind != "progress" or 0 <= d["done"] <= 3 for kind, d, _ in events)
    over = api.get(f"/v1/batches/{batch['id']}/events", headers={"last-event-id": "end"})
    assert over.status_code == 204

    got = posefleet("batches", "get", batch["id"], "--url", stack.url)
    assert got.returncode == 0, got.stderr
    assert "succeeded, 3 done, 0 failed of 3" in got.stdout
    table = posefleet("batches", "results", batch["id"], "--url", stack.url)
    assert table.stdout.splitlines() == [
        "frame\tat\tstatus\tfound",
        "0\tastronaut.jpg\tsucceeded\t1 person",
        "1\tbasketball1.jpg\tsucceeded\t2 people",
        "2\tbasketball2.jpg\tsucceeded\t2 people",
    ]
    lines = posefleet("batches", "results", batch["id"], "--json", "--url", stack.url)
    assert [json.loads(line)["frame"] for line in lines.stdout.splitlines()] == [0, 1, 2]
