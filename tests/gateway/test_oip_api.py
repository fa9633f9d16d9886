"""The V2 (Open Inference Protocol) adapters over real HTTP and real gRPC against a real Redis,
with model-free stages: protocol behaviour, errors, batches, limits. The model-backed runs with
clients we did not write are in test_oip_clients.py."""

import base64
import json
import socket
import struct

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.settings import Settings
from services.gateway.v2.proto import grpc_predict_v2_pb2 as pb
from services.gateway.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.gateway.conftest import OIP_PIPELINES, png
from tests.scrape import delta, scrape
from tests.stages import person
from tests.workers import gateway_server, make_worker, worker_threads


def bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def json_infer(*images: bytes, **extra: object) -> dict:
    return {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(i).decode() for i in images],
            }
        ],
        **extra,
    }


def binary_infer(*images: bytes, **extra: object) -> tuple[bytes, dict[str, str]]:
    raw = bytes_tensor(*images)
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        **extra,
    }
    text = json.dumps(doc).encode()
    return text + raw, {"inference-header-content-length": str(len(text))}


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray | list]:
    """Decode a REST inference response, JSON or binary, as a client would."""
    length = int(response.headers.get("inference-header-content-length", len(response.content)))
    doc = json.loads(response.content[:length])
    blob, found = response.content[length:], {}
    for out in doc["outputs"]:
        if "data" in out:
            data = out["data"]
            found[out["name"]] = (
                data if out["datatype"] == "BYTES" else np.array(data).reshape(out["shape"])
            )
            continue
        size = out["parameters"]["binary_data_size"]
        raw, blob = blob[:size], blob[size:]
        if out["datatype"] == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                (n,) = struct.unpack_from("<I", raw, offset)
                items.append(raw[offset + 4 : offset + 4 + n].decode())
                offset += 4 + n
            found[out["name"]] = items
        else:
            dtype = {"FP32": "<f4", "INT32": "<i4"}[out["datatype"]]
            found[out["name"]] = np.frombuffer(raw, dtype).reshape(out["shape"])
    assert blob == b""
    return found


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code and body["error"]
    return body["error"]


@pytest.fixture
def workers(redis_client):
    settings = Settings(block_ms=50, pipelines_file=OIP_PIPELINES)
    with worker_threads() as start:
        for stage in ("people", "slow-measure"):
            start(make_worker(redis_client, stage, settings))
        yield


@pytest.fixture
def oip(start_oip):
    url, target = start_oip(max_image_bytes=50_000, oip_max_batch=3)
    with httpx.Client(base_url=url, timeout=30) as client, grpc.insecure_channel(target) as ch:
        yield client, pb_grpc.GRPCInferenceServiceStub(ch)


def test_server_and_model_metadata(oip):
    api, _ = oip
    server = api.get("/v2").json()
    assert server["name"] == "posefleet" and server["version"]
    assert "binary_tensor_data" in server["extensions"]
    assert "statistics" not in server["extensions"]
    assert api.get("/v2/health/live").json() == {"live": True}
    assert api.get("/v2/health/ready").json() == {"ready": True}
    meta = api.get("/v2/models/people").json()
    assert meta == api.get("/v2/models/people/versions/1").json()
    assert meta["versions"] == ["1"] and meta["platform"] == "posefleet_pipeline"
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("boxes", "FP32", [-1, 4]),
        ("scores", "FP32", [-1]),
        ("keypoints", "FP32", [-1, 17, 3]),
        ("batch_index", "INT32", [-1]),
        ("label", "BYTES", [-1]),
        ("result", "BYTES", [-1]),
    ]
    assert api.get("/v2/models/people/ready").status_code == 200
    config = api.get("/v2/models/people/config").json()
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "image", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert_error(api.get("/v2/models/people/versions/2"), 404, "version_not_found")
    assert_error(api.get("/v2/models/people/versions/2/ready"), 404, "version_not_found")
    assert_error(api.get("/v2/models/nope"), 404, "model_not_found")
    assert_error(api.get("/v2/nothing/here"), 404, "not_found")


