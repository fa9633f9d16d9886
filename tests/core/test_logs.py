"""What a service really writes to stderr after configure_logging: one JSON object per line."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
import logging, warnings
import uvicorn
from services.core.logs import configure_logging, uvicorn_log_config

configure_logging("gateway", level="debug")
log = logging.getLogger("posefleet.queue")
log.debug("queue %s", "full", extra={"stage": "pose", "depth": 3, "level": "not core"})
try:
    raise ValueError("boom")
except ValueError:
    log.exception("failed", extra={"job": object()})
warnings.warn("old API", DeprecationWarning)
print("stdout is not the log")
# uvicorn applies its log_config when its Config is built, as uvicorn.run does.
uvicorn.Config(app=None, log_config=uvicorn_log_config("gateway"))
logging.getLogger("uvicorn.error").info("Started server process")
logging.getLogger("uvicorn.access").info(
    '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/readyz", "1.1", 200
)
"""


def test_every_stderr_line_is_one_json_object_with_the_fields():
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", SERVICE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout == "stdout is not the log\n"
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # all of them JSON
    assert [e["msg"] for e in entries] == [
        "queue full",
        "failed",
        entries[2]["msg"],  # the warnings module's own wording
        "Started server process",
        '127.0.0.1:1 - "GET /readyz HTTP/1.1" 200',
    ]
    for entry in entries:
        assert entry["service"] == "gateway"
        assert datetime.fromisoformat(entry["ts"]).utcoffset().total_seconds() == 0
        assert len(entry["ts"].split(".")[1]) == len("123+00:00")  # milliseconds
    queue, failed, warning, started, access = entries
    assert queue["level"] == "debug" and queue["logger"] == "posefleet.queue"
    assert queue["stage"] == "pose" and queue["depth"] == 3  # extras keep their JSON types
    assert failed["level"] == "error" and "ValueError: boom" in failed["exc"]
    assert failed["job"].startswith("<object object")  # not JSON: written as str
    assert warning["logger"] == "py.warnings" and "old API" in warning["msg"]
    assert started["logger"] == "uvicorn.error" and started["level"] == "info"
    assert access["logger"] == "uvicorn.access"
    assert "color_message" not in started
