"""Load test of a running Posefleet: users that submit-then-poll, users that wait, and a mix.

    make loadtest                                   # local stack, 30 s headless, CSV + HTML
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080   # the web UI

Besides locust's per-request HTTP stats, every job reports its END-TO-END latency (submit →
terminal state) as a request of type ``JOB`` named ``{pipeline} end-to-end``: that, not the
HTTP time of a 202, is what a user of an asynchronous API waits for.

Images come from ``LOADTEST_IMAGES`` (a folder of .jpg/.png), else a few bundled photos.
Pipelines from ``LOADTEST_PIPELINES`` (comma-separated, default ``pose``).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import cv2
from locust import HttpUser, between, events, task
from skimage import data

TERMINAL = ("succeeded", "failed", "canceled", "expired")


def load_images() -> list[bytes]:
    folder = os.environ.get("LOADTEST_IMAGES")
    if folder:
        files = sorted(
            p
            for p in Path(folder).iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        )
        if not files:
            raise SystemExit(f"LOADTEST_IMAGES={folder} holds no images")
        return [p.read_bytes() for p in files]
    return [
        cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
        for image in (data.astronaut(), data.coffee(), data.chelsea())
    ]


IMAGES = load_images()
PIPELINES = [p.strip() for p in os.environ.get("LOADTEST_PIPELINES", "pose").split(",") if p]


def report_job(
    user: HttpUser, pipeline: str, started: float, job: dict | None, error: str | None = None
) -> None:
    failed = error or (
        None
        if job and job.get("status") == "succeeded"
        else f"job ended {job and job.get('status')}"
    )
    events.request.fire(
        request_type="JOB",
        name=f"{pipeline} end-to-end",
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=RuntimeError(failed) if failed else None,
        context={},
    )


class SubmitThenPoll(HttpUser):
    """Submit, then poll the job with exponential back-off (capped at 0.5 s)."""

    weight = 2
    wait_time = between(0.0, 0.2)

    @task
    def submit_and_poll(self) -> None:
        pipeline = random.choice(PIPELINES)
        started = time.perf_counter()
        response = self.client.post(
            f"/v1/pipelines/{pipeline}/jobs",
            data=random.choice(IMAGES),
            name="/v1/pipelines/[p]/jobs",
        )
        if response.status_code != 202:
            report_job(self, pipeline, started, None, f"submit answered {response.status_code}")
            return
        link, delay, job = response.json()["links"]["self"], 0.01, None
        deadline = started + 60
        while time.perf_counter() < deadline:
            job = self.client.get(link, name="/v1/jobs/[id]").json()
            if job["status"] in TERMINAL:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        report_job(self, pipeline, started, job)


class SubmitAndWait(HttpUser):
    """One request per job: `Prefer: wait` returns the finished job."""

    weight = 1
    wait_time = between(0.0, 0.2)

    @task
    def submit_waiting(self) -> None:
        pipeline = random.choice(PIPELINES)
        started = time.perf_counter()
        response = self.client.post(
            f"/v1/pipelines/{pipeline}/jobs",
            data=random.choice(IMAGES),
            headers={"prefer": "wait=30"},
            name="/v1/pipelines/[p]/jobs wait",
        )
        job = response.json() if response.status_code in (200, 202) else None
        if job and job["status"] not in TERMINAL:  # not done within the wait: keep waiting
            job = self.client.get(
                f"/v1/jobs/{job['id']}", headers={"prefer": "wait=30"}, name="/v1/jobs/[id] wait"
            ).json()
        report_job(
            self, pipeline, started, job, None if job else f"submit answered {response.status_code}"
        )