def test_json_and_binary_inference_equal_the_job_api(oip, workers):
    api, _ = oip
    image = png(trailer=b"person" * 2)
    job = api.post("/v1/pipelines/people/jobs", content=image, headers={"prefer": "wait=10"}).json()
    as_json = api.post("/v2/models/people/infer", json=json_infer(image, id="req-7"))
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"] == "application/json"
    body, headers = binary_infer(image, parameters={"binary_data_output": True})
    as_binary = api.post("/v2/models/people/versions/1/infer", content=body, headers=headers)
    assert as_binary.status_code == 200, as_binary.text
    assert as_binary.headers["content-type"] == "application/octet-stream"
    doc = as_json.json()
    assert doc["id"] == "req-7" and doc["model_name"] == "people" and doc["model_version"] == "1"
    job_id = doc["parameters"]["job_ids"]
    assert api.get(f"/v1/jobs/{job_id}").json()["result"] == job["result"]
    people = job["result"]["people"]
    assert len(people) == 2
    for response in (as_json, as_binary):
        out = outputs_of(response)
        assert json.loads(out["result"][0]) == job["result"]
        assert out["label"] == ["n2"]
        np.testing.assert_allclose(out["boxes"], [p["box"] for p in people], rtol=1e-6)
        np.testing.assert_allclose(out["scores"], [p["score"] for p in people], rtol=1e-6)
        np.testing.assert_allclose(
            out["keypoints"],
            [[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in people],
            rtol=1e-6,
        )
        assert out["batch_index"].tolist() == [0, 0]


def test_outputs_selection_and_per_output_binary(oip, workers):
    api, _ = oip
    body, headers = binary_infer(
        png(trailer=b"person"),
        outputs=[{"name": "scores", "parameters": {"binary_data": True}}, {"name": "label"}],
    )
    response = api.post("/v2/models/people/infer", content=body, headers=headers)
    doc = json.loads(response.content[: int(response.headers["inference-header-content-length"])])
    assert [o["name"] for o in doc["outputs"]] == ["scores", "label"]
    assert "parameters" in doc["outputs"][0] and doc["outputs"][1]["data"] == ["n1"]
    np.testing.assert_allclose(outputs_of(response)["scores"], [person(0, 0)["score"]])
    unknown = api.post(
        "/v2/models/people/infer", json=json_infer(png(), outputs=[{"name": "nope"}])
    )
    assert "nope" in assert_error(unknown, 400, "unknown_output")


def test_a_batch_is_one_job_per_image_concatenated_with_batch_index(oip, workers):
    api, _ = oip
    images = [png(trailer=b"person"), png(), png(trailer=b"person" * 3)]
    response = api.post("/v2/models/people/infer", json=json_infer(*images))
    assert response.status_code == 200, response.text
    out = outputs_of(response)
    assert out["batch_index"].tolist() == [0, 2, 2, 2]
    assert out["boxes"].shape == (4, 4) and out["keypoints"].shape == (4, 17, 3)
    assert out["label"] == ["n1", "n0", "n3"]
    job_ids = response.json()["parameters"]["job_ids"].split(",")
    assert len(set(job_ids)) == 3
    for job_id, result in zip(job_ids, out["result"], strict=True):
        assert api.get(f"/v1/jobs/{job_id}").json()["result"] == json.loads(result)


def test_a_bad_image_fails_the_whole_batch_and_cancels_its_admitted_jobs(oip, redis_client):
    api, _ = oip
    response = api.post("/v2/models/people/infer", json=json_infer(png(), b"not an image"))
    assert "image 1:" in assert_error(response, 400, "unsupported_media_type")
    (key,) = redis_client.keys("pf:job:*")  # the good image's job, created before the bad one
    assert redis_client.hget(key, "status") == b"canceled"


def test_malformed_requests_are_400s(oip):
    api, _ = oip
    infer = "/v2/models/people/infer"
    good = json_infer(png())
    cases = {
        "bad_tensor": {**good, "inputs": [{**good["inputs"][0], "data": ["%%%"]}]},
        "bad_datatype": {**good, "inputs": [{**good["inputs"][0], "datatype": "UINT8"}]},
        "bad_shape": {**good, "inputs": [{**good["inputs"][0], "shape": [2]}]},
        "unknown_input": {"inputs": [*good["inputs"], {**good["inputs"][0], "name": "x"}]},
        "missing_input": {"inputs": []},
        "bad_batch": json_infer(png(), png(), png(), png()),
    }
    for code, doc in cases.items():
        assert_error(api.post(infer, json=doc), 400, code)
    assert_error(api.post(infer, content=b"{nope"), 400, "bad_request")
    body, headers = binary_infer(png())
    wrong = {"inference-header-content-length": str(len(body) + 1)}
    assert_error(api.post(infer, content=body, headers=wrong), 400, "bad_request")
    assert_error(api.post(infer, content=body + b"x", headers=headers), 400, "bad_request")
    truncated = {**headers}
    assert_error(api.post(infer, content=body[:-3], headers=truncated), 400, "bad_request")
    big = png(200, 200)  # over this gateway's 50,000-byte image limit
    assert_error(api.post(infer, json=json_infer(big)), 400, "image_too_large")
    undecodable = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    assert_error(api.post(infer, json=json_infer(undecodable)), 400, "undecodable_image")


def test_request_over_the_size_limit_is_413(start_oip):
    url, _ = start_oip(oip_max_request_bytes=4096)
    with httpx.Client(base_url=url) as api:
        response = api.post("/v2/models/people/infer", json=json_infer(png(64, 64)))
    assert_error(response, 413, "request_too_large")


def test_a_job_that_outlives_the_timeout_is_504_and_keeps_running(oip, workers):
    api, _ = oip
    response = api.post(
        "/v2/models/slow/infer", json=json_infer(png(), parameters={"timeout": 200_000})
    )
    message = assert_error(response, 504, "timeout")
    job_id = message.split()[1]
    assert api.get(f"/v1/jobs/{job_id}", headers={"prefer": "wait=10"}).json()["status"] == (
        "succeeded"
    )


def test_a_failed_job_is_an_error_naming_it(oip, workers):
    api, _ = oip
    response = api.post("/v2/models/people/infer", json=json_infer(png(trailer=b"poison")))
    assert "poisoned image" in assert_error(response, 400, "invalid_input")


def test_backlog_full_is_429_with_retry_after(start_oip):
    url, target = start_oip(max_backlog=1)
    with httpx.Client(base_url=url) as api, grpc.insecure_channel(target) as channel:
        first = api.post(
            "/v2/models/people/infer", json=json_infer(png(), parameters={"timeout": 1})
        )
        assert_error(first, 504, "timeout")  # no workers: it stays queued, filling the backlog
        refused = api.post("/v2/models/people/infer", json=json_infer(png()))
        assert_error(refused, 429, "backlog_full")
        assert refused.headers["retry-after"] == "2"
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_infer(png()))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "2") in err.value.trailing_metadata()


