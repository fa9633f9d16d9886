"""V2 against `posefleet up` as users run it: tritonclient and KServe's clients over the
stack's REST port and its gRPC port, results equal to the job API's."""

import json

import pytest

from tests.gateway.oip_clients import drive


@pytest.mark.parametrize("client", ["tritonclient-grpc", "tritonclient-http", "kserve-grpc"])
def test_v2_clients_against_the_local_stack(stack, api, photos, tmp_path, client):
    photo = tmp_path / "basketball1.png"
    photo.write_bytes(photos["basketball1"])
    job = api.post(
        "/v1/pipelines/pose/jobs", content=photo.read_bytes(), headers={"prefer": "wait=60"}
    ).json()
    report = drive(client, stack.url, stack.grpc, "pose", [photo])
    assert report["live"] and report["ready"] and report["model_ready"]
    for mode in ("binary", "json"):
        (outputs,) = [r["outputs"] for r in report[mode]]
        assert json.loads(outputs["result"][0]) == job["result"]
        assert len(outputs["scores"]) == len(job["result"]["people"]) == 2
    assert f"gRPC 127.0.0.1:{stack.grpc.rsplit(':', 1)[1]}" in stack.output()
