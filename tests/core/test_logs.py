import json
import logging

from services.core.logs import JsonFormatter


def test_records_become_one_json_object_with_extras_and_exceptions():
    formatter = JsonFormatter("gateway")
    record = logging.makeLogRecord(
        {
            "name": "posefleet.x",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "queue %s",
            "args": ("full",),
            "stage": "pose",
            "depth": 3,
        }
    )
    line = json.loads(formatter.format(record))
    assert line["service"] == "gateway" and line["level"] == "warning"
    assert line["msg"] == "queue full" and line["stage"] == "pose" and line["depth"] == 3
    assert line["ts"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f", 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    line = json.loads(formatter.format(record))
    assert "ValueError: boom" in line["exc"] and "\n" not in formatter.format(record)
