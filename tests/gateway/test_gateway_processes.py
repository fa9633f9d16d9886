"""``POSEFLEET_GATEWAY_PROCESSES``: one gateway as several uvicorn processes on one socket. Each
answers the API, and /metrics adds every process's counters up (prometheus_client's
multiprocess mode), whichever process a scrape reaches."""

import os
import subprocess
import sys
import time

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.redis_server import free_port
from tests.clirun import ROOT
from tests.gateway.conftest import png
from tests.workers import TEST_PIPELINES

SUBMITTED = 'posefleet_jobs_submitted_total{pipeline="single"}'


def counter(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_two_processes_serve_and_their_metrics_add_up(redis_url):
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "POSEFLEET_REDIS_URL": redis_url,
        "POSEFLEET_PIPELINES_FILE": str(TEST_PIPELINES),
        "POSEFLEET_GATEWAY_PROCESSES": "2",
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.2)  # poll interval while the processes start
        # a new connection per request, so both processes get some
        for _ in range(12):
            accepted = httpx.post(base + "/v1/pipelines/single/jobs", content=png(), timeout=10)
            assert accepted.status_code == 202, accepted.text
        for _ in range(6):
            assert counter(httpx.get(base + "/metrics", timeout=10).text, SUBMITTED) == 12
        # every process serves V2 gRPC on the one port (SO_REUSEPORT; a process that could not
        # bind it would have failed the startup above)
        for _ in range(4):
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                reply = check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        proc.wait(timeout=30)
