"""Finding 9: ``posefleet up`` as a small kubelet. A real ``up`` on the model-free test pipelines:
a SIGKILLed child comes back and the system keeps serving; a SIGKILLed ``up`` leaves no process.

Every process of a run is found two ways: the tree under ``up`` recorded while it ran, and a
marker in the environment every descendant inherits (so a process that escaped the tree, by
re-parenting or a new session, is still found).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis

from loadtest.stacks import local_stack
from services.cli.redis_server import LocalRedis, free_port, start_redis
from services.core import keys
from tests.cli.test_redis_server import alive
from tests.system.stack import descendants
from tests.workers import TEST_PIPELINES

# posefleet up and its Redis: the integration tier, whatever fixtures the tests name
pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(240)]

MARK = "POSEFLEET_FAULT_TEST_RUN"
GRACE_S = 3.0  # POSEFLEET_UP_STOP_GRACE_S of the runs below


def png() -> bytes:
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
    assert ok
    return buf.tobytes()


def marked(run: str, home: Path) -> set[int]:
    """Running processes (zombies excluded) whose environment carries this run's marker, or
    whose working directory is in the run's ``home`` (redis-server writes its process title
    over its environment, and works in its data directory)."""
    needle = f"{MARK}={run}".encode()
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ours = needle in (proc / "environ").read_bytes().split(b"\0") or (
                (proc / "cwd").resolve().is_relative_to(home)
            )
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if ours and alive(int(proc.name)):
            found.add(int(proc.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> set[int]:
    """Direct children only (a forked grandchild shares its parent's command line)."""
    return {p for p in descendants(pid) if f" {pid} " in stat_line(p)}


def stat_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return ""


def wait_until(condition, timeout_s: float, what: str | Callable[[], str]):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, (
            f"{what() if callable(what) else what} after {timeout_s} s"
        )
        time.sleep(0.05)  # poll interval
    return result


@contextmanager
def up(tmp_path: Path, redis_url: str = "") -> Iterator[tuple[subprocess.Popen, str, Path, str]]:
    """``posefleet up --no-build`` on the test pipelines: (process, base URL, log, run marker).
    An empty ``redis_url`` makes it start its own Redis with its data under ``tmp_path``."""
    run, port = uuid.uuid4().hex, free_port()
    env = {
        MARK: run,
        "POSEFLEET_PIPELINES_FILE": str(TEST_PIPELINES),
        "POSEFLEET_CACHE_DIR": str(tmp_path / "cache"),
        "POSEFLEET_REDIS_URL": redis_url,
        "POSEFLEET_UP_STOP_GRACE_S": str(GRACE_S),
    }
    log = tmp_path / "up.log"
    try:
        with local_stack(port, log, "--no-build", env=env, timeout_s=180) as proc:
            yield proc, f"http://127.0.0.1:{port}", log, run
    finally:
        for pid in marked(run, tmp_path):  # a failed test must not leave its processes behind
            os.kill(pid, signal.SIGKILL)


def submit(base: str, pipeline: str = "single") -> dict:
    response = httpx.post(
        f"{base}/v1/pipelines/{pipeline}/jobs",
        content=png(),
        headers={"content-type": "image/png", "prefer": "wait=30"},
        timeout=40,
        trust_env=False,
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


def kill_up_and_wait_for_no_survivor(
    proc: subprocess.Popen, run: str, home: Path, own_redis: bool
) -> float:
    """SIGKILL ``up``; return how long until no process of the run was left."""
    tree = descendants(proc.pid)
    # gateway, four workers, control (+ its RQ scheduler, once it has taken the lock), and
    # redis when ``up`` started its own
    assert len(tree) >= 6 + own_redis, tree
    assert tree <= marked(run, home)  # the marker does find every process of the tree
    proc.kill()
    killed = time.monotonic()
    proc.wait()

    def survivors() -> dict[int, str]:
        return {p: cmdline(p) for p in {p for p in tree if alive(p)} | marked(run, home)}

    wait_until(lambda: not survivors(), GRACE_S + 15, lambda: f"still running: {survivors()}")
    return time.monotonic() - killed


def test_a_sigkilled_up_leaves_no_process_and_its_redis_keeps_the_data(tmp_path):
    with up(tmp_path) as (proc, base, _log, run):
        job = submit(base)
        assert job["status"] == "succeeded", job
        gone_after = kill_up_and_wait_for_no_survivor(proc, run, tmp_path, own_redis=True)
    assert gone_after < GRACE_S + 10
    # The AOF kept what the killed system wrote.
    with start_redis(data_dir=tmp_path / "cache" / "redis", appendonly=True) as server:
        assert redis.Redis.from_url(server.url).hget(keys.job(job["id"]), "status") == b"succeeded"


def test_a_sigkilled_up_leaves_no_process_even_mid_batch_on_an_outside_redis(
    tmp_path, redis_server: LocalRedis
):
    # The case PDEATHSIG alone lost: the control worker's SIGTERM drain waits for a batch whose
    # workers are gone, on a Redis that did not die with `up`; it ran on for good.
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    with up(tmp_path, redis_server.url) as (proc, base, _log, run):
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for i in range(100):
                z.writestr(f"{i:03}.png", png())
        response = httpx.post(
            f"{base}/v1/pipelines/slow/batches",
            content=archive.getvalue(),
            headers={"content-type": "application/zip"},
            trust_env=False,
        )
        assert response.status_code == 202, response.text
        batch = f"{base}/v1/batches/{response.json()['id']}"
        wait_until(
            lambda: httpx.get(batch, trust_env=False).json()["submitted"] > 0,
            30,
            "the batch expanding",
        )
        gone_after = kill_up_and_wait_for_no_survivor(proc, run, tmp_path, own_redis=False)
    # Not before the grace period (the control worker ignores nothing: it drains), not long after.
    assert GRACE_S - 0.5 < gone_after < GRACE_S + 10


def restarted(log: Path, child: str, count: int) -> re.Match | None:
    return re.search(
        rf"child exited; restarting child={child} exit=(?P<exit>-9 \(SIGKILL\)) "
        rf"ran_s=\S+ restarts={count} next_delay_s=(?P<delay>\S+).*?"
        rf"child restarted child={child} pid=(?P<pid>\d+) restarts={count}",
        log.read_text(errors="replace"),
        re.S,
    )


def test_a_sigkilled_child_is_restarted_with_backoff_and_the_system_keeps_serving(tmp_path):
    with up(tmp_path) as (proc, base, log, _run):
        by_cmd = {cmdline(p): p for p in children(proc.pid)}
        worker = next(p for c, p in by_cmd.items() if c.endswith("worker measure "))
        control = next(p for c, p in by_cmd.items() if c.endswith("control-worker "))
        # RQ forks its scheduler: a grandchild in the control worker's process group.
        scheduler = wait_until(lambda: descendants(control), 30, "RQ's scheduler")
        for victim in (worker, control):
            os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        first = wait_until(lambda: restarted(log, "measure-1", 1), 30, "the worker's restart")
        assert wait_until(lambda: restarted(log, "control-1", 1), 30, "control restarted")
        assert float(first["delay"]) == 1.0  # POSEFLEET_UP_RESTART_INITIAL_S's default
        assert not any(alive(p) for p in scheduler)  # died with its parent's group
        # Again: the second crash in a row waits twice as long.
        os.kill(int(first["pid"]), signal.SIGKILL)
        second = wait_until(lambda: restarted(log, "measure-1", 2), 30, "the second restart")
        assert float(second["delay"]) == 2.0
        # The restarted worker serves: a job through the whole system finishes.
        job = submit(base)
        served = time.monotonic() - killed
        assert job["status"] == "succeeded", job
        assert job["nodes"]["m"]["worker"].split("-")[-2] == second["pid"]
        assert proc.poll() is None  # `up` itself never stopped
        assert served < 30