def test_redis_down_is_503_and_unavailable(start_oip):
    url, target = start_oip(redis_url="redis://127.0.0.1:1/0")
    with httpx.Client(base_url=url, timeout=30) as api, grpc.insecure_channel(target) as ch:
        assert_error(api.post("/v2/models/people/infer", json=json_infer(png())), 503,
                     "store_unavailable")  # fmt: skip
        assert api.get("/v2/health/ready").status_code == 503
        assert api.get("/v2/health/live").status_code == 200
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(grpc_infer(png()))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_api_keys_over_rest_and_grpc(start_oip):
    url, target = start_oip(api_keys={"key-a": "alice"})
    with httpx.Client(base_url=url) as api, grpc.insecure_channel(target) as channel:
        assert_error(api.get("/v2/models/people"), 401, "unauthenticated")
        assert api.get("/v2/health/ready").status_code == 200  # probes need no key
        alice = {"authorization": "Bearer key-a"}
        assert api.get("/v2/models/people", headers=alice).status_code == 200
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="people"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        meta = stub.ModelMetadata(
            pb.ModelMetadataRequest(name="people"), metadata=(("authorization", "Bearer key-a"),)
        )
    assert meta.name == "people"


def test_idempotency_key_finds_the_same_jobs(oip, workers):
    api, _ = oip
    images = [png(trailer=b"person"), png()]
    key = {"idempotency-key": "batch-9"}
    first = api.post("/v2/models/people/infer", json=json_infer(*images), headers=key)
    again = api.post("/v2/models/people/infer", json=json_infer(*images), headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json()["parameters"] == again.json()["parameters"]
    other = api.post("/v2/models/people/infer", json=json_infer(png(8, 8)), headers=key)
    assert_error(other, 409, "idempotency_conflict")


def grpc_infer(*images: bytes, raw: bool = True, **fields: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(**{"model_name": "people", **fields})
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    if raw:
        request.raw_input_contents.append(bytes_tensor(*images))
    else:
        tensor.contents.bytes_contents.extend(images)
    return request


def test_grpc_raw_and_typed_contents_equal_rest(oip, workers):
    api, stub = oip
    image = png(trailer=b"person" * 2)
    rest = outputs_of(api.post("/v2/models/people/infer", json=json_infer(image)))
    raw = stub.ModelInfer(grpc_infer(image, id="g-1"))
    typed = stub.ModelInfer(grpc_infer(image, raw=False))
    assert raw.id == "g-1" and raw.model_version == "1"
    assert raw.parameters["job_ids"].string_param
    names = [o.name for o in raw.outputs]
    assert names == ["boxes", "scores", "keypoints", "batch_index", "label", "result"]
    boxes = np.frombuffer(raw.raw_output_contents[0], "<f4").reshape(raw.outputs[0].shape)
    np.testing.assert_allclose(boxes, rest["boxes"])
    np.testing.assert_allclose(
        np.array(typed.outputs[2].contents.fp32_contents).reshape(typed.outputs[2].shape),
        rest["keypoints"],
    )
    assert list(typed.outputs[3].contents.int_contents) == [0, 0]
    assert json.loads(typed.outputs[5].contents.bytes_contents[0]) == json.loads(rest["result"][0])
    assert raw.raw_output_contents[5] == bytes_tensor(rest["result"][0].encode())


def test_grpc_status_codes(oip, workers):
    _, stub = oip
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="people", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="people", version="7")).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "posefleet" and "binary_tensor_data" in server.extensions
    config = stub.ModelConfig(pb.ModelConfigRequest(name="people")).config
    assert config.input[0].data_type == pb.TYPE_STRING and list(config.input[0].dims) == [-1]
    calls = {
        grpc.StatusCode.NOT_FOUND: [
            lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")),
            lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="people", version="7")),
        ],
        grpc.StatusCode.INVALID_ARGUMENT: [
            lambda: stub.ModelInfer(grpc_infer(b"not an image")),
            lambda: stub.ModelInfer(grpc_infer(png(trailer=b"poison"))),
        ],
        grpc.StatusCode.DEADLINE_EXCEEDED: [
            lambda: stub.ModelInfer(grpc_infer(png(), model_name="slow"), timeout=0.3),
            lambda: stub.ModelInfer(
                grpc_infer(
                    png(),
                    model_name="slow",
                    parameters={"timeout": pb.InferParameter(int64_param=1000)},
                )
            ),
        ],
    }
    for code, attempts in calls.items():
        for attempt in attempts:
            with pytest.raises(grpc.RpcError) as err:
                attempt()
            assert err.value.code() == code, err.value.details()


