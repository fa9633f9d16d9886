"""The CLI's gateway commands as a user runs them: separate processes, stdout a pipe (as in
scripts), an 80-column COLUMNS, against a real gateway over HTTP with model-free stages."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.clirun import ROOT, posefleet
from tests.gateway.conftest import png
from tests.workers import make_worker, worker_threads

NARROW = {"COLUMNS": "80"}


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


def cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return posefleet(*args, env={**NARROW, "POSEFLEET_URL": url, **(env or {})})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def submit(url: str, pipeline: str = "diamond", wait: bool = False) -> dict:
    headers = {"prefer": "wait=10"} if wait else {}
    response = httpx.post(f"{url}/v1/pipelines/{pipeline}/jobs", content=png(), headers=headers)
    return response.json()


def test_models_list_piped_through_grep_finds_every_name():
    shell = subprocess.run(
        f"{sys.executable} -m services.cli models list | grep thunder",
        shell=True,
        cwd=ROOT,
        env={**os.environ, **NARROW},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split("\t")[0] == "movenet-thunder"
    listed = json.loads(posefleet("models", "list", "--json", env=NARROW).stdout)
    assert "movenet-thunder" in {m["model"] for m in listed}


def test_jobs_get_in_text_and_json(gateway, workers):
    job = submit(gateway, wait=True)
    text = cli(gateway, "jobs", "get", job["id"])
    assert text.returncode == 0, text.stderr
    first, *nodes = text.stdout.splitlines()
    assert first.startswith(f"job {job['id']} (diamond): succeeded in ")
    assert [line.split()[0] for line in nodes] == ["m", "double", "triple", "sum"]
    assert all("compute" in line for line in nodes)
    as_json = cli(gateway, "jobs", "get", job["id"], "--json")
    assert json.loads(as_json.stdout) == httpx.get(f"{gateway}/v1/jobs/{job['id']}").json()


def test_jobs_watch_follows_the_job_to_its_end(gateway, redis_client):
    job = submit(gateway)  # no worker yet: the watch starts on a queued job
    watch = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "jobs", "watch", job["id"], "--url", gateway],
        cwd=ROOT,
        env={**os.environ, **NARROW},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stderr.readline().strip() == f"job {job['id']} queued"
    with worker_threads() as start:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert "sum succeeded: queue" in err  # progress on stderr, one line per node change
    assert out.splitlines()[0].startswith(f"job {job['id']} (diamond): succeeded")

    events = cli(gateway, "jobs", "watch", job["id"], "--json")
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [e["event"] for e in lines] == ["end"] and lines[0]["data"]["result"]["parts"] == 2


def test_jobs_cancel_then_cancel_again_is_one_clear_error(gateway):
    job = submit(gateway)
    canceled = cli(gateway, "jobs", "cancel", job["id"])
    assert canceled.returncode == 0 and canceled.stdout == f"job {job['id']} canceled\n"
    line = one_error_line(cli(gateway, "jobs", "cancel", job["id"]))
    assert "HTTP 409 job_finished" in line and "already canceled" in line
    watched = cli(gateway, "jobs", "watch", job["id"])
    assert watched.returncode == 1 and "canceled" in watched.stdout


def test_pipelines_list_from_the_gateway_and_from_a_file(gateway):
    listed = cli(gateway, "pipelines", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header == "pipeline\tnodes\tstages\toutputs\tdescription"
    diamond = next(r.split("\t") for r in rows if r.startswith("diamond\t"))
    assert diamond[1:4] == ["m double triple sum", "measure scale total", "total parts size items"]
    assert {p["name"] for p in json.loads(cli(gateway, "pipelines", "list", "--json").stdout)} == {
        "single",
        "diamond",
        "slow",
        "slow-chain",
    }
    local = posefleet("pipelines", "list", "--file", str(ROOT / "pipelines.yaml"), env=NARROW)
    assert [r.split("\t")[0] for r in local.stdout.splitlines()[1:]] == [
        "pose",
        "pose-multi",
        "classify",
        "scene",
    ]
    pipelines_file = str(ROOT / "pipelines.yaml")
    shown = json.loads(posefleet("pipelines", "show", "classify", "--file", pipelines_file,
                                 "--json").stdout)  # fmt: skip
    assert shown["steps"] == [["a", "b"], ["vote"]]


def test_pipelines_show_asks_the_gateway_it_is_pointed_at(gateway, start_gateway):
    """Like every gateway command, ``show`` honours POSEFLEET_URL and POSEFLEET_API_KEY."""
    served = json.loads(cli(gateway, "pipelines", "show", "diamond", "--json").stdout)
    assert served["steps"] == [["m"], ["double", "triple"], ["sum"]]
    api = httpx.get(f"{gateway}/v1/pipelines/diamond").json()
    assert served == {**api, "steps": served["steps"]}
    text = cli(gateway, "pipelines", "show", "diamond")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("pipeline diamond — fan-out"), text.stdout
    assert "   step 2 │ double [" in text.stdout
    line = one_error_line(cli(gateway, "pipelines", "show", "nope"))
    assert "HTTP 404 pipeline_not_found" in line and "known: ['diamond'" in line
    secured = start_gateway(api_keys={"k-1": "team-a"})
    assert "POSEFLEET_API_KEY" in one_error_line(cli(secured, "pipelines", "show", "diamond"))
    keyed = cli(secured, "pipelines", "show", "diamond", env={"POSEFLEET_API_KEY": "k-1"})
    assert keyed.returncode == 0, keyed.stderr


def test_stats_as_tables_json_and_watch(gateway, workers):
    for _ in range(3):
        assert submit(gateway, wait=True)["status"] == "succeeded"
    text = cli(gateway, "stats", "--window", "1m")
    assert text.returncode == 0, text.stderr
    sections = [line for line in text.stdout.splitlines() if line.startswith("# ")]
    assert [s.split(" ")[1].rstrip(":") for s in sections] == [
        "pipelines",
        "nodes",
        "stages",
        "pools",
    ]
    row = next(line for line in text.stdout.splitlines() if line.startswith("diamond\t3\t"))
    assert row.split("\t")[2] == "0"  # none failed
    data = json.loads(cli(gateway, "stats", "--json").stdout)
    assert data["pipelines"]["diamond"]["succeeded"] == 3
    assert data["backlog"]["measure"] == 0 and "dead_letters" in data

    watch = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "stats", "--watch", "--json", "--interval", "1"],
        cwd=ROOT,
        env={**os.environ, "POSEFLEET_URL": gateway},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    refreshes = [json.loads(watch.stdout.readline()) for _ in range(2)]
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=30) == 0
    assert all("pipelines" in r for r in refreshes)


def test_helpful_failures(start_gateway):
    unreachable = one_error_line(cli("http://127.0.0.1:1", "jobs", "get", "x"))
    assert "cannot reach the gateway at http://127.0.0.1:1" in unreachable
    assert "posefleet up" in unreachable

    secured = start_gateway(api_keys={"k-1": "alice"})
    line = one_error_line(cli(secured, "pipelines", "list"))
    assert "HTTP 401 unauthenticated" in line and "POSEFLEET_API_KEY" in line
    keyed = cli(secured, "pipelines", "list", env={"POSEFLEET_API_KEY": "k-1"})
    assert keyed.returncode == 0 and "diamond\t" in keyed.stdout
    assert "job_not_found" in one_error_line(
        cli(secured, "jobs", "get", "nope", env={"POSEFLEET_API_KEY": "k-1"})
    )


def test_429_is_explained_and_retry_waits_for_retry_after(start_gateway, redis_client, tmp_path):
    url = start_gateway(max_backlog=1)
    image = tmp_path / "tiny.png"
    image.write_bytes(png())
    assert submit(url, "single")["status"] == "queued"  # the backlog is now full
    refused = cli(url, "submit", str(image), "--pipeline", "single", "--no-wait")
    line = one_error_line(refused)
    assert "HTTP 429 backlog_full" in line and "--retry" in line
    command = ["submit", str(image), "--pipeline", "single", "--no-wait", "--retry", "--url", url]
    retrying = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert "retrying in 2 s" in retrying.stderr.readline()  # it waits as told
    worker = make_worker(redis_client, "measure")
    while retrying.poll() is None:  # drain the backlog until the retried submit gets in
        assert time.monotonic() < deadline, "the retried submit never got in"
        worker.process(worker.collect())
    assert retrying.returncode == 0, retrying.stderr.read()
    assert "(single): queued" in retrying.stdout.read()
