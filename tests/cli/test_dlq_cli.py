"""``posefleet dlq`` as an operator runs it: a separate process, its output in a pipe, against a
real gateway (keys on) and Redis."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.clirun import posefleet
from tests.deadletters import exhaust_attempts
from tests.gateway.conftest import png
from tests.jobwait import wait_terminal
from tests.workers import make_worker, worker_threads

KEYS = {"key-ops": "operator", "key-a": "team-a"}


@pytest.fixture
def gateway_env(start_gateway) -> dict[str, str]:
    # A page of 2, so listing and replaying --all must follow the cursor.
    url = start_gateway(api_keys=KEYS, dead_letter_page_max=2)
    return {"POSEFLEET_URL": url, "POSEFLEET_API_KEY": "key-ops"}


def dead_jobs(env: dict[str, str], redis_client, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = httpx.post(
            f"{env['POSEFLEET_URL']}/v1/pipelines/single/jobs",
            content=png(8 + i),
            headers={"content-type": "image/png", "authorization": "Bearer key-a"},
        )
        ids.append(response.json()["id"])
    exhaust_attempts(redis_client, "measure")
    return ids


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_list_and_show_work_in_a_pipe_without_truncation(gateway_env, redis_client):
    ids = dead_jobs(gateway_env, redis_client, 3)
    listed = posefleet("dlq", "list", "--json", env=gateway_env)
    assert listed.returncode == 0, listed.stderr
    items = lines(listed.stdout)  # three pages of at most 2, one JSON object per line
    assert [x["job"] for x in items] == ids
    message = items[0]["error"]["message"]
    assert message.endswith("moved to dead letters")  # whole, though longer than a terminal
    table = posefleet("dlq", "list", "--stage", "measure", env=gateway_env)
    assert table.returncode == 0, table.stderr
    header, *rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert header == ["stage", "id", "at", "job", "node", "reason", "error"]
    assert [r[1] for r in rows] == [x["id"] for x in items]
    assert rows[0][-1] == f"max_attempts_exceeded: {message}"

    shown = posefleet(
        "dlq", "show", items[0]["id"], "--stage", "measure", "--json", env=gateway_env
    )
    assert json.loads(shown.stdout) == {**items[0], "job_status": "failed"}
    by_ref = posefleet("dlq", "show", f"measure/{items[0]['id']}", env=gateway_env)
    assert "job_status: failed" in by_ref.stdout


def test_replay_all_then_the_jobs_finish_and_purge_clears_what_is_left(gateway_env, redis_client):
    ids = dead_jobs(gateway_env, redis_client, 3)
    redis_client.delete(f"pf:job:{ids[1]}")  # this one expired: it cannot be replayed
    replayed = posefleet("dlq", "replay", "--all", "--json", env=gateway_env)
    assert replayed.returncode == 1, replayed.stderr  # not every letter could be replayed
    outcomes = {r["job"]: r["outcome"] for r in lines(replayed.stdout)}
    assert outcomes == {ids[0]: "replayed", ids[1]: "job_expired", ids[2]: "replayed"}
    assert "1 job_expired, 2 replayed" in replayed.stderr
    with worker_threads() as start:
        start(make_worker(redis_client, "measure"))
        for job_id in (ids[0], ids[2]):
            done = wait_terminal(redis_client, job_id, 10)
            assert done["status"] == "succeeded" and done["replays"][0]["by"] == "operator"

    purged = posefleet("dlq", "purge", "--all", "--only-expired", env=gateway_env)
    assert purged.returncode == 0, purged.stderr
    assert "1 purged" in purged.stderr
    empty = posefleet("dlq", "list", "--json", env=gateway_env)
    assert empty.returncode == 0 and empty.stdout == ""


def test_naming_letters_and_the_errors_an_operator_can_meet(gateway_env, redis_client):
    dead_jobs(gateway_env, redis_client, 1)
    (item,) = lines(posefleet("dlq", "list", "--json", env=gateway_env).stdout)
    missing = posefleet(
        "dlq", "replay", item["id"], "measure/1-0", "-s", "measure", env=gateway_env
    )
    assert missing.returncode == 1
    assert "measure/1-0 job None: not_found" in missing.stdout
    assert "1 not_found, 1 replayed" in missing.stderr

    usage = posefleet("dlq", "purge", env=gateway_env)
    assert usage.returncode == 2 and "or give --all" in usage.stderr
    no_stage = posefleet("dlq", "show", item["id"], env=gateway_env)
    assert no_stage.returncode == 2 and "give --stage" in no_stage.stderr
    team = posefleet("dlq", "list", env={**gateway_env, "POSEFLEET_API_KEY": "key-a"})
    assert team.returncode == 2 and "HTTP 403 operator_only" in team.stderr