def test_grpc_health_service_reports_serving(start_oip):
    _, target = start_oip()
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_inferences_are_counted_by_protocol_and_outcome(oip, workers):
    api, stub = oip
    before = scrape(str(api.base_url).rstrip("/"))
    api.post("/v2/models/people/infer", json=json_infer(png()))
    api.post("/v2/models/made-up/infer", json=json_infer(png()))
    stub.ModelInfer(grpc_infer(png()))
    after = scrape(str(api.base_url).rstrip("/"))
    count = "posefleet_oip_requests_total"
    assert delta(before, after, count, protocol="rest", model="people", outcome="ok") == 1
    assert delta(before, after, count, protocol="grpc", model="people", outcome="ok") == 1
    unknown = {"protocol": "rest", "model": "unknown", "outcome": "model_not_found"}
    assert delta(before, after, count, **unknown) == 1


def test_v2_inferences_are_jobs_of_their_tenant_in_stats(start_oip, workers):
    """Each image of a V2 request is a job like any other: counted in ``/v1/stats`` for the
    tenant whose key made it (the cost share follows those counts), never for another."""
    url, target = start_oip(api_keys={"key-a": "alice", "key-b": "bob"})
    alice = {"authorization": "Bearer key-a"}
    with httpx.Client(base_url=url, timeout=30) as api, grpc.insecure_channel(target) as channel:
        rest = api.post("/v2/models/people/infer", json=json_infer(png(), png()), headers=alice)
        assert rest.status_code == 200, rest.text
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(grpc_infer(png()), metadata=(("authorization", "Bearer key-a"),))
        mine = api.get("/v1/stats?window=5m", headers=alice).json()
        theirs = api.get("/v1/stats?window=5m", headers={"authorization": "Bearer key-b"}).json()
    assert mine["scope"] == "tenant" and mine["tenant"] == "alice"
    assert mine["pipelines"]["people"]["succeeded"] == 3
    assert mine["stages"]["people"]["tasks"] == 3
    assert "people" not in theirs["pipelines"]


# uvicorn leaves a failed start-up with SystemExit in its thread; that is the behaviour tested
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_grpc_port_held_by_another_process_stops_start_up(redis_url):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = f"127.0.0.1:{held.getsockname()[1]}"
        settings = Settings(redis_url=redis_url, pipelines_file=OIP_PIPELINES)
        with pytest.raises(RuntimeError, match="did not start"), gateway_server(settings, busy):
            pass
